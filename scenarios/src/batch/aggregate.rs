//! The deferred convergence step, [`AggregateTotals`]: the batch workers'
//! sums added up ([`aggregate`]).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tasker_engine::{HandlerError, StepContext, StepHandler};

use super::{overflow, CategoryTotals, Totals};

/// The deferred convergence step: the workers' sums added up.
pub struct AggregateTotals;

#[async_trait]
impl StepHandler for AggregateTotals {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        aggregate(&step.batch_results()?)
    }
}

/// `{"rows", "batches", "categories", "revenue_cents", "quantity"}` over
/// the workers' results (all zeros for no batches).
pub fn aggregate(results: &[&Value]) -> Result<Value, HandlerError> {
    let mut totals = Totals::default();
    for (index, result) in results.iter().enumerate() {
        let batch = Totals::deserialize(*result).map_err(|error| {
            HandlerError::permanent(
                "InvalidBatchResult",
                format!("batch {index}'s result is not {{rows, categories}}: {error}"),
            )
        })?;
        totals
            .merge(&batch)
            .ok_or_else(|| overflow(format!("adding batch {index}")))?;
    }
    let mut grand = CategoryTotals::default();
    for sums in totals.categories.values() {
        grand
            .add(sums.revenue_cents, sums.quantity)
            .ok_or_else(|| overflow("the grand total".to_string()))?;
    }
    Ok(json!({
        "rows": totals.rows,
        "batches": results.len(),
        "categories": totals.categories,
        "revenue_cents": grand.revenue_cents,
        "quantity": grand.quantity,
    }))
}
