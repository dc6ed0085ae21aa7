//! Task requests: creating a task from a registered template.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::OrchestrationError;
use crate::template::TemplateKey;

/// A request to run a template. Creating the same request twice (same
/// template and idempotency key, or same context when there is no key)
/// returns the first task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    pub namespace: String,
    pub name: String,
    pub version: String,
    #[serde(default = "empty_object")]
    pub context: Value,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub correlation_id: Option<Uuid>,
    #[serde(default)]
    pub initiator: Option<String>,
    #[serde(default)]
    pub source_system: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default = "empty_object")]
    pub tags: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl TaskRequest {
    pub fn new(namespace: &str, name: &str, version: &str, context: Value) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            context,
            idempotency_key: None,
            priority: 0,
            correlation_id: None,
            initiator: None,
            source_system: None,
            reason: None,
            tags: empty_object(),
        }
    }

    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl TaskRequest {
    /// The template this request runs.
    pub fn template_key(&self) -> TemplateKey {
        TemplateKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct TaskCreated {
    pub task_uuid: Uuid,
    /// False when the request matched an existing task.
    pub created: bool,
    pub enqueued_steps: i32,
}

/// Create the task, its steps and edges, and enqueue its root steps: one
/// statement, one transaction. The task's uuid is made by the database.
pub async fn create_task(
    pool: &PgPool,
    request: &TaskRequest,
) -> Result<TaskCreated, OrchestrationError> {
    insert_task(pool, request, None).await
}

/// [`create_task`] with the new task's uuid chosen by the caller, who can
/// then be ready for the task before it exists (the client's waiter). A
/// request that matches an existing task returns that task's uuid, with
/// `created` false. [`OrchestrationError::Outdated`] when the database's
/// functions were applied by an engine from before `p_task_uuid`.
pub async fn create_task_as(
    pool: &PgPool,
    request: &TaskRequest,
    task_uuid: Uuid,
) -> Result<TaskCreated, OrchestrationError> {
    insert_task(pool, request, Some(task_uuid)).await
}

#[tracing::instrument(name = "create_task", level = "debug", skip_all)]
async fn insert_task(
    pool: &PgPool,
    request: &TaskRequest,
    task_uuid: Option<Uuid>,
) -> Result<TaskCreated, OrchestrationError> {
    // Without a uuid, the call that every version of the function answers.
    let sql = match task_uuid {
        Some(_) => {
            "SELECT * FROM tasker.create_task($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        }
        None => "SELECT * FROM tasker.create_task($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    };
    let query = sqlx::query_as::<_, TaskCreated>(sql)
        .bind(&request.namespace)
        .bind(&request.name)
        .bind(&request.version)
        .bind(&request.context)
        .bind(&request.idempotency_key)
        .bind(request.priority)
        .bind(request.correlation_id)
        .bind(&request.initiator)
        .bind(&request.source_system)
        .bind(&request.reason)
        .bind(&request.tags);
    let query = match task_uuid {
        Some(uuid) => query.bind(uuid),
        None => query,
    };
    query.fetch_one(pool).await.map_err(|error| {
        match error.as_database_error().and_then(|e| e.code()) {
            Some(code) if code == "TK004" => {
                OrchestrationError::UnknownTemplate(request.template_key().to_string())
            }
            // undefined_function: no create_task taking the uuid.
            Some(code) if code == "42883" && task_uuid.is_some() => OrchestrationError::Outdated(
                "tasker.create_task does not take the task's uuid".to_string(),
            ),
            // What the database refused for its content (e.g. a NUL that
            // a caller of this function did not check for).
            _ if crate::database::is_data_error(&error) => OrchestrationError::InvalidRequest {
                template: request.template_key().to_string(),
                problems: vec![format!("the database cannot store this request: {error}")],
            },
            _ => OrchestrationError::Sql(error),
        }
    })
}
