//! Batch steps as their handlers see them.
//!
//! A `batchable` step's handler decides how its work is cut: it returns its
//! result with a `batches` field ([`Batches`]). Orchestration then creates
//! one `batch_worker` step per batch, in the same transaction that records
//! the decision, and the `deferred_convergence` step runs once every batch
//! worker is complete. A batch worker reads which batch it is and its cursor
//! range with [`StepContext::batch`](super::StepContext::batch), may save
//! its progress with
//! [`StepContext::save_checkpoint`](super::StepContext::save_checkpoint),
//! and on a retry reads the last checkpoint with
//! [`StepContext::checkpoint`](super::StepContext::checkpoint). The
//! convergence step reads the workers' results in batch order with
//! [`StepContext::batch_results`](super::StepContext::batch_results).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::HandlerError;

/// The field of a batchable step's result that holds its [`Batches`].
pub const BATCHES_FIELD: &str = "batches";

/// What a batchable step decided. In its result it is the `batches` field:
/// `{"total": 1000}`, `{"ranges": [{"start": 0, "end": 200}, ...]}` or
/// `{"none": "why"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batches {
    /// Items `0..total`: the engine cuts them into ranges of the step's
    /// `batch_config.batch_size`.
    Total(u64),
    /// One batch per range, in this order.
    Ranges(Vec<CursorRange>),
    /// Nothing to do: the convergence step runs at once, with no batches.
    /// The reason is kept in its inputs.
    None(String),
}

impl Batches {
    /// `result` (an object; anything else is dropped) with this decision
    /// added under `batches`: what a batchable handler returns.
    pub fn into_result(self, result: Value) -> Value {
        let mut object = match result {
            Value::Object(object) => object,
            _ => Map::new(),
        };
        let batches = serde_json::to_value(self).expect("batches serialize");
        object.insert(BATCHES_FIELD.to_string(), batches);
        Value::Object(object)
    }
}

/// One batch's part of the work: from `start` (inclusive) to `end`
/// (exclusive) of the step's `cursor_field`. Anything else the batchable
/// step puts in a range (a byte offset, a file name) reaches the worker in
/// `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorRange {
    pub start: Value,
    pub end: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CursorRange {
    /// The range `start..end` of integer positions.
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start: start.into(),
            end: end.into(),
            extra: Map::new(),
        }
    }

    /// `start` as an integer, or a permanent error naming the field.
    pub fn start_u64(&self) -> Result<u64, HandlerError> {
        as_position("start", &self.start)
    }

    /// `end` as an integer, or a permanent error naming the field.
    pub fn end_u64(&self) -> Result<u64, HandlerError> {
        as_position("end", &self.end)
    }
}

fn as_position(field: &str, value: &Value) -> Result<u64, HandlerError> {
    value.as_u64().ok_or_else(|| {
        HandlerError::permanent(
            "InvalidBatchInputs",
            format!("cursor {field} is {value}, not a non-negative integer"),
        )
    })
}

/// Which batch a batch worker runs: set by orchestration when it creates
/// the worker, in its inputs under `batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInputs {
    /// 0-based, in the order the batchable step gave.
    pub index: u32,
    /// How many batches the batchable step made.
    pub count: u32,
    /// The batchable step's name.
    pub batchable_step: String,
    /// From the batchable step's `batch_config`.
    pub cursor_field: String,
    pub batch_size: u64,
    pub parallelism: u32,
    pub cursor: CursorRange,
}

/// What a deferred convergence step is told about the batches: set by
/// orchestration in its inputs under `batches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceInputs {
    /// The batch worker steps, in batch order (empty for "no batches").
    pub workers: Vec<String>,
    /// Why there were no batches, when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none: Option<String>,
}

/// The last progress a batch worker saved for its step, by this attempt
/// or an earlier one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where the work got to (the next position to process).
    pub cursor: Value,
    /// The result of the work up to `cursor`.
    pub partial: Value,
    /// The attempt that saved it.
    pub attempt: u32,
    /// How many checkpoints the step has saved, this one included.
    pub sequence: u32,
}

/// Checkpoints of one claim of a step. Saving is fenced like results: only
/// while the claim's token is still the step's.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoints {
    pub pool: PgPool,
    pub claim_token: Uuid,
}

impl Checkpoints {
    pub async fn load(&self, step: Uuid) -> Result<Option<Checkpoint>, HandlerError> {
        let saved: Option<Value> = sqlx::query_scalar(
            "SELECT checkpoint FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
        )
        .bind(step)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| {
            HandlerError::retryable(
                "CheckpointFailed",
                format!("could not read the checkpoint: {error}"),
            )
        })?
        .flatten();
        saved
            .map(serde_json::from_value)
            .transpose()
            .map_err(|error| {
                HandlerError::permanent(
                    "InvalidCheckpoint",
                    format!(
                        "the step's checkpoint is not one tasker.save_checkpoint wrote: {error}"
                    ),
                )
            })
    }

    pub async fn save(
        &self,
        step: Uuid,
        cursor: &Value,
        partial: &Value,
    ) -> Result<(), HandlerError> {
        let saved: Option<bool> =
            sqlx::query_scalar("SELECT tasker.save_checkpoint($1, $2, $3, $4)")
                .bind(step)
                .bind(self.claim_token)
                .bind(cursor)
                .bind(partial)
                .fetch_one(&self.pool)
                .await
                .map_err(|error| {
                    HandlerError::retryable(
                        "CheckpointFailed",
                        format!("could not save the checkpoint: {error}"),
                    )
                })?;
        if saved == Some(true) {
            Ok(())
        } else {
            // The lease lapsed and the step was claimed again (or moved
            // on): this run's result would be refused too, so stop here.
            Err(HandlerError::permanent(
                "ClaimLost",
                "checkpoint refused: this claim of the step has lapsed".to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batches_serialize_as_documented() {
        assert_eq!(
            Batches::Total(1000).into_result(json!({"rows": 1000})),
            json!({"rows": 1000, "batches": {"total": 1000}})
        );
        let mut range = CursorRange::new(0, 200);
        range.extra.insert("byte".into(), json!(42));
        assert_eq!(
            Batches::Ranges(vec![range]).into_result(Value::Null),
            json!({"batches": {"ranges": [{"start": 0, "end": 200, "byte": 42}]}})
        );
        assert_eq!(
            Batches::None("empty file".into()).into_result(json!({})),
            json!({"batches": {"none": "empty file"}})
        );
    }

    #[test]
    fn cursor_positions_must_be_integers() {
        let range: CursorRange = serde_json::from_value(json!({"start": "a", "end": 5})).unwrap();
        assert_eq!(range.end_u64().unwrap(), 5);
        let error = range.start_u64().unwrap_err();
        assert_eq!(error.error_type, "InvalidBatchInputs");
        assert!(error.message.contains("start"), "{}", error.message);
    }
}
