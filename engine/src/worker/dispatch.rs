//! Running handlers: each claimed step runs in its own task, bounded by the
//! claimer's semaphore permit, under its timeout; a timeout, a panic and an
//! error all become failure results with an error type.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use sqlx::PgPool;

use super::batch::Checkpoints;
use super::claim::{ClaimedStep, Dispatch};
use super::handler::{HandlerError, HandlerRegistry, StepContext};
use crate::telemetry::spawn_named;

/// The outcome of one handler run, on its way to the submitter (public
/// for the result-serialization benchmarks).
#[derive(Debug)]
pub struct Completion {
    pub queue: Arc<str>,
    pub msg_id: i64,
    pub step_uuid: uuid::Uuid,
    /// The claim's attempt and token: the result is recorded only while
    /// the token is still the step's (see `tasker.submit_*`).
    pub attempt: i32,
    pub claim_token: uuid::Uuid,
    pub outcome: Result<Value, HandlerError>,
    pub execution_time: Duration,
    pub worker_id: Arc<str>,
}

pub(crate) struct Dispatcher {
    pub registry: Arc<HandlerRegistry>,
    /// Where batch workers' checkpoints are saved (committed synchronously).
    pub pool: PgPool,
    pub completions: mpsc::Sender<Completion>,
    pub worker_id: String,
    pub injected_delay: Duration,
}

impl Dispatcher {
    /// Fire and forget: each step is spawned and reports on the completion
    /// channel; the dispatcher goes straight back to the dispatch channel.
    pub async fn run(self, mut dispatch: mpsc::Receiver<Dispatch>) {
        let worker_id: Arc<str> = Arc::from(self.worker_id.as_str());
        while let Some(Dispatch {
            step,
            queue,
            permit,
        }) = dispatch.recv().await
        {
            let registry = self.registry.clone();
            let pool = self.pool.clone();
            let completions = self.completions.clone();
            let worker_id = worker_id.clone();
            let injected_delay = self.injected_delay;
            // One span per step, from dispatch to its completion being
            // handed to the submitter (tracing-flame shows where it goes).
            let span = tracing::debug_span!("step");
            spawn_named(
                "step",
                async move {
                    let started = Instant::now();
                    let msg_id = step.msg_id;
                    let step_uuid = step.workflow_step_uuid;
                    let (attempt, claim_token) = (step.attempt, step.claim_token);
                    if !injected_delay.is_zero() {
                        // tokio's timer rounds up to whole milliseconds; a
                        // thread's sleep keeps sub-millisecond delays close to
                        // what was asked, off the runtime's threads.
                        let _ =
                            tokio::task::spawn_blocking(move || std::thread::sleep(injected_delay))
                                .await;
                    }
                    let outcome = run_step(&registry, step, pool).await;
                    let completion = Completion {
                        queue,
                        msg_id,
                        step_uuid,
                        attempt,
                        claim_token,
                        outcome,
                        execution_time: started.elapsed(),
                        worker_id,
                    };
                    drop(permit);
                    // The submitter only goes away at shutdown, after draining.
                    let _ = completions.send(completion).await;
                }
                .instrument(span),
            );
        }
    }
}

/// Resolve the handler and run it, turning every way it can go wrong into
/// a `HandlerError` with a type.
#[tracing::instrument(name = "handler", level = "debug", skip_all, fields(step = %step.step_name))]
pub(crate) async fn run_step(
    registry: &HandlerRegistry,
    step: ClaimedStep,
    checkpoint_pool: PgPool,
) -> Result<Value, HandlerError> {
    let Some(handler) = registry.get(&step.handler_callable) else {
        return Err(HandlerError::permanent(
            "HandlerNotFound",
            format!(
                "no handler registered for '{}' (step '{}')",
                step.handler_callable, step.step_name
            ),
        ));
    };
    let timeout = Duration::from_secs(step.timeout_seconds.max(1) as u64);
    let is_decision = step.step_type == "decision";
    let context = step_context(step, checkpoint_pool);
    let run = AssertUnwindSafe(handler.call(&context)).catch_unwind();
    let result = match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(HandlerError::retryable(
            "HandlerTimeout",
            format!(
                "step '{}' did not finish within {timeout:?}",
                context.step_name
            ),
        )),
        Ok(Err(panic)) => Err(HandlerError::permanent(
            "HandlerPanic",
            format!(
                "step '{}' panicked: {}",
                context.step_name,
                panic_message(&panic)
            ),
        )),
        Ok(Ok(result)) => result,
    };
    match result {
        Ok(value) if is_decision => check_decision(&context, value),
        other => other,
    }
}

fn step_context(step: ClaimedStep, checkpoint_pool: PgPool) -> StepContext {
    let dependency_results: HashMap<String, Value> = match step.dependency_results {
        Value::Object(map) => map.into_iter().collect(),
        _ => HashMap::new(),
    };
    StepContext {
        task_uuid: step.task_uuid,
        step_uuid: step.workflow_step_uuid,
        step_name: step.step_name,
        task_context: step.task_context,
        dependency_results,
        initialization: step.handler_initialization,
        inputs: step.inputs,
        attempt: step.attempt.max(1) as u32,
        child_steps: step.child_step_names,
        checkpoints: Some(Checkpoints {
            pool: checkpoint_pool,
            claim_token: step.claim_token,
        }),
    }
}

/// A decision step's result must name the children it picks in
/// `next_steps`; anything else would leave the task unable to go on.
fn check_decision(context: &StepContext, value: Value) -> Result<Value, HandlerError> {
    let invalid = |message: String| Err(HandlerError::permanent("InvalidDecision", message));
    let Some(next) = value.get("next_steps").and_then(Value::as_array) else {
        return invalid(format!(
            "decision step '{}' must return {{\"next_steps\": [...]}} naming some of {:?}",
            context.step_name, context.child_steps
        ));
    };
    for name in next {
        match name.as_str() {
            Some(name) if context.child_steps.iter().any(|c| c == name) => {}
            _ => {
                return invalid(format!(
                    "decision step '{}' chose {name}, which is not one of its next steps {:?}",
                    context.step_name, context.child_steps
                ))
            }
        }
    }
    Ok(value)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
