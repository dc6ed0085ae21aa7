//! Whole-run comparisons on synthetic runs.

use super::testdata::{normal_samples, run, scenario, shifted, step_costs};
use super::*;
use crate::result::StepCosts;

const MEAN_US: f64 = 9_000.0;
const SD_US: f64 = 800.0;

fn samples(seed: u64) -> Vec<u64> {
    normal_samples(seed, 200, MEAN_US, SD_US)
}

#[test]
fn more_statements_regress_with_unchanged_latency() {
    let baseline = run("b", vec![scenario("linear", samples(1), step_costs())]);
    let more_statements = StepCosts {
        statements_per_step: 4.0,
        ..step_costs()
    };
    let current = run("c", vec![scenario("linear", samples(2), more_statements)]);
    let comparison = compare_runs(&baseline, &current, &CompareConfig::default());
    let linear = comparison.scenario("linear").expect("compared");
    assert_eq!(linear.latency_verdict(), Verdict::Unchanged);
    assert_eq!(linear.cost_verdict(), Verdict::Regressed);
    assert_eq!(comparison.overall(), Verdict::Regressed);
    assert!(!comparison.passed());
    assert!(comparison.unconfirmed_wall_clock_regressions().is_empty());
}

#[test]
fn a_diamond_sharing_fewer_transactions_than_its_baseline_did_is_not_a_regression() {
    // The release baseline's middle steps shared most transactions (an old
    // result, without the critical path); this debug run's shared none.
    let shared = StepCosts {
        statements_per_step: 2.98,
        commits_per_step: 2.71,
        ..step_costs()
    };
    let mut baseline = scenario("diamond", samples(1), shared);
    baseline.critical_path_steps = None;
    let unshared = StepCosts {
        statements_per_step: 3.35,
        commits_per_step: 3.25,
        ..shared
    };
    let mut current = scenario("diamond", samples(2), unshared);
    current.critical_path_steps = Some(3);
    let compare = |current: &ScenarioResult| {
        compare_runs(
            &run("b", vec![baseline.clone()]),
            &run("c", vec![current.clone()]),
            &CompareConfig::default(),
        )
    };
    let comparison = compare(&current);
    let diamond = comparison.scenario("diamond").expect("compared");
    assert_eq!(diamond.cost_verdict(), Verdict::Unchanged);
    assert!(render_markdown(&comparison).contains("share a transaction: diamond (+47%)"));
    // As a chain (no step beside another), the same counts regress.
    current.critical_path_steps = Some(4);
    assert_eq!(compare(&current).overall(), Verdict::Regressed);
}

#[test]
fn a_faster_run_improves_and_an_equal_one_is_unchanged() {
    let baseline = run("b", vec![scenario("linear", samples(3), step_costs())]);
    let faster = run(
        "c",
        vec![scenario("linear", shifted(&samples(4), 0.85), step_costs())],
    );
    let same = run("d", vec![scenario("linear", samples(5), step_costs())]);
    let config = CompareConfig::default();
    assert_eq!(
        compare_runs(&baseline, &faster, &config).overall(),
        Verdict::Improved
    );
    assert_eq!(
        compare_runs(&baseline, &same, &config).overall(),
        Verdict::Unchanged
    );
}

#[test]
fn a_slower_run_waits_for_confirmation() {
    let baseline = run("b", vec![scenario("linear", samples(6), step_costs())]);
    let slower = run(
        "c",
        vec![scenario("linear", shifted(&samples(7), 1.15), step_costs())],
    );
    let comparison = compare_runs(&baseline, &slower, &CompareConfig::default());
    assert_eq!(comparison.overall(), Verdict::Regressed);
    assert_eq!(
        comparison.unconfirmed_wall_clock_regressions(),
        vec!["linear".to_string()]
    );
}

#[test]
fn scenarios_on_one_side_only_are_listed() {
    let baseline = run(
        "b",
        vec![
            scenario("linear", samples(8), step_costs()),
            scenario("diamond", samples(9), step_costs()),
        ],
    );
    let current = run(
        "c",
        vec![
            scenario("tree", samples(10), step_costs()),
            scenario("linear", samples(11), step_costs()),
        ],
    );
    let comparison = compare_runs(&baseline, &current, &CompareConfig::default());
    let compared: Vec<&str> = comparison
        .scenarios
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(compared, ["linear"]);
    assert_eq!(comparison.only_in_baseline, ["diamond"]);
    assert_eq!(comparison.only_in_current, ["tree"]);
}

#[test]
fn a_side_without_latency_or_costs_is_noted() {
    let baseline = run("b", vec![scenario("linear", samples(12), step_costs())]);
    let mut bare = scenario("linear", samples(13), step_costs());
    bare.latency = None;
    bare.costs = None;
    let comparison = compare_runs(&baseline, &run("c", vec![bare]), &CompareConfig::default());
    let linear = comparison.scenario("linear").expect("compared");
    assert!(linear.latency.is_none() && linear.costs.is_empty());
    assert_eq!(linear.notes.len(), 2, "{:?}", linear.notes);
    assert_eq!(
        linear.notes[0],
        "not compared: no latency samples in the current run"
    );
    assert_eq!(comparison.overall(), Verdict::Unchanged);
}

#[test]
fn the_comparison_round_trips_through_json() {
    let baseline = run("b", vec![scenario("linear", samples(14), step_costs())]);
    let current = run(
        "c",
        vec![scenario(
            "linear",
            shifted(&samples(15), 1.15),
            step_costs(),
        )],
    );
    let comparison = compare_runs(&baseline, &current, &CompareConfig::default());
    let json = serde_json::to_string(&comparison).expect("serializes");
    let back: Comparison = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, comparison);
    assert!(json.contains("\"verdict\":\"regressed\""), "{json}");
}

#[test]
fn the_markdown_shows_every_table() {
    let baseline = run(
        "b",
        vec![
            scenario("linear", samples(16), step_costs()),
            scenario("diamond", samples(17), step_costs()),
        ],
    );
    let more_statements = StepCosts {
        statements_per_step: 4.0,
        ..step_costs()
    };
    let current = run(
        "c",
        vec![
            scenario("linear", shifted(&samples(18), 1.15), step_costs()),
            scenario("diamond", samples(19), more_statements),
        ],
    );
    let text = render_markdown(&compare_runs(
        &baseline,
        &current,
        &CompareConfig::default(),
    ));
    assert!(
        text.starts_with("**Regression gate: failed** (regressed: linear, diamond)"),
        "{text}"
    );
    assert!(text.contains("| linear | 9.0"), "{text}");
    assert!(
        text.contains("**regressed** (not confirmed by a re-run)"),
        "{text}"
    );
    assert!(text.contains("**3.00 → 4.00 (+33.3%)**"), "{text}");
    assert!(
        text.contains("### Throughput (informative, not gating)"),
        "{text}"
    );
    assert!(!text.contains("### Not compared"), "{text}");
}

/// An A/B scenario: paired latency decides with its re-run, and each
/// side's costs are compared like a stored baseline's.
#[test]
fn ab_scenarios_combine_paired_latency_and_costs() {
    let config = CompareConfig::default();
    let a = samples(40);
    let slower = shifted(&a, 1.12);
    let paired = compare_interleaved(&a, &slower, &config).expect("pairs");
    assert_eq!(paired.verdict, Verdict::Regressed);
    let costs = step_costs();
    let mut scenario =
        compare_ab_scenario("linear", paired, Some(&costs), Some(&costs), &config, 1.0);
    assert_eq!(scenario.cost_verdict(), Verdict::Unchanged);
    assert_eq!(scenario.verdict(), Verdict::Regressed);
    assert!(scenario.paired.as_ref().unwrap().needs_confirmation());
    let same = compare_interleaved(&a, &a, &config).expect("pairs");
    scenario.paired.as_mut().unwrap().rerun = Some(same);
    assert_eq!(scenario.verdict(), Verdict::Unchanged);

    let more_wal = StepCosts {
        wal_records_per_step: costs.wal_records_per_step * 1.5,
        ..costs
    };
    let unchanged = compare_interleaved(&a, &a, &config).expect("pairs");
    let costlier = compare_ab_scenario(
        "linear",
        unchanged,
        Some(&costs),
        Some(&more_wal),
        &config,
        1.0,
    );
    assert_eq!(costlier.verdict(), Verdict::Regressed);
    let comparison = Comparison {
        baseline_id: "main (abc)".into(),
        current_id: "this build".into(),
        config,
        scenarios: vec![scenario, costlier],
        only_in_baseline: Vec::new(),
        only_in_current: Vec::new(),
    };
    let markdown = render_markdown(&comparison);
    assert!(markdown.contains("A/B interleaved"), "{markdown}");
    assert!(
        markdown.contains("unchanged: not reproduced by a second A/B run"),
        "{markdown}"
    );
    assert!(!comparison.passed());
}

/// Runs of different machines or builds: latency is shown, not judged.
#[test]
fn incomparable_runs_show_latency_without_a_verdict() {
    let baseline = run("b", vec![scenario("linear", samples(50), step_costs())]);
    let slower = run(
        "c",
        vec![scenario("linear", shifted(&samples(51), 2.0), step_costs())],
    );
    let config = CompareConfig {
        noise_threshold: f64::INFINITY,
        ..CompareConfig::default()
    };
    let comparison = compare_runs(&baseline, &slower, &config);
    assert!(comparison.passed());
    let markdown = render_markdown(&comparison);
    assert!(
        markdown.contains("not judged (runs not comparable)"),
        "{markdown}"
    );
    assert!(!markdown.contains("within noise"), "{markdown}");
}
