//! CPU profiles with Linux `perf`: record a running engine process,
//! then fold its stacks with inferno's perf collapser.
//!
//! Stacks are unwound with DWARF (`--call-graph dwarf`): the `profiling`
//! cargo profile keeps debug info but Rust does not keep frame pointers by
//! default, so frame-pointer stacks would stop at the first Rust frame.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};
use inferno::collapse::Collapse;
use tokio::process::Command;

use super::attached::Recording;
use super::FoldedProfile;

/// Samples per second.
const FREQUENCY: u32 = 499;

/// `perf` is there and may record another process; otherwise an error
/// that says exactly what to do.
pub fn check() -> anyhow::Result<()> {
    check_program("perf")
}

fn check_program(perf: &str) -> anyhow::Result<()> {
    let version = std::process::Command::new(perf)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !version.is_ok_and(|s| s.success()) {
        bail!("{perf} not found: install it with `apt-get install linux-perf` (Debian) or your distribution's perf package");
    }
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    let root = nix::unistd::geteuid().is_root();
    if let (Some(level), false) = (paranoid, root) {
        if level > 1 {
            bail!(
                "kernel.perf_event_paranoid is {level}: profiling another process needs 1 or less; \
                 run `sudo sysctl kernel.perf_event_paranoid=1` (or run the harness as root)"
            );
        }
    }
    Ok(())
}

/// Starts `perf record` on the processes `pids` (one profile of them
/// all), writing `output`.
pub fn record(pids: &[u32], output: &Path) -> anyhow::Result<Recording> {
    check()?;
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let mut command = Command::new("perf");
    command
        .args(["record", "--quiet", "-F", &FREQUENCY.to_string()])
        .args(["--call-graph", "dwarf,16384", "-p", &pids.join(","), "-o"])
        .arg(output);
    Recording::spawn(command, "perf record", vec![output.to_path_buf()])
}

/// `perf script` of a recording, folded.
pub fn fold(perf_data: &Path) -> anyhow::Result<FoldedProfile> {
    let script = std::process::Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(perf_data)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    if !script.status.success() {
        bail!("perf script failed on {}", perf_data.display());
    }
    fold_script(&script.stdout)
}

/// Folds `perf script` output. Stacks are weighted by the event's period
/// (for cpu-clock, nanoseconds of CPU), so shares are shares of CPU time.
pub fn fold_script(script: &[u8]) -> anyhow::Result<FoldedProfile> {
    let mut folded = Vec::new();
    inferno::collapse::perf::Folder::default()
        .collapse(script, &mut folded)
        .context("folding perf script output")?;
    FoldedProfile::parse(&String::from_utf8(folded)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_perf_says_how_to_install_it() {
        let error = check_program("perf-not-installed-here")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("perf-not-installed-here not found"),
            "{error}"
        );
        assert!(error.contains("apt-get install linux-perf"), "{error}");
    }

    #[test]
    fn perf_script_output_folds_into_stacks() {
        let script = include_bytes!("testdata/worker.perf-script");
        let profile = fold_script(script).unwrap();
        // weighted by the event's period (cpu-clock: nanoseconds)
        const PERIOD: u64 = 2_004_008;
        assert_eq!(profile.total_samples(), 3 * PERIOD);
        let functions = profile.functions();
        let claim = functions
            .iter()
            .find(|c| {
                c.name
                    .starts_with("tasker_engine::worker::claim::Claimer::claim")
            })
            .expect("claim frame");
        assert_eq!(
            (claim.self_samples, claim.total_samples),
            (PERIOD, 2 * PERIOD)
        );
        let modules = profile.modules();
        let module = modules
            .iter()
            .find(|c| c.name == "tasker_engine::worker::claim")
            .expect("claim module");
        assert_eq!(module.total_samples, 2 * PERIOD);
    }
}
