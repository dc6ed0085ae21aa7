//! The boundary between the engine's worker and a host language's
//! handlers.
//!
//! Every callable the host registers is served by a [`HostHandler`], an
//! ordinary [`StepHandler`] to the engine: claiming, timeouts, leases,
//! retries and result batching stay the Rust worker's. Its `call` puts a
//! [`HostStep`] on a bounded channel and waits for the host's
//! [`Bridge::complete`]. The channel holds at most `concurrency` steps,
//! the number of claim permits, so handing a step over never blocks.
//!
//! A step the engine stops waiting for (its timeout passed, or the worker
//! shut down) is forgotten: a late completion is refused with
//! [`CompleteError::NotWaiting`] and changes nothing, because the engine
//! has already recorded a failure for that attempt and may have given the
//! step to another claim.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tasker_engine::worker::{HandlerError, StepContext, StepHandler};
use tokio::sync::oneshot;
use uuid::Uuid;

/// A claimed step handed to the host: which handler to call, and the
/// step's context as JSON text (parsed once, by the host).
#[derive(Debug, Clone, PartialEq)]
pub struct HostStep {
    /// What [`Bridge::complete`] is given back.
    pub id: u64,
    /// `handler.callable` of the step's template.
    pub callable: String,
    pub step_name: String,
    /// A [`StepPayload`] serialized.
    pub payload: String,
}

/// What the host learns of its step (the engine's `StepContext`, minus
/// what only Rust can use).
#[derive(Debug, Serialize)]
pub struct StepPayload<'a> {
    pub task_uuid: Uuid,
    pub step_uuid: Uuid,
    pub step_name: &'a str,
    pub task_context: &'a Value,
    pub dependency_results: &'a HashMap<String, Value>,
    pub initialization: &'a Value,
    pub inputs: Option<&'a Value>,
    pub attempt: u32,
    pub child_steps: &'a [String],
}

impl<'a> StepPayload<'a> {
    pub fn of(step: &'a StepContext) -> Self {
        Self {
            task_uuid: step.task_uuid,
            step_uuid: step.step_uuid,
            step_name: &step.step_name,
            task_context: &step.task_context,
            dependency_results: &step.dependency_results,
            initialization: &step.initialization,
            inputs: step.inputs.as_ref(),
            attempt: step.attempt,
            child_steps: &step.child_steps,
        }
    }
}

/// How the host's handler ended.
#[derive(Debug, Clone, PartialEq)]
pub enum HostOutcome {
    /// The result, as JSON text.
    Success(String),
    /// The handler failed: `error_type` is e.g. the exception's class.
    Failure(HandlerError),
}

/// What [`Bridge::poll`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    Step(HostStep),
    /// Nothing arrived within the timeout: poll again.
    Idle,
    /// The worker has stopped: no step will come.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompleteError {
    #[error(
        "step {id} is no longer waiting for its result (it timed out, was completed already, \
         or the worker stopped); the result was dropped"
    )]
    NotWaiting { id: u64 },
}

type Waiter = oneshot::Sender<Result<Value, HandlerError>>;

/// The channel from the worker to the host, and the steps the worker is
/// waiting on.
pub struct Bridge {
    /// Cloned into each [`HostHandler`]; taken by [`Bridge::close`], so
    /// that once the worker drops its handlers the host's poll says
    /// [`Polled::Stopped`].
    steps: Mutex<Option<flume::Sender<HostStep>>>,
    polled: flume::Receiver<HostStep>,
    waiting: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
}

impl Bridge {
    /// `capacity`: the worker's concurrency (its claim permits).
    pub fn new(capacity: usize) -> Arc<Self> {
        let (steps, polled) = flume::bounded(capacity.max(1));
        Arc::new(Self {
            steps: Mutex::new(Some(steps)),
            polled,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The engine's handler for `callable`, feeding this bridge; `None`
    /// once closed.
    pub fn handler(self: &Arc<Self>, callable: &str) -> Option<HostHandler> {
        let steps = self
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(HostHandler {
            bridge: self.clone(),
            steps,
            callable: callable.to_owned(),
        })
    }

    /// No more handlers: when the worker has dropped those it has (at its
    /// shutdown), [`Bridge::poll`] returns [`Polled::Stopped`].
    pub fn close(&self) {
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Blocks until a step arrives or `timeout` passes. Called from the
    /// host's thread with its interpreter lock released.
    pub fn poll(&self, timeout: Duration) -> Polled {
        match self.polled.recv_timeout(timeout) {
            Ok(step) => Polled::Step(step),
            Err(flume::RecvTimeoutError::Timeout) => Polled::Idle,
            Err(flume::RecvTimeoutError::Disconnected) => Polled::Stopped,
        }
    }

    /// As [`Bridge::poll`], without blocking a thread: for a host whose
    /// own loop must stay free (Node's event loop awaits a Promise). Awaited
    /// on a tokio runtime with its timer enabled (the host's, not the
    /// worker's). A poll abandoned by its caller takes no step.
    pub async fn poll_async(&self, timeout: Duration) -> Polled {
        match tokio::time::timeout(timeout, self.polled.recv_async()).await {
            Ok(Ok(step)) => Polled::Step(step),
            Ok(Err(flume::RecvError::Disconnected)) => Polled::Stopped,
            Err(_elapsed) => Polled::Idle,
        }
    }

    /// Steps that can wait for the host at once: the worker's concurrency,
    /// so a host running this many handlers at once keeps every claim busy.
    pub fn capacity(&self) -> usize {
        self.polled.capacity().unwrap_or(1)
    }

    /// Hands the host's outcome for step `id` to the waiting worker. A
    /// success whose text is not JSON fails the step (permanently) with
    /// `InvalidResult`, since the handler's code is what is wrong.
    pub fn complete(&self, id: u64, outcome: HostOutcome) -> Result<(), CompleteError> {
        let waiter = self
            .lock_waiting()
            .remove(&id)
            .ok_or(CompleteError::NotWaiting { id })?;
        let result = match outcome {
            HostOutcome::Success(text) => serde_json::from_str(&text).map_err(|e| {
                HandlerError::permanent(
                    "InvalidResult",
                    format!("the handler's result is not JSON: {e}"),
                )
            }),
            HostOutcome::Failure(error) => Err(error),
        };
        // The worker may have stopped waiting between the remove and now.
        waiter
            .send(result)
            .map_err(|_| CompleteError::NotWaiting { id })
    }

    /// Steps handed over and not completed yet.
    pub fn in_flight(&self) -> usize {
        self.lock_waiting().len()
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The engine's handler for one host callable (see [`Bridge::handler`]).
pub struct HostHandler {
    bridge: Arc<Bridge>,
    steps: flume::Sender<HostStep>,
    callable: String,
}

/// Forgets a step when the engine stops waiting for it (the handler's
/// future is dropped on timeout), so that a late completion is refused.
struct Forget<'a> {
    bridge: &'a Bridge,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.bridge.lock_waiting().remove(&self.id);
    }
}

#[async_trait]
impl StepHandler for HostHandler {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        let payload = serde_json::to_string(&StepPayload::of(step)).map_err(|e| {
            HandlerError::permanent("InvalidContext", format!("cannot encode the step: {e}"))
        })?;
        let id = self.bridge.next_id.fetch_add(1, Ordering::Relaxed);
        let (waiter, result) = oneshot::channel();
        self.bridge.lock_waiting().insert(id, waiter);
        let _forget = Forget {
            bridge: &self.bridge,
            id,
        };
        let stopped = || {
            HandlerError::retryable(
                "WorkerStopped",
                format!(
                    "the host worker stopped before step '{}' finished",
                    step.step_name
                ),
            )
        };
        let host_step = HostStep {
            id,
            callable: self.callable.clone(),
            step_name: step.step_name.clone(),
            payload,
        };
        self.steps
            .send_async(host_step)
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}
