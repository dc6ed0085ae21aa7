//! `tasker_worker_node.node`: the worker core (`tasker-worker-core`) for
//! Node. The TypeScript package (`src-ts/`) holds the handler API and the
//! loops; this addon only moves steps across, never blocking the event
//! loop: `start`, `poll` and `stop` return Promises settled from napi's
//! tokio runtime (`poll` awaits the bridge's channel; `start` and `stop`,
//! which block on the worker's own runtime, run on its blocking pool),
//! and `complete*` only hand a result to a waiting oneshot.
//!
//! Step ids are JS numbers: they count up from 1 per worker, and stay
//! exact up to 2^53.

// The workspace denies unsafe code; napi's #[napi] macros expand to the
// `extern "C"` callbacks and raw napi_value handling Node-API requires.
// This file itself writes no `unsafe`.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::spawn_blocking;
use napi::{Error, Result, Status};
use napi_derive::napi;
use tasker_worker_core::{HostWorker, HostWorkerOptions, Polled};

/// The largest integer a JS number holds exactly.
const MAX_SAFE_ID: f64 = 9_007_199_254_740_991.0;

/// `[id, callable, stepName, payloadJson]`.
type PolledStep = (f64, String, String, String);

/// The engine's worker, serving the callables the TypeScript side has.
#[napi]
pub struct NativeWorker {
    inner: Arc<HostWorker>,
}

#[napi]
impl NativeWorker {
    /// Loads the configuration (`configDir`, `env` as TASKER_ENV,
    /// DATABASE_URL), connects, migrates and starts claiming for the
    /// configured namespaces, every step of which must name one of
    /// `callables`. Resolves once claiming; rejects with the reason.
    #[napi(factory)]
    pub async fn start(
        callables: Vec<String>,
        config_dir: String,
        env: Option<String>,
        worker_id: Option<String>,
    ) -> Result<NativeWorker> {
        let options = HostWorkerOptions {
            config_dir: PathBuf::from(config_dir),
            env,
            worker_id,
            callables,
        };
        // HostWorker::start blocks on the worker's own runtime: not on a
        // thread driving napi's.
        let inner = spawn_blocking(move || HostWorker::start(&options))
            .await
            .map_err(|e| Error::from_reason(format!("starting the worker panicked: {e}")))?
            .map_err(|e| Error::from_reason(format!("{e:#}")))?;
        Ok(NativeWorker {
            inner: Arc::new(inner),
        })
    }

    #[napi(getter)]
    pub fn worker_id(&self) -> String {
        self.inner.worker_id().to_owned()
    }

    /// `worker.concurrency`: the most steps handed over at once, so the
    /// number of handlers worth running at once.
    #[napi(getter)]
    pub fn concurrency(&self) -> u32 {
        u32::try_from(self.inner.concurrency()).unwrap_or(u32::MAX)
    }

    /// The next step, or `null` if none came within `timeoutMs`. Once the
    /// worker has stopped it rejects with code "Cancelled" and a message
    /// starting "WorkerStopped".
    #[napi(ts_return_type = "Promise<[number, string, string, string] | null>")]
    pub async fn poll(&self, timeout_ms: u32) -> Result<Option<PolledStep>> {
        match self
            .inner
            .poll_async(Duration::from_millis(timeout_ms.into()))
            .await
        {
            Polled::Step(step) => Ok(Some((
                step.id as f64,
                step.callable,
                step.step_name,
                step.payload,
            ))),
            Polled::Idle => Ok(None),
            Polled::Stopped => Err(Error::new(
                Status::Cancelled,
                "WorkerStopped: the worker has stopped; no more steps will come",
            )),
        }
    }

    /// The handler's result as JSON text. False when the engine no longer
    /// waits for this step (it timed out): the result is dropped.
    #[napi]
    pub fn complete_success(&self, id: f64, result_json: String) -> Result<bool> {
        Ok(self.inner.succeed(step_id(id)?, result_json))
    }

    /// The handler threw. False as for `completeSuccess`.
    #[napi]
    pub fn complete_failure(
        &self,
        id: f64,
        error_type: String,
        message: String,
        retryable: bool,
    ) -> Result<bool> {
        Ok(self
            .inner
            .fail(step_id(id)?, error_type, message, retryable))
    }

    /// Stops claiming; resolves once the steps handed over are completed
    /// and their results submitted, so keep polling and completing until
    /// `poll` rejects.
    #[napi]
    pub async fn stop(&self) -> Result<()> {
        let inner = self.inner.clone();
        spawn_blocking(move || inner.stop())
            .await
            .map_err(|e| Error::from_reason(format!("stopping the worker panicked: {e}")))
    }
}

/// A step id as `poll` gave it.
fn step_id(id: f64) -> Result<u64> {
    if id.fract() == 0.0 && (1.0..=MAX_SAFE_ID).contains(&id) {
        Ok(id as u64)
    } else {
        Err(Error::new(
            Status::InvalidArg,
            format!("{id} is not a step id from poll()"),
        ))
    }
}
