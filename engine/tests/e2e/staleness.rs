//! The staleness detector: a message lost from a queue is sent again, a
//! claim whose message is gone counts as a lapsed lease, and a task whose
//! steps no worker claims is dead-lettered, listed, and can be put back.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tasker_engine::api::{app, ApiState};
use tasker_engine::config::TaskerConfig;
use tasker_engine::orchestration::Orchestrator;
use tasker_engine::{Embedded, StepState, TaskState, TaskerClient};
use tokio_util::sync::CancellationToken;

use crate::api::call;
use crate::{scenario, test_config};

/// Stale after 1 s of no progress, looked at every 200 ms.
fn config(dead_letter_after_s: u64) -> TaskerConfig {
    let mut config = test_config();
    config.orchestration.staleness_interval_ms = 200;
    config.orchestration.task_stale_after_s = 1;
    config.orchestration.dead_letter_after_s = dead_letter_after_s;
    config.worker.claim_lease_margin_s = 0;
    config
}

async fn start(url: &str, config: TaskerConfig) -> Embedded {
    Embedded::start(
        url,
        config,
        &[scenario("linear_workflow")],
        tasker_scenarios::registry(),
    )
    .await
    .unwrap()
}

async fn purge_worker_queue(pool: &PgPool) {
    sqlx::query("DELETE FROM pgmq.q_worker_linear_queue")
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_step_message_lost_from_its_queue_is_sent_again() {
    let (url, pool, task) = crate::idle_linear_task().await;
    purge_worker_queue(&pool).await;
    let engine = start(&url, config(0)).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Complete);
    let steps = engine.client.list_steps(task).await.unwrap();
    assert!(steps.iter().all(|s| s.attempts == 1), "{steps:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_claim_whose_message_is_gone_counts_as_a_lapsed_lease() {
    let (url, pool, task) = crate::idle_linear_task().await;
    let claimed: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM tasker."claim_worker_linear_queue"(0, 1, 'vanished-worker')"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(claimed, 1);
    purge_worker_queue(&pool).await;
    let engine = start(&url, config(0)).await;
    let state = crate::finished(&engine.client, task).await;
    assert_eq!(state, TaskState::Complete);
    let first = engine.client.list_steps(task).await.unwrap().remove(0);
    assert_eq!(first.attempts, 2);
    let audit: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT attempt, error_type FROM tasker.workflow_step_result_audit
          WHERE workflow_step_uuid = $1 ORDER BY attempt",
    )
    .bind(first.workflow_step_uuid)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(audit, [(1, Some("ClaimExpired".into())), (2, None)]);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_task_no_worker_claims_is_dead_lettered_and_can_be_put_back() {
    let (url, pool, task) = crate::idle_linear_task().await;
    // Orchestration only: nobody serves the linear queue.
    let orchestrator = Orchestrator::start(pool.clone(), config(2).orchestration)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let client = TaskerClient::new(pool.clone(), shutdown.clone())
        .await
        .unwrap();
    let state = crate::finished(&client, task).await;
    assert_eq!(state, TaskState::Error);

    let router = app(ApiState::new(client.clone()));
    let (status, listed) = call(&router, "GET", "/v1/dlq", None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let entries = listed.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["task_uuid"], task.to_string());
    assert_eq!(entries[0]["task_state"], "steps_in_process");
    assert_eq!(entries[0]["steps"]["linear_step_1"], "enqueued");
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("linear_step_1") && reason.contains("no worker claims it"),
        "{reason}"
    );
    let steps = client.list_steps(task).await.unwrap();
    assert_eq!(steps[0].state, StepState::Cancelled);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pgmq.q_worker_linear_queue")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the dead-lettered step's message is gone");
    orchestrator.shutdown().await;

    // Put back, with a worker this time: it completes.
    let (status, retried) = call(&router, "POST", &format!("/v1/dlq/{task}/retry"), None).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["state"], "steps_in_process");
    let engine = start(&url, config(0)).await;
    let state = crate::finished(&client, task).await;
    assert_eq!(state, TaskState::Complete);
    let view = client.get_task(task).await.unwrap();
    assert_eq!(view.context, json!({"even_number": 2}));
    let (_, listed) = call(&router, "GET", "/v1/dlq", None).await;
    assert_eq!(listed, json!([]));
    let (status, again) = call(&router, "POST", &format!("/v1/dlq/{task}/retry"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{again}");
    assert!(again["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not in the dead letters"));
    engine.shutdown().await;
    shutdown.cancel();
}
