//! `TaskerWorker::Native`: the worker core (`tasker-worker-core`) for
//! Ruby. The Ruby library (`lib/tasker_worker.rb`) holds the handler API
//! and the threads; this class only moves steps across: `poll` waits for
//! a step with the GVL released, `complete_*` hands the outcome back.

mod gvl;

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use magnus::value::Lazy;
use magnus::{function, method, prelude::*, Error, ExceptionClass, Ruby};
use tasker_worker_core::{HostWorker, HostWorkerOptions, Polled};

/// How long a blocked `poll` may keep Ruby waiting after an interrupt
/// (Thread#kill, the interpreter's exit): it waits in slices this long.
const POLL_SLICE: Duration = Duration::from_millis(20);

/// `TaskerWorker::WorkerStopped`, defined by `init`.
static WORKER_STOPPED: Lazy<ExceptionClass> = Lazy::new(|ruby| {
    ruby.class_object()
        .const_get::<_, magnus::RModule>("TaskerWorker")
        .and_then(|m| m.const_get("WorkerStopped"))
        .expect("TaskerWorker::WorkerStopped is defined by Init_tasker_worker_native")
});

/// The engine's worker, serving the callables the Ruby side has.
#[magnus::wrap(class = "TaskerWorker::Native", size)]
struct Native {
    /// Shared with the thread `stop` runs on, which may outlive the call.
    inner: Arc<HostWorker>,
}

impl Native {
    /// Connects, migrates and starts claiming for the configured
    /// templates, every step of which must name one of `callables`.
    fn new(
        ruby: &Ruby,
        callables: Vec<String>,
        config_dir: String,
        env: Option<String>,
        worker_id: Option<String>,
    ) -> Result<Self, Error> {
        let options = HostWorkerOptions {
            config_dir: config_dir.into(),
            env,
            worker_id,
            callables,
        };
        match gvl::without_gvl(|_| HostWorker::start(&options)) {
            Some(Ok(inner)) => Ok(Self {
                inner: Arc::new(inner),
            }),
            Some(Err(e)) => Err(Error::new(ruby.exception_runtime_error(), format!("{e:#}"))),
            None => Err(Error::new(
                ruby.exception_runtime_error(),
                "interrupted before the worker started",
            )),
        }
    }

    fn worker_id(&self) -> String {
        self.inner.worker_id().to_owned()
    }

    /// The next step as `[id, callable, step_name, payload_json]`, or nil
    /// if none came within `timeout_ms` (or the thread was interrupted);
    /// raises `WorkerStopped` once the worker has stopped.
    fn poll(
        ruby: &Ruby,
        rb_self: &Self,
        timeout_ms: u64,
    ) -> Result<Option<(u64, String, String, String)>, Error> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let polled = gvl::without_gvl(|wake| loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rb_self.inner.poll(left.min(POLL_SLICE)) {
                Polled::Idle if !left.is_zero() && !wake.interrupted() => continue,
                polled => break polled,
            }
        });
        match polled.unwrap_or(Polled::Idle) {
            Polled::Step(s) => Ok(Some((s.id, s.callable, s.step_name, s.payload))),
            Polled::Idle => Ok(None),
            Polled::Stopped => Err(Error::new(
                ruby.get_inner(&WORKER_STOPPED),
                "the worker has stopped",
            )),
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

    /// Stops claiming and returns true once the steps handed over are
    /// completed and submitted: keep polling and completing from other
    /// threads meanwhile. False if the calling thread was interrupted
    /// first; the stop then goes on in the background.
    fn stop(ruby: &Ruby, rb_self: &Self) -> Result<bool, Error> {
        let worker = Arc::clone(&rb_self.inner);
        let stopped = gvl::without_gvl(move |wake| -> std::io::Result<bool> {
            // On its own thread so that an interrupt need not wait for it.
            let (done, finished) = mpsc::channel();
            let waker = Arc::clone(wake);
            std::thread::Builder::new()
                .name("tasker-stop".into())
                .spawn(move || {
                    worker.stop();
                    let _ = done.send(());
                    waker.wake();
                })?;
            loop {
                if finished.try_recv().is_ok() {
                    return Ok(true);
                }
                if wake.interrupted() {
                    return Ok(false);
                }
                wake.wait(Duration::from_secs(1));
            }
        });
        match stopped {
            Some(Ok(stopped)) => Ok(stopped),
            Some(Err(e)) => Err(Error::new(
                ruby.exception_runtime_error(),
                format!("cannot start the thread stopping the worker: {e}"),
            )),
            None => Ok(false),
        }
    }
}

#[magnus::init(name = "tasker_worker_native")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let module = ruby.define_module("TaskerWorker")?;
    module.define_error("WorkerStopped", ruby.exception_standard_error())?;
    let class = module.define_class("Native", ruby.class_object())?;
    class.define_singleton_method("new", function!(Native::new, 4))?;
    class.define_method("worker_id", method!(Native::worker_id, 0))?;
    class.define_method("poll", method!(Native::poll, 1))?;
    class.define_method("complete_success", method!(Native::complete_success, 2))?;
    class.define_method("complete_failure", method!(Native::complete_failure, 4))?;
    class.define_method("stop", method!(Native::stop, 0))?;
    Ok(())
}
