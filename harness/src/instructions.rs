//! Exact instruction counts of the engine's CPU-only hot-path pieces,
//! for CI to compare run to run without timing noise.
//!
//! The workloads live in the engine's `instructions` bench target
//! (`engine/benches/instructions.rs`): `instructions <workload> <n>` runs
//! one workload `n` times, single-threaded, with fixed inputs. This module
//! builds that binary ([`build_bench`]), runs it under
//! `valgrind --tool=callgrind` and reads the total instruction count
//! (`Ir`) from callgrind's output file ([`measure`]).
//!
//! Setup is taken out by difference, not by callgrind client requests
//! (C macros and `unsafe`) or `--toggle-collect` (symbol patterns): the
//! binary runs once with `n` and once with `2n` iterations; start-up,
//! reading the inputs and exit are the same in both runs, so
//! `(total(2n) - total(n)) / n` is the count of one iteration. The result
//! is the mean of iterations `n+1..=2n`, rounded to a whole instruction.
//!
//! How exact (measured with valgrind 3.19): both workloads repeat to the
//! instruction, run after run. (`template_parse` used to vary by a few
//! instructions in 1.5 million: template validation indexed steps in a std
//! `HashMap`, whose SipHash keys come from the OS per process; it is a
//! `BTreeMap` now. Keep hashed maps with random seeds out of these
//! workloads.) Iterations are not all alike (the allocator's state
//! evolves), so the mean moves by up to ~0.1% with `n`: counts are
//! comparable at the same `n` only, and stored counts say which `n` they
//! used.
//!
//! Nor may they depend on where the checkout is: the workload binary has
//! its inputs compiled in and takes the workload from the environment
//! (see `engine/benches/instructions.rs`), because an allocation sized by a
//! path (argv[0] was one) changes the allocator's state and the count.
//!
//! Counts depend on the compiler and the build profile, so stored counts
//! ([`InstructionCounts`]) carry both, and [`compare`] against a baseline
//! from another rustc, profile or iteration count reports the changes as
//! informative only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The workloads the `instructions` bench binary knows.
pub const WORKLOADS: [&str; 2] = ["template_parse", "result_serialize"];

/// Iterations of the shorter run (the longer runs twice as many). Under
/// callgrind one iteration of either workload takes a few milliseconds at
/// most, so a measurement (both runs) takes seconds.
pub const DEFAULT_ITERATIONS: u64 = 200;

/// Cargo profile `cargo bench` builds with.
pub const BENCH_PROFILE: &str = "bench";

/// A suggested tolerance for [`compare`]: counts are exact, so anything
/// above this is a real change in the code that runs (ours or a
/// dependency's), not noise.
pub const DEFAULT_TOLERANCE_PCT: f64 = 1.0;

const VALGRIND: &str = "valgrind";

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
fn per_iteration(total_n: u64, total_2n: u64, n: u64) -> anyhow::Result<u64> {
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

/// The total `Ir` (instructions executed) of a callgrind output file: its
/// `totals:` line, or the `summary:` line when there is no `totals:`.
/// The event's position comes from the `events:` line.
pub fn parse_callgrind_total(text: &str) -> anyhow::Result<u64> {
    let mut events: Option<Vec<&str>> = None;
    let mut summary: Option<&str> = None;
    let mut totals: Option<&str> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("events:") {
            events = Some(rest.split_whitespace().collect());
        } else if let Some(rest) = line.strip_prefix("summary:") {
            summary = Some(rest);
        } else if let Some(rest) = line.strip_prefix("totals:") {
            totals = Some(rest);
        }
    }
    let events = events.context("no `events:` line: not a callgrind output file")?;
    let index = events
        .iter()
        .position(|e| *e == "Ir")
        .with_context(|| format!("callgrind counted {events:?}, not Ir"))?;
    let line = totals
        .or(summary)
        .context("no `totals:` or `summary:` line (did the program finish?)")?;
    let value = line
        .split_whitespace()
        .nth(index)
        .with_context(|| format!("`{}` has no Ir column", line.trim()))?;
    value
        .parse()
        .with_context(|| format!("Ir total {value:?} is not a number"))
}

/// Builds the engine's `instructions` bench target with cargo profile
/// `profile` ([`BENCH_PROFILE`] is what `cargo bench` uses) and returns
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

/// The `instructions` bench executable in cargo's JSON messages.
pub fn bench_executable(cargo_json: &str) -> anyhow::Result<PathBuf> {
    cargo_json
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "instructions")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no executable for the `instructions` bench")
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

/// Instructions per iteration of each workload, and what built them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionCounts {
    /// `rustc -V`, e.g. "rustc 1.89.0 (29483883e 2025-08-04)".
    pub rustc: String,
    /// The cargo profile of the bench binary ("bench").
    pub profile: String,
    /// `n` of the measurement (see the module's documentation).
    pub iterations: u64,
    pub counts: BTreeMap<String, u64>,
}

impl InstructionCounts {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Why counts of `self` and `other` are not comparable (another rustc,
    /// profile or iteration count), or `None` when they are.
    pub fn incomparable(&self, other: &Self) -> Option<String> {
        let mut reasons = Vec::new();
        if self.rustc != other.rustc {
            reasons.push(format!("rustc differs ({} / {})", self.rustc, other.rustc));
        }
        if self.profile != other.profile {
            reasons.push(format!(
                "profile differs ({} / {})",
                self.profile, other.profile
            ));
        }
        if self.iterations != other.iterations {
            reasons.push(format!(
                "iterations differ ({} / {})",
                self.iterations, other.iterations
            ));
        }
        (!reasons.is_empty()).then(|| reasons.join(", "))
    }
}

/// What became of one workload's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Changed by at most the tolerance.
    Within,
    Regressed,
    Improved,
    /// Only in the current counts.
    Added,
    /// Only in the baseline.
    Removed,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Within => "within tolerance",
            Status::Regressed => "regressed",
            Status::Improved => "improved",
            Status::Added => "new",
            Status::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub workload: String,
    pub baseline: Option<u64>,
    pub current: Option<u64>,
    /// (current - baseline) / baseline, in percent.
    pub change_pct: Option<f64>,
    pub status: Status,
    /// Why this verdict cannot fail a gate (rustc, profile or iterations
    /// differ), if so.
    pub informative: Option<String>,
}

impl Verdict {
    /// A regression between comparable builds.
    pub fn is_failure(&self) -> bool {
        self.status == Status::Regressed && self.informative.is_none()
    }
}

/// Verdicts per workload (in name order): beyond `tolerance_pct` up is a
/// regression, down an improvement. When rustc, the profile or the
/// iteration count differ every verdict is informative only: it says so and
/// never fails.
pub fn compare(
    baseline: &InstructionCounts,
    current: &InstructionCounts,
    tolerance_pct: f64,
) -> Vec<Verdict> {
    let informative = baseline.incomparable(current);
    let workloads: std::collections::BTreeSet<&String> = baseline
        .counts
        .keys()
        .chain(current.counts.keys())
        .collect();
    workloads
        .into_iter()
        .map(|workload| {
            let before = baseline.counts.get(workload).copied();
            let after = current.counts.get(workload).copied();
            let (change_pct, status) = match (before, after) {
                (Some(b), Some(a)) => {
                    let change = if b == 0 {
                        if a == 0 {
                            0.0
                        } else {
                            f64::INFINITY
                        }
                    } else {
                        (a as f64 - b as f64) / b as f64 * 100.0
                    };
                    let status = if change > tolerance_pct {
                        Status::Regressed
                    } else if change < -tolerance_pct {
                        Status::Improved
                    } else {
                        Status::Within
                    };
                    (Some(change), status)
                }
                (None, _) => (None, Status::Added),
                (_, None) => (None, Status::Removed),
            };
            Verdict {
                workload: workload.clone(),
                baseline: before,
                current: after,
                change_pct,
                status,
                informative: informative.clone(),
            }
        })
        .collect()
}

/// Any verdict that fails a gate.
pub fn any_failure(verdicts: &[Verdict]) -> bool {
    verdicts.iter().any(Verdict::is_failure)
}

/// A headline and a table of the verdicts.
pub fn render_markdown(
    baseline: &InstructionCounts,
    current: &InstructionCounts,
    verdicts: &[Verdict],
    tolerance_pct: f64,
) -> String {
    let headline = match baseline.incomparable(current) {
        Some(reason) => format!(
            "**Instruction counts: informative only** ({reason}): changes are shown, none fails."
        ),
        None if any_failure(verdicts) => {
            let regressed: Vec<&str> = verdicts
                .iter()
                .filter(|v| v.is_failure())
                .map(|v| v.workload.as_str())
                .collect();
            format!(
                "**Instruction counts: regressed** ({}; tolerance ±{tolerance_pct}%).",
                regressed.join(", ")
            )
        }
        None => format!("**Instruction counts: passed** (tolerance ±{tolerance_pct}%)."),
    };
    let mut lines = vec![
        headline,
        String::new(),
        format!(
            "Instructions per iteration (callgrind). Baseline: {}, profile `{}`, n = {}. Current: {}, profile `{}`, n = {}.",
            baseline.rustc,
            baseline.profile,
            baseline.iterations,
            current.rustc,
            current.profile,
            current.iterations
        ),
        String::new(),
        "| workload | baseline | current | change | verdict |".to_string(),
        "|---|---:|---:|---:|---|".to_string(),
    ];
    for v in verdicts {
        let count = |c: Option<u64>| c.map_or("—".to_string(), group_thousands);
        let change = v
            .change_pct
            .map_or("—".to_string(), |c| format!("{c:+.2}%"));
        let verdict = match (&v.informative, v.status) {
            (Some(_), Status::Regressed | Status::Improved) => {
                format!("{} (informative)", v.status.label())
            }
            _ => v.status.label().to_string(),
        };
        lines.push(format!(
            "| {} | {} | {} | {change} | {verdict} |",
            v.workload,
            count(v.baseline),
            count(v.current)
        ));
    }
    lines.join("\n")
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head and tail of a real callgrind 3.19 output file (the cost
    /// lines in between trimmed).
    const CALLGRIND_OUT: &str = include_str!("instructions_testdata.callgrind");

    #[test]
    fn reads_the_ir_total_of_a_callgrind_file() {
        assert_eq!(parse_callgrind_total(CALLGRIND_OUT).unwrap(), 16_466_132);
    }

    #[test]
    fn summary_is_used_without_totals_and_the_ir_column_is_found() {
        let text = "events: Bc Ir\nsummary: 7 1234\n";
        assert_eq!(parse_callgrind_total(text).unwrap(), 1234);
        let text = "events: Ir\nsummary: 10\nfn=(1) main\n1 5\ntotals: 11\n";
        assert_eq!(parse_callgrind_total(text).unwrap(), 11, "totals wins");
    }

    #[test]
    fn a_file_without_events_or_totals_is_an_error() {
        let error = parse_callgrind_total("hello\n").unwrap_err().to_string();
        assert!(error.contains("events"), "{error}");
        let error = parse_callgrind_total("events: Ir\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("totals"), "{error}");
        let error = parse_callgrind_total("events: Dr\ntotals: 3\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not Ir"), "{error}");
    }

    #[test]
    fn per_iteration_is_the_rounded_difference() {
        assert_eq!(per_iteration(1_000_000, 1_500_000, 100).unwrap(), 5_000);
        assert_eq!(per_iteration(1_000, 1_249, 100).unwrap(), 2, "2.49 -> 2");
        assert_eq!(per_iteration(1_000, 1_250, 100).unwrap(), 3, "2.5 -> 3");
        assert!(per_iteration(2_000, 1_000, 10).is_err());
    }

    #[test]
    fn missing_valgrind_says_how_to_install_it() {
        let error = check_valgrind("valgrind-that-is-not-installed")
            .unwrap_err()
            .to_string();
        assert!(error.contains("apt-get install valgrind"), "{error}");
        let error = measure_with(
            "valgrind-that-is-not-installed",
            Path::new("/nonexistent"),
            "template_parse",
            10,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("apt-get install valgrind"), "{error}");
    }

    #[test]
    fn the_bench_executable_is_found_in_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"tasker_engine"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"hot_path"},"executable":"/t/release/deps/hot_path-1"}
{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"instructions"},"executable":"/t/release/deps/instructions-2"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            bench_executable(messages).unwrap(),
            PathBuf::from("/t/release/deps/instructions-2")
        );
        assert!(bench_executable("{\"reason\":\"build-finished\"}").is_err());
    }

    fn counts(rustc: &str, profile: &str, pairs: &[(&str, u64)]) -> InstructionCounts {
        InstructionCounts {
            rustc: rustc.into(),
            profile: profile.into(),
            iterations: DEFAULT_ITERATIONS,
            counts: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    const RUSTC: &str = "rustc 1.89.0 (29483883e 2025-08-04)";

    #[test]
    fn verdicts_within_regressed_improved() {
        let baseline = counts(
            RUSTC,
            "bench",
            &[("a", 100_000), ("b", 100_000), ("c", 100_000)],
        );
        let current = counts(
            RUSTC,
            "bench",
            &[("a", 100_900), ("b", 101_100), ("c", 98_000)],
        );
        let verdicts = compare(&baseline, &current, 1.0);
        let statuses: Vec<Status> = verdicts.iter().map(|v| v.status).collect();
        assert_eq!(
            statuses,
            [Status::Within, Status::Regressed, Status::Improved]
        );
        assert!((verdicts[1].change_pct.unwrap() - 1.1).abs() < 1e-9);
        assert!(verdicts.iter().all(|v| v.informative.is_none()));
        assert!(any_failure(&verdicts));
        let markdown = render_markdown(&baseline, &current, &verdicts, 1.0);
        assert!(
            markdown.starts_with("**Instruction counts: regressed** (b;"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| b | 100,000 | 101,100 | +1.10% | regressed |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| c | 100,000 | 98,000 | -2.00% | improved |"),
            "{markdown}"
        );
    }

    #[test]
    fn unchanged_counts_pass() {
        let baseline = counts(RUSTC, "bench", &[("a", 123_456_789)]);
        let verdicts = compare(&baseline, &baseline.clone(), 0.0);
        assert_eq!(verdicts[0].status, Status::Within);
        assert!(!any_failure(&verdicts));
        let markdown = render_markdown(&baseline, &baseline, &verdicts, 0.0);
        assert!(markdown.starts_with("**Instruction counts: passed**"));
        assert!(markdown.contains("| a | 123,456,789 | 123,456,789 | +0.00% | within tolerance |"));
    }

    #[test]
    fn another_rustc_or_profile_is_informative_only() {
        let baseline = counts(RUSTC, "bench", &[("a", 100_000)]);
        let newer = counts(
            "rustc 1.90.0 (1159e78c4 2025-09-14)",
            "bench",
            &[("a", 150_000)],
        );
        let verdicts = compare(&baseline, &newer, 1.0);
        assert_eq!(verdicts[0].status, Status::Regressed);
        assert!(verdicts[0]
            .informative
            .as_deref()
            .unwrap()
            .contains("rustc differs"));
        assert!(!verdicts[0].is_failure());
        assert!(!any_failure(&verdicts));
        let markdown = render_markdown(&baseline, &newer, &verdicts, 1.0);
        assert!(
            markdown.starts_with("**Instruction counts: informative only** (rustc differs"),
            "{markdown}"
        );
        assert!(markdown.contains("regressed (informative)"), "{markdown}");

        let other_profile = counts(RUSTC, "profiling", &[("a", 150_000)]);
        let verdicts = compare(&baseline, &other_profile, 1.0);
        assert!(verdicts[0]
            .informative
            .as_deref()
            .unwrap()
            .contains("profile differs"));
        assert!(!any_failure(&verdicts));

        let mut other_n = counts(RUSTC, "bench", &[("a", 150_000)]);
        other_n.iterations *= 2;
        let verdicts = compare(&baseline, &other_n, 1.0);
        assert!(verdicts[0]
            .informative
            .as_deref()
            .unwrap()
            .contains("iterations differ"));
        assert!(!any_failure(&verdicts));
    }

    #[test]
    fn added_and_removed_workloads_are_listed_not_failed() {
        let baseline = counts(RUSTC, "bench", &[("gone", 10)]);
        let current = counts(RUSTC, "bench", &[("fresh", 20)]);
        let verdicts = compare(&baseline, &current, 1.0);
        let statuses: Vec<(&str, Status)> = verdicts
            .iter()
            .map(|v| (v.workload.as_str(), v.status))
            .collect();
        assert_eq!(
            statuses,
            [("fresh", Status::Added), ("gone", Status::Removed)]
        );
        assert!(!any_failure(&verdicts));
        let markdown = render_markdown(&baseline, &current, &verdicts, 1.0);
        assert!(
            markdown.contains("| fresh | — | 20 | — | new |"),
            "{markdown}"
        );
    }

    #[test]
    fn counts_round_trip_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counts").join("main.json");
        let stored = counts(
            RUSTC,
            "bench",
            &[("template_parse", 1), ("result_serialize", 2)],
        );
        stored.save(&path).unwrap();
        assert_eq!(InstructionCounts::load(&path).unwrap(), stored);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"rustc\""), "{text}");
    }

    /// Needs valgrind; builds the bench binary with cargo unless
    /// TASKER_INSTRUCTIONS_BIN names it. Run with `--ignored`.
    /// result_serialize must repeat exactly; template_parse within 1e-5
    /// (see the module's documentation).
    #[test]
    #[ignore]
    fn measures_both_workloads_repeatably() {
        let bin = match std::env::var("TASKER_INSTRUCTIONS_BIN") {
            Ok(path) => PathBuf::from(path),
            Err(_) => build_bench(BENCH_PROFILE).unwrap(),
        };
        let iterations = std::env::var("TASKER_INSTRUCTIONS_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(DEFAULT_ITERATIONS);
        for workload in WORKLOADS {
            let first = measure_with(VALGRIND, &bin, workload, iterations).unwrap();
            let second = measure_with(VALGRIND, &bin, workload, iterations).unwrap();
            eprintln!("{workload}: {first:?}\n{workload}: {second:?}");
            if workload == "result_serialize" {
                assert_eq!(first, second, "{workload}");
            }
            let spread = first.per_iteration.abs_diff(second.per_iteration) as f64;
            assert!(
                spread <= first.per_iteration as f64 * 1e-5,
                "{workload}: {first:?} / {second:?}"
            );
        }
    }
}
