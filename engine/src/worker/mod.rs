//! The Rust worker: claims steps from its namespaces' queues, runs their
//! handlers, and sends the results back to orchestration.
//!
//! Pipeline (all channels bounded, sizes in [`WorkerConfig`]):
//!
//! ```text
//! claimer (one per queue) --dispatch channel--> dispatcher --spawn--> handler run
//!      ^ semaphore permits (concurrency bound)                      |
//!                                  submitter <--completion channel--+
//! ```
//!
//! A claimer takes a permit for every step it claims, so no more than
//! `concurrency` handlers run at once and nothing is claimed that cannot
//! start. A claim and a batch of results are each one statement (the
//! queue's `tasker.claim_<queue>`, in engine/sql/worker_queues.sql; the
//! plain statement engine/sql/statements/submit_results.sql, or the
//! queue's `tasker.submit_<queue>` when that declines); the step's message
//! is deleted in the same transaction that records its result.

pub mod batch;
mod claim;
mod dispatch;
pub mod handler;
mod results;

pub use dispatch::Completion;
pub use results::{result_json, submit_and_complete_results, submit_results};

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{TaskerConfig, WorkerConfig};
use crate::database::{self, DatabaseError, PoolSettings};
use crate::queue::{worker_queue, Wakeups};
use crate::telemetry::spawn_named;
use crate::template::TaskTemplate;
pub use batch::{BatchInputs, Batches, Checkpoint, CursorRange};
pub use handler::{HandlerError, HandlerRegistry, MissingHandler, StepContext, StepHandler};

/// A running worker. Dropping the handle does not stop it; call `shutdown`.
pub struct Worker {
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    worker_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker has no namespaces to serve (set worker.namespaces or load templates)")]
    NoNamespaces,
    #[error("cannot listen for step notifications: {0}")]
    Listen(sqlx::Error),
    #[error(transparent)]
    MissingHandler(#[from] MissingHandler),
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

/// The namespaces a worker serves: those configured, else those of the
/// templates it has handlers for.
pub fn namespaces_to_serve(config: &WorkerConfig, templates: &[TaskTemplate]) -> Vec<String> {
    if !config.namespaces.is_empty() {
        return config.namespaces.clone();
    }
    let mut namespaces: Vec<String> = templates.iter().map(|t| t.namespace_name.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
}

/// The namespaces a worker serves, once every step of their templates has
/// a handler in `registry`; the error names the first step that has none.
/// Templates of other namespaces are another worker's (say one in another
/// language) and need no handler here.
pub fn check_handlers(
    registry: &HandlerRegistry,
    config: &WorkerConfig,
    templates: &[TaskTemplate],
) -> Result<Vec<String>, MissingHandler> {
    let namespaces = namespaces_to_serve(config, templates);
    for template in templates
        .iter()
        .filter(|t| namespaces.contains(&t.namespace_name))
    {
        registry.check(template)?;
    }
    Ok(namespaces)
}

impl Worker {
    /// Start a worker for `templates` on the database at `url`: check that
    /// every step of the namespaces it serves (`worker.namespaces`, or all
    /// the templates') has a handler ([`check_handlers`]), open the claim
    /// pool (asynchronous commit) beside `pool`, and serve those namespaces.
    pub async fn start_for_templates(
        url: &str,
        pool: PgPool,
        registry: HandlerRegistry,
        config: &TaskerConfig,
        templates: &[TaskTemplate],
    ) -> Result<Worker, WorkerError> {
        let namespaces = check_handlers(&registry, &config.worker, templates)?;
        // Each claimer keeps a connection of its own (database::Dedicated),
        // taken out of this pool: it only makes them, with asynchronous
        // commit, and keeps none idle.
        let claim_pool = database::connect(
            url,
            &PoolSettings {
                max_connections: 1,
                min_connections: 0,
                asynchronous_commit: true,
                ..PoolSettings::from(&config.database)
            },
        )
        .await?;
        Self::start(
            pool,
            claim_pool,
            registry,
            config.worker.clone(),
            namespaces,
        )
        .await
    }

    /// Start serving `namespaces`. `pool` carries results; `claim_pool`
    /// carries claims (it may use asynchronous commit).
    pub async fn start(
        pool: PgPool,
        claim_pool: PgPool,
        registry: HandlerRegistry,
        config: WorkerConfig,
        namespaces: Vec<String>,
    ) -> Result<Worker, WorkerError> {
        if namespaces.is_empty() {
            return Err(WorkerError::NoNamespaces);
        }
        let shutdown = CancellationToken::new();
        let worker_id = config
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("worker-{}", std::process::id()));
        let queues: Vec<String> = namespaces.iter().map(|n| worker_queue(n)).collect();
        let wakeups = Wakeups::listen(&pool, &queues, shutdown.clone())
            .await
            .map_err(WorkerError::Listen)?;

        let config = Arc::new(config);
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let (dispatch_tx, dispatch_rx) = mpsc::channel(config.concurrency.max(1));
        let (completion_tx, completion_rx) =
            mpsc::channel(config.completion_channel_capacity.max(1));

        let mut tasks = Vec::new();
        for queue in queues {
            let claimer = claim::Claimer {
                connection: database::Dedicated::new(claim_pool.clone()),
                wakeup: wakeups.channel(&queue),
                queue,
                worker_id: worker_id.clone(),
                config: config.clone(),
                permits: permits.clone(),
                dispatch: dispatch_tx.clone(),
                shutdown: shutdown.clone(),
            };
            tasks.push(spawn_named("worker-claimer", claimer.run()));
        }
        drop(dispatch_tx);
        let dispatcher = dispatch::Dispatcher {
            registry: Arc::new(registry),
            pool: pool.clone(),
            completions: completion_tx,
            worker_id: worker_id.clone(),
            injected_delay: std::time::Duration::from_micros(config.injected_delay_us),
        };
        tasks.push(spawn_named(
            "worker-dispatcher",
            dispatcher.run(dispatch_rx),
        ));
        let submitter = results::Submitter {
            connection: database::Dedicated::with_session(pool, database::HOT_PATH_SESSION),
            batch_size: config.result_batch_size.max(1),
            complete: config.complete_results,
            shutdown: shutdown.clone(),
        };
        tasks.push(spawn_named(
            "worker-result-submitter",
            submitter.run(completion_rx),
        ));
        tracing::info!(%worker_id, ?namespaces, concurrency = config.concurrency, "worker started");
        Ok(Worker {
            shutdown,
            tasks,
            worker_id,
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Stop claiming; handlers already running finish and their results
    /// are submitted before this returns.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    #[async_trait::async_trait]
    impl StepHandler for Nothing {
        async fn call(&self, _: &StepContext) -> Result<serde_json::Value, HandlerError> {
            Ok(serde_json::Value::Null)
        }
    }

    fn one_step(namespace: &str, callable: &str) -> TaskTemplate {
        let yaml = format!(
            "name: {namespace}_flow\nnamespace_name: {namespace}\nversion: \"1.0.0\"\n\
             steps:\n  - name: only\n    handler:\n      callable: {callable}\n"
        );
        TaskTemplate::from_yaml_str(&yaml, namespace).expect("a valid template")
    }

    #[test]
    fn a_worker_needs_handlers_only_for_the_namespaces_it_serves() {
        let templates = [one_step("rust", "rust.run"), one_step("python", "py.run")];
        let mut registry = HandlerRegistry::new();
        registry.register("rust.run", Nothing);
        // Serving every template's namespace: python's step has no handler.
        let error = check_handlers(&registry, &WorkerConfig::default(), &templates).unwrap_err();
        assert_eq!(
            (error.step.as_str(), error.callable.as_str()),
            ("only", "py.run")
        );
        // Serving rust only: python's template is another worker's.
        let config = WorkerConfig {
            namespaces: vec!["rust".into()],
            ..WorkerConfig::default()
        };
        let served = check_handlers(&registry, &config, &templates).expect("rust is served");
        assert_eq!(served, ["rust"]);
        // Serving python with rust's handlers only is refused.
        let config = WorkerConfig {
            namespaces: vec!["python".into()],
            ..WorkerConfig::default()
        };
        assert!(check_handlers(&registry, &config, &templates).is_err());
    }
}
