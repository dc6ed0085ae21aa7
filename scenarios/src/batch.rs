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

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tasker_engine::worker::{BatchInputs, Batches, Checkpoint, CursorRange};
use tasker_engine::{HandlerError, StepContext, StepHandler};

use crate::data::{self, DatasetError};

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

/// A reader of `path` from byte `offset`; at 0 it reads the header as a
/// record (the caller checks it).
fn open_reader(path: &Path, dataset: &str, offset: u64) -> Result<csv::Reader<File>, HandlerError> {
    let io = |error: std::io::Error| {
        HandlerError::retryable(
            "DatasetIo",
            format!("dataset {dataset}: {}: {error}", path.display()),
        )
    };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(file))
}

fn check_header(reader: &mut csv::Reader<File>, dataset: &str) -> Result<(), HandlerError> {
    let mut header = csv::ByteRecord::new();
    let found = read_record(reader, &mut header, dataset, 0)?;
    let expected: Vec<&str> = data::HEADER.split(',').collect();
    if found && header.iter().eq(expected.iter().map(|f| f.as_bytes())) {
        return Ok(());
    }
    Err(HandlerError::permanent(
        "BadHeader",
        format!(
            "dataset {dataset}: the header is not '{}' (found '{}')",
            data::HEADER,
            header
                .iter()
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(",")
        ),
    ))
}

/// The next record, if any. `row` (the data row being read) is only for
/// the error message.
fn read_record(
    reader: &mut csv::Reader<File>,
    record: &mut csv::ByteRecord,
    dataset: &str,
    row: u64,
) -> Result<bool, HandlerError> {
    reader.read_byte_record(record).map_err(|error| {
        let message = format!("dataset {dataset}, row {row}: {error}");
        match error.kind() {
            csv::ErrorKind::Io(_) => HandlerError::retryable("DatasetIo", message),
            _ => HandlerError::permanent("BadRow", message),
        }
    })
}

/// (category, price in cents, quantity) of a data row.
fn parse_row<'r>(
    record: &'r csv::ByteRecord,
    dataset: &str,
    row: u64,
) -> Result<(&'r str, i64, i64), HandlerError> {
    let bad = |field: &str, problem: String| {
        HandlerError::permanent(
            "BadRow",
            format!(
                "dataset {dataset}, row {row} (line {}): {field} {problem}",
                row + 2
            ),
        )
    };
    let field = |index: usize, name: &str| {
        record
            .get(index)
            .ok_or_else(|| bad(name, format!("is missing ({} fields)", record.len())))
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let category = field(1, "category")?;
    let category = std::str::from_utf8(category)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            bad(
                "category",
                format!("'{}' is empty or not UTF-8", text(category)),
            )
        })?;
    let price = field(2, "price")?;
    let price_cents = parse_cents(price).ok_or_else(|| {
        bad(
            "price",
            format!("'{}' is not a price like 12.34", text(price)),
        )
    })?;
    let quantity = field(3, "quantity")?;
    let quantity = parse_digits(quantity, 9).ok_or_else(|| {
        bad(
            "quantity",
            format!("'{}' is not a whole number", text(quantity)),
        )
    })?;
    Ok((category, price_cents, quantity))
}

/// `12.34`, `12.3` or `12` as cents; no sign, at most 2 decimals.
fn parse_cents(text: &[u8]) -> Option<i64> {
    let (units, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b"0"[..]),
    };
    let cents = match fraction.len() {
        1 => parse_digits(fraction, 1)? * 10,
        2 => parse_digits(fraction, 2)?,
        _ => return None,
    };
    Some(parse_digits(units, 12)? * 100 + cents)
}

/// 1 to `max_len` ASCII digits (at most 12, so the number fits an i64
/// even in cents).
fn parse_digits(text: &[u8], max_len: usize) -> Option<i64> {
    if text.is_empty() || text.len() > max_len || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, &b| n * 10 + i64::from(b - b'0')))
}

/// One attempt of a batch worker: where it starts, where it stops, and
/// when it saves checkpoints.
#[derive(Debug, Clone)]
struct BatchJob {
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
    fn new(
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
    async fn run<S, F>(mut self, path: PathBuf, mut save: S) -> Result<Value, HandlerError>
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

fn range_byte(range: &CursorRange) -> Result<u64, HandlerError> {
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

fn dataset_name(step: &StepContext) -> Result<String, HandlerError> {
    let name = step.task_context.get("dataset").and_then(Value::as_str);
    name.map(str::to_string).ok_or_else(|| {
        HandlerError::permanent(
            "InvalidContext",
            "task context has no string field 'dataset'".to_string(),
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const DATASET: &str = "products_1000";

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/products_1000.csv")
    }

    /// A dataset file with the products header and `body`.
    fn small_csv(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.csv");
        std::fs::write(&path, format!("{}\n{body}", data::HEADER)).unwrap();
        (dir, path)
    }

    fn header_end() -> u64 {
        data::HEADER.len() as u64 + 1
    }

    fn bounds(ranges: &[CursorRange]) -> Vec<(u64, u64)> {
        let bound = |r: &CursorRange| (r.start_u64().unwrap(), r.end_u64().unwrap());
        ranges.iter().map(bound).collect()
    }

    fn inputs(range: &CursorRange) -> BatchInputs {
        BatchInputs {
            index: 0,
            count: 1,
            batchable_step: "analyze_csv".into(),
            cursor_field: "row".into(),
            batch_size: 200,
            parallelism: 5,
            cursor: range.clone(),
        }
    }

    /// One attempt of a worker on `range`; its result and the checkpoints
    /// it saved.
    async fn attempt(
        path: &Path,
        range: &CursorRange,
        checkpoint: Option<&Checkpoint>,
        every: u64,
        fail_at: Option<u64>,
    ) -> (Result<Value, HandlerError>, Vec<(Value, Value)>) {
        let job =
            BatchJob::new(DATASET.into(), &inputs(range), checkpoint, every, fail_at).unwrap();
        let mut saved = Vec::new();
        let result = job
            .run(path.to_path_buf(), |cursor, partial| {
                saved.push((cursor, partial));
                std::future::ready(Ok(()))
            })
            .await;
        (result, saved)
    }

    /// Every range through a worker, then the aggregate of their results.
    async fn run_all(path: &Path, batch_size: u64) -> Value {
        let (_, ranges) = cut_ranges(path, DATASET, batch_size).unwrap();
        let mut results = Vec::new();
        for range in &ranges {
            results.push(attempt(path, range, None, 0, None).await.0.unwrap());
        }
        aggregate(&results.iter().collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn prices_parse_to_exact_cents() {
        let cases = [
            ("12.34", Some(1234)),
            ("0.50", Some(50)),
            ("7.5", Some(750)),
            ("3", Some(300)),
            ("999.99", Some(99_999)),
            ("", None),
            ("1.", None),
            (".5", None),
            ("1.234", None),
            ("-1.00", None),
            ("+1.00", None),
            ("1 .00", None),
            ("1e3", None),
        ];
        for (text, cents) in cases {
            assert_eq!(parse_cents(text.as_bytes()), cents, "{text:?}");
        }
    }

    #[test]
    fn rows_sum_by_category_in_cents() {
        let (_dir, path) = small_csv("1,toys,1.50,2\n2,books,10.00,1\n3,toys,0.05,10\n");
        let mut totals = Totals::default();
        let from = RowCursor {
            row: 0,
            byte: header_end(),
        };
        let next = sum_rows(&path, "small", from, 3, &mut totals).unwrap();
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            next,
            RowCursor {
                row: 3,
                byte: file_len
            }
        );
        let expected = json!({"rows": 3, "categories": {
            "books": {"revenue_cents": 1000, "quantity": 1},
            "toys": {"revenue_cents": 350, "quantity": 12},
        }});
        assert_eq!(serde_json::to_value(&totals).unwrap(), expected);
        let (rows, ranges) = cut_ranges(&path, "small", 2).unwrap();
        assert_eq!((rows, bounds(&ranges)), (3, vec![(0, 2), (2, 3)]));
    }

    #[test]
    fn bad_rows_fail_permanently_naming_dataset_row_and_field() {
        let cases = [
            ("2,toys,abc,2", "price 'abc' is not a price"),
            ("2,toys,1.999,2", "price '1.999' is not a price"),
            ("2,toys,1.00,x", "quantity 'x' is not a whole number"),
            ("2,toys,1.00,-1", "quantity '-1' is not a whole number"),
            ("2,,1.00,1", "category '' is empty"),
        ];
        for (line, problem) in cases {
            let (_dir, path) = small_csv(&format!("1,books,1.00,1\n{line}\n"));
            let from = RowCursor {
                row: 0,
                byte: header_end(),
            };
            let error = sum_rows(&path, "small", from, 2, &mut Totals::default()).unwrap_err();
            assert_eq!(
                (error.error_type.as_str(), error.retryable),
                ("BadRow", false)
            );
            let expected = format!("dataset small, row 1 (line 3): {problem}");
            assert!(error.message.contains(&expected), "{}", error.message);
        }
        let (_dir, path) = small_csv("1,books,1.00,1\n2,toys\n");
        let from = RowCursor {
            row: 0,
            byte: header_end(),
        };
        let error = sum_rows(&path, "small", from, 2, &mut Totals::default()).unwrap_err();
        assert_eq!(error.error_type, "BadRow");
        assert!(
            error.message.contains("dataset small, row 1"),
            "{}",
            error.message
        );
        let error = sum_rows(&path, "small", from, 5, &mut Totals::default()).unwrap_err();
        assert_eq!(error.error_type, "BadRow", "{}", error.message);
    }

    #[test]
    fn a_short_file_or_a_wrong_header_is_refused() {
        let (_dir, path) = small_csv("1,books,1.00,1\n");
        let from = RowCursor {
            row: 0,
            byte: header_end(),
        };
        let error = sum_rows(&path, "small", from, 3, &mut Totals::default()).unwrap_err();
        assert_eq!(error.error_type, "DatasetTooShort");
        assert!(
            error.message.contains("ends at row 1, before row 3"),
            "{}",
            error.message
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrong.csv");
        std::fs::write(&path, "id,price,category,quantity\n1,1.00,books,1\n").unwrap();
        let error = cut_ranges(&path, "wrong", 10).unwrap_err();
        assert_eq!(error.error_type, "BadHeader");
        assert!(
            error.message.contains("found 'id,price,category,quantity'"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_file_without_rows_has_no_ranges() {
        let (_dir, path) = small_csv("");
        assert_eq!(cut_ranges(&path, "small", 200).unwrap(), (0, Vec::new()));
    }

    #[test]
    fn ranges_start_at_the_bytes_of_their_first_rows() {
        let (rows, ranges) = cut_ranges(&shipped(), DATASET, 200).unwrap();
        assert_eq!(rows, 1000);
        let expected = [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)];
        assert_eq!(bounds(&ranges), expected);
        let bytes = std::fs::read(shipped()).unwrap();
        for range in &ranges {
            let byte = range_byte(range).unwrap() as usize;
            let id = range.start_u64().unwrap() + 1;
            assert_eq!(bytes[byte - 1], b'\n', "{range:?}");
            assert!(
                bytes[byte..].starts_with(format!("{id},").as_bytes()),
                "{range:?}"
            );
        }
        let (_, uneven) = cut_ranges(&shipped(), DATASET, 300).unwrap();
        assert_eq!(
            bounds(&uneven),
            [(0, 300), (300, 600), (600, 900), (900, 1000)]
        );
    }

    /// Per-category (revenue cents, quantity) by plain string splitting:
    /// neither the csv crate nor the handlers' code.
    fn independent_totals(path: &Path) -> BTreeMap<String, (i64, i64)> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut sums = BTreeMap::new();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let (units, cents) = fields[2].split_once('.').unwrap();
            let price = units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
            let quantity: i64 = fields[3].parse().unwrap();
            let sum = sums.entry(fields[1].to_string()).or_insert((0, 0));
            *sum = (sum.0 + price * quantity, sum.1 + quantity);
        }
        sums
    }

    #[tokio::test]
    async fn batched_totals_match_an_independent_count() {
        let totals = run_all(&shipped(), 200).await;
        println!("products_1000 aggregate: {totals}");
        let expected = independent_totals(&shipped());
        let found: BTreeMap<String, CategoryTotals> =
            serde_json::from_value(totals["categories"].clone()).unwrap();
        let found: BTreeMap<String, (i64, i64)> = found
            .into_iter()
            .map(|(c, s)| (c, (s.revenue_cents, s.quantity)))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(expected.len(), data::CATEGORIES.len());
        let revenue: i64 = expected.values().map(|s| s.0).sum();
        let quantity: i64 = expected.values().map(|s| s.1).sum();
        assert_eq!(totals["revenue_cents"], revenue);
        assert_eq!(totals["quantity"], quantity);
        assert_eq!(
            (totals["rows"].clone(), totals["batches"].clone()),
            (json!(1000), json!(5))
        );
        // However the rows are cut, the sums are the same.
        let mut one_batch = run_all(&shipped(), 1000).await;
        one_batch["batches"] = json!(5);
        assert_eq!(one_batch, totals);
    }

    #[tokio::test]
    async fn checkpoints_carry_the_next_row_and_the_sums_so_far() {
        let (_, ranges) = cut_ranges(&shipped(), DATASET, 200).unwrap();
        let (plain, saved) = attempt(&shipped(), &ranges[1], None, 0, None).await;
        assert!(saved.is_empty());
        let (chunked, saved) = attempt(&shipped(), &ranges[1], None, 60, None).await;
        assert_eq!(chunked.unwrap(), plain.clone().unwrap());
        let bytes = std::fs::read(shipped()).unwrap();
        let rows: Vec<u64> = saved
            .iter()
            .map(|(c, _)| c["row"].as_u64().unwrap())
            .collect();
        assert_eq!(rows, [260, 320, 380]);
        for (cursor, partial) in &saved {
            let (row, byte) = (
                cursor["row"].as_u64().unwrap(),
                cursor["byte"].as_u64().unwrap(),
            );
            assert!(bytes[byte as usize..].starts_with(format!("{},", row + 1).as_bytes()));
            assert_eq!(partial["rows"], row - 200);
        }
        let plain = plain.unwrap();
        assert_eq!(
            (plain["rows"].clone(), plain["rows_read"].clone()),
            (json!(200), json!(200))
        );
        assert_eq!(plain["start_row"], 200);
    }

    #[tokio::test]
    async fn an_injected_failure_resumes_from_its_checkpoint() {
        let (_, ranges) = cut_ranges(&shipped(), DATASET, 200).unwrap();
        let plain = attempt(&shipped(), &ranges[1], None, 0, None)
            .await
            .0
            .unwrap();
        let (failed, saved) = attempt(&shipped(), &ranges[1], None, 0, Some(250)).await;
        let error = failed.unwrap_err();
        assert_eq!(
            (error.error_type.as_str(), error.retryable),
            ("InjectedFailure", true)
        );
        assert!(error.message.contains("row 250"), "{}", error.message);
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].0["row"], 250);
        let (cursor, partial) = saved[0].clone();
        let checkpoint = Checkpoint {
            cursor,
            partial,
            attempt: 1,
            sequence: 1,
        };
        // Attempt 2: the handler no longer passes fail_once_at_row.
        let (retried, saved) = attempt(&shipped(), &ranges[1], Some(&checkpoint), 0, None).await;
        let retried = retried.unwrap();
        assert!(saved.is_empty());
        assert_eq!(retried["categories"], plain["categories"]);
        let counts = [
            &retried["rows"],
            &retried["rows_read"],
            &retried["start_row"],
        ];
        assert_eq!(counts, [&json!(200), &json!(150), &json!(250)]);
    }

    #[tokio::test]
    async fn failure_rows_outside_the_range_are_ignored_and_the_start_fails_at_once() {
        let (_, ranges) = cut_ranges(&shipped(), DATASET, 200).unwrap();
        for outside in [199, 400] {
            let (result, saved) = attempt(&shipped(), &ranges[1], None, 0, Some(outside)).await;
            assert_eq!(
                (result.unwrap()["rows"].clone(), saved.len()),
                (json!(200), 0)
            );
        }
        let (result, saved) = attempt(&shipped(), &ranges[1], None, 0, Some(200)).await;
        assert_eq!(result.unwrap_err().error_type, "InjectedFailure");
        assert_eq!(saved[0].1, json!({"rows": 0, "categories": {}}));
    }

    #[test]
    fn a_checkpoint_outside_the_range_is_refused() {
        let range = CursorRange::new(200, 400);
        let checkpoint = Checkpoint {
            cursor: json!({"row": 450, "byte": 0}),
            partial: json!({"rows": 250, "categories": {}}),
            attempt: 1,
            sequence: 3,
        };
        let error =
            BatchJob::new(DATASET.into(), &inputs(&range), Some(&checkpoint), 0, None).unwrap_err();
        assert_eq!(error.error_type, "InvalidCheckpoint");
        assert!(error.message.contains("row 450"), "{}", error.message);
        let error = BatchJob::new(DATASET.into(), &inputs(&range), None, 0, None).unwrap_err();
        assert!(
            error.message.contains("no integer 'byte'"),
            "{}",
            error.message
        );
    }

    #[test]
    fn no_batches_aggregate_to_zeros() {
        let expected =
            json!({"rows": 0, "batches": 0, "categories": {}, "revenue_cents": 0, "quantity": 0});
        assert_eq!(aggregate(&[]).unwrap(), expected);
        let error = aggregate(&[&json!(7)]).unwrap_err();
        assert_eq!(error.error_type, "InvalidBatchResult");
    }

    /// Also the timing the report quotes: `--nocapture` prints it.
    #[tokio::test]
    async fn products_100000_generates_scans_and_batches() {
        let name = "products_100000";
        let dir = tempfile::tempdir().unwrap();
        let clock = Instant::now();
        let path = data::ensure_dataset_in(dir.path(), name).unwrap();
        let generated = clock.elapsed();
        let clock = Instant::now();
        let (rows, ranges) = cut_ranges(&path, name, 5000).unwrap();
        let analyzed = clock.elapsed();
        let clock = Instant::now();
        let mut single = Totals::default();
        let from = RowCursor {
            row: 0,
            byte: header_end(),
        };
        sum_rows(&path, name, from, rows, &mut single).unwrap();
        let summed = clock.elapsed();
        println!("{name}: generate {generated:?}, analyze {analyzed:?}, sum {summed:?}");
        assert_eq!((rows, ranges.len()), (100_000, 20));
        let batched = run_all(&path, 5000).await;
        println!("{name} aggregate: {batched}");
        assert_eq!(batched["categories"], json!(single.categories));
        assert_eq!(batched["rows"], 100_000);
    }
}
