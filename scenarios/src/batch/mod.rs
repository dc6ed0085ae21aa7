//! Handlers of the batch scenarios (`batch_1000_rows`, `batch_100k_rows`):
//! per-category revenue and quantity of a products CSV file (see
//! [`crate::data`]), cut into batches of rows.
//!
//! - [`AnalyzeCsv`] (batchable) counts the rows and cuts them into ranges,
//!   each carrying the byte offset of its first row, so a worker seeks
//!   straight to its rows instead of parsing the file from the top.
//! - [`ProcessCsvBatch`] (batch worker) sums its range, saving checkpoints
//!   (row and byte offset of the next row, and the sums so far) when asked,
//!   and resuming from the last one on a retry.
//! - [`AggregateTotals`] (deferred convergence) adds the workers' sums.
//!
//! Prices are summed as integer cents, so the totals are exact.
//!
//! This file holds the sums and the cursor the three steps share, and the
//! helpers their handlers share (the task's dataset, and file work off the
//! async runtime). The steps are in `analyze.rs`, `process.rs` and
//! `aggregate.rs`; reading the CSV file, which the first two do, is in
//! `reader.rs`.

mod aggregate;
mod analyze;
mod process;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasker_engine::{HandlerError, StepContext};

use crate::data::{self, DatasetError};

pub use aggregate::{aggregate, AggregateTotals};
pub use analyze::{cut_ranges, AnalyzeCsv};
pub use process::{sum_rows, ProcessCsvBatch};

/// One category's sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryTotals {
    pub revenue_cents: i64,
    pub quantity: i64,
}

/// Sums over some rows: a worker's checkpoint partial and (with more
/// fields) its result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub rows: u64,
    pub categories: BTreeMap<String, CategoryTotals>,
}

impl Totals {
    /// None if a sum would overflow (checked: the data is input).
    fn add_row(&mut self, category: &str, price_cents: i64, quantity: i64) -> Option<()> {
        // Look up by &str first: no allocation except for a new category.
        let entry = match self.categories.get_mut(category) {
            Some(entry) => entry,
            None => self.categories.entry(category.to_string()).or_default(),
        };
        entry.add(price_cents.checked_mul(quantity)?, quantity)?;
        self.rows += 1;
        Some(())
    }

    /// None if a sum would overflow.
    fn merge(&mut self, other: &Totals) -> Option<()> {
        for (category, sums) in &other.categories {
            let entry = self.categories.entry(category.clone()).or_default();
            entry.add(sums.revenue_cents, sums.quantity)?;
        }
        self.rows = self.rows.checked_add(other.rows)?;
        Some(())
    }
}

impl CategoryTotals {
    fn add(&mut self, revenue_cents: i64, quantity: i64) -> Option<()> {
        self.revenue_cents = self.revenue_cents.checked_add(revenue_cents)?;
        self.quantity = self.quantity.checked_add(quantity)?;
        Some(())
    }
}

fn overflow(what: String) -> HandlerError {
    HandlerError::permanent(
        "ArithmeticOverflow",
        format!("{what}: a sum overflows 64 bits"),
    )
}

/// A position in a dataset: the next data row (0-based) and the byte
/// offset where it starts. A worker's checkpoint cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCursor {
    pub row: u64,
    pub byte: u64,
}

fn dataset_name(step: &StepContext) -> Result<String, HandlerError> {
    let name = step.task_context.get("dataset").and_then(Value::as_str);
    name.map(str::to_string).ok_or_else(|| {
        HandlerError::permanent(
            "InvalidContext",
            "task context has no string field 'dataset'".to_string(),
        )
    })
}

fn ensure_dataset(name: &str) -> Result<PathBuf, HandlerError> {
    data::ensure_dataset(name).map_err(|error| match error {
        DatasetError::InvalidName(_) => {
            HandlerError::permanent("InvalidDataset", error.to_string())
        }
        DatasetError::Io { .. } => HandlerError::retryable("DatasetIo", error.to_string()),
    })
}

/// Runs file work on tokio's blocking pool, so a long scan does not stall
/// the worker's other steps.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HandlerError> + Send + 'static,
) -> Result<T, HandlerError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        HandlerError::permanent("HandlerPanicked", format!("file work panicked: {error}"))
    })?
}
