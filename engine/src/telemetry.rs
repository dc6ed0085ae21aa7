//! Tracing set-up, named spawns, and the in-process profilers of the
//! profiling builds.
//!
//! Every long-running task is spawned through [`spawn_named`], so that under
//! `--cfg tokio_unstable` (tokio-console) each shows up by name.
//!
//! The profiling features (see `profiles/` and the harness's `profile`
//! command) hook in here, so that both binaries get them the same way:
//! - `dhat-heap`: DHAT's allocator; the heap profile is written on exit.
//! - `tokio-console`: console-subscriber's layer (live on 127.0.0.1:6669, or
//!   `TOKIO_CONSOLE_BIND`), recording to a file when asked.
//! - `tracing-flame`: folded span timings, written as the process runs.
//!
//! `TASKER_PROFILE_DIR` tells them where to write, one file per binary
//! (`<binary>.dhat-heap.json`, `<binary>.console.jsonl`,
//! `<binary>.tracing.folded`), so the processes of one run do not collide.

use std::future::Future;
#[cfg(any(
    feature = "dhat-heap",
    feature = "tokio-console",
    feature = "tracing-flame"
))]
use std::path::PathBuf;

use tokio::task::JoinHandle;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Where the in-process profilers write (see the module docs).
pub const PROFILE_DIR_ENV: &str = "TASKER_PROFILE_DIR";

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

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

/// Keeps the profilers of a profiling build running; dropping it writes
/// what they hold (DHAT's profile, tracing-flame's last lines). Hold it
/// until `main` returns.
#[must_use = "dropping the guard ends profiling"]
pub struct Guard {
    #[cfg(feature = "dhat-heap")]
    _dhat: dhat::Profiler,
    #[cfg(feature = "tracing-flame")]
    _flame: tracing_flame::FlushGuard<std::io::BufWriter<std::fs::File>>,
}

/// Log to stderr, filtered by `RUST_LOG` (default: `info` for tasker,
/// `warn` for everything else), and start the profilers this build has.
/// Only the first call in a process sets up anything.
pub fn init() -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,tasker_engine=info,tasker_scenarios=info"));
    // The filter is the log's alone: the profilers' layers see the spans
    // they need (tokio's, or tasker's debug spans) whatever RUST_LOG says.
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let registry = tracing_subscriber::registry().with(log);

    #[cfg(feature = "tokio-console")]
    let registry = registry.with(console_layer());

    #[cfg(feature = "tracing-flame")]
    let (flame_layer, flame_guard) = flame_layer();
    #[cfg(feature = "tracing-flame")]
    let registry = registry.with(flame_layer);

    let _ = registry.try_init();
    Guard {
        #[cfg(feature = "dhat-heap")]
        _dhat: dhat::Profiler::builder()
            .file_name(output_file("dhat-heap.json"))
            .build(),
        #[cfg(feature = "tracing-flame")]
        _flame: flame_guard,
    }
}

/// `$TASKER_PROFILE_DIR/<binary>.<suffix>`, or `<suffix>` in the working
/// directory when the variable is not set.
#[cfg(any(
    feature = "dhat-heap",
    feature = "tokio-console",
    feature = "tracing-flame"
))]
fn output_file(suffix: &str) -> PathBuf {
    let Some(dir) = std::env::var_os(PROFILE_DIR_ENV) else {
        return PathBuf::from(suffix);
    };
    PathBuf::from(dir).join(format!("{}.{suffix}", binary_name()))
}

#[cfg(any(
    feature = "dhat-heap",
    feature = "tokio-console",
    feature = "tracing-flame"
))]
fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tasker".into())
}

/// console-subscriber's layer. Headless (TASKER_PROFILE_DIR set), it
/// records to a file and its server takes any free port, so that every
/// process of a run can have one; otherwise it serves a live
/// `tokio-console` on TOKIO_CONSOLE_BIND, or 127.0.0.1:6669 for
/// tasker-server and :6670 for the others (a server and a worker on one
/// machine both get one).
#[cfg(feature = "tokio-console")]
fn console_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let mut builder = console_subscriber::ConsoleLayer::builder().with_default_env();
    let headless = std::env::var_os(PROFILE_DIR_ENV).is_some();
    if headless {
        builder = builder.recording_path(output_file("console.jsonl"));
    }
    if std::env::var_os("TOKIO_CONSOLE_BIND").is_none() {
        let port = match (headless, binary_name() == "tasker-server") {
            (true, _) => 0,
            (false, true) => 6669,
            (false, false) => 6670,
        };
        builder = builder.server_addr(([127, 0, 0, 1], port));
    }
    builder.spawn()
}

/// tracing-flame's layer over tasker's own spans (claim, step, handler,
/// submit_results, process_step_results, create_task): the time each thread
/// spends inside them (time outside every span is left out, or idle
/// threads would be nearly all of it), as folded stacks.
#[cfg(feature = "tracing-flame")]
fn flame_layer<S>() -> (
    impl Layer<S>,
    tracing_flame::FlushGuard<std::io::BufWriter<std::fs::File>>,
)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let path = output_file("tracing.folded");
    let (layer, guard) = tracing_flame::FlameLayer::with_file(&path)
        .unwrap_or_else(|e| panic!("tracing-flame cannot write {}: {e}", path.display()));
    let layer = layer
        .with_threads_collapsed(true)
        .with_empty_samples(false)
        .with_file_and_line(false)
        .with_filter(tracing_subscriber::filter::Targets::new().with_targets([
            ("tasker_engine", tracing::Level::DEBUG),
            ("tasker_scenarios", tracing::Level::DEBUG),
        ]));
    (layer, guard)
}
