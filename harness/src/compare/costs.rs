//! Deterministic per-step costs: counters that do not move with machine
//! noise, each compared on its own against a small relative tolerance. An
//! increase beyond it is a regression with no significance test and no
//! re-run.
//!
//! Statements and commits count transactions, and where steps of a task
//! run at the same time, timing decides whether they share one (diamond's
//! middle steps are claimed and their results processed together, or not):
//! those two are judged beyond the tolerance times that spread.

use serde::{Deserialize, Serialize};

use super::{CompareConfig, Verdict};
use crate::result::StepCosts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostMetric {
    Statements,
    Commits,
    RowsWritten,
    WalRecords,
    WalBytes,
}

impl CostMetric {
    pub const ALL: [CostMetric; 5] = [
        CostMetric::Statements,
        CostMetric::Commits,
        CostMetric::RowsWritten,
        CostMetric::WalRecords,
        CostMetric::WalBytes,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CostMetric::Statements => "statements/step",
            CostMetric::Commits => "commits/step",
            CostMetric::RowsWritten => "rows written/step",
            CostMetric::WalRecords => "WAL records/step",
            CostMetric::WalBytes => "WAL bytes/step",
        }
    }

    pub fn value(self, costs: &StepCosts) -> f64 {
        match self {
            CostMetric::Statements => costs.statements_per_step,
            CostMetric::Commits => costs.commits_per_step,
            CostMetric::RowsWritten => costs.rows_written_per_step,
            CostMetric::WalRecords => costs.wal_records_per_step,
            CostMetric::WalBytes => costs.wal_bytes_per_step,
        }
    }

    pub fn tolerance(self, config: &CompareConfig) -> f64 {
        match self {
            CostMetric::Statements | CostMetric::Commits => config.statement_tolerance,
            CostMetric::WalBytes => config.wal_bytes_tolerance,
            CostMetric::RowsWritten | CostMetric::WalRecords => config.cost_tolerance,
        }
    }

    /// Counts transactions, which steps running at the same time may share.
    pub fn counts_transactions(self) -> bool {
        matches!(self, CostMetric::Statements | CostMetric::Commits)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostChange {
    pub metric: CostMetric,
    pub baseline: f64,
    pub current: f64,
    /// current / baseline − 1; None when the baseline is zero.
    pub relative_change: Option<f64>,
    /// The increase allowed (relative): the metric's tolerance, widened by
    /// the sharing spread for statements and commits.
    pub tolerance: f64,
    pub verdict: Verdict,
}

/// Every counter of `current` against `baseline`. `spread` is how far
/// timing alone moves the transaction counts
/// (`ScenarioResult::sharing_spread`, 1 for a chain).
pub fn compare_costs(
    baseline: &StepCosts,
    current: &StepCosts,
    config: &CompareConfig,
    spread: f64,
) -> Vec<CostChange> {
    let change = |metric: CostMetric| {
        let (b, c) = (metric.value(baseline), metric.value(current));
        let spread = if metric.counts_transactions() {
            spread.max(1.0)
        } else {
            1.0
        };
        let tolerance = metric.tolerance(config);
        let (high, low) = (
            b * (1.0 + tolerance) * spread,
            b * (1.0 - tolerance) / spread,
        );
        CostChange {
            metric,
            baseline: b,
            current: c,
            relative_change: (b != 0.0).then(|| c / b - 1.0),
            tolerance: (1.0 + tolerance) * spread - 1.0,
            verdict: cost_verdict(c, high, low),
        }
    };
    CostMetric::ALL.into_iter().map(change).collect()
}

/// Above `high` is a regression (from a baseline of zero, any increase),
/// below `low` an improvement.
fn cost_verdict(current: f64, high: f64, low: f64) -> Verdict {
    if current > high {
        Verdict::Regressed
    } else if current < low {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::testdata::step_costs;

    fn verdict_of(changes: &[CostChange], metric: CostMetric) -> Verdict {
        changes
            .iter()
            .find(|c| c.metric == metric)
            .expect("every metric")
            .verdict
    }

    #[test]
    fn one_more_statement_per_step_regresses() {
        // 3 statements per step becoming 4: +33%, far beyond the tolerance.
        let baseline = step_costs();
        let current = StepCosts {
            statements_per_step: baseline.statements_per_step * 4.0 / 3.0,
            ..baseline
        };
        let changes = compare_costs(&baseline, &current, &CompareConfig::default(), 1.0);
        assert_eq!(
            verdict_of(&changes, CostMetric::Statements),
            Verdict::Regressed
        );
        assert_eq!(
            verdict_of(&changes, CostMetric::Commits),
            Verdict::Unchanged
        );
        assert_eq!(changes.len(), 5);
    }

    #[test]
    fn changes_within_tolerance_are_unchanged() {
        let baseline = step_costs();
        let current = StepCosts {
            rows_written_per_step: baseline.rows_written_per_step * 1.015,
            wal_bytes_per_step: baseline.wal_bytes_per_step * 1.04,
            ..baseline
        };
        let changes = compare_costs(&baseline, &current, &CompareConfig::default(), 1.0);
        assert!(
            changes.iter().all(|c| c.verdict == Verdict::Unchanged),
            "{changes:?}"
        );
    }

    #[test]
    fn fewer_commits_improve_and_wal_bytes_have_their_own_tolerance() {
        let baseline = step_costs();
        let current = StepCosts {
            commits_per_step: baseline.commits_per_step * 0.5,
            wal_bytes_per_step: baseline.wal_bytes_per_step * 1.06,
            ..baseline
        };
        let changes = compare_costs(&baseline, &current, &CompareConfig::default(), 1.0);
        assert_eq!(verdict_of(&changes, CostMetric::Commits), Verdict::Improved);
        assert_eq!(
            verdict_of(&changes, CostMetric::WalBytes),
            Verdict::Regressed
        );
    }

    #[test]
    fn parallel_steps_widen_only_the_transaction_counts() {
        // Diamond (spread 4/3): its middle steps sharing no transaction in
        // this run (3.25 commits a step) and all of them in the baseline's
        // (2.5) is not a regression; one more commit a step still is, and
        // so is 3% more WAL records.
        let baseline = StepCosts {
            commits_per_step: 2.5,
            ..step_costs()
        };
        let unshared = StepCosts {
            commits_per_step: 3.25,
            ..baseline
        };
        let changes = compare_costs(&baseline, &unshared, &CompareConfig::default(), 4.0 / 3.0);
        assert_eq!(
            verdict_of(&changes, CostMetric::Commits),
            Verdict::Unchanged
        );
        let with_one_more = StepCosts {
            commits_per_step: 4.25,
            wal_records_per_step: baseline.wal_records_per_step * 1.03,
            ..baseline
        };
        let changes = compare_costs(
            &baseline,
            &with_one_more,
            &CompareConfig::default(),
            4.0 / 3.0,
        );
        assert_eq!(
            verdict_of(&changes, CostMetric::Commits),
            Verdict::Regressed
        );
        assert_eq!(
            verdict_of(&changes, CostMetric::WalRecords),
            Verdict::Regressed
        );
        // The same move on a chain is a regression.
        let changes = compare_costs(&baseline, &unshared, &CompareConfig::default(), 1.0);
        assert_eq!(
            verdict_of(&changes, CostMetric::Commits),
            Verdict::Regressed
        );
    }

    #[test]
    fn an_increase_from_zero_regresses() {
        let zero = StepCosts {
            rows_written_per_step: 0.0,
            ..step_costs()
        };
        let some = StepCosts {
            rows_written_per_step: 0.1,
            ..zero
        };
        let config = CompareConfig::default();
        let verdict = |current| {
            verdict_of(
                &compare_costs(&zero, current, &config, 1.0),
                CostMetric::RowsWritten,
            )
        };
        assert_eq!(verdict(&some), Verdict::Regressed);
        assert_eq!(verdict(&zero), Verdict::Unchanged);
    }
}
