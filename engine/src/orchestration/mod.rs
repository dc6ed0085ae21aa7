//! Orchestration: turns task requests into steps on worker queues, and
//! step results into the next steps, retries, or a finished task.
//!
//! The decisions themselves are SQL functions (engine/sql/evaluate.sql,
//! results.sql, create_task.sql), each one transaction issued as one
//! statement. The Rust
//! side here is the event loop around them: the result processor wakes on
//! a notification, drains the results queue in batches, and keeps a timer
//! for the earliest retry it scheduled. Several orchestrators may run
//! against one database: pgmq hands each message to one reader, and a
//! task's results are evaluated under its row lock.

pub mod input;
pub mod maintenance;
pub(crate) mod results;
pub mod staleness;
pub mod tasks;
pub mod templates;

use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::OrchestrationConfig;
use crate::database;
use crate::queue::{Wakeups, STEP_RESULTS_QUEUE};
use crate::telemetry::spawn_named;
pub use results::{process_results, Completed, Processed};
pub use tasks::{create_task, create_task_as, TaskCreated, TaskRequest};
pub use templates::register_templates;

#[derive(Debug, thiserror::Error)]
pub enum OrchestrationError {
    #[error("unknown task template {0} (is it in a templates directory the server loaded?)")]
    UnknownTemplate(String),
    /// The request cannot become a task: each problem names the field (a
    /// path into the context for an input_schema violation).
    #[error("invalid task request for {template}: {}", problems.join("; "))]
    InvalidRequest {
        template: String,
        problems: Vec<String>,
    },
    /// The database's functions were applied by an earlier engine than
    /// this code (several versions on one database): what they lack.
    #[error("the database's tasker functions are older than this engine: {0}")]
    Outdated(String),
    #[error("cannot listen for step results: {0}")]
    Listen(sqlx::Error),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// A running orchestrator.
pub struct Orchestrator {
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Orchestrator {
    pub async fn start(
        pool: PgPool,
        config: OrchestrationConfig,
    ) -> Result<Self, OrchestrationError> {
        let shutdown = CancellationToken::new();
        let wakeups = Wakeups::listen(&pool, &[STEP_RESULTS_QUEUE.to_string()], shutdown.clone())
            .await
            .map_err(OrchestrationError::Listen)?;
        let mut tasks = Vec::new();
        if config.maintenance_interval_ms > 0 {
            tasks.push(spawn_named(
                "orchestration-maintenance",
                maintenance::run(pool.clone(), config.clone(), shutdown.clone()),
            ));
        }
        if config.staleness_interval_ms > 0 {
            tasks.push(spawn_named(
                "orchestration-staleness-detector",
                staleness::run(pool.clone(), config.clone(), shutdown.clone()),
            ));
        }
        let processor = results::ResultProcessor {
            connection: database::Dedicated::with_session(pool, database::HOT_PATH_SESSION),
            wakeup: wakeups.channel(STEP_RESULTS_QUEUE),
            config,
            shutdown: shutdown.clone(),
        };
        tasks.push(spawn_named(
            "orchestration-result-processor",
            processor.run(),
        ));
        tracing::info!("orchestrator started");
        Ok(Self { shutdown, tasks })
    }

    /// Stop after the batch in hand is committed.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
