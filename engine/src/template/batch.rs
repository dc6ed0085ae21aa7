//! Batch steps in a template: `batch_config` and the rules that tie a
//! `batchable` step, its `batch_worker` and its `deferred_convergence`
//! together.
//!
//! ```yaml
//! - name: analyze
//!   type: batchable                 # decides the batches at run time
//!   handler: {callable: batch.analyze}
//!   batch_config: {batch_size: 200, parallelism: 5, cursor_field: row}
//! - name: process_rows
//!   type: batch_worker              # the template of every batch's step,
//!   dependencies: [analyze]         # created as process_rows_000, _001, ...
//!   handler: {callable: batch.process}
//! - name: aggregate
//!   type: deferred_convergence      # runs once, after every batch
//!   dependencies: [process_rows]
//!   handler: {callable: batch.aggregate}
//! ```

use serde::{Deserialize, Serialize};

use super::validate::step_label;
use super::{StepTemplate, StepType, TaskTemplate};

/// How a batchable step's work is cut and run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Items per batch when the handler gives a total (>= 1).
    #[serde(default)]
    pub batch_size: u64,
    /// How many of the task's batch workers may run at once (>= 1); the
    /// others wait, so one large batch cannot take every worker slot.
    #[serde(default)]
    pub parallelism: u32,
    /// What the cursor counts (a column, a row number), told to workers.
    #[serde(default)]
    pub cursor_field: String,
}

/// Most batches one batchable step may make (tasker.create_batches
/// refuses more, naming the step).
pub const MAX_BATCHES: u32 = 10_000;

/// The name of batch `index` of batch worker template `worker`.
pub fn worker_step_name(worker: &str, index: u32) -> String {
    format!("{worker}_{index:03}")
}

impl TaskTemplate {
    /// The batch rules: every problem, each naming its step.
    pub(super) fn check_batches(&self, problems: &mut Vec<String>) {
        // Most templates have no batch steps: nothing below can fail for
        // them, and the checks are quadratic in the steps.
        let batch_step = |s: &StepTemplate| {
            s.batch_config.is_some()
                || matches!(
                    s.step_type,
                    StepType::Batchable | StepType::BatchWorker | StepType::DeferredConvergence
                )
        };
        if !self.steps.iter().any(batch_step) {
            return;
        }
        for (i, step) in self.steps.iter().enumerate() {
            let label = step_label(i, step);
            let parents: Vec<StepType> = step
                .dependencies
                .iter()
                .filter_map(|d| self.step(d))
                .map(|p| p.step_type)
                .collect();
            let children: Vec<StepType> = if step.name.is_empty() {
                Vec::new()
            } else {
                self.dependents(&step.name)
                    .iter()
                    .map(|c| c.step_type)
                    .collect()
            };
            let count =
                |types: &[StepType], kind: StepType| types.iter().filter(|t| **t == kind).count();
            match (step.step_type, &step.batch_config) {
                (StepType::Batchable, None) => problems.push(format!(
                    "{label}: a batchable step needs batch_config {{batch_size, parallelism, cursor_field}}"
                )),
                (StepType::Batchable, Some(config)) => check_config(&label, config, problems),
                (other, Some(_)) => problems.push(format!(
                    "{label}: batch_config only applies to batchable steps, this one is {other}"
                )),
                _ => {}
            }
            match step.step_type {
                StepType::Batchable if count(&children, StepType::BatchWorker) != 1 => {
                    problems.push(format!(
                        "{label}: a batchable step needs exactly one batch_worker step depending on it, has {}",
                        count(&children, StepType::BatchWorker)
                    ))
                }
                StepType::BatchWorker => {
                    if parents.len() != 1 || parents[0] != StepType::Batchable {
                        problems.push(format!(
                            "{label}: a batch_worker needs exactly one dependency, its batchable step; it depends on [{}]",
                            step.dependencies.join(", ")
                        ));
                    }
                    if count(&children, StepType::DeferredConvergence) == 0 {
                        problems.push(format!(
                            "{label}: a batch_worker needs a deferred_convergence step depending on it, to collect its batches"
                        ));
                    }
                    if children.len() > count(&children, StepType::DeferredConvergence) {
                        problems.push(format!(
                            "{label}: only deferred_convergence steps can depend on a batch_worker (its batches do not exist until run time)"
                        ));
                    }
                }
                StepType::DeferredConvergence if count(&parents, StepType::BatchWorker) != 1 => {
                    problems.push(format!(
                        "{label}: a deferred_convergence step needs exactly one batch_worker among its dependencies, has {}",
                        count(&parents, StepType::BatchWorker)
                    ))
                }
                _ => {}
            }
            self.check_worker_name_clash(&label, &step.name, problems);
        }
    }

    /// A step named like one of a batch worker's batches (`<worker>_001`)
    /// would collide with it when the batches are created.
    fn check_worker_name_clash(&self, label: &str, name: &str, problems: &mut Vec<String>) {
        for worker in self
            .steps
            .iter()
            .filter(|s| s.step_type == StepType::BatchWorker)
        {
            let Some(suffix) = name.strip_prefix(&format!("{}_", worker.name)) else {
                continue;
            };
            if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!(
                    "{label}: the name is taken by the batches of batch_worker '{}' ({}, {}, ...)",
                    worker.name,
                    worker_step_name(&worker.name, 0),
                    worker_step_name(&worker.name, 1)
                ));
            }
        }
    }
}

fn check_config(label: &str, config: &BatchConfig, problems: &mut Vec<String>) {
    if config.batch_size == 0 {
        problems.push(format!(
            "{label}: batch_config.batch_size must be at least 1 (missing or 0)"
        ));
    }
    if config.parallelism == 0 {
        problems.push(format!(
            "{label}: batch_config.parallelism must be at least 1 (missing or 0)"
        ));
    }
    if config.cursor_field.trim().is_empty() {
        problems.push(format!(
            "{label}: batch_config.cursor_field is missing or empty"
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::template::TemplateError;

    fn problems(yaml: &str) -> Vec<String> {
        let text = format!("name: t\nnamespace_name: ns\nversion: \"1.0.0\"\nsteps:\n{yaml}");
        match TaskTemplate::from_yaml_str(&text, "batch.yaml") {
            Ok(_) => Vec::new(),
            Err(TemplateError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("{other}"),
        }
    }

    const GOOD: &str = concat!(
        "  - {name: analyze, type: batchable, handler: {callable: x},\n",
        "     batch_config: {batch_size: 200, parallelism: 5, cursor_field: row}}\n",
        "  - {name: rows, type: batch_worker, handler: {callable: x}, dependencies: [analyze]}\n",
        "  - {name: total, type: deferred_convergence, handler: {callable: x}, dependencies: [rows]}\n",
    );

    #[test]
    fn a_batch_template_loads() {
        assert_eq!(problems(GOOD), Vec::<String>::new());
        let text = format!("name: t\nnamespace_name: ns\nversion: \"1.0.0\"\nsteps:\n{GOOD}");
        let template = TaskTemplate::from_yaml_str(&text, "batch.yaml").unwrap();
        let config = template
            .step("analyze")
            .unwrap()
            .batch_config
            .clone()
            .unwrap();
        assert_eq!((config.batch_size, config.parallelism), (200, 5));
        assert_eq!(config.cursor_field, "row");
    }

    #[test]
    fn the_bad_fixture_names_file_and_every_step() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/testdata/bad_templates/bad_batch.yaml");
        let message = TaskTemplate::load_file(&path).unwrap_err().to_string();
        for expected in [
            "bad_batch.yaml",
            "step 'split': batch_config.batch_size must be at least 1",
            "step 'split': batch_config.parallelism must be at least 1",
            "step 'rows': a batch_worker needs exactly one dependency, its batchable step; it depends on [split, start]",
            "step 'rows': only deferred_convergence steps can depend on a batch_worker",
            "step 'total': a deferred_convergence step needs exactly one batch_worker among its dependencies, has 0",
            "step 'rows_007': the name is taken by the batches of batch_worker 'rows'",
        ] {
            assert!(message.contains(expected), "expected {expected:?} in:\n{message}");
        }
    }

    #[test]
    fn batchable_steps_need_their_config_and_one_worker() {
        let found = problems(concat!(
            "  - {name: a, type: batchable, handler: {callable: x}}\n",
            "  - {name: b, handler: {callable: x}, dependencies: [a],\n",
            "     batch_config: {batch_size: 1, parallelism: 1, cursor_field: id}}\n",
        ));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("step 'a': a batchable step needs batch_config"));
        assert!(found[1].contains("step 'a': a batchable step needs exactly one batch_worker"));
        assert!(found[2].contains("step 'b': batch_config only applies to batchable steps"));
    }

    #[test]
    fn a_worker_without_convergence_is_refused() {
        let found = problems(concat!(
            "  - {name: a, type: batchable, handler: {callable: x},\n",
            "     batch_config: {batch_size: 1, parallelism: 1, cursor_field: id}}\n",
            "  - {name: w, type: batch_worker, handler: {callable: x}, dependencies: [a]}\n",
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("step 'w': a batch_worker needs a deferred_convergence step"));
    }

    #[test]
    fn worker_names_are_zero_padded() {
        assert_eq!(worker_step_name("rows", 7), "rows_007");
        assert_eq!(worker_step_name("rows", 1234), "rows_1234");
    }
}
