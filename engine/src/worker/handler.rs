//! Step handlers: the trait a handler implements, what it is given, how it
//! fails, and the registry that finds a handler by its callable name.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::batch::{BatchInputs, Checkpoint, Checkpoints, ConvergenceInputs};
use crate::template::{BatchConfig, TaskTemplate};

/// Everything a handler sees of its step.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub task_uuid: Uuid,
    pub step_uuid: Uuid,
    pub step_name: String,
    /// The task's context, as given when the task was created.
    pub task_context: Value,
    /// Results of the parent steps, by step name.
    pub dependency_results: HashMap<String, Value>,
    /// `handler.initialization` from the template.
    pub initialization: Value,
    /// The step's own inputs (set by the engine for batch workers).
    pub inputs: Option<Value>,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// Names of the steps that depend on this one (a decision step chooses
    /// among them).
    pub child_steps: Vec<String>,
    /// Where this claim saves and reads checkpoints; `None` for a step not
    /// claimed from a queue.
    pub(crate) checkpoints: Option<Checkpoints>,
}

impl StepContext {
    /// A parent's result, or a permanent error naming the missing parent.
    pub fn dependency(&self, step: &str) -> Result<&Value, HandlerError> {
        self.dependency_results.get(step).ok_or_else(|| {
            HandlerError::permanent(
                "MissingDependency",
                format!("step '{}' has no result from '{step}'", self.step_name),
            )
        })
    }

    /// The step's `batch_config` from its template; for a batchable step
    /// (its handler cuts ranges of `batch_size`).
    pub fn batch_config(&self) -> Result<BatchConfig, HandlerError> {
        self.inputs_field("batch_config", "batchable")
    }

    /// Which batch this batch worker runs, and its cursor range; a
    /// permanent error for a step that is not a batch worker.
    pub fn batch(&self) -> Result<BatchInputs, HandlerError> {
        self.inputs_field("batch", "batch_worker")
    }

    /// The batch workers' results, in batch order (empty when the
    /// batchable step made no batches); for a deferred convergence step.
    pub fn batch_results(&self) -> Result<Vec<&Value>, HandlerError> {
        let batches: ConvergenceInputs = self.inputs_field("batches", "deferred_convergence")?;
        batches
            .workers
            .iter()
            .map(|worker| self.dependency(worker))
            .collect()
    }

    /// Why the batchable step made no batches, when it made none; for a
    /// deferred convergence step.
    pub fn no_batches_reason(&self) -> Option<String> {
        self.inputs_field::<ConvergenceInputs>("batches", "deferred_convergence")
            .ok()?
            .none
    }

    /// Save a batch worker's progress: `cursor` is where the work got to,
    /// `partial` its result so far. A retry of the step (after a failure or
    /// a lost worker) reads it with [`StepContext::checkpoint`]; every
    /// checkpoint is kept in the step's history. Refused, with a
    /// `ClaimLost` error, once this claim's lease has lapsed and the step
    /// belongs to another claim.
    pub async fn save_checkpoint(&self, cursor: Value, partial: Value) -> Result<(), HandlerError> {
        self.checkpoints()?
            .save(self.step_uuid, &cursor, &partial)
            .await
    }

    /// The last checkpoint saved for this step, by an earlier attempt:
    /// resume from its cursor. On a first attempt there can be none, and
    /// this returns `None` without asking the database.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, HandlerError> {
        if self.attempt <= 1 {
            return Ok(None);
        }
        self.checkpoints()?.load(self.step_uuid).await
    }

    fn checkpoints(&self) -> Result<&Checkpoints, HandlerError> {
        self.checkpoints.as_ref().ok_or_else(|| {
            HandlerError::permanent(
                "CheckpointUnavailable",
                format!("step '{}' was not claimed from a queue", self.step_name),
            )
        })
    }

    fn inputs_field<T: serde::de::DeserializeOwned>(
        &self,
        field: &str,
        step_type: &str,
    ) -> Result<T, HandlerError> {
        let value = self.inputs.as_ref().and_then(|inputs| inputs.get(field));
        let Some(value) = value else {
            return Err(HandlerError::permanent(
                "NotABatchStep",
                format!(
                    "step '{}' has no '{field}' inputs: it is not a {step_type} step",
                    self.step_name
                ),
            ));
        };
        T::deserialize(value).map_err(|error| {
            HandlerError::permanent(
                "InvalidBatchInputs",
                format!("step '{}': inputs.{field}: {error}", self.step_name),
            )
        })
    }

    /// An integer field of the task context, or a permanent error.
    pub fn context_i64(&self, field: &str) -> Result<i64, HandlerError> {
        self.task_context
            .get(field)
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                HandlerError::permanent(
                    "InvalidContext",
                    format!("task context has no integer field '{field}'"),
                )
            })
    }
}

/// A handler's failure. `retryable: false` ends the step at once, whatever
/// attempts remain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct HandlerError {
    pub error_type: String,
    pub message: String,
    pub retryable: bool,
}

impl HandlerError {
    pub fn retryable(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            retryable: true,
        }
    }

    pub fn permanent(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            retryable: false,
        }
    }
}

/// A step handler. It must not hold a database transaction: it runs
/// between the claim and the result, each its own transaction.
#[async_trait]
pub trait StepHandler: Send + Sync + 'static {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError>;
}

/// Handlers by callable name (`handler.callable` in the templates).
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn StepHandler>>,
}

/// A template names a callable no handler is registered for.
#[derive(Debug, thiserror::Error)]
#[error("template {template}: step '{step}' names handler '{callable}', which this worker does not have")]
pub struct MissingHandler {
    pub template: String,
    pub step: String,
    pub callable: String,
}

impl HandlerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(
        &mut self,
        callable: impl Into<String>,
        handler: impl StepHandler,
    ) -> &mut Self {
        self.handlers.insert(callable.into(), Arc::new(handler));
        self
    }

    pub fn get(&self, callable: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(callable).cloned()
    }

    pub fn callables(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Every step of `template` has a handler here.
    pub fn check(&self, template: &TaskTemplate) -> Result<(), MissingHandler> {
        match template
            .steps
            .iter()
            .find(|s| !self.handlers.contains_key(&s.handler.callable))
        {
            Some(step) => Err(MissingHandler {
                template: template.key().to_string(),
                step: step.name.clone(),
                callable: step.handler.callable.clone(),
            }),
            None => Ok(()),
        }
    }
}
