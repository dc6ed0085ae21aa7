//! A throwaway local PostgreSQL cluster, started and stopped by this process.
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

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

/// Environment variable naming the directory holding `initdb` and `postgres`.
pub const BINDIR_ENV: &str = "TASKER_PG_BINDIR";

/// Superuser created by `initdb`; connections need no password (`trust`).
pub const SUPERUSER: &str = "tasker";

/// Port number of the unix socket (`.s.PGSQL.<port>`). Every cluster has its
/// own socket directory, so they can all use the default.
const PORT: u16 = 5432;

/// Prefix of the temporary directories; also what the stale-directory sweep
/// looks for.
const DIR_PREFIX: &str = "tasker-pg-";

/// File in the cluster directory holding the pid of the process that
/// created it, for the stale-directory sweep.
const OWNER_FILE: &str = "owner.pid";

/// Unix socket paths (`sun_path`) hold at most 107 bytes plus a NUL.
const MAX_SOCKET_PATH: usize = 107;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 20;

const INSTALL_HINT: &str =
    "install them with `apt-get install postgresql` (Debian/Ubuntu) or set TASKER_PG_BINDIR";

/// What went wrong starting (or finding) a local cluster.
///
/// `Clone` so that [`shared`] can hand the same error to every caller after
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
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

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

/// User and group the server processes run as (`None`: the current user).
type RunAs = Option<(Uid, Gid)>;

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
    fn shutdown(&self, quiet: bool) {
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
        register_atexit(stop_shared_at_exit);
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

fn has_server_binaries(dir: &Path) -> bool {
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
fn highest_versioned_bindir(root: &Path) -> Option<PathBuf> {
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

/// As root, the `postgres` system user; otherwise `None` (current user).
fn server_user() -> Result<RunAs, PostgresError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some((user.uid, user.gid))),
        Ok(None) => Err(PostgresError::PostgresUserMissing {
            detail: "no user named `postgres` exists".to_owned(),
        }),
        Err(e) => Err(PostgresError::PostgresUserMissing {
            detail: format!("looking up user `postgres` failed: {e}"),
        }),
    }
}

/// Where the cluster directories go: `std::env::temp_dir()`, unless that path
/// is so long that the socket path would not fit in `sun_path`, then `/tmp`.
fn base_dir() -> PathBuf {
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
fn sweep_stale_dirs(base: &Path) {
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
fn process_exists(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// `postgres --version` → `15.13`. (`--version` is answered before the
/// root check, so this works as root too.)
fn server_version_of(bindir: &Path) -> Result<String, PostgresError> {
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

/// Applies what every server-side command needs: run as `run_as`, in `dir`
/// (the inherited cwd may be unreadable for the postgres user), die with us.
fn server_command(program: PathBuf, dir: &Path, run_as: RunAs, death_signal: Signal) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).stdin(Stdio::null());
    // PGDATA etc. from the caller's environment must not leak in.
    for var in [
        "PGDATA",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    die_with_parent(&mut cmd, death_signal as libc::c_int);
    cmd
}

fn run_initdb(bindir: &Path, dir: &Path, run_as: RunAs) -> Result<(), PostgresError> {
    let program = bindir.join("initdb");
    let data = dir.join("data");
    let out = server_command(program.clone(), dir, run_as, Signal::SIGKILL)
        .arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
        // The environment's locale may not be installed; C always is.
        .arg("--locale=C")
        .args(["--no-sync", "--no-instructions"])
        .output()
        .map_err(|e| PostgresError::io("running", &program, e))?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(PostgresError::InitdbFailed {
        data_dir: data,
        status: out.status.to_string(),
        output,
    })
}

fn spawn_postgres(
    bindir: &Path,
    dir: &Path,
    opts: &ClusterOptions,
    run_as: RunAs,
) -> Result<Child, PostgresError> {
    let program = bindir.join("postgres");
    let log_path = dir.join("postgres.log");
    // Appended to: a restarted server keeps the log of its earlier runs.
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| PostgresError::io("opening", &log_path, e))?;
    let log_out = log
        .try_clone()
        .map_err(|e| PostgresError::io("duplicating handle of", &log_path, e))?;

    // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its
    // backends down with it.
    let mut cmd = server_command(program.clone(), dir, run_as, Signal::SIGQUIT);
    cmd.stdout(log_out).stderr(log);
    cmd.arg("-D").arg(dir.join("data"));
    cmd.arg("-k").arg(dir);
    let fsync = if opts.fsync { "on" } else { "off" };
    let settings = [
        ("listen_addresses", ""),
        ("port", &PORT.to_string()),
        ("fsync", fsync),
        ("max_connections", "200"),
        ("shared_buffers", "128MB"),
    ]
    .map(|(k, v)| format!("{k}={v}"));
    for setting in settings
        .into_iter()
        .chain(opts.settings.iter().map(|(k, v)| format!("{k}={v}")))
    {
        cmd.arg("-c").arg(setting);
    }
    spawn_from_keeper(cmd).map_err(|e| PostgresError::io("starting", &program, e))
}

/// Polls until the socket exists and `pg_isready` says yes, the server exits,
/// or 30 s pass. On failure the server is stopped.
fn wait_until_ready(bindir: &Path, dir: &Path, mut server: Child) -> Result<Child, PostgresError> {
    let socket = dir.join(format!(".s.PGSQL.{PORT}"));
    let deadline = Instant::now() + START_TIMEOUT;
    let failed = |reason: String| PostgresError::StartFailed {
        dir: dir.to_path_buf(),
        log: dir.join("postgres.log"),
        reason,
        log_tail: log_tail(&dir.join("postgres.log")),
    };
    loop {
        match server.try_wait() {
            Ok(Some(status)) => return Err(failed(format!("postgres exited ({status})"))),
            Ok(None) => {}
            Err(e) => {
                stop_server(server);
                return Err(failed(format!("could not check on postgres: {e}")));
            }
        }
        if socket.exists() && pg_isready(bindir, dir) {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            stop_server(server);
            return Err(failed(format!(
                "not accepting connections after {} s",
                START_TIMEOUT.as_secs()
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn pg_isready(bindir: &Path, dir: &Path) -> bool {
    Command::new(bindir.join("pg_isready"))
        .arg("-h")
        .arg(dir)
        .args(["-p", &PORT.to_string(), "-U", SUPERUSER, "-d", "postgres"])
        .args(["-t", "2", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn log_tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(could not read log: {e})"),
    }
}

/// Fast shutdown (SIGINT), then SIGKILL if the server is still up after
/// 10 s; always reaps the child.
fn stop_server(mut child: Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGINT);
    let exited = match wait_for_exit(child.id(), STOP_TIMEOUT) {
        Ok(exited) => exited,
        // pidfd_open is missing (Linux < 5.3) or blocked by a seccomp
        // profile: fall back to polling.
        Err(_) => {
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break true,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    _ => break false,
                }
            }
        }
    };
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The thread every server is spawned from.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process. Spawning from whichever test thread happened to call
/// [`shared`] first would kill the shared server when that test ends, so all
/// servers are forked by this thread, which lives as long as the process
/// (blocked on its channel, whose sender is in a static).
fn spawn_from_keeper(cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);

    let sender = {
        let mut keeper = KEEPER.lock().unwrap_or_else(|p| p.into_inner());
        match &*keeper {
            Some(sender) => sender.clone(),
            None => {
                let (tx, rx) = mpsc::channel::<Request>();
                thread::Builder::new()
                    .name("tasker-pg-keeper".to_owned())
                    .spawn(move || {
                        for (mut cmd, reply) in rx {
                            let _ = reply.send(cmd.spawn());
                        }
                    })?;
                keeper.insert(tx).clone()
            }
        }
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    let gone = || io::Error::other("the tasker-pg-keeper thread is gone");
    sender.send((cmd, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

/// Makes the kernel send `signal` to the child when the thread that spawns
/// it exits (see [`spawn_from_keeper`]), and fails the spawn if we are
/// already gone by the time the child runs.
#[allow(unsafe_code)] // pre_exec is unsafe; see SAFETY below.
fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child between fork and exec,
    // where only async-signal-safe operations are allowed. It only makes the
    // prctl(2) and getppid(2) system calls and builds io::Errors from raw
    // errno values (no allocation, no locks). std runs it after setuid, so
    // the credential change does not clear the death signal again.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Waits up to `timeout` for our (unreaped) child `pid` to exit, without
/// reaping it. Ok(true): it exited. Err: pidfd is not available.
#[allow(unsafe_code)] // raw pidfd_open(2) and poll(2) system calls.
fn wait_for_exit(pid: u32, timeout: Duration) -> io::Result<bool> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new file
    // descriptor or -1; no memory is passed. `pid` is our unreaped child, so
    // it cannot have been recycled for another process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a valid descriptor just returned to us and owned by
    // nothing else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let millis = remaining.as_millis().min(i32::MAX as u128) as libc::c_int;
        let mut pollfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pollfd` is a valid, exclusively borrowed array of one
        // element for the duration of the call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
        match ready {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Registers `handler` to run at process exit (after `main` returns or on
/// `std::process::exit`, which is how the test harness ends).
#[allow(unsafe_code)] // libc::atexit is an FFI call.
fn register_atexit(handler: extern "C" fn()) {
    // SAFETY: atexit only stores the function pointer. The handler is a
    // plain `extern "C" fn()` that catches panics, as C requires.
    let rc = unsafe { libc::atexit(handler) };
    if rc != 0 {
        tracing::warn!("could not register atexit handler; the shared PostgreSQL cluster will be stopped only by its death signal");
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: impl AsRef<OsStr>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{PgPool, Row};

    async fn pool(url: &str) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
    }

    async fn select_one(url: &str) -> i32 {
        let pool = pool(url).await;
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        one
    }

    #[test]
    fn shared_cluster_is_started_once() {
        let a = shared().expect("start shared cluster");
        let b = shared().expect("shared cluster again");
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.socket_dir(), b.socket_dir());
        assert!(a.socket_dir().join(".s.PGSQL.5432").exists());
        assert!(a.pid().is_some());
    }

    #[tokio::test]
    async fn sqlx_connects_over_the_unix_socket() {
        let cluster = shared().expect("start shared cluster");
        let url = cluster.admin_url();
        assert!(url.starts_with("postgres://tasker@localhost:5432/postgres?host=%2F"));

        let pool = pool(&url).await;
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(fsync, "off");
        let row = sqlx::query(
            "SELECT inet_server_addr() IS NULL AS unix_socket, current_user::text AS usr, \
             current_setting('full_page_writes') AS fpw, \
             current_setting('synchronous_commit') AS sc",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(row.get::<bool, _>("unix_socket"), "connected over TCP");
        assert_eq!(row.get::<String, _>("usr"), SUPERUSER);
        assert_eq!(row.get::<String, _>("fpw"), "off");
        assert_eq!(row.get::<String, _>("sc"), "on");
        pool.close().await;
    }

    #[tokio::test]
    async fn independent_cluster_runs_alongside_shared() {
        let shared = shared().expect("start shared cluster");
        let own = LocalCluster::start(&ClusterOptions::default()).expect("start own cluster");
        assert_ne!(own.socket_dir(), shared.socket_dir());
        assert!(own
            .server_version()
            .starts_with(|c: char| c.is_ascii_digit()));

        let (shared_url, own_url) = (shared.admin_url(), own.admin_url());
        let (a, b) = tokio::join!(select_one(&shared_url), select_one(&own_url));
        assert_eq!((a, b), (1, 1));

        let pool = pool(&own.admin_url()).await;
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(fsync, "on");
        pool.close().await;
    }

    #[test]
    fn extra_settings_are_applied() {
        let opts = ClusterOptions {
            fsync: false,
            settings: vec![("work_mem".into(), "7MB".into())],
        };
        let cluster = LocalCluster::start(&opts).expect("start cluster");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let work_mem: String = rt.block_on(async {
            let pool = pool(&cluster.admin_url()).await;
            let v = sqlx::query_scalar("SHOW work_mem")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            v
        });
        assert_eq!(work_mem, "7MB");
    }

    #[test]
    fn drop_stops_server_and_removes_directory() {
        let cluster = LocalCluster::start(&ClusterOptions::for_tests()).expect("start cluster");
        let dir = cluster.socket_dir().to_path_buf();
        let pid = cluster.pid().expect("running") as i32;
        assert!(dir.join("data").is_dir());
        assert!(process_exists(pid));

        drop(cluster);
        assert!(!dir.exists(), "{} still exists", dir.display());
        assert!(!process_exists(pid), "postgres {pid} still running");
    }

    #[test]
    fn server_survives_the_thread_that_started_it() {
        let cluster = thread::spawn(|| LocalCluster::start(&ClusterOptions::for_tests()))
            .join()
            .unwrap()
            .expect("start cluster");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(rt.block_on(select_one(&cluster.admin_url())), 1);
        }
        let pid = cluster.pid().expect("running") as i32;
        assert!(process_exists(pid));
    }

    #[test]
    fn failed_start_reports_log_tail_and_cleans_up() {
        let opts = ClusterOptions {
            fsync: false,
            settings: vec![("tasker_no_such_setting".into(), "1".into())],
        };
        let err = LocalCluster::start(&opts).unwrap_err();
        let PostgresError::StartFailed { dir, log_tail, .. } = &err else {
            panic!("expected StartFailed, got {err:?}");
        };
        assert!(log_tail.contains("tasker_no_such_setting"), "{err}");
        assert!(err.to_string().contains("postgres exited"), "{err}");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn bogus_bindir_names_the_install_command() {
        let err = find_bindir(Some(Path::new("/nonexistent/tasker-pg-bin"))).unwrap_err();
        assert!(
            matches!(err, PostgresError::BinariesNotFound { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("initdb, postgres"), "{msg}");
        assert!(
            msg.contains("TASKER_PG_BINDIR=/nonexistent/tasker-pg-bin"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
    }

    #[test]
    fn discovery_without_override_finds_binaries() {
        let dir = find_bindir(None).expect("PostgreSQL installed on this machine");
        assert!(has_server_binaries(&dir));
    }

    #[test]
    fn highest_version_wins() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "13", "15", "16", "notaversion"] {
            let bin = root.path().join(v).join("bin");
            fs::create_dir_all(&bin).unwrap();
            if v != "16" {
                // 16 has no binaries, so it must be skipped.
                fs::File::create(bin.join("initdb")).unwrap();
                fs::File::create(bin.join("postgres")).unwrap();
            }
        }
        assert_eq!(
            highest_versioned_bindir(root.path()),
            Some(root.path().join("15").join("bin"))
        );
    }

    #[test]
    fn sweep_removes_only_dirs_of_dead_servers() {
        let base = tempfile::tempdir().unwrap();
        // Above any pid_max, so no such process can exist.
        let dead = "999999999\n";
        let alive = format!("{}\n", std::process::id());
        let make = |name: &str, owner: Option<&str>, postmaster: Option<&str>| {
            let dir = base.path().join(name);
            fs::create_dir_all(dir.join("data")).unwrap();
            if let Some(pid) = owner {
                fs::write(dir.join(OWNER_FILE), pid).unwrap();
            }
            if let Some(pid) = postmaster {
                fs::write(dir.join("data").join("postmaster.pid"), pid).unwrap();
            }
            dir
        };
        let dead_server = make("tasker-pg-dead01", Some(&alive), Some(dead));
        let dead_owner = make("tasker-pg-dead02", Some(dead), None);
        let live_server = make("tasker-pg-live01", Some(dead), Some(&alive));
        let live_owner = make("tasker-pg-live02", Some(&alive), None);
        let no_pids = make("tasker-pg-nopid1", None, None);
        let garbage = make("tasker-pg-junk01", Some("junk"), Some("not a pid\n"));
        let other = make("other-dir", Some(dead), Some(dead));

        sweep_stale_dirs(base.path());
        assert!(!dead_server.exists());
        assert!(!dead_owner.exists());
        for kept in [&live_server, &live_owner, &no_pids, &garbage, &other] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }

    #[test]
    fn url_percent_encodes_socket_dir() {
        assert_eq!(
            percent_encode("/tmp/tasker-pg-a_B~1"),
            "%2Ftmp%2Ftasker-pg-a_B~1"
        );
        assert_eq!(percent_encode("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn options_defaults() {
        let d = ClusterOptions::default();
        assert!(d.fsync);
        assert!(d.settings.is_empty());
        let t = ClusterOptions::for_tests();
        assert!(!t.fsync);
        assert!(t
            .settings
            .contains(&("full_page_writes".to_owned(), "off".to_owned())));
        assert!(!t.settings.iter().any(|(k, _)| k == "synchronous_commit"));
    }
}
