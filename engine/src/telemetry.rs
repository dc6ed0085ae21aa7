//! Tracing set-up and named spawns.
//!
//! Every long-running task is spawned through [`spawn_named`], so that under
//! `--cfg tokio_unstable` (tokio-console) each shows up by name.

use std::future::Future;

use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

/// Spawn a long-running task with a name tokio-console can show.
#[track_caller]
pub fn spawn_named<F>(name: &str, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(tokio_unstable)]
    {
        tokio::task::Builder::new()
            .name(name)
            .spawn(future)
            .expect("spawning a task on the current runtime")
    }
    #[cfg(not(tokio_unstable))]
    {
        let _ = name;
        tokio::spawn(future)
    }
}

/// Log to stderr, filtered by `RUST_LOG` (default: `info` for tasker,
/// `warn` for everything else). Safe to call more than once.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,tasker_engine=info,tasker_scenarios=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
