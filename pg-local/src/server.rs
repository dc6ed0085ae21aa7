//! The server's processes: `initdb`, `postgres` and `pg_isready` run as
//! the right user, in the cluster directory, dying with us; waiting for
//! the server to be ready and stopping it.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

use crate::cluster::PORT;
use crate::process::{die_with_parent, spawn_from_keeper, wait_for_exit};
use crate::{ClusterOptions, PostgresError, SUPERUSER};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 20;

/// User and group the server processes run as (`None`: the current user).
pub(crate) type RunAs = Option<(Uid, Gid)>;

/// As root, the `postgres` system user; otherwise `None` (current user).
pub(crate) fn server_user() -> Result<RunAs, PostgresError> {
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

/// Applies what every server-side command needs: run as `run_as`, in `dir`
/// (the inherited cwd may be unreadable for the postgres user), die with us.
pub(crate) fn server_command(
    program: PathBuf,
    dir: &Path,
    run_as: RunAs,
    death_signal: Signal,
) -> Command {
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

pub(crate) fn run_initdb(bindir: &Path, dir: &Path, run_as: RunAs) -> Result<(), PostgresError> {
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

pub(crate) fn spawn_postgres(
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
pub(crate) fn wait_until_ready(
    bindir: &Path,
    dir: &Path,
    mut server: Child,
) -> Result<Child, PostgresError> {
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
pub(crate) fn stop_server(mut child: Child) {
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
