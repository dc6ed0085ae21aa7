//! Retries with backoff, exhausted attempts, panics, timeouts and
//! duplicated messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tasker_engine::{
    Embedded, HandlerError, HandlerRegistry, StepContext, StepHandler, StepState, TaskRequest,
    TaskState, TaskTemplate,
};

use crate::{start, test_config, TASK_TIMEOUT};

/// A one-step template in namespace `failures` whose step runs `callable`.
fn one_step(name: &str, callable: &str, max_attempts: u32, timeout_seconds: u32) -> TaskTemplate {
    let yaml = format!(
        "name: {name}\nnamespace_name: failures\nversion: \"1.0.0\"\nsteps:\n  - name: only_step\n    handler:\n      callable: {callable}\n    retry:\n      max_attempts: {max_attempts}\n      backoff: exponential\n      backoff_base_ms: 50\n      max_backoff_ms: 200\n    timeout_seconds: {timeout_seconds}\n"
    );
    TaskTemplate::from_yaml_str(&yaml, name).expect("test template is valid")
}

/// Fails (retryably) on the first `failures` attempts, then succeeds.
struct Flaky {
    failures: u32,
}

#[async_trait]
impl StepHandler for Flaky {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        if step.attempt <= self.failures {
            Err(HandlerError::retryable(
                "Flaky",
                format!("attempt {} fails", step.attempt),
            ))
        } else {
            Ok(json!({"succeeded_on_attempt": step.attempt}))
        }
    }
}

struct AlwaysFails;

#[async_trait]
impl StepHandler for AlwaysFails {
    async fn call(&self, _: &StepContext) -> Result<Value, HandlerError> {
        Err(HandlerError::retryable(
            "Unavailable",
            "the downstream service is down",
        ))
    }
}

struct Panics;

#[async_trait]
impl StepHandler for Panics {
    async fn call(&self, _: &StepContext) -> Result<Value, HandlerError> {
        panic!("handler bug")
    }
}

struct Sleeps;

#[async_trait]
impl StepHandler for Sleeps {
    async fn call(&self, _: &StepContext) -> Result<Value, HandlerError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(json!("too late"))
    }
}

async fn run_one(
    template: &TaskTemplate,
    registry: HandlerRegistry,
) -> (Embedded, uuid::Uuid, TaskState) {
    let engine = start(std::slice::from_ref(template), registry).await;
    let request = TaskRequest::new("failures", &template.name, "1.0.0", json!({}));
    let (task, state) = engine
        .client
        .run_task(&request, TASK_TIMEOUT)
        .await
        .expect("task finishes");
    (engine, task, state)
}

async fn only_step(engine: &Embedded, task: uuid::Uuid) -> tasker_engine::client::StepView {
    engine.client.list_steps(task).await.unwrap().remove(0)
}

async fn history(engine: &Embedded, step: uuid::Uuid) -> Vec<String> {
    engine
        .client
        .step_transitions(step)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.to_state)
        .collect()
}

async fn audit(engine: &Embedded, step: uuid::Uuid) -> Vec<(i32, bool, Option<String>)> {
    sqlx::query_as(
        "SELECT attempt, success, error_type FROM tasker.workflow_step_result_audit
          WHERE workflow_step_uuid = $1 ORDER BY attempt",
    )
    .bind(step)
    .fetch_all(&engine.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_failing_step_retries_with_backoff_then_succeeds() {
    let template = one_step("flaky", "test.flaky", 3, 30);
    let mut registry = HandlerRegistry::new();
    registry.register("test.flaky", Flaky { failures: 2 });
    let (engine, task, state) = run_one(&template, registry).await;
    assert_eq!(state, TaskState::Complete);
    let step = only_step(&engine, task).await;
    assert_eq!(step.attempts, 3);
    assert_eq!(step.results, Some(json!({"succeeded_on_attempt": 3})));
    let failed_attempt = [
        "enqueued",
        "in_progress",
        "enqueued_as_error_for_orchestration",
        "waiting_for_retry",
    ];
    let mut expected = vec!["pending"];
    expected.extend(failed_attempt);
    expected.extend(failed_attempt);
    expected.extend([
        "enqueued",
        "in_progress",
        "enqueued_for_orchestration",
        "complete",
    ]);
    assert_eq!(history(&engine, step.workflow_step_uuid).await, expected);

    // The retries waited for their backoff: 50 ms after the first failure,
    // 100 ms after the second (exponential from backoff_base_ms 50).
    let transitions = engine
        .client
        .step_transitions(step.workflow_step_uuid)
        .await
        .unwrap();
    let waits: Vec<(i64, i64)> = transitions
        .windows(2)
        .filter(|w| w[0].to_state == "waiting_for_retry")
        .map(|w| {
            let backoff = w[0].metadata["backoff_ms"].as_i64().unwrap();
            (
                backoff,
                (w[1].created_at - w[0].created_at).num_milliseconds(),
            )
        })
        .collect();
    assert_eq!(waits.iter().map(|w| w.0).collect::<Vec<_>>(), [50, 100]);
    for (backoff, waited) in waits {
        assert!(
            waited >= backoff,
            "re-enqueued after {waited} ms, backoff {backoff} ms"
        );
    }
    let audit = audit(&engine, step.workflow_step_uuid).await;
    assert_eq!(
        audit,
        [
            (1, false, Some("Flaky".to_string())),
            (2, false, Some("Flaky".to_string())),
            (3, true, None)
        ]
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_step_that_always_fails_ends_the_task_in_error() {
    let template = one_step("doomed", "test.always_fails", 3, 30);
    let mut registry = HandlerRegistry::new();
    registry.register("test.always_fails", AlwaysFails);
    let (engine, task, state) = run_one(&template, registry).await;
    assert_eq!(state, TaskState::Error);
    let step = only_step(&engine, task).await;
    assert_eq!(step.state, StepState::Error);
    assert_eq!(step.attempts, 3);
    assert_eq!(
        step.last_error.as_ref().unwrap()["error_type"],
        "Unavailable"
    );
    assert_eq!(audit(&engine, step.workflow_step_uuid).await.len(), 3);
    let task_history = crate::task_history(&engine, task).await;
    assert_eq!(
        task_history[task_history.len() - 2..],
        ["blocked_by_failures", "error"]
    );
    let view = engine.client.get_task(task).await.unwrap();
    assert_eq!(
        (view.state, view.failed_steps, view.complete),
        (TaskState::Error, 1, false)
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_handler_panic_becomes_a_permanent_failure() {
    let template = one_step("panicky", "test.panics", 3, 30);
    let mut registry = HandlerRegistry::new();
    registry.register("test.panics", Panics);
    let (engine, task, state) = run_one(&template, registry).await;
    assert_eq!(state, TaskState::Error);
    let step = only_step(&engine, task).await;
    let error = step.last_error.unwrap();
    assert_eq!(error["error_type"], "HandlerPanic");
    assert!(
        error["message"].as_str().unwrap().contains("handler bug"),
        "{error}"
    );
    // A panic is a bug, not a transient condition: no retry.
    assert_eq!(step.attempts, 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_handler_timeout_becomes_a_retryable_failure() {
    let template = one_step("slow", "test.sleeps", 2, 1);
    let mut registry = HandlerRegistry::new();
    registry.register("test.sleeps", Sleeps);
    let (engine, task, state) = run_one(&template, registry).await;
    assert_eq!(state, TaskState::Error);
    let step = only_step(&engine, task).await;
    assert_eq!(step.last_error.unwrap()["error_type"], "HandlerTimeout");
    assert_eq!(
        step.attempts, 2,
        "a timeout is retried until attempts run out"
    );
    engine.shutdown().await;
}

/// Counts handler runs per step name.
#[derive(Clone, Default)]
struct Counting {
    runs: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

#[async_trait]
impl StepHandler for Counting {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(step.step_name.clone())
            .or_default() += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(json!(step.step_name))
    }
}

#[tokio::test]
async fn a_duplicated_queue_message_runs_the_handler_once() {
    let template = crate::scenario("linear_workflow");
    // Before any worker runs, the first step's message is in the queue;
    // put two more copies of it there.
    let (url, pool, task) = crate::idle_linear_task().await;
    for _ in 0..2 {
        sqlx::query(
            "SELECT pgmq.send('worker_linear_queue', jsonb_build_object('task_uuid', t.task_uuid, 'step_uuid', s.workflow_step_uuid))
               FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid)
              WHERE t.task_uuid = $1 AND s.name = 'linear_step_1'",
        )
        .bind(task)
        .execute(&pool)
        .await
        .unwrap();
    }

    let counting = Counting::default();
    let mut registry = HandlerRegistry::new();
    registry.register("linear.square", counting.clone());
    let engine = crate::start_on(&url, test_config(), &template, registry).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Complete);
    assert_eq!(counting.runs.lock().unwrap().get("linear_step_1"), Some(&1));
    assert_eq!(counting.total.load(Ordering::SeqCst), 4);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.q_worker_linear_queue")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "duplicates are deleted, not left to be read again");

    // A duplicated result message changes nothing either.
    let transitions_before = transition_count(&pool, task).await;
    sqlx::query(
        "SELECT pgmq.send('orchestration_step_results', jsonb_build_object('task_uuid', s.task_uuid, 'step_uuid', s.workflow_step_uuid))
           FROM tasker.workflow_steps s WHERE s.task_uuid = $1",
    )
    .bind(task)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT * FROM tasker.process_step_results(10)")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        engine.client.task_state(task).await.unwrap(),
        TaskState::Complete
    );
    assert_eq!(transition_count(&pool, task).await, transitions_before);
    assert_eq!(counting.total.load(Ordering::SeqCst), 4);
    engine.shutdown().await;
    pool.close().await;
}

/// Task and step transitions recorded for a task.
async fn transition_count(pool: &sqlx::PgPool, task: uuid::Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = $1)
              + (SELECT count(*) FROM tasker.workflow_step_transitions st
                   JOIN tasker.workflow_steps s USING (workflow_step_uuid) WHERE s.task_uuid = $1)",
    )
    .bind(task)
    .fetch_one(pool)
    .await
    .unwrap()
}
