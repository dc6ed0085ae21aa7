//! End-to-end tests of the engine on a real PostgreSQL: one throwaway
//! cluster for this whole test binary (or DATABASE_URL), a fresh database
//! per test. No mocks of the database or the queues.

mod api;
mod batches;
mod connections;
mod failures;
mod fuzz;
mod leases;
mod orchestrators;
mod plans;
mod scenarios;
mod sql_functions;
mod staleness;
mod state_machine;
mod task_shape;
mod templates;
mod worker_completion;

use std::time::Duration;

use tasker_engine::config::TaskerConfig;
use tasker_engine::testing::test_database;
use tasker_engine::{Embedded, HandlerRegistry, TaskTemplate};

/// Long enough for a slow CI machine, short enough to fail a stuck test.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(60);

pub fn test_config() -> TaskerConfig {
    let mut config = TaskerConfig::default();
    config.database.pool_size = 4;
    config.worker.concurrency = 8;
    config
}

/// The engine, embedded, on a fresh database.
pub async fn start(templates: &[TaskTemplate], registry: HandlerRegistry) -> Embedded {
    start_with(test_config(), templates, registry).await
}

pub async fn start_with(
    config: TaskerConfig,
    templates: &[TaskTemplate],
    registry: HandlerRegistry,
) -> Embedded {
    let database = test_database().await.expect("test database");
    Embedded::start(&database.url, config, templates, registry)
        .await
        .expect("engine starts")
}

/// A migrated database with the linear template and one linear task
/// created, but no orchestrator or worker running: the task stays where it
/// is (its first step enqueued). Returns the database's URL too.
pub async fn idle_linear_task() -> (String, sqlx::PgPool, uuid::Uuid) {
    idle_task(
        &scenario("linear_workflow"),
        serde_json::json!({"even_number": 2}),
    )
    .await
}

/// As `idle_linear_task`, for any template and context.
pub async fn idle_task(
    template: &TaskTemplate,
    context: serde_json::Value,
) -> (String, sqlx::PgPool, uuid::Uuid) {
    use tasker_engine::orchestration::{create_task, register_templates};
    let database = test_database().await.unwrap();
    let pool = tasker_engine::database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    tasker_engine::database::migrate(&pool).await.unwrap();
    register_templates(&pool, std::slice::from_ref(template))
        .await
        .unwrap();
    let request = tasker_engine::TaskRequest::new(
        &template.namespace_name,
        &template.name,
        &template.version,
        context,
    );
    let task = create_task(&pool, &request).await.unwrap().task_uuid;
    (database.url, pool, task)
}

/// Wait (by notification) until the task is complete or in error.
pub async fn finished(
    client: &tasker_engine::TaskerClient,
    task: uuid::Uuid,
) -> tasker_engine::TaskState {
    client
        .wait_for_completion(task, TASK_TIMEOUT)
        .await
        .expect("the task finishes")
}

/// The engine, embedded, on the database at `url`, serving one template.
pub async fn start_on(
    url: &str,
    config: TaskerConfig,
    template: &TaskTemplate,
    registry: HandlerRegistry,
) -> Embedded {
    Embedded::start(url, config, std::slice::from_ref(template), registry)
        .await
        .expect("engine starts")
}

/// The states a task went through, in order.
pub async fn task_history(engine: &Embedded, task: uuid::Uuid) -> Vec<String> {
    engine
        .client
        .task_transitions(task)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.to_state)
        .collect()
}

pub fn scenario(name: &str) -> TaskTemplate {
    tasker_scenarios::template(name).unwrap_or_else(|| panic!("scenario template {name}"))
}
