//! Reading a products CSV file (see [`crate::data`]): from its top, the
//! header checked, or from the byte offset where a row starts; record by
//! record; and one data row's category, price and quantity, checked (the
//! file is input). `cut_ranges` and `sum_rows` read through these.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use tasker_engine::HandlerError;

use crate::data;

/// A reader of `path` from byte `offset`; at 0 it reads the header as a
/// record (the caller checks it).
pub(super) fn open_reader(
    path: &Path,
    dataset: &str,
    offset: u64,
) -> Result<csv::Reader<File>, HandlerError> {
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

pub(super) fn check_header(
    reader: &mut csv::Reader<File>,
    dataset: &str,
) -> Result<(), HandlerError> {
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
pub(super) fn read_record(
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
pub(super) fn parse_row<'r>(
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
pub(super) fn parse_cents(text: &[u8]) -> Option<i64> {
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
