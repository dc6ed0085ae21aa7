//! [`LocalCluster`]: one server on a unix socket in its own temporary
//! directory, its options, and how it is started, restarted and removed.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::bindir::{find_bindir, server_version_of};
use crate::server::{
    run_initdb, server_user, spawn_postgres, stop_server, wait_until_ready, RunAs,
};
use crate::stale::{base_dir, sweep_stale_dirs, DIR_PREFIX, OWNER_FILE};
use crate::{PostgresError, BINDIR_ENV, SUPERUSER};

/// Port number of the unix socket (`.s.PGSQL.<port>`). Every cluster has its
/// own socket directory, so they can all use the default.
pub(crate) const PORT: u16 = 5432;

/// Server settings for [`LocalCluster::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `fsync` setting. Off is much faster and loses nothing we care about
    /// in a throwaway cluster unless the machine itself crashes.
    pub fsync: bool,
    /// Extra `-c name=value` settings, applied after the defaults (so they
    /// override them, including `fsync`).
    pub settings: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    /// Durable defaults: `fsync=on`, no extra settings.
    fn default() -> Self {
        Self {
            fsync: true,
            settings: Vec::new(),
        }
    }
}

impl ClusterOptions {
    /// Fast settings for tests: `fsync=off`, `full_page_writes=off`.
    ///
    /// `synchronous_commit` stays on, so commit behaviour (and its cost
    /// profile, minus the disk flush) is the same as in production.
    pub fn for_tests() -> Self {
        Self {
            fsync: false,
            settings: vec![("full_page_writes".to_owned(), "off".to_owned())],
        }
    }
}

/// A running PostgreSQL server on a unix socket in its own temporary
/// directory. Dropping it stops the server and removes the directory.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    version: String,
    options: ClusterOptions,
    run_as: RunAs,
    state: Mutex<State>,
}

/// How [`LocalCluster::restart`] takes the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGINT: sessions are ended and everything committed is flushed.
    Fast,
    /// SIGQUIT: a crash. The next start replays the WAL; transactions
    /// committed asynchronously and not yet flushed are lost.
    Immediate,
}

#[derive(Debug)]
struct State {
    server: Option<Child>,
    removed: bool,
}

impl LocalCluster {
    /// Creates a temporary cluster with `initdb` and starts `postgres` on it,
    /// waiting (up to 30 s) until it accepts connections.
    ///
    /// Blocks for the second or two this takes; it starts no async runtime,
    /// so it may be called from inside one.
    pub fn start(opts: &ClusterOptions) -> Result<LocalCluster, PostgresError> {
        let env_bindir = std::env::var_os(BINDIR_ENV).filter(|v| !v.is_empty());
        let bindir = find_bindir(env_bindir.as_deref().map(Path::new))?;
        let run_as = server_user()?;
        let base = base_dir();

        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| sweep_stale_dirs(&base));

        let tmp = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .rand_bytes(6)
            .tempdir_in(&base)
            .map_err(|e| PostgresError::io("creating temporary directory in", &base, e))?;
        let dir = tmp.path().to_path_buf();
        let owner = dir.join(OWNER_FILE);
        fs::write(&owner, format!("{}\n", std::process::id()))
            .map_err(|e| PostgresError::io("writing", &owner, e))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(|e| PostgresError::io("changing owner to postgres of", &dir, e))?;
        }

        let version = server_version_of(&bindir)?;
        run_initdb(&bindir, &dir, run_as)?;
        let server = spawn_postgres(&bindir, &dir, opts, run_as)?;
        let server = wait_until_ready(&bindir, &dir, server)?;

        tracing::info!(dir = %dir.display(), %version, pid = server.id(), "started local PostgreSQL");
        Ok(LocalCluster {
            dir: tmp.keep(),
            bindir,
            port: PORT,
            version,
            options: opts.clone(),
            run_as,
            state: Mutex::new(State {
                server: Some(server),
                removed: false,
            }),
        })
    }

    /// The directory holding the unix socket (also the cluster's temporary
    /// directory; `data/` and `postgres.log` are inside it).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory (`<socket_dir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server log (postgres' stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The port number in the socket name (`.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for `database` over the unix socket, e.g.
    /// `postgres://tasker@localhost:5432/app?host=%2Ftmp%2Ftasker-pg-Ab12Cd`.
    ///
    /// sqlx (and libpq) take the `host` query parameter, when it starts with
    /// `/`, as the socket directory. The port is spelled out so that a
    /// `PGPORT` in the environment cannot redirect the connection.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{}/{}?host={}",
            self.port,
            percent_encode(database),
            percent_encode(self.dir.as_os_str()),
        )
    }

    /// Connection URL for the `postgres` maintenance database, for
    /// `CREATE DATABASE` and the like.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// Server version, e.g. `15.13` (from `postgres --version`).
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// Directory the server binaries came from.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Process id of the postmaster, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock_state().server.as_ref().map(Child::id)
    }

    /// Takes the server down (`mode`), keeps it down for `down_for`, and
    /// starts it again on the same data directory and socket, waiting
    /// until it accepts connections. For fault tests: every client
    /// connection is cut.
    pub fn restart(&self, mode: StopMode, down_for: Duration) -> Result<(), PostgresError> {
        let mut state = self.lock_state();
        if let Some(mut child) = state.server.take() {
            match mode {
                StopMode::Fast => stop_server(child),
                StopMode::Immediate => {
                    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGQUIT);
                    let _ = child.wait();
                }
            }
        }
        thread::sleep(down_for);
        let server = spawn_postgres(&self.bindir, &self.dir, &self.options, self.run_as)?;
        state.server = Some(wait_until_ready(&self.bindir, &self.dir, server)?);
        tracing::info!(dir = %self.dir.display(), ?mode, "restarted local PostgreSQL");
        Ok(())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops the server and removes the directory; idempotent. `quiet`
    /// suppresses logging (used from the atexit handler, where the logging
    /// machinery may already be torn down).
    pub(crate) fn shutdown(&self, quiet: bool) {
        let mut state = self.lock_state();
        if let Some(child) = state.server.take() {
            stop_server(child);
            if !quiet {
                tracing::info!(dir = %self.dir.display(), "stopped local PostgreSQL");
            }
        }
        if !state.removed {
            state.removed = true;
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                if e.kind() != io::ErrorKind::NotFound && !quiet {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove PostgreSQL directory");
                }
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: impl AsRef<OsStr>) -> String {
    let mut out = String::new();
    for &b in s.as_ref().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
