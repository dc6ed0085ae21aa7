//! A worker that completes its own plain results (`worker.complete_results`):
//! its submit's transaction also completes the steps, enqueues the children
//! they made ready and finishes the task, and leaves to orchestration, woken,
//! only what needs it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgPool;
use tasker_engine::orchestration::Orchestrator;
use tasker_engine::worker::Worker;
use tasker_engine::{
    HandlerError, HandlerRegistry, StepContext, StepHandler, StepState, TaskState, TaskTemplate,
    TaskerClient,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{finished, idle_task, scenario, test_config, TASK_TIMEOUT};

async fn orchestration_messages(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pgmq.q_orchestration_step_results")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Each step's states, in order, and its result audit rows.
async fn step_histories(pool: &PgPool, task: Uuid) -> Vec<(String, Vec<String>, i64)> {
    sqlx::query_as(
        "SELECT s.name,
                ARRAY(SELECT t.to_state::text FROM tasker.workflow_step_transitions t
                       WHERE t.workflow_step_uuid = s.workflow_step_uuid ORDER BY t.sort_key),
                (SELECT count(*) FROM tasker.workflow_step_result_audit a
                  WHERE a.workflow_step_uuid = s.workflow_step_uuid)
           FROM tasker.workflow_steps s WHERE s.task_uuid = $1 ORDER BY s.name",
    )
    .bind(task)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// No orchestrator runs: the worker alone takes a linear and a diamond task
/// from their first step to complete, with every step's full history, and
/// leaves orchestration no message. Without the worker's completion the
/// task would stop at its first result.
#[tokio::test]
async fn a_worker_completing_its_results_runs_a_task_without_orchestration() {
    for (name, context) in [
        ("linear_workflow", json!({"even_number": 2})),
        ("diamond_workflow", json!({"even_number": 4})),
    ] {
        let template = scenario(name);
        let (url, pool, task) = idle_task(&template, context).await;
        let client = TaskerClient::new(pool.clone(), CancellationToken::new())
            .await
            .unwrap();
        let mut config = test_config();
        config.worker.complete_results = true;
        let worker = Worker::start_for_templates(
            &url,
            pool.clone(),
            tasker_scenarios::registry(),
            &config,
            std::slice::from_ref(&template),
        )
        .await
        .unwrap();

        assert_eq!(finished(&client, task).await, TaskState::Complete, "{name}");
        let steps = step_histories(&pool, task).await;
        assert_eq!(steps.len(), template.steps.len(), "{name}");
        for (step, history, audits) in &steps {
            assert_eq!(
                history,
                &[
                    "pending",
                    "enqueued",
                    "in_progress",
                    "enqueued_for_orchestration",
                    "complete"
                ],
                "{name}: step {step}"
            );
            assert_eq!(*audits, 1, "{name}: step {step} has one result");
        }
        assert_eq!(orchestration_messages(&pool).await, 0, "{name}");
        let results: Vec<Value> =
            sqlx::query_scalar("SELECT results FROM tasker.workflow_steps WHERE task_uuid = $1")
                .bind(task)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(results.iter().all(|r| !r.is_null()), "{name}: {results:?}");
        worker.shutdown().await;
    }
}

/// Fails its first attempt (retryably), then succeeds.
struct FailsOnce {
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl StepHandler for FailsOnce {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if step.attempt == 1 {
            Err(HandlerError::retryable("Flaky", "the first attempt fails"))
        } else {
            Ok(json!({"attempt": step.attempt}))
        }
    }
}

/// A failure is not the worker's to complete: it stays in orchestration's
/// queue, and the worker wakes orchestration for it (the orchestrator's
/// fallback poll is longer than the test's timeout), which schedules the
/// retry; the retry's success the worker completes.
#[tokio::test]
async fn a_failure_is_left_to_orchestration_and_wakes_it() {
    let yaml = "name: fails_once\nnamespace_name: worker_completion\nversion: \"1.0.0\"\nsteps:\n  - name: first\n    handler:\n      callable: test.fails_once\n    retry:\n      max_attempts: 2\n      backoff: exponential\n      backoff_base_ms: 50\n      max_backoff_ms: 100\n  - name: second\n    handler:\n      callable: test.fails_once\n    dependencies: [first]\n    retry:\n      max_attempts: 2\n      backoff: exponential\n      backoff_base_ms: 50\n      max_backoff_ms: 100\n";
    let template = TaskTemplate::from_yaml_str(yaml, "fails_once").unwrap();
    let (url, pool, task) = idle_task(&template, json!({})).await;
    let calls = Arc::new(AtomicU32::new(0));
    let mut registry = HandlerRegistry::new();
    registry.register(
        "test.fails_once",
        FailsOnce {
            calls: calls.clone(),
        },
    );
    let mut config = test_config();
    config.worker.complete_results = true;
    config.orchestration.fallback_poll_ms = 600_000;
    config.orchestration.staleness_interval_ms = 0;
    let client = TaskerClient::new(pool.clone(), CancellationToken::new())
        .await
        .unwrap();

    // The worker alone: the first attempt's failure waits for orchestration.
    let worker = Worker::start_for_templates(
        &url,
        pool.clone(),
        registry,
        &config,
        std::slice::from_ref(&template),
    )
    .await
    .unwrap();
    let first: Uuid = sqlx::query_scalar(
        "SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = 'first'",
    )
    .bind(task)
    .fetch_one(&pool)
    .await
    .unwrap();
    let state = || async {
        sqlx::query_scalar::<_, StepState>(
            "SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
        )
        .bind(first)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let deadline = tokio::time::Instant::now() + TASK_TIMEOUT;
    while state().await != StepState::EnqueuedAsErrorForOrchestration {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failure is never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(orchestration_messages(&pool).await, 1);

    // Orchestration, started now, takes it; the worker's later results wake
    // it when they need it.
    let orchestrator = Orchestrator::start(pool.clone(), config.orchestration.clone())
        .await
        .unwrap();
    assert_eq!(finished(&client, task).await, TaskState::Complete);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "each step failed once, then succeeded"
    );
    assert_eq!(orchestration_messages(&pool).await, 0);
    worker.shutdown().await;
    orchestrator.shutdown().await;
}
