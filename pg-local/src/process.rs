//! Process plumbing on Linux: spawning from a thread that lives as long as
//! the process (so `PR_SET_PDEATHSIG` means "when this process dies"),
//! waiting for a child's exit with a pidfd, and an `atexit` hook.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The thread every server is spawned from.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process. Spawning from whichever test thread happened to call
/// [`shared`] first would kill the shared server when that test ends, so all
/// servers are forked by this thread, which lives as long as the process
/// (blocked on its channel, whose sender is in a static).
pub(crate) fn spawn_from_keeper(cmd: Command) -> io::Result<Child> {
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
pub(crate) fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
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
pub(crate) fn wait_for_exit(pid: u32, timeout: Duration) -> io::Result<bool> {
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
pub(crate) fn register_atexit(handler: extern "C" fn()) {
    // SAFETY: atexit only stores the function pointer. The handler is a
    // plain `extern "C" fn()` that catches panics, as C requires.
    let rc = unsafe { libc::atexit(handler) };
    if rc != 0 {
        tracing::warn!("could not register atexit handler; the shared PostgreSQL cluster will be stopped only by its death signal");
    }
}
