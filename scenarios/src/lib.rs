//! The benchmark scenarios: their task templates (`templates/*.yaml`) and
//! the Rust step handlers those templates name.
//!
//! Handlers do small real arithmetic on the task context
//! (`{"even_number": N}`, or `{"amount": A}` for the conditional scenario)
//! so that a finished task's result can be checked: linear gives N^16,
//! diamond N^8, complex_dag 3·N^8, hierarchical_tree N^32, chain N+16,
//! fanout 64·N^4. The batch
//! scenarios (`{"dataset": "products_<rows>"}`) sum a generated products
//! CSV file ([`data`]) by category in batches of rows ([`batch`]). Each
//! template file documents its steps at the top.

mod arithmetic;
pub mod batch;
pub mod chaos;
mod conditional;
pub mod data;

use std::path::PathBuf;

use tasker_engine::template::{self, TaskTemplate, TemplateError};
use tasker_engine::HandlerRegistry;

pub use arithmetic::{Increment, Multiply, Square, Sum};
pub use batch::{AggregateTotals, AnalyzeCsv, ProcessCsvBatch};
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
        .register("chain.increment", Increment)
        .register("fanout.square", Square)
        .register("fanout.sum", Sum)
        .register("conditional.validate", Validate)
        .register("conditional.route", Route)
        .register("conditional.approve", Approve)
        .register("conditional.review", Review)
        .register("conditional.finalize", Finalize)
        .register("batch.analyze_csv", AnalyzeCsv)
        .register("batch.process_csv_batch", ProcessCsvBatch)
        .register("batch.aggregate_totals", AggregateTotals);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_template_has_its_handlers() {
        let registry = registry();
        let templates = templates().expect("scenario templates load");
        assert_eq!(templates.len(), 9);
        for template in &templates {
            registry.check(template).expect("handlers registered");
        }
    }

    #[test]
    fn batch_templates_take_a_products_dataset() {
        use serde_json::json;
        for name in ["batch_1000_rows", "batch_100k_rows"] {
            let template = template(name).expect("batch template");
            let schema = template.input_schema.expect("input_schema");
            let validator = jsonschema::validator_for(&schema).expect("valid schema");
            for good in [
                json!({"dataset": "products_1000"}),
                json!({"dataset": "products_100000", "fail_once_at_row": 250}),
            ] {
                assert!(validator.is_valid(&good), "{name}: {good}");
            }
            for bad in [
                json!({}),
                json!({"dataset": "orders_10"}),
                json!({"dataset": "products_10; rm"}),
                json!({"dataset": "products_10", "fail_once_at_row": "5"}),
            ] {
                assert!(!validator.is_valid(&bad), "{name}: {bad}");
            }
        }
    }
}
