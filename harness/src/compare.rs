//! Comparison of two runs and the regression gate (see
//! docs/regression-gate.md for the rule in prose).
//!
//! Per scenario present in both runs:
//! - wall-clock latency: Mann-Whitney U on the raw samples and a bootstrap
//!   interval of the relative change of medians; a change counts only when
//!   it is significant *and* its whole interval lies beyond the noise
//!   threshold ([`latency`]);
//! - deterministic per-step costs: each counter against a small tolerance
//!   ([`costs`]);
//! - throughput: reported, never gating ([`throughput`]).
//!
//! [`gate`](mod@gate) confirms wall-clock-only regressions by a re-run;
//! [`compare_interleaved`] is the paired test of A/B mode;
//! [`render_markdown`] is the table the report embeds.

use serde::{Deserialize, Serialize};

use crate::result::{RunResult, ScenarioResult, StepCosts};

pub mod costs;
pub mod gate;
pub mod latency;
pub mod paired;
pub mod render;
pub mod stats;
#[cfg(test)]
pub(crate) mod testdata;
pub mod throughput;

pub use costs::{compare_costs, CostChange, CostMetric};
pub use gate::{gate, Confirmation, Rerun, StoredReruns};
pub use latency::{compare_latency, LatencyComparison};
pub use paired::{compare_interleaved, PairedComparison, PairedOutcome};
pub use render::render_markdown;
pub use throughput::{compare_throughput, ThroughputChange};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Unchanged,
    Regressed,
}

impl Verdict {
    /// Regressed if any is, else Improved if any is, else Unchanged.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut combined = Verdict::Unchanged;
        for verdict in verdicts {
            match verdict {
                Verdict::Regressed => return Verdict::Regressed,
                Verdict::Improved => combined = Verdict::Improved,
                Verdict::Unchanged => {}
            }
        }
        combined
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Regressed => "regressed",
        }
    }
}

/// The thresholds of the rule. Every share is a fraction (0.05 = 5%).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompareConfig {
    /// A latency change counts only when its whole confidence interval lies
    /// beyond ± this share of the baseline median.
    pub noise_threshold: f64,
    /// A latency change counts only when the rank test's p-value is below this.
    pub significance_level: f64,
    /// Coverage of the bootstrap interval.
    pub confidence_level: f64,
    pub bootstrap_resamples: usize,
    /// Fixed so the same two runs always give the same interval.
    pub bootstrap_seed: u64,
    /// Fewer latency samples (or A/B pairs) than this on either side: not compared.
    pub min_samples: usize,
    /// Allowed relative change of statements and commits per step: they
    /// move a few percent on DAGs with parallel branches, whose results
    /// are sometimes processed in one batch and sometimes in two.
    pub statement_tolerance: f64,
    /// Allowed relative change of rows written and WAL records per step.
    pub cost_tolerance: f64,
    /// Allowed relative change of WAL bytes per step (full-page images vary).
    pub wal_bytes_tolerance: f64,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            noise_threshold: 0.05,
            significance_level: 0.05,
            confidence_level: 0.95,
            bootstrap_resamples: 2_000,
            bootstrap_seed: 0x7A5C_E2B0,
            min_samples: 20,
            statement_tolerance: 0.10,
            cost_tolerance: 0.02,
            wal_bytes_tolerance: 0.05,
        }
    }
}

/// Two runs compared, scenario by scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline_id: String,
    pub current_id: String,
    pub config: CompareConfig,
    /// Scenarios present in both runs, in the baseline's order.
    pub scenarios: Vec<ScenarioComparison>,
    pub only_in_baseline: Vec<String>,
    pub only_in_current: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioComparison {
    pub name: String,
    /// None when either side has no (or too few) latency samples.
    pub latency: Option<LatencyComparison>,
    /// Set by [`gate`](fn@gate::gate) when the latency regressed and was re-run.
    pub confirmation: Option<Confirmation>,
    /// A/B mode (`gate --against`): the interleaved comparison, in place
    /// of `latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairedOutcome>,
    /// One entry per cost counter; empty when either side has no costs.
    pub costs: Vec<CostChange>,
    /// Informative only: never part of the verdict.
    pub throughput: Vec<ThroughputChange>,
    /// What could not be compared, and why.
    pub notes: Vec<String>,
}

impl Comparison {
    /// Regressed if any scenario regressed (after confirmation, when the
    /// gate ran), else Improved if any improved, else Unchanged.
    pub fn overall(&self) -> Verdict {
        Verdict::combine(self.scenarios.iter().map(ScenarioComparison::verdict))
    }

    pub fn passed(&self) -> bool {
        self.overall() != Verdict::Regressed
    }

    pub fn scenario(&self, name: &str) -> Option<&ScenarioComparison> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// Scenarios whose only regression is wall-clock and not yet re-run.
    pub fn unconfirmed_wall_clock_regressions(&self) -> Vec<String> {
        let pending = self.scenarios.iter().filter(|s| s.needs_confirmation());
        pending.map(|s| s.name.clone()).collect()
    }
}

impl ScenarioComparison {
    /// The latency verdict, with a regression the re-run did not reproduce
    /// counted as Unchanged.
    pub fn latency_verdict(&self) -> Verdict {
        if let Some(paired) = &self.paired {
            return paired.verdict();
        }
        let Some(latency) = &self.latency else {
            return Verdict::Unchanged;
        };
        match (&self.confirmation, latency.verdict) {
            (Some(confirmation), Verdict::Regressed) if !confirmation.confirmed => {
                Verdict::Unchanged
            }
            (_, verdict) => verdict,
        }
    }

    pub fn cost_verdict(&self) -> Verdict {
        Verdict::combine(self.costs.iter().map(|c| c.verdict))
    }

    pub fn verdict(&self) -> Verdict {
        Verdict::combine([self.latency_verdict(), self.cost_verdict()])
    }

    /// Latency regressed, no deterministic cost did, and no re-run yet.
    pub fn needs_confirmation(&self) -> bool {
        let latency_regressed =
            self.latency.as_ref().map(|l| l.verdict) == Some(Verdict::Regressed);
        latency_regressed
            && self.confirmation.is_none()
            && self.cost_verdict() != Verdict::Regressed
    }
}

/// Compares `current` against `baseline`, scenario by scenario.
pub fn compare_runs(
    baseline: &RunResult,
    current: &RunResult,
    config: &CompareConfig,
) -> Comparison {
    let names_missing_from = |run: &RunResult, other: &RunResult| -> Vec<String> {
        let missing = other
            .scenarios
            .iter()
            .filter(|s| run.scenario(&s.name).is_none());
        missing.map(|s| s.name.clone()).collect()
    };
    let scenarios = baseline
        .scenarios
        .iter()
        .filter_map(|b| Some(compare_scenario(b, current.scenario(&b.name)?, config)))
        .collect();
    Comparison {
        baseline_id: baseline.id.clone(),
        current_id: current.id.clone(),
        config: config.clone(),
        scenarios,
        only_in_baseline: names_missing_from(current, baseline),
        only_in_current: names_missing_from(baseline, current),
    }
}

/// One scenario of both runs compared.
pub fn compare_scenario(
    baseline: &ScenarioResult,
    current: &ScenarioResult,
    config: &CompareConfig,
) -> ScenarioComparison {
    let mut notes = Vec::new();
    let latency = match (&baseline.latency, &current.latency) {
        (Some(b), Some(c)) => compare_latency(&b.samples_us, &c.samples_us, config)
            .map_err(|why| notes.push(format!("latency not compared: {why}")))
            .ok(),
        (b, c) => {
            note_one_sided(&mut notes, "latency samples", b.is_some(), c.is_some());
            None
        }
    };
    let costs = match (&baseline.costs, &current.costs) {
        (Some(b), Some(c)) => {
            let spread = baseline.sharing_spread().max(current.sharing_spread());
            compare_costs(b, c, config, spread)
        }
        (b, c) => {
            note_one_sided(&mut notes, "per-step costs", b.is_some(), c.is_some());
            Vec::new()
        }
    };
    let throughput = compare_throughput(&baseline.throughput, &current.throughput, &mut notes);
    ScenarioComparison {
        name: baseline.name.clone(),
        latency,
        confirmation: None,
        paired: None,
        costs,
        throughput,
        notes,
    }
}

/// One scenario of an A/B run: the interleaved latencies and each side's
/// per-step costs (A the reference, B the build under test).
pub fn compare_ab_scenario(
    name: &str,
    paired: PairedComparison,
    baseline_costs: Option<&StepCosts>,
    candidate_costs: Option<&StepCosts>,
    config: &CompareConfig,
    spread: f64,
) -> ScenarioComparison {
    let mut notes = Vec::new();
    let costs = match (baseline_costs, candidate_costs) {
        (Some(a), Some(b)) => compare_costs(a, b, config, spread),
        (a, b) => {
            note_one_sided(&mut notes, "per-step costs", a.is_some(), b.is_some());
            Vec::new()
        }
    };
    ScenarioComparison {
        name: name.to_string(),
        latency: None,
        confirmation: None,
        paired: Some(PairedOutcome {
            first: paired,
            rerun: None,
        }),
        costs,
        throughput: Vec::new(),
        notes,
    }
}

/// Notes a figure that only one side has.
fn note_one_sided(notes: &mut Vec<String>, figure: &str, in_baseline: bool, in_current: bool) {
    let lacking = match (in_baseline, in_current) {
        (true, false) => "the current run",
        (false, true) => "the baseline",
        _ => return,
    };
    notes.push(format!("not compared: no {figure} in {lacking}"));
}

#[cfg(test)]
mod tests;
