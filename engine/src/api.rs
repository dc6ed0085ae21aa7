//! The REST API under `/v1`, plus `/health` and Prometheus `/metrics`.
//!
//! `app(state)` builds the router, so tests drive it with `oneshot` and no
//! socket. Errors have one JSON body, `{"error": {"code", "message"}}`; a
//! 5xx says only "internal error" and the real cause is logged.

use std::sync::OnceLock;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use uuid::Uuid;

use crate::client::{ClientError, TaskerClient};
use crate::orchestration::{OrchestrationError, TaskRequest};

#[derive(Clone)]
pub struct ApiState {
    pub client: TaskerClient,
}

pub fn app(state: ApiState) -> Router {
    Router::new()
        .route("/v1/tasks", post(create_task))
        .route("/v1/tasks/{task_uuid}", get(get_task))
        .route("/v1/tasks/{task_uuid}/workflow_steps", get(list_steps))
        .route("/v1/dlq", get(dead_letters))
        .route("/v1/dlq/{task_uuid}/retry", post(retry_dead_letter))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// JSON body extractor whose rejections use the API's error body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Unprocessable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", m),
            Self::Internal(m) => {
                tracing::error!(error = %m, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_string(),
                )
            }
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::TaskNotFound(_) | ClientError::NotDeadLettered(_) => {
                Self::NotFound(error.to_string())
            }
            ClientError::Orchestration(OrchestrationError::UnknownTemplate(_)) => {
                Self::Unprocessable(error.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

async fn create_task(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<TaskRequest>,
) -> Result<Response, ApiError> {
    let created = state.client.create_task(&request).await?;
    metrics::counter!("tasker_task_requests_total", "created" => created.created.to_string())
        .increment(1);
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(created)).into_response())
}

async fn get_task(
    State(state): State<ApiState>,
    Path(task): Path<String>,
) -> Result<Response, ApiError> {
    let task = parse_uuid(&task)?;
    Ok(Json(state.client.get_task(task).await?).into_response())
}

async fn dead_letters(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(state.client.dead_letters().await?).into_response())
}

async fn retry_dead_letter(
    State(state): State<ApiState>,
    Path(task): Path<String>,
) -> Result<Response, ApiError> {
    let task = parse_uuid(&task)?;
    let task_state = state.client.retry_dead_letter(task).await?;
    Ok(Json(json!({"task_uuid": task, "state": task_state})).into_response())
}

async fn list_steps(
    State(state): State<ApiState>,
    Path(task): Path<String>,
) -> Result<Response, ApiError> {
    let task = parse_uuid(&task)?;
    Ok(Json(state.client.list_steps(task).await?).into_response())
}

fn parse_uuid(text: &str) -> Result<Uuid, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("'{text}' is not a task UUID")))
}

async fn health(State(state): State<ApiState>) -> Response {
    match crate::database::ping(state.client.pool()).await {
        Ok(()) => Json(json!({"status": "healthy", "database": "ok"})).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "database": error.to_string()})),
        )
            .into_response(),
    }
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding program's);
        // then our counters go there and /metrics shows the gauges below.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Counters recorded by this process, and gauges read from the database at
/// scrape time: queue depths and tasks by state.
async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let handle = prometheus();
    let pool = state.client.pool();
    let queues: Vec<(String, i64)> =
        sqlx::query_as("SELECT queue_name, queue_length FROM pgmq.metrics_all()")
            .fetch_all(pool)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    for (queue, depth) in queues {
        metrics::gauge!("tasker_queue_depth", "queue" => queue).set(depth as f64);
    }
    let states: Vec<(String, i64)> = sqlx::query_as(
        "SELECT to_state::text, count(*) FROM tasker.task_transitions WHERE most_recent GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    for (task_state, count) in states {
        metrics::gauge!("tasker_tasks", "state" => task_state).set(count as f64);
    }
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}
