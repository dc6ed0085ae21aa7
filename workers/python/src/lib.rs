//! `tasker_worker._native`: the worker core (`tasker-worker-core`) for
//! Python. The Python package (`python/tasker_worker`) holds the handler
//! API and the loop; this module only moves steps across: `poll` waits
//! for a step with the GIL released, `complete_*` hands the outcome back.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use tasker_worker_core::{HostWorker, HostWorkerOptions, Polled};

create_exception!(
    _native,
    WorkerStopped,
    PyException,
    "The worker has stopped: no more steps will come."
);

/// The engine's worker, serving the callables the Python side has.
#[pyclass(frozen)]
struct NativeWorker {
    inner: HostWorker,
}

#[pymethods]
impl NativeWorker {
    /// Connects, migrates and starts claiming for the configured
    /// templates, every step of which must name one of `callables`.
    #[new]
    #[pyo3(signature = (callables, config_dir, env=None, worker_id=None))]
    fn new(
        py: Python<'_>,
        callables: Vec<String>,
        config_dir: PathBuf,
        env: Option<String>,
        worker_id: Option<String>,
    ) -> PyResult<Self> {
        let options = HostWorkerOptions {
            config_dir,
            env,
            worker_id,
            callables,
        };
        let inner = py
            .detach(|| HostWorker::start(&options))
            .map_err(|e| PyRuntimeError::new_err(format!("{e:#}")))?;
        Ok(Self { inner })
    }

    #[getter]
    fn worker_id(&self) -> &str {
        self.inner.worker_id()
    }

    /// The next step as `(id, callable, step_name, payload_json)`, or
    /// `None` if none came within `timeout_ms`; raises `WorkerStopped`
    /// once the worker has stopped.
    fn poll(
        &self,
        py: Python<'_>,
        timeout_ms: u64,
    ) -> PyResult<Option<(u64, String, String, String)>> {
        let timeout = Duration::from_millis(timeout_ms);
        match py.detach(|| self.inner.poll(timeout)) {
            Polled::Step(step) => Ok(Some((step.id, step.callable, step.step_name, step.payload))),
            Polled::Idle => Ok(None),
            Polled::Stopped => Err(WorkerStopped::new_err("the worker has stopped")),
        }
    }

    /// The handler's result (JSON text). False when the engine no longer
    /// waits for this step (it timed out): the result is dropped.
    fn complete_success(&self, id: u64, result_json: String) -> bool {
        self.inner.succeed(id, result_json)
    }

    /// The handler raised. False as for `complete_success`.
    fn complete_failure(
        &self,
        id: u64,
        error_type: String,
        message: String,
        retryable: bool,
    ) -> bool {
        self.inner.fail(id, error_type, message, retryable)
    }

    /// Stops claiming and returns once the steps handed over are completed
    /// and submitted: keep polling and completing from another thread
    /// meanwhile.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.inner.stop());
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeWorker>()?;
    m.add("WorkerStopped", m.py().get_type::<WorkerStopped>())?;
    Ok(())
}
