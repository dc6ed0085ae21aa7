//! Running samply: finding (or installing) it, letting it record another process, and `samply record`'s command line.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::process::Command;

use crate::profile::attached::Recording;

/// Samples per second: the same as perf's, so the two compare.
const FREQUENCY: u32 = 499;

const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

/// samply is installed (installing it with cargo if it is not) and may
/// record another process; otherwise an error that says exactly what to do.
pub fn check() -> anyhow::Result<()> {
    ready().map(|_| ())
}

/// [`check`], returning the samply to run.
fn ready() -> anyhow::Result<PathBuf> {
    let samply = match check_program("samply") {
        Ok(samply) => samply,
        Err(missing) => install().context(missing)?,
    };
    let level = std::fs::read_to_string(PARANOID)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    match paranoia(level, nix::unistd::geteuid().is_root()) {
        Paranoia::Allowed => {}
        Paranoia::Lower => lower_paranoia(),
        Paranoia::Refused(message) => bail!(message),
    }
    Ok(samply)
}

/// Where `program` runs from: the PATH, else cargo's bin directory (where
/// `cargo install` puts it, often not on the PATH of a service or sudo).
pub(super) fn check_program(program: &str) -> anyhow::Result<PathBuf> {
    let candidates =
        std::iter::once(PathBuf::from(program)).chain(cargo_bin().map(|bin| bin.join(program)));
    for candidate in candidates {
        let version = std::process::Command::new(&candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if version.is_ok_and(|s| s.success()) {
            return Ok(candidate);
        }
    }
    bail!("{program} not found on the PATH nor in ~/.cargo/bin: install it with `cargo install --locked samply`")
}

fn cargo_bin() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    Some(home.join("bin"))
}

fn install() -> anyhow::Result<PathBuf> {
    eprintln!("samply not found: installing it with `cargo install --locked samply` (takes a few minutes)");
    let status = std::process::Command::new("cargo")
        .args(["install", "--locked", "samply"])
        .status()
        .context("running `cargo install --locked samply`")?;
    if !status.success() {
        bail!("`cargo install --locked samply` failed ({status}); install samply by hand");
    }
    check_program("samply").context("samply still not found after `cargo install`")
}

/// What to do about `kernel.perf_event_paranoid` before recording.
#[derive(Debug, PartialEq)]
pub(super) enum Paranoia {
    Allowed,
    /// Too strict, but we are root and may set it to 1.
    Lower,
    /// Too strict and not ours to change: what to run.
    Refused(String),
}

/// Recording another process needs a level of 1 or less. An unreadable
/// level is left for samply itself to report.
pub(super) fn paranoia(level: Option<i32>, root: bool) -> Paranoia {
    match level {
        Some(level) if level > 1 && root => Paranoia::Lower,
        Some(level) if level > 1 => Paranoia::Refused(format!(
            "kernel.perf_event_paranoid is {level}: samply needs 1 or less to profile another \
             process; run `sudo sysctl -w kernel.perf_event_paranoid=1` (or run the harness as root)"
        )),
        _ => Paranoia::Allowed,
    }
}

/// Sets the level to 1. Root needs it too: samply 0.13 takes any failed
/// `perf_event_open` for EPERM (it reads the errno from the -1 returned),
/// so where there is no hardware cycles counter (VMs) it quits with its
/// paranoid advice instead of falling back to cpu-clock. A failure to set
/// it only warns: samply's own error comes out of [`Recording::stop`].
fn lower_paranoia() {
    eprintln!("setting kernel.perf_event_paranoid to 1 so samply may record another process");
    if let Err(error) = std::fs::write(PARANOID, "1\n") {
        eprintln!("could not write {PARANOID} ({error}); recording anyway");
    }
}

/// The samply command line (after the program) that records `pid` into
/// `output` and its symbols into the sidecar.
pub(super) fn record_args(pid: u32, output: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["record", "--save-only", "--unstable-presymbolicate"]
        .into_iter()
        .map(Into::into)
        .collect();
    args.extend(["--rate".into(), FREQUENCY.to_string().into()]);
    args.extend(["-o".into(), output.into()]);
    args.extend(["-p".into(), pid.to_string().into()]);
    args
}

/// The symbols sidecar samply writes next to `profile`: it replaces the
/// last extension, so `p.json` gets `p.syms.json` and `p.json.gz` gets
/// `p.json.syms.json`.
pub fn syms_path(profile: &Path) -> PathBuf {
    profile.with_extension("syms.json")
}

/// Starts `samply record` on process `pid`, writing `output` (`.json`,
/// or `.json.gz` for a gzipped profile) and [`syms_path`]`(output)`.
pub fn record(pid: u32, output: &Path) -> anyhow::Result<Recording> {
    let samply = ready()?;
    let mut command = Command::new(samply);
    command.args(record_args(pid, output));
    Recording::spawn(
        command,
        "samply record",
        vec![output.to_path_buf(), syms_path(output)],
    )
}
