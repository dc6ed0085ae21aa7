//! Step handlers: the trait a handler implements, what it is given, how it
//! fails, and the registry that finds a handler by its callable name.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::template::TaskTemplate;

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
