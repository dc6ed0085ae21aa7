//! Square, multiply, sum and increment: the handlers of the linear,
//! diamond, complex_dag, hierarchical_tree, chain and fan-out scenarios.

use async_trait::async_trait;
use serde_json::Value;
use tasker_engine::{HandlerError, StepContext, StepHandler};

/// The input of a one-input step: the task's `even_number` for a root
/// step, otherwise its single parent's result.
fn single_input(step: &StepContext) -> Result<u64, HandlerError> {
    match step.dependency_results.len() {
        0 => step.context_i64("even_number").and_then(|n| {
            u64::try_from(n).map_err(|_| {
                HandlerError::permanent("InvalidContext", format!("even_number {n} is negative"))
            })
        }),
        1 => as_u64(
            step,
            step.dependency_results.values().next().expect("one result"),
        ),
        n => Err(HandlerError::permanent(
            "InvalidDependencies",
            format!("step '{}' expects one parent, has {n}", step.step_name),
        )),
    }
}

fn as_u64(step: &StepContext, value: &Value) -> Result<u64, HandlerError> {
    value.as_u64().ok_or_else(|| {
        HandlerError::permanent(
            "InvalidDependencies",
            format!(
                "step '{}': parent result {value} is not a non-negative integer",
                step.step_name
            ),
        )
    })
}

/// Parents' results in name order (so the arithmetic is reproducible).
fn all_inputs(step: &StepContext) -> Result<Vec<u64>, HandlerError> {
    let mut names: Vec<&String> = step.dependency_results.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| as_u64(step, &step.dependency_results[name]))
        .collect()
}

fn overflow(step: &StepContext) -> HandlerError {
    HandlerError::permanent(
        "ArithmeticOverflow",
        format!("step '{}': result does not fit in 64 bits", step.step_name),
    )
}

/// input².
pub struct Square;

#[async_trait]
impl StepHandler for Square {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        let n = single_input(step)?;
        n.checked_mul(n)
            .map(Value::from)
            .ok_or_else(|| overflow(step))
    }
}

/// input + 1 (a long chain whose result stays small).
pub struct Increment;

#[async_trait]
impl StepHandler for Increment {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        single_input(step)?
            .checked_add(1)
            .map(Value::from)
            .ok_or_else(|| overflow(step))
    }
}

/// The product of all parents' results.
pub struct Multiply;

#[async_trait]
impl StepHandler for Multiply {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        all_inputs(step)?
            .into_iter()
            .try_fold(1u64, u64::checked_mul)
            .map(Value::from)
            .ok_or_else(|| overflow(step))
    }
}

/// The sum of all parents' results.
pub struct Sum;

#[async_trait]
impl StepHandler for Sum {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        all_inputs(step)?
            .into_iter()
            .try_fold(0u64, u64::checked_add)
            .map(Value::from)
            .ok_or_else(|| overflow(step))
    }
}
