//! The campaign's workflows: the scenario shapes (linear, diamond, complex
//! DAG, tree) in namespace `chaos`, every handler wrapped by the scenario
//! crate's chaos handler (runs recorded, faults on request), with a short
//! timeout so a lapsed lease is recovered in seconds.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use tasker_engine::{TaskRequest, TaskTemplate};
use tasker_scenarios::chaos::CALLABLE_PREFIX;

use super::check::Expect;

pub const NAMESPACE: &str = "chaos";

/// The even number every task squares its way up from.
const N: u64 = 2;

/// A campaign shape: its template and the final step's expected result.
#[derive(Debug, Clone)]
pub struct Shape {
    pub template: TaskTemplate,
    /// The step no other step depends on: its result is the task's.
    pub sink: String,
    pub expected: Value,
}

impl Shape {
    /// The `id`th task of this shape, with its faults in `chaos`.
    pub fn request(&self, id: u64, chaos: Value) -> TaskRequest {
        let t = &self.template;
        TaskRequest::new(&t.namespace_name, &t.name, &t.version, context(id, chaos))
    }

    /// Complete, with the shape's result.
    pub fn completes(&self) -> Expect {
        Expect::Complete {
            sink: self.sink.clone(),
            result: self.expected.clone(),
        }
    }
}

/// The shapes, with every step's `timeout_seconds` and `max_attempts` set.
pub fn shapes(timeout_seconds: u32, max_attempts: u32) -> anyhow::Result<Vec<Shape>> {
    let expected = [
        ("linear_workflow", N.pow(16)),
        ("diamond_workflow", N.pow(8)),
        ("complex_dag_workflow", 3 * N.pow(8)),
        ("hierarchical_tree_workflow", N.pow(32)),
    ];
    expected
        .into_iter()
        .map(|(name, result)| {
            let mut template = tasker_scenarios::template(name)
                .with_context(|| format!("scenario template {name}"))?;
            template.name = format!("chaos_{name}");
            template.namespace_name = NAMESPACE.to_string();
            for step in &mut template.steps {
                step.handler.callable = format!("{CALLABLE_PREFIX}{}", step.handler.callable);
                step.timeout_seconds = timeout_seconds;
                step.retry.max_attempts = max_attempts;
                step.retry.retryable = true;
            }
            let sink = template
                .steps
                .iter()
                .find(|s| template.dependents(&s.name).is_empty())
                .map(|s| s.name.clone())
                .context("a scenario without a final step")?;
            Ok(Shape {
                template,
                sink,
                expected: json!(result),
            })
        })
        .collect()
}

/// Writes the templates as files the engine's processes load (JSON is
/// YAML).
pub fn write(shapes: &[Shape], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for shape in shapes {
        let path = dir.join(format!("{}.yaml", shape.template.name));
        let text = serde_json::to_string_pretty(&shape.template)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The context of the `id`th task: unique (a task's identity includes its
/// context) and carrying its faults for the chaos handler.
fn context(id: u64, chaos: Value) -> Value {
    json!({"even_number": N, "chaos_task": id, "chaos": chaos})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_keep_their_dags_and_wrap_their_handlers() {
        let shapes = shapes(3, 6).unwrap();
        assert_eq!(shapes.len(), 4);
        let sinks: Vec<&str> = shapes.iter().map(|s| s.sink.as_str()).collect();
        assert_eq!(
            sinks,
            [
                "linear_step_4",
                "diamond_end",
                "dag_finalize",
                "tree_final_convergence"
            ]
        );
        for shape in &shapes {
            shape.template.validate("chaos").unwrap();
            tasker_scenarios::registry().check(&shape.template).unwrap();
            assert!(shape.template.steps.iter().all(|s| s.timeout_seconds == 3
                && s.retry.max_attempts == 6
                && s.handler.callable.starts_with("chaos.")));
        }
    }
}
