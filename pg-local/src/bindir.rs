//! Where the server binaries are: `TASKER_PG_BINDIR`, `pg_config
//! --bindir`, or the highest `/usr/lib/postgresql/<N>/bin`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{PostgresError, BINDIR_ENV};

/// Finds the directory holding `initdb` and `postgres`.
///
/// `override_dir` is the value of `TASKER_PG_BINDIR` (the caller reads the
/// environment, so this can be tested without mutating it). If given, it is
/// the only place searched. Otherwise: `pg_config --bindir`, then the
/// highest-numbered `/usr/lib/postgresql/<N>/bin`.
pub fn find_bindir(override_dir: Option<&Path>) -> Result<PathBuf, PostgresError> {
    if let Some(dir) = override_dir {
        return if has_server_binaries(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(PostgresError::BinariesNotFound {
                searched: format!(
                    "{BINDIR_ENV}={} (it is set, so nothing else was searched)",
                    dir.display()
                ),
            })
        };
    }
    if let Some(dir) = pg_config_bindir().filter(|d| has_server_binaries(d)) {
        return Ok(dir);
    }
    if let Some(dir) = highest_versioned_bindir(Path::new("/usr/lib/postgresql")) {
        return Ok(dir);
    }
    Err(PostgresError::BinariesNotFound {
        searched: format!("{BINDIR_ENV}, pg_config --bindir or /usr/lib/postgresql/*/bin"),
    })
}

pub(crate) fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "postgres"].iter().all(|b| dir.join(b).is_file())
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `<root>/<N>/bin` with the highest version `N` (`15`, `9.6`) that has the
/// server binaries.
pub(crate) fn highest_versioned_bindir(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// `postgres --version` → `15.13`. (`--version` is answered before the
/// root check, so this works as root too.)
pub(crate) fn server_version_of(bindir: &Path) -> Result<String, PostgresError> {
    let program = bindir.join("postgres");
    let out = Command::new(&program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PostgresError::io("running", &program, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let text = text.trim();
    Ok(text
        .split_once("(PostgreSQL)")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or(text)
        .to_owned())
}
