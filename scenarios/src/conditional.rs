//! Handlers of the conditional approval scenario: a decision step routes a
//! request by amount to one of three approval paths.

use async_trait::async_trait;
use serde_json::{json, Value};
use tasker_engine::{HandlerError, StepContext, StepHandler};

fn amount(step: &StepContext) -> Result<i64, HandlerError> {
    let amount = step.context_i64("amount")?;
    if amount <= 0 {
        return Err(HandlerError::permanent(
            "InvalidContext",
            format!("amount must be positive, got {amount}"),
        ));
    }
    Ok(amount)
}

fn init_str<'a>(step: &'a StepContext, field: &str) -> Result<&'a str, HandlerError> {
    step.initialization
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            HandlerError::permanent(
                "InvalidInitialization",
                format!(
                    "step '{}' needs handler.initialization.{field}",
                    step.step_name
                ),
            )
        })
}

fn init_i64(step: &StepContext, field: &str) -> Result<i64, HandlerError> {
    step.initialization
        .get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            HandlerError::permanent(
                "InvalidInitialization",
                format!(
                    "step '{}' needs integer handler.initialization.{field}",
                    step.step_name
                ),
            )
        })
}

/// Checks the amount; its result is the amount.
pub struct Validate;

#[async_trait]
impl StepHandler for Validate {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        Ok(json!(amount(step)?))
    }
}

/// The decision: `{"next_steps": [one path]}` by amount thresholds.
pub struct Route;

#[async_trait]
impl StepHandler for Route {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        let amount = step.dependency("validate_request")?.as_i64().unwrap_or(0);
        let next = if amount <= init_i64(step, "small_max")? {
            "auto_approve"
        } else if amount <= init_i64(step, "medium_max")? {
            "manager_approval"
        } else {
            "finance_review"
        };
        Ok(json!({"next_steps": [next], "amount": amount}))
    }
}

/// `{"approved_amount": A, "approver": <initialization.approver>}`.
pub struct Approve;

#[async_trait]
impl StepHandler for Approve {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        Ok(json!({"approved_amount": amount(step)?, "approver": init_str(step, "approver")?}))
    }
}

/// `{"reviewed_amount": A, "reviewer": <initialization.reviewer>}`.
pub struct Review;

#[async_trait]
impl StepHandler for Review {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        Ok(json!({"reviewed_amount": amount(step)?, "reviewer": init_str(step, "reviewer")?}))
    }
}

/// The result of whichever approval ran (the others were skipped and have
/// no result).
pub struct Finalize;

#[async_trait]
impl StepHandler for Finalize {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        let ran: Vec<&Value> = step
            .dependency_results
            .values()
            .filter(|v| !v.is_null())
            .collect();
        match ran.as_slice() {
            [one] => Ok((*one).clone()),
            other => Err(HandlerError::permanent(
                "InvalidDependencies",
                format!(
                    "expected exactly one approval to have run, found {}",
                    other.len()
                ),
            )),
        }
    }
}
