//! pg-local: a throwaway local PostgreSQL cluster, started and stopped by
//! this process.
//!
//! The engine's tests, its embedded mode and the benchmark harness all need a
//! real PostgreSQL database, and none of them should need any setup: no
//! running server, no credentials, no configuration. [`LocalCluster::start`]
//! runs `initdb` into a fresh temporary directory and starts `postgres` on it;
//! [`shared`] does that once per process and hands out the same cluster to
//! every caller.
//!
//! The server listens on a unix socket only (`listen_addresses=''`), and the
//! socket lives inside the cluster's own temporary directory
//! (`$TMPDIR/tasker-pg-XXXXXX/.s.PGSQL.5432`). Nothing is shared with other
//! clusters, so any number of test runs, benchmark runs and embedded
//! instances can run side by side on one machine without port collisions.
//! Connect with [`LocalCluster::url`], which sqlx understands.
//!
//! The server never outlives this process: it is spawned with
//! `PR_SET_PDEATHSIG` from a keeper thread that lives as long as the
//! process, [`LocalCluster`]'s `Drop` stops it (fast shutdown, then `SIGKILL`
//! after 10 s) and removes the directory, and the [`shared`] cluster is
//! stopped by an `atexit` handler. Directories left behind by killed runs are
//! swept at the next start.
//!
//! Server binaries are looked up in `TASKER_PG_BINDIR`, then
//! `pg_config --bindir`, then `/usr/lib/postgresql/<N>/bin` (highest `N`).
//! When running as root the server runs as the `postgres` system user, since
//! PostgreSQL refuses to run as root.

mod bindir;
mod cluster;
mod error;
mod process;
mod server;
mod stale;

use std::sync::OnceLock;

pub use bindir::find_bindir;
pub use cluster::{ClusterOptions, LocalCluster, StopMode};
pub use error::PostgresError;

/// Environment variable naming the directory holding `initdb` and `postgres`.
pub const BINDIR_ENV: &str = "TASKER_PG_BINDIR";

/// Superuser created by `initdb`; connections need no password (`trust`).
pub const SUPERUSER: &str = "tasker";

/// The process-wide cluster, started on first use with
/// [`ClusterOptions::for_tests`] (its data is thrown away at exit, so there
/// is nothing for fsync to protect).
///
/// Every caller gets the same cluster; create a database per test for
/// isolation. If the start fails, every caller gets that same error. The
/// cluster is stopped and its directory removed by an `atexit` handler.
pub fn shared() -> Result<&'static LocalCluster, PostgresError> {
    static SHARED: OnceLock<Result<LocalCluster, PostgresError>> = OnceLock::new();
    let result = SHARED.get_or_init(|| {
        let cluster = LocalCluster::start(&ClusterOptions::for_tests())?;
        process::register_atexit(stop_shared_at_exit);
        Ok(cluster)
    });

    extern "C" fn stop_shared_at_exit() {
        // Must not unwind into C; shutdown does not panic, this is a backstop.
        let _ = std::panic::catch_unwind(|| {
            if let Some(Ok(cluster)) = SHARED.get() {
                cluster.shutdown(true);
            }
        });
    }

    result.as_ref().map_err(Clone::clone)
}

#[cfg(test)]
mod tests;
