//! Whether the server's frames in a backend profile are fully named.
//!
//! Debian ships `postgres` stripped: perf names its frames from the
//! exported (dynamic) symbols only, and code in static functions shows as
//! `[postgres]` (or `[plpgsql.so]`). With Debian's `postgresql-15-dbgsym`
//! (from the debug archive, debian-debug) every function has its name;
//! perf finds it by the binary's build id under /usr/lib/debug.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One line for the report: how the backends' frames are named.
pub fn postgres_symbols() -> String {
    let Ok(bindir) = pg_local::find_bindir(None) else {
        return "frames by exported symbol (the server's binary was not found)".into();
    };
    let binary = bindir.join("postgres");
    match debug_file(&binary) {
        Some(path) if path.exists() => {
            format!("frames named by the debug symbols in {}", path.display())
        }
        _ => format!(
            "frames by exported symbol: {} is stripped and its debug symbols (Debian's \
             postgresql-15-dbgsym, in the debian-debug archive) are not installed, so code in \
             static functions shows as `[postgres]` or `[plpgsql.so]`",
            binary.display()
        ),
    }
}

/// Where Debian puts the debug file of `binary`: by its build id.
fn debug_file(binary: &Path) -> Option<PathBuf> {
    let notes = Command::new("readelf")
        .arg("-n")
        .arg(binary)
        .output()
        .ok()?;
    let id = build_id(&String::from_utf8_lossy(&notes.stdout))?;
    Some(PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    )))
}

/// The build id in `readelf -n`'s output.
fn build_id(notes: &str) -> Option<String> {
    let id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))?;
    (id.len() > 2 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_id_is_read_from_readelf_notes() {
        let notes = "Displaying notes found in: .note.gnu.build-id\n  \
                     Owner                Data size \tDescription\n  \
                     GNU                  0x00000014\tNT_GNU_BUILD_ID (unique build ID bitstring)\n    \
                     Build ID: 44c007cfee140e4c25e8a434008096828e70a92c\n";
        assert_eq!(
            build_id(notes).as_deref(),
            Some("44c007cfee140e4c25e8a434008096828e70a92c")
        );
        assert_eq!(build_id("no notes"), None);
    }
}
