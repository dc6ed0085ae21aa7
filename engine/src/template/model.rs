//! The template model: [`TaskTemplate`], its steps and their settings, with
//! the small lookups and computations on them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::BatchConfig;

/// Identity of a template: `namespace/name@version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateKey {
    pub namespace: String,
    pub name: String,
    pub version: String,
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.version)
    }
}

/// A workflow definition: named, versioned DAG of steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTemplate {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace_name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema the task context must satisfy; a context that fails it
    /// is refused when the task is requested (HTTP 422 naming the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub steps: Vec<StepTemplate>,
}

/// One step of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type", default)]
    pub step_type: StepType,
    #[serde(default)]
    pub handler: HandlerSpec,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u32,
    /// For a batchable step: how its work is cut and run (see [`BatchConfig`];
    /// the batch rules are in `batch.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_config: Option<BatchConfig>,
}

fn default_timeout_seconds() -> u32 {
    30
}

/// What runs a step: a registered callable and its static configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    #[serde(default)]
    pub callable: String,
    /// A JSON object (`{}` when absent or null).
    #[serde(default = "empty_object", deserialize_with = "null_as_empty_object")]
    pub initialization: serde_json::Value,
}

impl Default for HandlerSpec {
    fn default() -> Self {
        HandlerSpec {
            callable: String::new(),
            initialization: empty_object(),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn null_as_empty_object<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(if value.is_null() {
        empty_object()
    } else {
        value
    })
}

/// Kind of step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    #[default]
    Standard,
    /// Chooses at run time which of its dependent steps run; the others are
    /// skipped.
    Decision,
    /// Decides at run time how its work is cut into batches.
    Batchable,
    /// The template of one batch's step: created once per batch.
    BatchWorker,
    /// Runs once, after every batch worker is complete.
    DeferredConvergence,
}

impl StepType {
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Standard => "standard",
            StepType::Decision => "decision",
            StepType::Batchable => "batchable",
            StepType::BatchWorker => "batch_worker",
            StepType::DeferredConvergence => "deferred_convergence",
        }
    }
}

impl fmt::Display for StepType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the delay between attempts grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    #[default]
    Exponential,
    Linear,
    Fixed,
}

/// Retry settings of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub retryable: bool,
    /// Total attempts allowed, the first one included (>= 1).
    pub max_attempts: u32,
    pub backoff: BackoffKind,
    pub backoff_base_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retryable: true,
            max_attempts: 3,
            backoff: BackoffKind::Exponential,
            backoff_base_ms: 1000,
            max_backoff_ms: 30000,
        }
    }
}

impl RetryPolicy {
    /// Delay before the next attempt, after `attempt` attempts were made
    /// (1-based; 0 is treated as 1). Exponential: `base * 2^(attempt-1)`,
    /// linear: `base * attempt`, fixed: `base`; always capped at
    /// `max_backoff_ms`, and saturating rather than overflowing.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let attempt = attempt.max(1);
        let base = self.backoff_base_ms;
        let raw = match self.backoff {
            BackoffKind::Exponential => {
                let factor = 1u64.checked_shl(attempt - 1).unwrap_or(u64::MAX);
                base.saturating_mul(factor)
            }
            BackoffKind::Linear => base.saturating_mul(u64::from(attempt)),
            BackoffKind::Fixed => base,
        };
        raw.min(self.max_backoff_ms)
    }
}

impl TaskTemplate {
    /// `namespace/name@version`.
    pub fn key(&self) -> TemplateKey {
        TemplateKey {
            namespace: self.namespace_name.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }

    /// The step named `name` (the first one, should names repeat).
    pub fn step(&self, name: &str) -> Option<&StepTemplate> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Steps that list `name` among their dependencies, in declaration order.
    pub fn dependents(&self, name: &str) -> Vec<&StepTemplate> {
        self.steps
            .iter()
            .filter(|s| s.dependencies.iter().any(|d| d == name))
            .collect()
    }

    /// Steps without dependencies, in declaration order.
    pub fn root_steps(&self) -> Vec<&StepTemplate> {
        self.steps
            .iter()
            .filter(|s| s.dependencies.is_empty())
            .collect()
    }

    /// The distinct handler callables the template uses.
    pub fn callables(&self) -> BTreeSet<&str> {
        self.steps
            .iter()
            .map(|s| s.handler.callable.as_str())
            .collect()
    }
}
