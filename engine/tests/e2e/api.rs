//! The REST API, driven in-process with `oneshot` (no socket).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tasker_engine::api::{app, ApiState};
use tasker_engine::TaskState;
use tower::ServiceExt;

use crate::{scenario, start, TASK_TIMEOUT};

pub(crate) async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

#[tokio::test]
async fn create_then_read_a_task_and_its_steps() {
    let engine = start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let router = app(ApiState {
        client: engine.client.clone(),
    });
    let request = json!({"namespace": "linear", "name": "linear_workflow", "version": "1.0.0", "context": {"even_number": 3}});
    let (status, created) = call(&router, "POST", "/v1/tasks", Some(request.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let task = created["task_uuid"].as_str().unwrap().to_string();
    assert_eq!(created["created"], true);

    let (status, again) = call(&router, "POST", "/v1/tasks", Some(request)).await;
    assert_eq!(
        (status, again["task_uuid"].as_str()),
        (StatusCode::OK, Some(task.as_str()))
    );

    let state = engine
        .client
        .wait_for_completion(task.parse().unwrap(), TASK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(state, TaskState::Complete);
    let (status, view) = call(&router, "GET", &format!("/v1/tasks/{task}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["state"], "complete");
    assert_eq!(view["total_steps"], 4);
    assert_eq!(view["completed_steps"], 4);

    let (status, steps) = call(
        &router,
        "GET",
        &format!("/v1/tasks/{task}/workflow_steps"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let steps = steps.as_array().unwrap();
    assert_eq!(steps.len(), 4);
    let last = steps.iter().find(|s| s["name"] == "linear_step_4").unwrap();
    assert_eq!(last["results"], json!(3u64.pow(16)));
    engine.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let engine = start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let router = app(ApiState {
        client: engine.client.clone(),
    });

    let (status, body) = call(&router, "GET", "/v1/tasks/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not-a-uuid"));

    let missing = uuid::Uuid::new_v4();
    let (status, body) = call(&router, "GET", &format!("/v1/tasks/{missing}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&missing.to_string()));
    let (status, _) = call(
        &router,
        "GET",
        &format!("/v1/tasks/{missing}/workflow_steps"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = call(
        &router,
        "POST",
        "/v1/tasks",
        Some(json!({"namespace": "linear", "name": "linear_workflow"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("version"),
        "{body}"
    );

    let (status, body) = call(
        &router,
        "POST",
        "/v1/tasks",
        Some(json!({"namespace": "linear", "name": "nope", "version": "1.0.0"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("linear/nope@1.0.0"),
        "{body}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let engine = start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let router = app(ApiState {
        client: engine.client.clone(),
    });
    let (status, body) = call(&router, "GET", "/health", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );
    let (status, body) = call(&router, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("tasker_queue_depth{queue=\"worker_linear_queue\"}"),
        "{text}"
    );
    engine.shutdown().await;
}
