//! Tests of reading callgrind's and cargo's output, comparing counts and rendering the verdicts.

use std::path::{Path, PathBuf};

use super::run::per_iteration;
use super::*;

/// The head and tail of a real callgrind 3.19 output file (the cost
/// lines in between trimmed).
const CALLGRIND_OUT: &str = include_str!("../instructions_testdata.callgrind");

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
/// result_serialize must repeat exactly; template_parse within 1e-4
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
            spread <= first.per_iteration as f64 * 1e-4,
            "{workload}: {first:?} / {second:?}"
        );
    }
}
