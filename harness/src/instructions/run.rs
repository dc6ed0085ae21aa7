//! Measuring: building the `instructions` bench binary and running it under callgrind at `n` and `2n` iterations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};

use super::parse::{bench_executable, parse_callgrind_total};
use super::summarize::InstructionCounts;
use super::{DEFAULT_ITERATIONS, VALGRIND, WORKLOADS};

/// Instructions per iteration of `workload` in `bench_binary` (the
/// engine's `instructions` bench target), with [`DEFAULT_ITERATIONS`].
pub fn measure(bench_binary: &Path, workload: &str) -> anyhow::Result<u64> {
    Ok(measure_with(VALGRIND, bench_binary, workload, DEFAULT_ITERATIONS)?.per_iteration)
}

/// One measurement: both runs' totals and the count they give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    pub iterations: u64,
    /// Instructions of the whole program with `iterations` iterations.
    pub total_n: u64,
    /// ... and with `2 * iterations`.
    pub total_2n: u64,
    /// `(total_2n - total_n) / iterations`, rounded.
    pub per_iteration: u64,
}

/// [`measure`] with the valgrind program and the iteration count given.
pub fn measure_with(
    valgrind: &str,
    bench_binary: &Path,
    workload: &str,
    iterations: u64,
) -> anyhow::Result<Measurement> {
    if iterations == 0 {
        bail!("iterations must be at least 1");
    }
    check_valgrind(valgrind)?;
    if !bench_binary.exists() {
        bail!(
            "{} not found: build it with `cargo bench -p tasker-engine --bench instructions --no-run`",
            bench_binary.display()
        );
    }
    let total_n = callgrind_total(valgrind, bench_binary, workload, iterations)?;
    let total_2n = callgrind_total(valgrind, bench_binary, workload, 2 * iterations)?;
    let per_iteration = per_iteration(total_n, total_2n, iterations).with_context(|| {
        format!("{workload}: {iterations} iterations took {total_n} instructions, twice as many {total_2n}")
    })?;
    Ok(Measurement {
        iterations,
        total_n,
        total_2n,
        per_iteration,
    })
}

/// `(total_2n - total_n) / n`, rounded to the nearest instruction.
pub(super) fn per_iteration(total_n: u64, total_2n: u64, n: u64) -> anyhow::Result<u64> {
    let Some(difference) = total_2n.checked_sub(total_n) else {
        bail!("the longer run executed fewer instructions than the shorter one");
    };
    Ok((difference + n / 2) / n)
}

/// valgrind is there; otherwise an error that says how to install it.
pub fn check_valgrind(valgrind: &str) -> anyhow::Result<()> {
    let version = Command::new(valgrind)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !version.is_ok_and(|s| s.success()) {
        bail!(
            "{valgrind} not found: instruction counts need valgrind's callgrind; \
             install it with `apt-get install valgrind` (Debian/Ubuntu) or your distribution's valgrind package"
        );
    }
    Ok(())
}

/// Runs `bench_binary workload iterations` under callgrind and returns the
/// program's total instruction count.
fn callgrind_total(
    valgrind: &str,
    bench_binary: &Path,
    workload: &str,
    iterations: u64,
) -> anyhow::Result<u64> {
    // A file of our own (pid and a counter), removed when read.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let out_file = std::env::temp_dir().join(format!(
        "tasker-callgrind-{}-{}.out",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let output = Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(bench_binary)
        // Not arguments: see WORKLOAD_ENV in engine/benches/instructions.rs.
        .env("TASKER_INSTRUCTIONS_WORKLOAD", workload)
        .env("TASKER_INSTRUCTIONS_ITERATIONS", iterations.to_string())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {valgrind}"))?;
    let text = std::fs::read_to_string(&out_file);
    let _ = std::fs::remove_file(&out_file);
    if !output.status.success() {
        bail!(
            "{} {workload} {iterations} under callgrind failed ({}):\n{}",
            bench_binary.display(),
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 20)
        );
    }
    let text =
        text.with_context(|| format!("reading callgrind's output {}", out_file.display()))?;
    parse_callgrind_total(&text).with_context(|| format!("callgrind output of {workload}"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Builds the engine's `instructions` bench target with cargo profile
/// `profile` ([`BENCH_PROFILE`](super::BENCH_PROFILE) is what `cargo bench` uses) and returns
/// the executable. Cargo's progress goes to stderr.
pub fn build_bench(profile: &str) -> anyhow::Result<PathBuf> {
    let output = Command::new("cargo")
        .current_dir(crate::build::repo_root())
        // Incremental builds split and inline code depending on their
        // history: a fresh checkout's counts differed from a worked-in
        // one's by 1.7%. Non-incremental codegen depends on the sources.
        .env("CARGO_INCREMENTAL", "0")
        .args([
            "bench",
            "-p",
            "tasker-engine",
            "--bench",
            "instructions",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "--profile",
            profile,
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !output.status.success() {
        bail!("building the instructions bench failed ({})", output.status);
    }
    bench_executable(&String::from_utf8_lossy(&output.stdout))
}

/// `rustc -V` of the toolchain cargo uses here.
pub fn rustc_version() -> anyhow::Result<String> {
    let output = Command::new("rustc")
        .current_dir(crate::build::repo_root())
        .arg("-V")
        .output()
        .context("running rustc -V")?;
    if !output.status.success() {
        bail!("rustc -V failed ({})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Counts of every workload, from a binary built with `profile` (see
/// [`build_bench`]).
pub fn measure_all(bench_binary: &Path, profile: &str) -> anyhow::Result<InstructionCounts> {
    let mut counts = BTreeMap::new();
    for workload in WORKLOADS {
        counts.insert(workload.to_string(), measure(bench_binary, workload)?);
    }
    Ok(InstructionCounts {
        rustc: rustc_version()?,
        profile: profile.to_string(),
        iterations: DEFAULT_ITERATIONS,
        counts,
    })
}
