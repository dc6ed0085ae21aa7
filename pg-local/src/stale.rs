//! Where cluster directories go, and the sweep of those left behind by
//! killed runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Prefix of the temporary directories; also what the stale-directory sweep
/// looks for.
pub(crate) const DIR_PREFIX: &str = "tasker-pg-";

/// File in the cluster directory holding the pid of the process that
/// created it, for the stale-directory sweep.
pub(crate) const OWNER_FILE: &str = "owner.pid";

/// Unix socket paths (`sun_path`) hold at most 107 bytes plus a NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where the cluster directories go: `std::env::temp_dir()`, unless that path
/// is so long that the socket path would not fit in `sun_path`, then `/tmp`.
pub(crate) fn base_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    // "<tmp>/tasker-pg-XXXXXX/.s.PGSQL.5432"
    let socket_len = tmp.as_os_str().len() + 1 + DIR_PREFIX.len() + 6 + "/.s.PGSQL.5432".len();
    if socket_len <= MAX_SOCKET_PATH {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Removes leftovers of killed runs from `base`: `tasker-pg-*` directories
/// whose `data/postmaster.pid` names a process that no longer exists, or,
/// when there is no `postmaster.pid` (postgres removes it even on the
/// immediate shutdown its death signal triggers), whose `owner.pid` names a
/// process that no longer exists. Anything else (pid files missing or
/// unreadable, live or foreign processes) is left alone; in particular a
/// directory another process is still setting up.
pub(crate) fn sweep_stale_dirs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        // file_type() does not follow symlinks: never sweep through a link.
        if !is_ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let postmaster = dir.join("data").join("postmaster.pid");
        let pid_file = if postmaster.exists() {
            postmaster
        } else {
            dir.join(OWNER_FILE)
        };
        let Some(pid) = read_pid(&pid_file) else {
            continue;
        };
        if process_exists(pid) {
            continue;
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), pid, "removed stale PostgreSQL directory")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove stale PostgreSQL directory")
            }
        }
    }
}

/// First line of a pid file, if it is a positive number.
fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|&pid| pid > 0)
}

/// Whether a process with this pid exists (EPERM: it exists, not ours).
pub(crate) fn process_exists(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}
