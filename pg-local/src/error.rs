//! What can go wrong starting (or finding) a local cluster.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

const INSTALL_HINT: &str =
    "install them with `apt-get install postgresql` (Debian/Ubuntu) or set TASKER_PG_BINDIR";

/// What went wrong starting (or finding) a local cluster.
///
/// `Clone` so that [`shared`](crate::shared) can hand the same error to every caller after
/// a failed start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PostgresError {
    /// No directory with both `initdb` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found in {searched}; {INSTALL_HINT}"
    )]
    BinariesNotFound {
        /// Where we looked, for the message.
        searched: String,
    },

    /// Running as root, but there is no `postgres` user to run the server as.
    #[error(
        "running as root, so PostgreSQL has to run as the `postgres` system user, but {detail}; \
         install the postgresql package (it creates the user) or create it with \
         `useradd --system --user-group postgres`"
    )]
    PostgresUserMissing {
        /// Why the lookup failed.
        detail: String,
    },

    /// `initdb` exited unsuccessfully.
    #[error("initdb failed ({status}) creating {data_dir}:\n{output}")]
    InitdbFailed {
        /// The data directory initdb was asked to create.
        data_dir: PathBuf,
        /// Its exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },

    /// `postgres` exited or did not become ready in time.
    #[error("postgres failed to start in {dir}: {reason}\nlast lines of {log}:\n{log_tail}")]
    StartFailed {
        /// The cluster's temporary directory.
        dir: PathBuf,
        /// The server log.
        log: PathBuf,
        /// What happened (exit status or timeout).
        reason: String,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// An I/O operation on `path` failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "creating temporary directory in".
        action: &'static str,
        /// The file, directory or program involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
}

impl PostgresError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}
