//! Tests of the batch steps' file work and sums, on the shipped
//! `products_1000.csv`, small hand-written files and a generated
//! `products_100000`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use tasker_engine::worker::{BatchInputs, Checkpoint, CursorRange};

use super::process::{range_byte, BatchJob};
use super::reader::parse_cents;
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
    let job = BatchJob::new(DATASET.into(), &inputs(range), checkpoint, every, fail_at).unwrap();
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
