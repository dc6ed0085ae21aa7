//! The gate: a wall-clock regression fails only when a re-run reproduces
//! it; deterministic cost regressions fail at once.

use std::collections::VecDeque;

use anyhow::Context;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{compare_latency, CompareConfig, Comparison, LatencyComparison, Verdict};
use crate::result::RunResult;

/// Runs scenarios again, the way the run under test was run (same
/// binary, configuration and plan), for the gate's confirmation.
#[async_trait]
pub trait Rerun: Send {
    async fn rerun(&mut self, scenarios: &[String]) -> anyhow::Result<RunResult>;
}

/// A [`Rerun`] that hands back prepared results in order, and records what
/// it was asked for.
#[derive(Debug, Default)]
pub struct StoredReruns {
    results: VecDeque<RunResult>,
    /// The scenario lists asked for, in order.
    pub requests: Vec<Vec<String>>,
}

impl StoredReruns {
    pub fn new(results: impl IntoIterator<Item = RunResult>) -> Self {
        Self {
            results: results.into_iter().collect(),
            requests: Vec::new(),
        }
    }
}

#[async_trait]
impl Rerun for StoredReruns {
    async fn rerun(&mut self, scenarios: &[String]) -> anyhow::Result<RunResult> {
        self.requests.push(scenarios.to_vec());
        self.results
            .pop_front()
            .context("no stored re-run result left")
    }
}

/// The re-run of a scenario whose latency regressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confirmation {
    pub rerun_id: String,
    /// The re-run's samples against the baseline's: this decides. None when
    /// the re-run brought no comparable samples (the regression then stands).
    pub rerun: Option<LatencyComparison>,
    /// First-run and re-run samples pooled against the baseline's: the best
    /// estimate of the change's size, reported, not deciding.
    pub pooled: Option<LatencyComparison>,
    /// The regression stands.
    pub confirmed: bool,
}

/// Takes the first comparison of `current` against `baseline`; re-runs,
/// in one call, every scenario whose only regression is wall-clock, and
/// keeps such a regression only if the re-run regresses against the
/// baseline too. Returns the comparison with the confirmations filled in.
pub async fn gate(
    first: Comparison,
    baseline: &RunResult,
    current: &RunResult,
    rerun: &mut dyn Rerun,
) -> anyhow::Result<Comparison> {
    anyhow::ensure!(
        first.baseline_id == baseline.id && first.current_id == current.id,
        "the comparison is of {} against {}, not of {} against {}",
        first.current_id,
        first.baseline_id,
        current.id,
        baseline.id
    );
    let pending = first.unconfirmed_wall_clock_regressions();
    if pending.is_empty() {
        return Ok(first);
    }
    let rerun_result = rerun.rerun(&pending).await.with_context(|| {
        format!(
            "re-running {} to confirm their latency regression",
            pending.join(", ")
        )
    })?;
    let mut gated = first;
    for scenario in gated
        .scenarios
        .iter_mut()
        .filter(|s| pending.contains(&s.name))
    {
        let confirmation = confirm(
            &scenario.name,
            baseline,
            current,
            &rerun_result,
            &gated.config,
        );
        if confirmation.rerun.is_none() {
            let note = format!(
                "re-run {} has no comparable latency samples: the regression stands",
                rerun_result.id
            );
            scenario.notes.push(note);
        }
        scenario.confirmation = Some(confirmation);
    }
    Ok(gated)
}

fn confirm(
    name: &str,
    baseline: &RunResult,
    current: &RunResult,
    rerun: &RunResult,
    config: &CompareConfig,
) -> Confirmation {
    let samples = |run: &RunResult| -> Vec<u64> {
        let latency = run.scenario(name).and_then(|s| s.latency.as_ref());
        latency.map(|l| l.samples_us.clone()).unwrap_or_default()
    };
    let (baseline_us, rerun_us) = (samples(baseline), samples(rerun));
    let rerun_comparison = compare_latency(&baseline_us, &rerun_us, config).ok();
    let pooled_us: Vec<u64> = samples(current).into_iter().chain(rerun_us).collect();
    let pooled = rerun_comparison
        .as_ref()
        .and_then(|_| compare_latency(&baseline_us, &pooled_us, config).ok());
    Confirmation {
        rerun_id: rerun.id.clone(),
        confirmed: rerun_comparison
            .as_ref()
            .is_none_or(|c| c.verdict == Verdict::Regressed),
        rerun: rerun_comparison,
        pooled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare_runs;
    use crate::compare::testdata::{normal_samples, run, scenario, shifted, step_costs};
    use crate::result::StepCosts;

    fn linear(id: &str, samples_us: Vec<u64>) -> RunResult {
        run(id, vec![scenario("linear", samples_us, step_costs())])
    }

    /// A first run 25% slower: large enough that pooling it with an
    /// unchanged re-run still shows a regression (about +12%, its interval
    /// wholly beyond the 5% noise threshold), which the tests below rely on.
    fn baseline_and_slower_run() -> (RunResult, RunResult) {
        let baseline = linear("baseline", normal_samples(11, 200, 9_000.0, 800.0));
        let current = linear(
            "current",
            shifted(&normal_samples(12, 200, 9_000.0, 800.0), 1.25),
        );
        (baseline, current)
    }

    async fn gate_with(
        baseline: &RunResult,
        current: &RunResult,
        reruns: &mut StoredReruns,
    ) -> Comparison {
        let first = compare_runs(baseline, current, &CompareConfig::default());
        gate(first, baseline, current, reruns)
            .await
            .expect("gate runs")
    }

    #[tokio::test]
    async fn a_regression_the_rerun_does_not_reproduce_passes() {
        let (baseline, current) = baseline_and_slower_run();
        let first = compare_runs(&baseline, &current, &CompareConfig::default());
        assert_eq!(
            first.overall(),
            Verdict::Regressed,
            "the first run regresses"
        );
        let mut reruns =
            StoredReruns::new([linear("rerun", normal_samples(13, 200, 9_000.0, 800.0))]);
        let gated = gate(first, &baseline, &current, &mut reruns)
            .await
            .expect("gate runs");
        assert_eq!(reruns.requests, vec![vec!["linear".to_string()]]);
        assert!(gated.passed(), "{gated:#?}");
        let confirmation = gated.scenarios[0].confirmation.as_ref().expect("re-run");
        assert!(!confirmation.confirmed);
        assert_eq!(confirmation.rerun_id, "rerun");
        // Pooling would have kept the disturbed first run in the evidence.
        let pooled = confirmation.pooled.as_ref().expect("pooled comparison");
        assert_eq!(pooled.verdict, Verdict::Regressed, "{pooled:?}");
    }

    #[tokio::test]
    async fn a_regression_the_rerun_reproduces_fails() {
        let (baseline, current) = baseline_and_slower_run();
        let slower_again = shifted(&normal_samples(14, 200, 9_000.0, 800.0), 1.15);
        let mut reruns = StoredReruns::new([linear("rerun", slower_again)]);
        let gated = gate_with(&baseline, &current, &mut reruns).await;
        assert_eq!(gated.overall(), Verdict::Regressed);
        let confirmation = gated.scenarios[0].confirmation.as_ref().expect("re-run");
        assert!(confirmation.confirmed);
        let pooled = confirmation.pooled.as_ref().expect("pooled comparison");
        assert_eq!(pooled.current_samples, 400);
        assert_eq!(pooled.verdict, Verdict::Regressed);
    }

    #[tokio::test]
    async fn a_deterministic_regression_fails_without_a_rerun() {
        let samples = normal_samples(15, 200, 9_000.0, 800.0);
        let baseline = linear("baseline", samples.clone());
        let more_statements = StepCosts {
            statements_per_step: 4.0,
            ..step_costs()
        };
        let current = run(
            "current",
            vec![scenario("linear", samples, more_statements)],
        );
        let mut reruns = StoredReruns::default();
        let gated = gate_with(&baseline, &current, &mut reruns).await;
        assert!(reruns.requests.is_empty());
        assert_eq!(gated.overall(), Verdict::Regressed);
        assert_eq!(gated.scenarios[0].latency_verdict(), Verdict::Unchanged);
    }

    #[tokio::test]
    async fn a_rerun_without_the_scenario_leaves_the_regression_standing() {
        let (baseline, current) = baseline_and_slower_run();
        let mut reruns = StoredReruns::new([run("rerun", vec![])]);
        let gated = gate_with(&baseline, &current, &mut reruns).await;
        assert_eq!(gated.overall(), Verdict::Regressed);
        assert!(gated.scenarios[0]
            .notes
            .iter()
            .any(|n| n.contains("no comparable latency samples")));
    }

    #[tokio::test]
    async fn a_failed_rerun_is_an_error() {
        let (baseline, current) = baseline_and_slower_run();
        let first = compare_runs(&baseline, &current, &CompareConfig::default());
        let error = gate(first, &baseline, &current, &mut StoredReruns::default())
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("re-running linear"),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn the_gate_refuses_a_comparison_of_other_runs() {
        let (baseline, current) = baseline_and_slower_run();
        let first = compare_runs(&baseline, &current, &CompareConfig::default());
        let other = linear("other", vec![]);
        assert!(gate(first, &baseline, &other, &mut StoredReruns::default())
            .await
            .is_err());
    }
}
