//! The REST API under `/v1`, plus `/health` and Prometheus `/metrics`.
//!
//! `app(state)` builds the router, so tests drive it with `oneshot` and no
//! socket. Errors have one JSON body, `{"error": {"code", "message"}}`; a
//! 5xx says only "internal error" and the real cause is logged.

use std::sync::OnceLock;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::client::{ClientError, TaskerClient};
use crate::config::ApiConfig;
use crate::orchestration::{OrchestrationError, TaskRequest};

#[derive(Clone)]
pub struct ApiState {
    pub client: TaskerClient,
    pub config: ApiConfig,
}

impl ApiState {
    /// The API with the default settings (no API key, 1 MiB bodies).
    pub fn new(client: TaskerClient) -> Self {
        Self::with_config(client, ApiConfig::default())
    }

    pub fn with_config(client: TaskerClient, config: ApiConfig) -> Self {
        Self { client, config }
    }
}

pub fn app(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/v1/tasks", post(create_task).delete(delete_finished_tasks))
        .route("/v1/tasks/{task_uuid}", get(get_task).delete(delete_task))
        .route("/v1/tasks/{task_uuid}/workflow_steps", get(list_steps))
        .route("/v1/dlq", get(dead_letters))
        .route("/v1/dlq/{task_uuid}/retry", post(retry_dead_letter))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .with_state(state)
}

/// With `api.api_key` set, a /v1 request must carry the key.
async fn require_api_key(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.config.api_key else {
        return Ok(next.run(request).await);
    };
    let headers = request.headers();
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    match given {
        Some(key) if constant_time_eq(key.as_bytes(), expected.as_bytes()) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::Unauthorized("the API key is not valid".into())),
        None => Err(ApiError::Unauthorized(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                .into(),
        )),
    }
}

/// Equal, in a time that does not depend on where the keys differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// JSON body extractor whose rejections use the API's error body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized(String),
    NotFound(String),
    /// A rejected body: its own status (413 too large, 415 not JSON, ...).
    Rejected(StatusCode, String),
    /// Understood but refused; `problems` name each field.
    Unprocessable(String, Vec<String>),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problems = Vec::new();
        let (status, code, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::Rejected(status, m) => (status, "rejected", m),
            Self::Unprocessable(m, p) => {
                problems = p;
                (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", m)
            }
            Self::Internal(m) => {
                tracing::error!(error = %m, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_string(),
                )
            }
        };
        let mut error = json!({"code": code, "message": message});
        if !problems.is_empty() {
            error["problems"] = json!(problems);
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            // Not JSON, or JSON of the wrong shape: the message names the
            // field and where it is.
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Self::BadRequest(rejection.body_text())
            }
            status => Self::Rejected(status, rejection.body_text()),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::TaskNotFound(_) | ClientError::NotDeadLettered(_) => {
                Self::NotFound(error.to_string())
            }
            ClientError::NotFinished { .. } => {
                Self::Rejected(StatusCode::CONFLICT, error.to_string())
            }
            ClientError::Orchestration(OrchestrationError::UnknownTemplate(_)) => {
                Self::Unprocessable(error.to_string(), Vec::new())
            }
            ClientError::Orchestration(OrchestrationError::InvalidRequest {
                template,
                problems,
            }) => Self::Unprocessable(format!("invalid task request for {template}"), problems),
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

async fn delete_task(
    State(state): State<ApiState>,
    Path(task): Path<String>,
) -> Result<Response, ApiError> {
    let task = parse_uuid(&task)?;
    state.client.delete_task(task).await?;
    Ok(Json(json!({"task_uuid": task, "deleted": true})).into_response())
}

/// Most tasks one `DELETE /v1/tasks` deletes.
const MAX_DELETE_LIMIT: i32 = 10_000;

#[derive(Deserialize)]
struct Retention {
    finished_before: Option<String>,
    limit: Option<i64>,
}

/// `DELETE /v1/tasks?finished_before=<RFC 3339>&limit=<n>`: the oldest
/// finished tasks, up to `limit` (default 1,000).
async fn delete_finished_tasks(
    State(state): State<ApiState>,
    query: Result<Query<Retention>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(retention) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Some(before) = retention.finished_before else {
        return Err(ApiError::BadRequest(
            "finished_before is required: delete the tasks that finished before this time \
             (RFC 3339, e.g. 2026-12-01T00:00:00Z)"
                .into(),
        ));
    };
    let before: DateTime<Utc> = DateTime::parse_from_rfc3339(&before)
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "finished_before '{before}' is not an RFC 3339 time ({e}), e.g. 2026-12-01T00:00:00Z"
            ))
        })?
        .into();
    let asked = retention.limit.unwrap_or(1_000);
    let Some(limit) = i32::try_from(asked)
        .ok()
        .filter(|limit| (1..=MAX_DELETE_LIMIT).contains(limit))
    else {
        return Err(ApiError::BadRequest(format!(
            "limit {asked} is out of range: 1 to {MAX_DELETE_LIMIT}"
        )));
    };
    let deleted = state.client.delete_finished_tasks(before, limit).await?;
    Ok(Json(json!({"deleted": deleted.len(), "task_uuids": deleted})).into_response())
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
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state::text, count(*) FROM tasker.tasks GROUP BY 1")
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
