//! Claims are leases: a step whose worker died runs again once its lease
//! lapses (a new attempt, counted), a result from a lapsed claim is refused
//! (fencing), and messages or results that cannot be processed never stop
//! their consumer. Dead and paused workers are played here by claiming
//! through the queue's SQL function directly; the process-level faults
//! (SIGKILL, SIGSTOP, PostgreSQL restarts) are in the harness's tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgPool;
use tasker_engine::database::HOT_PATH_SESSION;
use tasker_engine::worker::submit_results;
use tasker_engine::{
    Embedded, HandlerError, HandlerRegistry, StepContext, StepHandler, StepState, TaskState,
    TaskTemplate,
};
use uuid::Uuid;

use crate::{test_config, TASK_TIMEOUT};

const QUEUE: &str = r#"tasker."claim_worker_leases_queue""#;
const SUBMIT: &str = r#"tasker."submit_worker_leases_queue""#;

/// One step in namespace `leases` with a 1 s timeout: with a margin of 0
/// its lease lasts one second.
fn one_step(max_attempts: u32) -> TaskTemplate {
    let yaml = format!(
        "name: lease_{max_attempts}\nnamespace_name: leases\nversion: \"1.0.0\"\nsteps:\n  - name: only_step\n    handler:\n      callable: test.count\n    retry:\n      max_attempts: {max_attempts}\n      backoff_base_ms: 10\n    timeout_seconds: 1\n"
    );
    TaskTemplate::from_yaml_str(&yaml, "leases test").expect("test template is valid")
}

/// Counts its runs; returns its attempt.
#[derive(Clone, Default)]
struct Counting {
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl StepHandler for Counting {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(json!({"attempt": step.attempt}))
    }
}

/// A claim made by a worker that is about to die: `(msg_id, attempt, token)`.
async fn claim_as(pool: &PgPool, worker: &str) -> Option<(i64, i32, Uuid)> {
    sqlx::query_as(&format!(
        "SELECT msg_id, attempt, claim_token FROM {QUEUE}(0, 1, $1)"
    ))
    .bind(worker)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Claim again once the lease (1 s) has lapsed.
async fn claim_after_lease(pool: &PgPool, worker: &str) -> Option<(i64, i32, Uuid)> {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    claim_as(pool, worker).await
}

/// One result submitted as the worker submits it: the worker's plain
/// statement, and the queue's function when that declines. Accepted?
async fn submit(pool: &PgPool, step: Uuid, msg_id: i64, token: Uuid, result: Value) -> bool {
    let results = json!([{
        "step_uuid": step, "msg_id": msg_id, "claim_token": token, "success": true,
        "result": result, "error": null, "execution_time_us": 10, "worker_id": "test",
    }]);
    submit_as_worker(pool, &results).await.is_empty()
}

/// `results` submitted as the worker submits them; the steps refused.
async fn submit_as_worker(pool: &PgPool, results: &Value) -> Vec<Uuid> {
    let mut connection = pool.acquire().await.unwrap().detach();
    sqlx::query(HOT_PATH_SESSION)
        .execute(&mut connection)
        .await
        .unwrap();
    submit_results(&mut connection, "worker_leases_queue", results)
        .await
        .unwrap()
}

async fn only_step(pool: &PgPool, task: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1")
        .bind(task)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn audit(pool: &PgPool, step: Uuid) -> Vec<(i32, bool, Option<String>)> {
    sqlx::query_as(
        "SELECT attempt, success, error_type FROM tasker.workflow_step_result_audit
          WHERE workflow_step_uuid = $1 ORDER BY attempt",
    )
    .bind(step)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn history(pool: &PgPool, step: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT to_state::text FROM tasker.workflow_step_transitions
          WHERE workflow_step_uuid = $1 ORDER BY sort_key",
    )
    .bind(step)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn queue_len(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pgmq.q_worker_leases_queue")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn start(url: &str, template: &TaskTemplate, handler: Counting) -> Embedded {
    let mut registry = HandlerRegistry::new();
    registry.register("test.count", handler);
    let mut config = test_config();
    config.worker.claim_lease_margin_s = 0;
    config.orchestration.staleness_interval_ms = 200;
    crate::start_on(url, config, template, registry).await
}

#[tokio::test]
async fn a_step_whose_worker_died_runs_again_once_its_lease_lapses() {
    let template = one_step(3);
    let (url, pool, task) = crate::idle_task(&template, json!({})).await;
    let (_, attempt, _) = claim_as(&pool, "doomed-worker").await.expect("claimed");
    assert_eq!(attempt, 1);

    // The doomed worker never reports. A live worker takes the step over
    // once the lease lapses, with no notification sent (the staleness
    // detector wakes it).
    let handler = Counting::default();
    let engine = start(&url, &template, handler.clone()).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Complete);
    let step = only_step(&pool, task).await;
    let view = engine.client.list_steps(task).await.unwrap().remove(0);
    assert_eq!(view.attempts, 2, "the interrupted attempt is counted");
    assert_eq!(view.results, Some(json!({"attempt": 2})));
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        audit(&pool, step).await,
        [(1, false, Some("ClaimExpired".into())), (2, true, None)]
    );
    assert_eq!(
        history(&pool, step).await,
        [
            "pending",
            "enqueued",
            "in_progress",
            "enqueued",
            "in_progress",
            "enqueued_for_orchestration",
            "complete"
        ]
    );
    let lapsed = &engine.client.step_transitions(step).await.unwrap()[3];
    assert_eq!(lapsed.metadata["reason"], "claim_expired");
    assert_eq!(lapsed.metadata["worker"], "doomed-worker");
    assert_eq!(queue_len(&pool).await, 0);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_step_that_keeps_losing_its_worker_ends_in_error_with_the_reason() {
    let template = one_step(2);
    let (url, pool, task) = crate::idle_task(&template, json!({})).await;
    let first = claim_as(&pool, "doomed-1").await.expect("claimed");
    let second = claim_after_lease(&pool, "doomed-2")
        .await
        .expect("claimed again");
    assert_eq!((first.1, second.1), (1, 2));
    assert_eq!(first.0, second.0, "the same message, claimed again");
    // The second lease lapses too, and no attempt is left: the next claim
    // fails the step instead of running it.
    assert_eq!(claim_after_lease(&pool, "doomed-3").await, None);
    assert_eq!(queue_len(&pool).await, 0);

    let handler = Counting::default();
    let engine = start(&url, &template, handler.clone()).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Error);
    let view = engine.client.list_steps(task).await.unwrap().remove(0);
    assert_eq!((view.state, view.attempts), (StepState::Error, 2));
    let error = view.last_error.unwrap();
    assert_eq!(error["error_type"], "ClaimExpired");
    assert!(
        error["message"].as_str().unwrap().contains("doomed-2"),
        "{error}"
    );
    let step = view.workflow_step_uuid;
    assert_eq!(
        audit(&pool, step).await,
        [
            (1, false, Some("ClaimExpired".into())),
            (2, false, Some("ClaimExpired".into()))
        ]
    );
    assert_eq!(handler.runs.load(Ordering::SeqCst), 0);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_result_from_a_lapsed_claim_is_refused() {
    let template = one_step(3);
    let (url, pool, task) = crate::idle_task(&template, json!({})).await;
    let step = only_step(&pool, task).await;
    let (msg, _, paused_token) = claim_as(&pool, "paused-worker").await.unwrap();
    let (msg_again, attempt, token) = claim_after_lease(&pool, "live-worker").await.unwrap();
    assert_eq!((msg_again, attempt), (msg, 2));

    // The paused worker wakes and reports attempt 1: refused, and the
    // message stays for the live claim.
    assert!(!submit(&pool, step, msg, paused_token, json!("stale")).await);
    assert_eq!(queue_len(&pool).await, 1);
    // A result without a token, or with a made-up one, is refused too.
    assert!(!submit(&pool, step, msg, Uuid::nil(), json!("forged")).await);
    assert!(submit(&pool, step, msg, token, json!("fresh")).await);
    assert_eq!(queue_len(&pool).await, 0);
    // Late again, after the step moved on: still refused.
    assert!(!submit(&pool, step, msg, paused_token, json!("stale")).await);

    let engine = start(&url, &template, Counting::default()).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Complete);
    let view = engine.client.list_steps(task).await.unwrap().remove(0);
    assert_eq!(view.results, Some(json!("fresh")));
    assert_eq!(
        audit(&pool, step).await,
        [(1, false, Some("ClaimExpired".into())), (2, true, None)]
    );
    engine.shutdown().await;
}

/// Claims and results go to the database in batches: a duplicate message
/// in a claimed batch runs nothing, and a forged result beside the real one
/// in a batch of results is refused while the real one lands once.
#[tokio::test]
async fn batches_of_claims_and_results_hold_one_claim_and_one_result_per_step() {
    let template = one_step(3);
    let (_url, pool, task) = crate::idle_task(&template, json!({})).await;
    let step = only_step(&pool, task).await;
    sqlx::query(
        "INSERT INTO pgmq.q_worker_leases_queue (vt, message)
         SELECT clock_timestamp(), message FROM pgmq.q_worker_leases_queue",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(queue_len(&pool).await, 2);

    let claimed: Vec<(i64, i32, Uuid)> = sqlx::query_as(&format!(
        "SELECT msg_id, attempt, claim_token FROM {QUEUE}(0, 10, 'batch-worker')"
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(claimed.len(), 1, "one claim of the step: {claimed:?}");
    let (msg, attempt, token) = claimed[0];
    assert_eq!(attempt, 1);
    assert_eq!(queue_len(&pool).await, 1, "the duplicate is dropped unrun");

    let entry = |token: Uuid, result: Value| {
        json!({
            "step_uuid": step, "msg_id": msg, "claim_token": token, "success": true,
            "result": result, "error": null, "execution_time_us": 10, "worker_id": "test",
        })
    };
    // The worker's plain statement declines the batch (an entry is not the
    // step's claim) and changes nothing; the function refuses the forged
    // entry and records the real one.
    let results = json!([
        entry(Uuid::nil(), json!("forged")),
        entry(token, json!("real"))
    ]);
    assert_eq!(submit_as_worker(&pool, &results).await, [step]);
    assert_eq!(queue_len(&pool).await, 0);
    assert_eq!(audit(&pool, step).await, [(1, true, None)]);
    assert_eq!(
        history(&pool, step).await,
        [
            "pending",
            "enqueued",
            "in_progress",
            "enqueued_for_orchestration"
        ]
    );
    let results: Option<Value> = sqlx::query_scalar(
        "SELECT results FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
    )
    .bind(step)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(results, Some(json!("real")));
}

#[tokio::test]
async fn malformed_messages_are_rejected_with_the_reason_and_work_goes_on() {
    let template = one_step(3);
    let (url, pool, task) = crate::idle_task(&template, json!({})).await;
    let junk = [
        json!("not an object"),
        json!({"step_uuid": "not-a-uuid"}),
        json!({"task_uuid": Uuid::new_v4(), "step_uuid": Uuid::new_v4()}),
        json!([1, 2, 3]),
    ];
    for message in &junk {
        for queue in ["worker_leases_queue", "orchestration_step_results"] {
            sqlx::query("SELECT pgmq.send($1, $2)")
                .bind(queue)
                .bind(message)
                .execute(&pool)
                .await
                .unwrap();
        }
    }

    let handler = Counting::default();
    let engine = start(&url, &template, handler.clone()).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Complete);
    assert_eq!(handler.runs.load(Ordering::SeqCst), 1);
    // The orchestration queue's junk is processed with the real result.
    let rejected: Vec<(String, String)> = sqlx::query_as(
        "SELECT queue_name, reason FROM tasker.rejected_messages ORDER BY queue_name, msg_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let reasons = |queue: &str| -> Vec<&str> {
        rejected
            .iter()
            .filter(|(q, _)| q == queue)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    assert_eq!(
        reasons("worker_leases_queue"),
        [
            "step_uuid is missing or not a uuid",
            "step_uuid is missing or not a uuid",
            "no such step",
            "step_uuid is missing or not a uuid"
        ]
    );
    assert_eq!(
        reasons("orchestration_step_results"),
        [
            "task_uuid or step_uuid is missing or not a uuid",
            "task_uuid or step_uuid is missing or not a uuid",
            "no such task",
            "task_uuid or step_uuid is missing or not a uuid"
        ]
    );
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pgmq.q_worker_leases_queue)
              + (SELECT count(*) FROM pgmq.q_orchestration_step_results)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    engine.shutdown().await;
}

/// Returns a string PostgreSQL's jsonb cannot hold.
struct ReturnsNul;

#[async_trait]
impl StepHandler for ReturnsNul {
    async fn call(&self, _: &StepContext) -> Result<Value, HandlerError> {
        Ok(json!("a\u{0}b"))
    }
}

#[tokio::test]
async fn a_result_the_database_cannot_store_fails_its_step_and_blocks_nothing() {
    let template = one_step(3);
    let (url, pool, task) = crate::idle_task(&template, json!({})).await;
    let mut registry = HandlerRegistry::new();
    registry.register("test.count", ReturnsNul);
    let engine = crate::start_on(&url, test_config(), &template, registry).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Error);
    let view = engine.client.list_steps(task).await.unwrap().remove(0);
    let error = view.last_error.unwrap();
    assert_eq!(error["error_type"], "ResultNotStorable");
    assert_eq!(view.attempts, 1, "not retried: it would fail the same way");
    // The worker goes on with other work.
    let request =
        tasker_engine::TaskRequest::new("leases", &template.name, "1.0.0", json!({"n": 2}));
    let (_, state) = engine
        .client
        .run_task(&request, TASK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(state, TaskState::Error);
    assert_eq!(queue_len(&pool).await, 0);
    engine.shutdown().await;
}

/// One batch of results holds tasks that go different ways: a chain whose
/// first step completed (its second step is enqueued, set-based), a task
/// whose only step completed (it finishes, set-based, with its history),
/// one whose step failed for good (it ends in error, per task), and a
/// redelivered result of a step already processed (nothing happens
/// twice). All in one process_step_results.
#[tokio::test]
async fn one_batch_of_results_moves_each_task_its_own_way() {
    use tasker_engine::orchestration::{create_task, register_templates};
    let pair = TaskTemplate::from_yaml_str(
        "name: pair\nnamespace_name: leases\nversion: \"1.0.0\"\nsteps:\n  - name: first\n    handler:\n      callable: test.count\n    retry:\n      max_attempts: 1\n  - name: second\n    dependencies: [first]\n    handler:\n      callable: test.count\n",
        "pair",
    )
    .unwrap();
    let single = one_step(1);
    let (_url, pool, finishing) = crate::idle_task(&single, json!({})).await;
    register_templates(&pool, std::slice::from_ref(&pair))
        .await
        .unwrap();
    let new_pair =
        |n: i32| tasker_engine::TaskRequest::new("leases", "pair", "1.0.0", json!({ "n": n }));
    let chained = create_task(&pool, &new_pair(1)).await.unwrap().task_uuid;
    let failing = create_task(&pool, &new_pair(2)).await.unwrap().task_uuid;

    let claimed: Vec<(i64, Uuid, Uuid, Uuid)> = sqlx::query_as(&format!(
        "SELECT msg_id, task_uuid, workflow_step_uuid, claim_token FROM {QUEUE}(0, 10, 'w')"
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(claimed.len(), 3, "the three root steps: {claimed:?}");
    let entries: Vec<Value> = claimed
        .iter()
        .map(|(msg, task, step, token)| {
            let ok = *task != failing;
            json!({
                "step_uuid": step, "msg_id": msg, "claim_token": token, "success": ok,
                "result": if ok { json!(1) } else { Value::Null },
                "error": if ok { Value::Null } else {
                    json!({"error_type": "Boom", "message": "no", "retryable": false})
                },
                "execution_time_us": 10, "worker_id": "test",
            })
        })
        .collect();
    let accepted: Vec<bool> = sqlx::query_scalar(&format!("SELECT accepted FROM {SUBMIT}($1)"))
        .bind(Value::Array(entries))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(accepted, [true, true, true]);
    // A redelivered copy of the finishing task's result rides in the batch.
    let finishing_step = only_step(&pool, finishing).await;
    sqlx::query("SELECT pgmq.send('orchestration_step_results', $1)")
        .bind(json!({"task_uuid": finishing, "step_uuid": finishing_step}))
        .execute(&pool)
        .await
        .unwrap();

    let evaluated: Vec<(Uuid, TaskState, i32, i32)> = sqlx::query_as(
        "SELECT task_uuid, task_state, enqueued, batch_messages
           FROM tasker.process_step_results(10) ORDER BY task_uuid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected = vec![
        (chained, TaskState::StepsInProcess, 1, 4),
        (finishing, TaskState::Complete, 0, 4),
        (failing, TaskState::Error, 0, 4),
    ];
    expected.sort_by_key(|row| row.0);
    assert_eq!(evaluated, expected);

    let states: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT task_uuid, name, state::text FROM tasker.workflow_steps ORDER BY task_uuid, name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let state_of = |task: Uuid, name: &str| {
        states
            .iter()
            .find(|(t, n, _)| *t == task && n == name)
            .map(|(_, _, s)| s.clone())
            .unwrap()
    };
    assert_eq!(state_of(chained, "first"), "complete");
    assert_eq!(state_of(chained, "second"), "enqueued");
    assert_eq!(state_of(failing, "first"), "error");
    assert_eq!(state_of(failing, "second"), "pending");
    assert_eq!(
        history(&pool, finishing_step).await,
        [
            "pending",
            "enqueued",
            "in_progress",
            "enqueued_for_orchestration",
            "complete"
        ],
        "the redelivered result completed nothing twice"
    );
    let finished: (Vec<String>, bool, bool, Value) = sqlx::query_as(
        "SELECT array_agg(tr.to_state::text ORDER BY tr.sort_key), bool_and(t.complete),
                bool_and(t.completed_at IS NOT NULL),
                (array_agg(tr.metadata ORDER BY tr.sort_key DESC))[1]
           FROM tasker.task_transitions tr JOIN tasker.tasks t USING (task_uuid)
          WHERE tr.task_uuid = $1",
    )
    .bind(finishing)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        finished,
        (
            [
                "pending",
                "initializing",
                "enqueuing_steps",
                "steps_in_process",
                "evaluating_results",
                "complete"
            ]
            .map(String::from)
            .to_vec(),
            true,
            true,
            json!({"completed_steps": 1, "skipped_steps": 0})
        )
    );
    let second: Uuid = sqlx::query_scalar(
        "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = 'second'",
    )
    .bind(chained)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(history(&pool, second).await, ["pending", "enqueued"]);
    let queued: Vec<Value> = sqlx::query_scalar("SELECT message FROM pgmq.q_worker_leases_queue")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "only the chain's second step: {queued:?}");
    assert_eq!(queued[0]["step_uuid"], json!(second));
}
