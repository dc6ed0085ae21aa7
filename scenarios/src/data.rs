//! The batch scenarios' datasets: deterministic products CSV files.
//!
//! `products_<rows>` is a CSV file with the header `id,category,price,quantity`
//! and `rows` data rows: id 1..=rows, a category from [`CATEGORIES`], a
//! price from 0.50 to 999.99 written with two decimals (`12.34`), and a
//! quantity from 1 to 100. The values come from a fixed-seed splitmix64
//! generator, so every machine generates the same bytes and a task's totals
//! can be known in advance.
//!
//! Files live in [`data_dir`]. `products_1000.csv` is shipped in the
//! repository (a test checks it is exactly what [`write_products`]
//! writes); larger files are generated on first use by [`ensure_dataset`]
//! and are not committed. To regenerate the shipped file after changing the
//! generator: `cargo test -p tasker-scenarios --lib -- --ignored
//! regenerate_shipped_products_1000`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that moves the datasets' directory.
pub const DATA_DIR_ENV: &str = "TASKER_SCENARIO_DATA";

/// The categories a product can have.
pub const CATEGORIES: [&str; 8] = [
    "books",
    "clothing",
    "electronics",
    "garden",
    "grocery",
    "home",
    "sports",
    "toys",
];

/// The header line of every products file.
pub const HEADER: &str = "id,category,price,quantity";

/// Largest dataset [`ensure_dataset`] generates (about 250 MB), so a typo
/// in a task context cannot fill the disk.
pub const MAX_ROWS: u64 = 10_000_000;

/// Changing the seed changes every dataset (and the shipped file).
const SEED: u64 = 0x7461_736b_6572_2d35;

/// Why a dataset could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset name '{0}' is not products_<rows> (rows: 0..={MAX_ROWS}, no leading zeros)")]
    InvalidName(String),
    #[error("dataset {name}: {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the datasets are: `$TASKER_SCENARIO_DATA` if set, else the
/// crate's `data/` directory.
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"),
    }
}

/// The file of dataset `name` in [`data_dir`] (it may not exist yet).
pub fn dataset_path(name: &str) -> PathBuf {
    data_dir().join(format!("{name}.csv"))
}

/// The row count a dataset name asks for, if it is a valid name.
pub fn dataset_rows(name: &str) -> Result<u64, DatasetError> {
    let invalid = || DatasetError::InvalidName(name.to_string());
    let digits = name.strip_prefix("products_").ok_or_else(invalid)?;
    // One spelling per dataset: "products_010" would be a second file of 10 rows.
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    match digits.parse::<u64>() {
        Ok(rows) if canonical && rows <= MAX_ROWS => Ok(rows),
        _ => Err(invalid()),
    }
}

/// The path of dataset `name` in [`data_dir`], generating the file first if
/// it is missing.
pub fn ensure_dataset(name: &str) -> Result<PathBuf, DatasetError> {
    ensure_dataset_in(&data_dir(), name)
}

/// [`ensure_dataset`] in `dir`. Safe to call concurrently, from threads or
/// processes: each caller writes its own temporary file and renames it into
/// place, and every caller writes the same bytes.
pub fn ensure_dataset_in(dir: &Path, name: &str) -> Result<PathBuf, DatasetError> {
    let rows = dataset_rows(name)?;
    let path = dir.join(format!("{name}.csv"));
    if path.is_file() {
        return Ok(path);
    }
    let io_error = |path: &Path, source| DatasetError::Io {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let temp = dir.join(temp_name(name));
    let written = write_file(&temp, rows).and_then(|()| fs::rename(&temp, &path));
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(&temp, error));
    }
    Ok(path)
}

/// Unique per process (pid) and per call within it (counter): the worker
/// runs many steps of one process at once.
fn temp_name(name: &str) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.csv.tmp.{}.{call}", std::process::id())
}

fn write_file(path: &Path, rows: u64) -> io::Result<()> {
    let mut writer = BufWriter::new(File::create(path)?);
    write_products(&mut writer, rows)?;
    writer.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Writes the header and `rows` products (the content of `products_<rows>`).
pub fn write_products(w: &mut impl Write, rows: u64) -> io::Result<()> {
    let mut rng = SplitMix64(SEED);
    writeln!(w, "{HEADER}")?;
    for id in 1..=rows {
        let category = CATEGORIES[(rng.next() % CATEGORIES.len() as u64) as usize];
        let cents = 50 + rng.next() % (99_999 - 50 + 1);
        let quantity = 1 + rng.next() % 100;
        writeln!(
            w,
            "{id},{category},{}.{:02},{quantity}",
            cents / 100,
            cents % 100
        )?;
    }
    Ok(())
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever,
/// unlike a library generator whose stream may change between versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(rows: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_products(&mut bytes, rows).unwrap();
        bytes
    }

    fn shipped_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/products_1000.csv")
    }

    #[test]
    fn the_shipped_file_is_the_generators_output() {
        let shipped = fs::read(shipped_path()).expect("scenarios/data/products_1000.csv");
        assert!(
            shipped == generated(1000),
            "scenarios/data/products_1000.csv differs from write_products(1000); \
             regenerate it (see the data module's doc)"
        );
    }

    /// Writes the shipped file; run by hand after changing the generator.
    #[test]
    #[ignore = "writes scenarios/data/products_1000.csv"]
    fn regenerate_shipped_products_1000() {
        let path = shipped_path();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, generated(1000)).unwrap();
    }

    #[test]
    fn rows_follow_the_documented_shape() {
        let text = String::from_utf8(generated(2000)).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(HEADER));
        let mut count = 0;
        for (i, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 4, "{line}");
            assert_eq!(fields[0], (i + 1).to_string());
            assert!(CATEGORIES.contains(&fields[1]), "{line}");
            let (units, cents) = fields[2].split_once('.').expect("two decimals");
            assert_eq!(cents.len(), 2, "{line}");
            let price: u64 = units.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap();
            assert!((50..=99_999).contains(&price), "{line}");
            let quantity: u64 = fields[3].parse().unwrap();
            assert!((1..=100).contains(&quantity), "{line}");
            count += 1;
        }
        assert_eq!(count, 2000);
        // A prefix of a larger dataset: the generator does not depend on rows.
        assert!(generated(2000).starts_with(&generated(10)));
    }

    #[test]
    fn names_must_be_canonical() {
        assert_eq!(dataset_rows("products_1000").unwrap(), 1000);
        assert_eq!(dataset_rows("products_0").unwrap(), 0);
        for bad in [
            "products_",
            "products_010",
            "products_1e3",
            "products_-1",
            "orders_10",
            "products_10000001",
            "../products_10",
        ] {
            let error = dataset_rows(bad).unwrap_err();
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn ensure_generates_once_and_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let data = data.clone();
                std::thread::spawn(move || ensure_dataset_in(&data, "products_3000").unwrap())
            })
            .collect();
        for thread in threads {
            let path = thread.join().unwrap();
            assert_eq!(fs::read(&path).unwrap(), generated(3000));
        }
        // Only the dataset is left: no temporary files.
        let names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["products_3000.csv"]);
        let error = ensure_dataset_in(&data, "products_x").unwrap_err();
        assert!(matches!(error, DatasetError::InvalidName(_)), "{error}");
    }
}
