//! The REST API, driven in-process with `oneshot` (no socket).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tasker_engine::api::{app, ApiState};
use tasker_engine::TaskState;
use tower::ServiceExt;

use crate::{finished, scenario, start, TASK_TIMEOUT};

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
    let router = app(ApiState::new(engine.client.clone()));
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
    let router = app(ApiState::new(engine.client.clone()));

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
    let router = app(ApiState::new(engine.client.clone()));
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

/// A raw request: body bytes and headers as given.
async fn raw(
    router: &axum::Router,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder().method("POST").uri("/v1/tasks");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn malformed_input_gets_a_4xx_naming_the_field_and_stores_nothing() {
    let engine = start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let config = tasker_engine::config::ApiConfig {
        body_limit_bytes: 4096,
        ..Default::default()
    };
    let router = app(ApiState::with_config(engine.client.clone(), config));
    let task = |context: Value| json!({"namespace": "linear", "name": "linear_workflow", "version": "1.0.0", "context": context});
    let json_header = [("content-type", "application/json")];
    // (what, body, headers, status, text the error must contain)
    type Case<'a> = (
        &'a str,
        Vec<u8>,
        &'a [(&'a str, &'a str)],
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("NUL in a context string", task(json!({"even_number": 2, "note": "a\u{0}b"})).to_string().into_bytes(), &json_header, StatusCode::UNPROCESSABLE_ENTITY, "context.note contains a NUL"),
        ("NUL in a context key", task(json!({"even_number": 2, "k\u{0}": 1})).to_string().into_bytes(), &json_header, StatusCode::UNPROCESSABLE_ENTITY, "a key of context"),
        ("NUL in the idempotency key", json!({"namespace": "linear", "name": "linear_workflow", "version": "1.0.0", "context": {"even_number": 2}, "idempotency_key": "\u{0}"}).to_string().into_bytes(), &json_header, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key contains a NUL"),
        ("even_number not a number", task(json!({"even_number": "x"})).to_string().into_bytes(), &json_header, StatusCode::UNPROCESSABLE_ENTITY, "context.even_number"),
        ("even_number missing", task(json!({})).to_string().into_bytes(), &json_header, StatusCode::UNPROCESSABLE_ENTITY, "even_number"),
        ("even_number negative", task(json!({"even_number": -4})).to_string().into_bytes(), &json_header, StatusCode::UNPROCESSABLE_ENTITY, "context.even_number"),
        ("context not an object", task(json!([1, 2])).to_string().into_bytes(), &json_header, StatusCode::UNPROCESSABLE_ENTITY, "context"),
        ("not JSON", b"{not json".to_vec(), &json_header, StatusCode::BAD_REQUEST, "line 1"),
        ("unknown field", json!({"namespace": "linear", "name": "linear_workflow", "version": "1.0.0", "colour": "red"}).to_string().into_bytes(), &json_header, StatusCode::BAD_REQUEST, "colour"),
        ("priority not an integer", json!({"namespace": "linear", "name": "linear_workflow", "version": "1.0.0", "priority": "high"}).to_string().into_bytes(), &json_header, StatusCode::BAD_REQUEST, "priority"),
        ("correlation_id not a uuid", json!({"namespace": "linear", "name": "linear_workflow", "version": "1.0.0", "correlation_id": "x"}).to_string().into_bytes(), &json_header, StatusCode::BAD_REQUEST, "correlation_id"),
        ("no content type", task(json!({"even_number": 2})).to_string().into_bytes(), &[], StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        ("body over the limit", task(json!({"even_number": 2, "pad": "x".repeat(5000)})).to_string().into_bytes(), &json_header, StatusCode::PAYLOAD_TOO_LARGE, "limit"),
        ("empty body", Vec::new(), &json_header, StatusCode::BAD_REQUEST, "EOF"),
        ("invalid UTF-8", b"{\"namespace\": \"\xff\"}".to_vec(), &json_header, StatusCode::BAD_REQUEST, ""),
    ];
    for (what, body, headers, expected, mentions) in cases {
        let (status, answer) = raw(&router, body, headers).await;
        eprintln!("bad input: {what:<28} -> {status}");
        assert_eq!(status, expected, "{what}: {answer}");
        let error = &answer["error"];
        let text = format!("{} {}", error["message"], error["problems"]);
        assert!(text.contains(mentions), "{what}: {answer}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tasker.tasks")
        .fetch_one(&engine.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a refused request stores nothing");
    engine.shutdown().await;
}

#[tokio::test]
async fn an_api_key_when_configured_is_required_on_v1_only() {
    let engine = start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let missing = uuid::Uuid::new_v4();
    let uri = format!("/v1/tasks/{missing}");
    // Off by default: no key needed.
    let open = app(ApiState::new(engine.client.clone()));
    assert_eq!(
        call(&open, "GET", &uri, None).await.0,
        StatusCode::NOT_FOUND
    );

    let config = tasker_engine::config::ApiConfig {
        api_key: Some("s3cret".into()),
        ..Default::default()
    };
    let router = app(ApiState::with_config(engine.client.clone(), config));
    let get = |headers: Vec<(&'static str, &'static str)>| {
        let router = router.clone();
        let uri = uri.clone();
        async move {
            let mut request = Request::builder().uri(&uri);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = router
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            response.status()
        }
    };
    assert_eq!(get(vec![]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(vec![("x-api-key", "wrong")]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(vec![("authorization", "Bearer wrong")]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(vec![("x-api-key", "s3cret")]).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(vec![("authorization", "Bearer s3cret")]).await,
        StatusCode::NOT_FOUND
    );
    let (status, body) = call(&router, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("X-API-Key"));
    assert_eq!(
        call(&router, "GET", "/health", None).await.0,
        StatusCode::OK
    );
    engine.shutdown().await;
}

/// Retention: a finished task is deleted with everything of its own, one
/// by one or by the time it finished; an unfinished one is refused and
/// kept; bad parameters are named.
#[tokio::test]
async fn finished_tasks_are_deleted_and_unfinished_ones_kept() {
    let engine = start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let router = app(ApiState::new(engine.client.clone()));
    let mut done = Vec::new();
    for n in 0..3 {
        let request = json!({"namespace": "linear", "name": "linear_workflow", "version": "1.0.0", "context": {"even_number": 2 * n + 2}});
        let (status, created) = call(&router, "POST", "/v1/tasks", Some(request)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let task: uuid::Uuid = created["task_uuid"].as_str().unwrap().parse().unwrap();
        assert_eq!(finished(&engine.client, task).await, TaskState::Complete);
        done.push(task);
    }
    // The engine stops; the API goes on over a client of its own on the same
    // database, where a task created now stays unfinished (no worker runs).
    let options = engine.client.pool().connect_options().as_ref().clone();
    engine.shutdown().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let client = tasker_engine::TaskerClient::new(pool.clone(), shutdown.clone())
        .await
        .unwrap();
    let router = app(ApiState::new(client));
    let unfinished: uuid::Uuid = sqlx::query_scalar(
        "SELECT task_uuid FROM tasker.create_task('linear', 'linear_workflow', '1.0.0', \
         '{\"even_number\": 100}', NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let rows = |task: uuid::Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT (SELECT count(*) FROM tasker.tasks WHERE task_uuid = $1)
                      + (SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = $1)
                      + (SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = $1)",
            )
            .bind(task)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    let (status, body) = call(&router, "DELETE", &format!("/v1/tasks/{unfinished}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only a finished task"),
        "{body}"
    );
    let first = format!("/v1/tasks/{}", done[0]);
    let delete_first = || call(&router, "DELETE", &first, None);
    let (status, body) = delete_first().await;
    assert_eq!(
        (status, &body["deleted"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    assert_eq!(rows(done[0]).await, 0);
    let (status, body) = delete_first().await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    for (uri, named) in [
        ("/v1/tasks", "finished_before is required"),
        (
            "/v1/tasks?finished_before=yesterday",
            "'yesterday' is not an RFC 3339 time",
        ),
        (
            "/v1/tasks?finished_before=2999-01-01T00:00:00Z&limit=0",
            "limit 0 is out of range",
        ),
    ] {
        let (status, body) = call(&router, "DELETE", uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{uri}: {message}");
    }
    // Nothing finished before 2000; then one at a time, then the rest.
    let (_, body) = call(
        &router,
        "DELETE",
        "/v1/tasks?finished_before=2000-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(body["deleted"], 0, "{body}");
    let (_, body) = call(
        &router,
        "DELETE",
        "/v1/tasks?finished_before=2999-01-01T00:00:00Z&limit=1",
        None,
    )
    .await;
    assert_eq!(body["task_uuids"], json!([done[1]]), "oldest first: {body}");
    let (_, body) = call(
        &router,
        "DELETE",
        "/v1/tasks?finished_before=2999-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(body["task_uuids"], json!([done[2]]), "{body}");
    for &task in &done {
        assert_eq!(rows(task).await, 0, "task {task}");
    }
    assert!(rows(unfinished).await > 0, "the unfinished task is kept");
    shutdown.cancel();
}
