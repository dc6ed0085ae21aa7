//! The batchable step, [`AnalyzeCsv`]: counts the dataset's rows and cuts
//! them into ranges of `batch_size` rows, each carrying the byte offset
//! of its first row ([`cut_ranges`]).

use std::path::Path;

use async_trait::async_trait;
use serde_json::{json, Value};
use tasker_engine::worker::{Batches, CursorRange};
use tasker_engine::{HandlerError, StepContext, StepHandler};

use super::reader::{check_header, open_reader, read_record};
use super::{blocking, dataset_name, ensure_dataset};

/// The batchable step: `{"dataset", "rows", "batches": {"ranges": [{start,
/// end, byte}, ...]}}`, or `{"none": ...}` for a file without rows.
pub struct AnalyzeCsv;

#[async_trait]
impl StepHandler for AnalyzeCsv {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        let dataset = dataset_name(step)?;
        let batch_size = step.batch_config()?.batch_size;
        let name = dataset.clone();
        let (rows, ranges) = blocking(move || {
            let path = ensure_dataset(&name)?;
            cut_ranges(&path, &name, batch_size)
        })
        .await?;
        let batches = if ranges.is_empty() {
            Batches::None(format!("dataset {dataset} has no rows"))
        } else {
            Batches::Ranges(ranges)
        };
        Ok(batches.into_result(json!({"dataset": dataset, "rows": rows})))
    }
}

/// Counts the data rows of `path` and cuts them into ranges of
/// `batch_size` rows; each range's `byte` is where its first row starts.
pub fn cut_ranges(
    path: &Path,
    dataset: &str,
    batch_size: u64,
) -> Result<(u64, Vec<CursorRange>), HandlerError> {
    if batch_size == 0 {
        return Err(HandlerError::permanent(
            "InvalidBatchConfig",
            "batch_size is 0",
        ));
    }
    let mut reader = open_reader(path, dataset, 0)?;
    check_header(&mut reader, dataset)?;
    let mut record = csv::ByteRecord::new();
    let (mut rows, mut starts) = (0u64, Vec::new());
    while read_record(&mut reader, &mut record, dataset, rows)? {
        if rows % batch_size == 0 {
            let position = record.position().expect("the reader sets record positions");
            starts.push(position.byte());
        }
        rows += 1;
    }
    let ranges = starts.into_iter().zip(0u64..).map(|(byte, k)| {
        let start = k * batch_size;
        let mut range = CursorRange::new(start, (start + batch_size).min(rows));
        range.extra.insert("byte".into(), byte.into());
        range
    });
    Ok((rows, ranges.collect()))
}
