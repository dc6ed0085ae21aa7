//! The batch worker, [`ProcessCsvBatch`]: sums its range of rows
//! ([`sum_rows`]) in chunks, saving a checkpoint between chunks when its
//! `checkpoint_every` asks for them and resuming from the last one on a
//! retry; `fail_once_at_row` in the task context makes its first attempt
//! fail there, right after a checkpoint, so the retry path runs.

use std::future::Future;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tasker_engine::worker::{BatchInputs, Checkpoint, CursorRange};
use tasker_engine::{HandlerError, StepContext, StepHandler};

use super::reader::{open_reader, parse_row, read_record};
use super::{blocking, dataset_name, ensure_dataset, overflow, RowCursor, Totals};

/// A batch worker: `{"rows", "rows_read", "start_row", "categories"}`.
pub struct ProcessCsvBatch;

#[async_trait]
impl StepHandler for ProcessCsvBatch {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        let dataset = dataset_name(step)?;
        // Only the first attempt fails on purpose, so the retry succeeds.
        let fail_at = match step.attempt {
            1 => optional_u64(&step.task_context, "fail_once_at_row", "task context")?,
            _ => None,
        };
        let every = optional_u64(&step.initialization, "checkpoint_every", "initialization")?;
        // batch() first: on a step that is not a batch worker, its error says so.
        let batch = step.batch()?;
        let checkpoint = step.checkpoint().await?;
        let job = BatchJob::new(
            dataset,
            &batch,
            checkpoint.as_ref(),
            every.unwrap_or(0),
            fail_at,
        )?;
        let name = job.dataset.clone();
        let path = blocking(move || ensure_dataset(&name)).await?;
        job.run(path, |cursor, partial| {
            step.save_checkpoint(cursor, partial)
        })
        .await
    }
}

/// Adds rows `from.row..until` to `totals`, reading from byte `from.byte`;
/// returns where the row after them starts.
pub fn sum_rows(
    path: &Path,
    dataset: &str,
    from: RowCursor,
    until: u64,
    totals: &mut Totals,
) -> Result<RowCursor, HandlerError> {
    if from.row >= until {
        return Ok(from);
    }
    // No header: the reader starts at a row, and its positions count from there.
    let mut reader = open_reader(path, dataset, from.byte)?;
    let mut record = csv::ByteRecord::new();
    let mut row = from.row;
    while row < until {
        if !read_record(&mut reader, &mut record, dataset, row)? {
            return Err(HandlerError::permanent(
                "DatasetTooShort",
                format!("dataset {dataset} ends at row {row}, before row {until}"),
            ));
        }
        let (category, price_cents, quantity) = parse_row(&record, dataset, row)?;
        totals
            .add_row(category, price_cents, quantity)
            .ok_or_else(|| overflow(format!("dataset {dataset}, row {row}")))?;
        row += 1;
    }
    let byte = from.byte + reader.position().byte();
    Ok(RowCursor { row, byte })
}

/// One attempt of a batch worker: where it starts, where it stops, and
/// when it saves checkpoints.
#[derive(Debug, Clone)]
pub(super) struct BatchJob {
    dataset: String,
    end: u64,
    at: RowCursor,
    totals: Totals,
    checkpoint_every: u64,
    fail_at: Option<u64>,
}

impl BatchJob {
    /// From the batch's range, or from `checkpoint` when an earlier
    /// attempt saved one. `fail_at` only counts inside what is left of
    /// the range.
    pub(super) fn new(
        dataset: String,
        batch: &BatchInputs,
        checkpoint: Option<&Checkpoint>,
        checkpoint_every: u64,
        fail_at: Option<u64>,
    ) -> Result<Self, HandlerError> {
        let (start, end) = (batch.cursor.start_u64()?, batch.cursor.end_u64()?);
        let (at, totals) = match checkpoint {
            Some(checkpoint) => resume(checkpoint, start, end)?,
            None => (
                RowCursor {
                    row: start,
                    byte: range_byte(&batch.cursor)?,
                },
                Totals::default(),
            ),
        };
        Ok(Self {
            fail_at: fail_at.filter(|row| (at.row..end).contains(row)),
            dataset,
            end,
            at,
            totals,
            checkpoint_every,
        })
    }

    /// Reads to the end of the range in chunks, saving a checkpoint between
    /// chunks; fails (retryably) at `fail_at` right after its checkpoint.
    pub(super) async fn run<S, F>(
        mut self,
        path: PathBuf,
        mut save: S,
    ) -> Result<Value, HandlerError>
    where
        S: FnMut(Value, Value) -> F + Send,
        F: Future<Output = Result<(), HandlerError>> + Send,
    {
        let start_row = self.at.row;
        while self.at.row < self.end {
            self = self.read_chunk(path.clone()).await?;
            if self.at.row == self.end {
                break;
            }
            let partial = serde_json::to_value(&self.totals).expect("totals serialize");
            save(json!(self.at), partial).await?;
            if self.fail_at == Some(self.at.row) {
                return Err(HandlerError::retryable(
                    "InjectedFailure",
                    format!(
                        "dataset {}: attempt 1 fails at row {} (fail_once_at_row), after its checkpoint",
                        self.dataset, self.at.row
                    ),
                ));
            }
        }
        Ok(json!({
            "rows": self.totals.rows,
            "rows_read": self.at.row - start_row,
            "start_row": start_row,
            "categories": self.totals.categories,
        }))
    }

    /// Reads up to the next stop (range end, checkpoint or failure row) off
    /// the async runtime: the file reads block.
    async fn read_chunk(mut self, path: PathBuf) -> Result<Self, HandlerError> {
        let mut stop = self.end;
        if self.checkpoint_every > 0 {
            stop = stop.min(self.at.row + self.checkpoint_every);
        }
        if let Some(row) = self.fail_at.filter(|row| *row >= self.at.row) {
            stop = stop.min(row);
        }
        blocking(move || {
            self.at = sum_rows(&path, &self.dataset, self.at, stop, &mut self.totals)?;
            Ok(self)
        })
        .await
    }
}

/// Where a checkpoint says to resume, checked against the range.
fn resume(
    checkpoint: &Checkpoint,
    start: u64,
    end: u64,
) -> Result<(RowCursor, Totals), HandlerError> {
    let invalid = |what: String| {
        HandlerError::permanent(
            "InvalidCheckpoint",
            format!(
                "checkpoint {} (attempt {}): {what}",
                checkpoint.sequence, checkpoint.attempt
            ),
        )
    };
    let at = RowCursor::deserialize(&checkpoint.cursor)
        .map_err(|e| invalid(format!("cursor {}: {e}", checkpoint.cursor)))?;
    let totals =
        Totals::deserialize(&checkpoint.partial).map_err(|e| invalid(format!("partial: {e}")))?;
    if !(start..=end).contains(&at.row) || totals.rows != at.row - start {
        return Err(invalid(format!(
            "row {} with {} rows summed does not fit the range {start}..{end}",
            at.row, totals.rows
        )));
    }
    Ok((at, totals))
}

pub(super) fn range_byte(range: &CursorRange) -> Result<u64, HandlerError> {
    range
        .extra
        .get("byte")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            HandlerError::permanent(
                "InvalidBatchInputs",
                format!(
                    "the range {}..{} has no integer 'byte' offset",
                    range.start, range.end
                ),
            )
        })
}

/// An optional non-negative integer field (absent or null: None).
fn optional_u64(object: &Value, field: &str, what: &str) -> Result<Option<u64>, HandlerError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            HandlerError::permanent(
                "InvalidContext",
                format!("{what} field '{field}' is {value}, not a non-negative integer"),
            )
        }),
    }
}
