//! The benchmark scenarios: their task templates (`templates/*.yaml`) and
//! the Rust step handlers those templates name.
//!
//! Handlers do small real arithmetic on the task context
//! (`{"even_number": N}`, or `{"amount": A}` for the conditional scenario)
//! so that a finished task's result can be checked: linear gives N^16,
//! diamond N^8, complex_dag 3·N^8, hierarchical_tree N^32. Each template
//! file documents its steps' arithmetic at the top.

mod arithmetic;
pub mod chaos;
mod conditional;

use std::path::PathBuf;

use tasker_engine::template::{self, TaskTemplate, TemplateError};
use tasker_engine::HandlerRegistry;

pub use arithmetic::{Multiply, Square, Sum};
pub use conditional::{Approve, Finalize, Review, Route, Validate};

/// Where the scenario templates are.
pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// All scenario templates, validated.
pub fn templates() -> Result<Vec<TaskTemplate>, TemplateError> {
    template::load_dir(&templates_dir())
}

/// One scenario template by its name (e.g. `linear_workflow`).
pub fn template(name: &str) -> Option<TaskTemplate> {
    templates().ok()?.into_iter().find(|t| t.name == name)
}

/// Every handler the scenario templates name, and each of them again
/// under the fault campaign's wrapper (`chaos.<callable>`, see [`chaos`]).
pub fn registry() -> HandlerRegistry {
    let mut registry = scenario_registry();
    let callables: Vec<String> = registry.callables().map(str::to_string).collect();
    for callable in callables {
        let inner = registry.get(&callable).expect("just listed");
        registry.register(
            format!("{}{callable}", chaos::CALLABLE_PREFIX),
            chaos::Chaos { inner },
        );
    }
    registry
}

fn scenario_registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    for namespace in ["linear", "diamond", "complex_dag", "tree"] {
        registry.register(format!("{namespace}.square"), Square);
        registry.register(format!("{namespace}.multiply"), Multiply);
    }
    registry
        .register("complex_dag.sum", Sum)
        .register("conditional.validate", Validate)
        .register("conditional.route", Route)
        .register("conditional.approve", Approve)
        .register("conditional.review", Review)
        .register("conditional.finalize", Finalize);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_template_has_its_handlers() {
        let registry = registry();
        let templates = templates().expect("scenario templates load");
        assert_eq!(templates.len(), 5);
        for template in &templates {
            registry.check(template).expect("handlers registered");
        }
    }
}
