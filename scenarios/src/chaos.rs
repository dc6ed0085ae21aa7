//! Handlers for the fault campaign (`tasker-harness chaos`): each wraps a
//! scenario handler, records every run it starts, and obeys the faults the
//! task's context asks for.
//!
//! A run is one line `<step uuid> <attempt> <pid>` appended to
//! `$TASKER_CHAOS_RUNS_DIR/runs-<pid>.log` before the real handler runs, so
//! a worker killed mid-step still leaves its line; the campaign's checker
//! reads them all to prove no attempt of a step ran twice. Appends of one
//! short line are atomic on a local file system, and the kernel keeps them
//! when the process is killed.
//!
//! The context's `chaos` object (all optional):
//! `{"delay_ms": 300, "fail": {"<step name>": k}, "fatal": "<step name>"}`
//! delays every step, fails the named steps' first k attempts retryably,
//! and fails the named step permanently (the task is expected to end in
//! error).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tasker_engine::{HandlerError, StepContext, StepHandler};

/// The environment variable naming the directory run records go to.
pub const RUNS_DIR_ENV: &str = "TASKER_CHAOS_RUNS_DIR";

/// The prefix a scenario callable gets in the campaign's templates.
pub const CALLABLE_PREFIX: &str = "chaos.";

/// A scenario handler under the campaign.
pub struct Chaos {
    pub inner: Arc<dyn StepHandler>,
}

#[async_trait]
impl StepHandler for Chaos {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        record_run(step);
        let chaos = step.task_context.get("chaos");
        let directive = |key: &str| chaos.and_then(|c| c.get(key));
        if let Some(ms) = directive("delay_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if directive("fatal").and_then(Value::as_str) == Some(step.step_name.as_str()) {
            return Err(HandlerError::permanent(
                "InjectedFatal",
                format!("step '{}' fails for good (chaos.fatal)", step.step_name),
            ));
        }
        let failures = directive("fail")
            .and_then(|f| f.get(&step.step_name))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if u64::from(step.attempt) <= failures {
            return Err(HandlerError::retryable(
                "InjectedFailure",
                format!(
                    "attempt {} of step '{}' fails (chaos.fail)",
                    step.attempt, step.step_name
                ),
            ));
        }
        self.inner.call(step).await
    }
}

/// Appends this run's line, when a runs directory is set. A record that
/// cannot be written is a failed campaign, not a silent gap: panic (the
/// step fails permanently and the checker reports it).
fn record_run(step: &StepContext) {
    static FILE: OnceLock<Option<Mutex<File>>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os(RUNS_DIR_ENV)?);
        let path = dir.join(format!("runs-{}.log", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open run record {}: {e}", path.display()));
        Some(Mutex::new(file))
    });
    if let Some(file) = file {
        let line = format!(
            "{} {} {}\n",
            step.step_uuid,
            step.attempt,
            std::process::id()
        );
        file.lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(line.as_bytes())
            .expect("run record written");
    }
}
