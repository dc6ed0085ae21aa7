//! Validation: [`TaskTemplate::validate`] and the header and per-step checks
//! (the batch rules are in `batch.rs`, the cycle search in `graph.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::{StepTemplate, StepType, TaskTemplate, TemplateError};

/// Longest accepted `namespace_name`. The namespace becomes the queue name
/// `worker_<namespace>_queue` (13 more characters), and pgmq refuses queue
/// names longer than 47 characters.
pub const MAX_NAMESPACE_LEN: usize = 30;

impl TaskTemplate {
    /// Checks the template; run by the loaders. Reports every problem found,
    /// not only the first.
    pub fn validate(&self, source: &str) -> Result<(), TemplateError> {
        let mut problems = Vec::new();
        self.check_header(&mut problems);
        self.check_steps(&mut problems);
        self.check_batches(&mut problems);
        self.check_cycles(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::Invalid {
                file: source.to_string(),
                problems,
            })
        }
    }

    fn check_header(&self, problems: &mut Vec<String>) {
        check_name("name", &self.name, problems);
        check_name("namespace_name", &self.namespace_name, problems);
        if self.namespace_name.len() > MAX_NAMESPACE_LEN {
            problems.push(format!(
                "namespace_name '{}': longer than {MAX_NAMESPACE_LEN} characters",
                self.namespace_name
            ));
        }
        if self.version.is_empty() {
            problems.push("version: missing (required, e.g. \"1.0.0\")".to_string());
        } else if !is_valid_version(&self.version) {
            problems.push(format!(
                "version '{}': must be major.minor.patch with digits only, e.g. \"1.0.0\"",
                self.version
            ));
        }
        if self.steps.is_empty() {
            problems.push("steps: at least one step is required".to_string());
        }
        if let Some(schema) = &self.input_schema {
            // Checked against the meta-schema (a validator built once per
            // process), not compiled: compiling hashes with a random seed,
            // which made the instruction count of template parsing vary
            // by 1% from run to run.
            if let Err(error) = jsonschema::meta::validate(schema) {
                problems.push(format!("input_schema: not a valid JSON Schema: {error}"));
            }
        }
    }

    fn check_steps(&self, problems: &mut Vec<String>) {
        // Positions (1-based) of each step name, to report duplicates once.
        let mut positions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            if !step.name.is_empty() {
                positions.entry(&step.name).or_default().push(i + 1);
            }
        }
        let mut reported_duplicates = BTreeSet::new();

        for (i, step) in self.steps.iter().enumerate() {
            let label = step_label(i, step);
            if step.name.is_empty() {
                problems.push(format!("{label}: name: missing (required)"));
            } else if !is_valid_name(&step.name) {
                problems.push(format!(
                    "{label}: name: must match [a-z0-9_]+ (lowercase letters, digits, underscores)"
                ));
            }
            if let Some(at) = positions.get(step.name.as_str()) {
                if at.len() > 1 && reported_duplicates.insert(step.name.as_str()) {
                    let at: Vec<String> = at.iter().map(|p| format!("#{p}")).collect();
                    problems.push(format!(
                        "{label}: duplicate step name (steps {})",
                        at.join(", ")
                    ));
                }
            }
            if step.handler.callable.trim().is_empty() {
                problems.push(format!("{label}: handler.callable is missing or empty"));
            }
            if !step.handler.initialization.is_object() {
                problems.push(format!(
                    "{label}: handler.initialization must be a mapping (JSON object)"
                ));
            }
            let mut seen = BTreeSet::new();
            for dep in &step.dependencies {
                if !seen.insert(dep.as_str()) {
                    problems.push(format!("{label}: dependency '{dep}' is listed twice"));
                } else if *dep == step.name {
                    problems.push(format!("{label}: depends on itself"));
                } else if !positions.contains_key(dep.as_str()) {
                    problems.push(format!("{label}: depends on unknown step '{dep}'"));
                }
            }
            if step.retry.max_attempts == 0 {
                problems.push(format!("{label}: retry.max_attempts must be at least 1"));
            }
            if step.retry.max_backoff_ms < step.retry.backoff_base_ms {
                problems.push(format!(
                    "{label}: retry.max_backoff_ms ({}) must be >= retry.backoff_base_ms ({})",
                    step.retry.max_backoff_ms, step.retry.backoff_base_ms
                ));
            }
            if step.timeout_seconds == 0 {
                problems.push(format!("{label}: timeout_seconds must be at least 1"));
            }
            if step.step_type == StepType::Decision
                && !step.name.is_empty()
                && self.dependents(&step.name).is_empty()
            {
                problems.push(format!(
                    "{label}: decision step has no dependent steps to choose from"
                ));
            }
        }
    }
}

pub(super) fn step_label(index: usize, step: &StepTemplate) -> String {
    if step.name.is_empty() {
        format!("step #{}", index + 1)
    } else {
        format!("step '{}'", step.name)
    }
}

fn check_name(field: &str, value: &str, problems: &mut Vec<String>) {
    if value.is_empty() {
        problems.push(format!("{field}: missing (required)"));
    } else if !is_valid_name(value) {
        problems.push(format!(
            "{field} '{value}': must match [a-z0-9_]+ (lowercase letters, digits, underscores)"
        ));
    }
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_valid_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}
