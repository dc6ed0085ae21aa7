//! Task templates: the YAML description of a workflow (a DAG of steps).
//!
//! Field names follow Tasker's task templates:
//!
//! ```yaml
//! name: linear_workflow            # required, [a-z0-9_]+
//! namespace_name: linear           # required, [a-z0-9_]+, at most 30 characters
//! version: "1.0.0"                 # required, major.minor.patch (digits)
//! description: "..."               # optional
//! steps:                           # required, non-empty
//!   - name: step_1                 # required, unique, [a-z0-9_]+
//!     description: ...             # optional
//!     type: standard               # standard | decision | batchable | batch_worker | deferred_convergence
//!     handler:
//!       callable: linear.square    # required, non-empty
//!       initialization: {}         # optional JSON object
//!     dependencies: [step_0]       # optional
//!     retry:                       # optional
//!       retryable: true
//!       max_attempts: 3
//!       backoff: exponential       # exponential | linear | fixed
//!       backoff_base_ms: 1000
//!       max_backoff_ms: 30000
//!     timeout_seconds: 30
//! ```
//!
//! Unknown fields are refused, so typos are caught at load time. Missing
//! required fields are reported by [`TaskTemplate::validate`] (together with
//! every other problem of the template) rather than by the YAML parser, so one
//! load reports all that is wrong with a template.
//!
//! The module is split by concern: [`TaskTemplate`] and the other model types
//! (`model.rs`), loading from YAML (`load.rs`), validation (`validate.rs`),
//! the dependency graph and cycle search (`graph.rs`) and the batch step
//! rules (`batch.rs`).

use std::path::PathBuf;

mod batch;
mod graph;
mod load;
mod model;
mod validate;

pub use batch::{worker_step_name, BatchConfig, MAX_BATCHES};
pub use load::load_dir;
pub use model::{
    BackoffKind, HandlerSpec, RetryPolicy, StepTemplate, StepType, TaskTemplate, TemplateKey,
};
pub use validate::MAX_NAMESPACE_LEN;

/// Why a template could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Reading a file or a directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or does not have the template's shape (unknown
    /// field, wrong type...). `message` includes the line and column.
    #[error("{file}: cannot parse template: {message}")]
    Parse { file: String, message: String },
    /// The template parsed but is not a valid workflow; lists every problem.
    #[error("{file}: invalid template:{}", format_problems(.problems))]
    Invalid { file: String, problems: Vec<String> },
    /// Two files of one directory define the same namespace/name@version.
    #[error("template {key} is defined twice: in {first} and in {second}")]
    Duplicate {
        key: TemplateKey,
        first: String,
        second: String,
    },
}

fn format_problems(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

#[cfg(test)]
mod tests;
