//! tasker-worker-core: the engine's Rust worker, serving step handlers
//! written in another language (Python, Ruby, TypeScript) through a
//! native extension.
//!
//! The host registers the callables it has; each becomes a
//! [`bridge::HostHandler`] in an ordinary [`HandlerRegistry`], so claims,
//! leases, timeouts, retries and result batching are exactly the Rust
//! worker's. Claimed steps wait in a bounded channel that the host drains
//! with [`HostWorker::poll`] (blocking, with the host's interpreter lock
//! released, never busy-looping) or awaits with [`HostWorker::poll_async`]
//! (a host with an event loop, such as Node), and results come back through
//! [`HostWorker::complete`]. A step crosses the boundary once each way,
//! as JSON text.
//!
//! ```text
//! claimer -> dispatcher -> HostHandler --bounded channel--> host poll()
//!                              ^                               | handler(step)
//!                              +-------- oneshot <------- host complete()
//! ```

pub mod bridge;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tasker_engine::config::TaskerConfig;
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::service;
use tasker_engine::template::TaskTemplate;
use tasker_engine::worker::{HandlerRegistry, Worker};
use tokio::runtime::Runtime;

pub use bridge::{Bridge, CompleteError, HostOutcome, HostStep, Polled};
pub use tasker_engine::worker::HandlerError;

/// A registry whose every callable is served by the host through `bridge`.
pub fn host_registry<'a>(
    bridge: &Arc<Bridge>,
    callables: impl IntoIterator<Item = &'a str>,
) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    for callable in callables {
        if let Some(handler) = bridge.handler(callable) {
            registry.register(callable, handler);
        }
    }
    registry
}

/// How a host worker starts: the same configuration as `tasker-worker`
/// (`config_dir`, `TASKER_ENV` overrides, `DATABASE_URL`).
#[derive(Debug, Clone)]
pub struct HostWorkerOptions {
    pub config_dir: PathBuf,
    pub env: Option<String>,
    /// Overrides `worker.worker_id`.
    pub worker_id: Option<String>,
    /// The callables the host has handlers for.
    pub callables: Vec<String>,
}

/// A worker serving a host's handlers: its own tokio runtime, the
/// engine's worker on it, and the bridge the host polls.
pub struct HostWorker {
    runtime: Runtime,
    bridge: Arc<Bridge>,
    worker: Mutex<Option<Worker>>,
    worker_id: String,
}

impl HostWorker {
    /// Loads the configuration and templates, connects and migrates, and
    /// starts serving the templates' namespaces. Every step of those
    /// templates must name one of `options.callables`; the error names the
    /// template, step and callable that does not.
    pub fn start(options: &HostWorkerOptions) -> anyhow::Result<HostWorker> {
        let mut config = TaskerConfig::load(&options.config_dir, options.env.as_deref())
            .with_context(|| {
                format!(
                    "loading the configuration from {}",
                    options.config_dir.display()
                )
            })?;
        if options.worker_id.is_some() {
            config.worker.worker_id = options.worker_id.clone();
        }
        let templates = service::load_templates(&config)?;
        Self::start_with(config, &templates, &options.callables)
    }

    /// As [`HostWorker::start`], with the configuration and templates given.
    pub fn start_with(
        config: TaskerConfig,
        templates: &[TaskTemplate],
        callables: &[String],
    ) -> anyhow::Result<HostWorker> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tasker-worker-core")
            .enable_all()
            .build()
            .context("starting the worker's tokio runtime")?;
        let bridge = Bridge::new(config.worker.concurrency);
        let registry = host_registry(&bridge, callables.iter().map(String::as_str));
        let worker = runtime.block_on(async {
            let url = service::database_url(&config)?;
            let pool = database::connect(&url, &PoolSettings::from(&config.database)).await?;
            // Idempotent and locked: worker and server start in either order.
            database::migrate(&pool).await?;
            Worker::start_for_templates(&url, pool, registry, &config, templates)
                .await
                .context("starting the worker")
        })?;
        Ok(HostWorker {
            runtime,
            bridge,
            worker_id: worker.worker_id().to_owned(),
            worker: Mutex::new(Some(worker)),
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The next step for the host, waiting up to `timeout`; call it with
    /// the host's interpreter lock released.
    pub fn poll(&self, timeout: Duration) -> Polled {
        self.bridge.poll(timeout)
    }

    /// As [`HostWorker::poll`], awaited instead of blocking, on the host's
    /// tokio runtime (see [`Bridge::poll_async`]).
    pub async fn poll_async(&self, timeout: Duration) -> Polled {
        self.bridge.poll_async(timeout).await
    }

    /// `worker.concurrency`: the most steps handed to the host at once.
    pub fn concurrency(&self) -> usize {
        self.bridge.capacity()
    }

    /// The host's outcome for step `id`.
    pub fn complete(&self, id: u64, outcome: HostOutcome) -> Result<(), CompleteError> {
        self.bridge.complete(id, outcome)
    }

    /// The handler's result (JSON text) for step `id`; false when the
    /// engine no longer waits for it (it timed out): the result is dropped.
    /// What the bindings' `complete_success` calls.
    pub fn succeed(&self, id: u64, result_json: String) -> bool {
        self.complete(id, HostOutcome::Success(result_json)).is_ok()
    }

    /// The handler failed (`error_type`: e.g. the exception's class);
    /// false as for [`HostWorker::succeed`].
    pub fn fail(&self, id: u64, error_type: String, message: String, retryable: bool) -> bool {
        let error = HandlerError {
            error_type,
            message,
            retryable,
        };
        self.complete(id, HostOutcome::Failure(error)).is_ok()
    }

    /// Stops claiming and waits until the steps already handed over are
    /// completed and their results submitted; meanwhile the host must keep
    /// polling and completing (from another thread). After it, `poll`
    /// returns [`Polled::Stopped`].
    pub fn stop(&self) {
        self.bridge.close();
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            self.runtime.block_on(worker.shutdown());
        }
    }
}

#[cfg(test)]
mod tests;
