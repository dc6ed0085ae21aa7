//! Deterministic per-step costs: counters that do not move with machine
//! noise, each compared on its own against a small relative tolerance. An
//! increase beyond it is a regression with no significance test and no
//! re-run.

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostChange {
    pub metric: CostMetric,
    pub baseline: f64,
    pub current: f64,
    /// current / baseline − 1; None when the baseline is zero.
    pub relative_change: Option<f64>,
    pub tolerance: f64,
    pub verdict: Verdict,
}

/// Every counter of `current` against `baseline`.
pub fn compare_costs(
    baseline: &StepCosts,
    current: &StepCosts,
    config: &CompareConfig,
) -> Vec<CostChange> {
    let change = |metric: CostMetric| {
        let (b, c) = (metric.value(baseline), metric.value(current));
        let tolerance = metric.tolerance(config);
        CostChange {
            metric,
            baseline: b,
            current: c,
            relative_change: (b != 0.0).then(|| c / b - 1.0),
            tolerance,
            verdict: cost_verdict(b, c, tolerance),
        }
    };
    CostMetric::ALL.into_iter().map(change).collect()
}

/// Beyond `baseline × (1 ± tolerance)` is a change; from zero, any increase
/// is a regression.
fn cost_verdict(baseline: f64, current: f64, tolerance: f64) -> Verdict {
    if current > baseline * (1.0 + tolerance) {
        Verdict::Regressed
    } else if current < baseline * (1.0 - tolerance) {
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
        let changes = compare_costs(&baseline, &current, &CompareConfig::default());
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
        let changes = compare_costs(&baseline, &current, &CompareConfig::default());
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
        let changes = compare_costs(&baseline, &current, &CompareConfig::default());
        assert_eq!(verdict_of(&changes, CostMetric::Commits), Verdict::Improved);
        assert_eq!(
            verdict_of(&changes, CostMetric::WalBytes),
            Verdict::Regressed
        );
    }

    #[test]
    fn an_increase_from_zero_regresses() {
        assert_eq!(cost_verdict(0.0, 0.1, 0.02), Verdict::Regressed);
        assert_eq!(cost_verdict(0.0, 0.0, 0.02), Verdict::Unchanged);
    }
}
