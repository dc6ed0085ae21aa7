//! Throughput points, matched by target rate. Informative only: a run has
//! one point per rate, a single observation with no spread, so there is
//! nothing to test its significance against (see docs/regression-gate.md).

use serde::{Deserialize, Serialize};

use crate::result::ThroughputPoint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputChange {
    pub target_rate: f64,
    pub baseline_achieved_tasks_per_second: f64,
    pub current_achieved_tasks_per_second: f64,
    /// current achieved / baseline achieved − 1; None when the baseline is zero.
    pub relative_change: Option<f64>,
    pub baseline_p99_us: u64,
    pub current_p99_us: u64,
    pub baseline_timed_out: u64,
    pub current_timed_out: u64,
}

/// The points of both sides at the same target rate; a rate on one side
/// only goes to `notes`.
pub fn compare_throughput(
    baseline: &[ThroughputPoint],
    current: &[ThroughputPoint],
    notes: &mut Vec<String>,
) -> Vec<ThroughputChange> {
    let find = |points: &[ThroughputPoint], rate: f64| {
        points
            .iter()
            .find(|p| same_rate(p.target_rate, rate))
            .cloned()
    };
    for point in current
        .iter()
        .filter(|p| find(baseline, p.target_rate).is_none())
    {
        notes.push(format!(
            "throughput at {}/s only in the current run",
            point.target_rate
        ));
    }
    let mut changes = Vec::new();
    for b in baseline {
        match find(current, b.target_rate) {
            Some(c) => changes.push(change(b, &c)),
            None => notes.push(format!(
                "throughput at {}/s only in the baseline",
                b.target_rate
            )),
        }
    }
    changes
}

fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn change(baseline: &ThroughputPoint, current: &ThroughputPoint) -> ThroughputChange {
    let (b, c) = (
        baseline.achieved_tasks_per_second,
        current.achieved_tasks_per_second,
    );
    ThroughputChange {
        target_rate: baseline.target_rate,
        baseline_achieved_tasks_per_second: b,
        current_achieved_tasks_per_second: c,
        relative_change: (b != 0.0).then(|| c / b - 1.0),
        baseline_p99_us: baseline.latency.p99_us,
        current_p99_us: current.latency.p99_us,
        baseline_timed_out: baseline.timed_out,
        current_timed_out: current.timed_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::testdata::throughput_point;

    #[test]
    fn points_are_matched_by_target_rate() {
        let baseline = [throughput_point(50.0, 49.8), throughput_point(100.0, 99.0)];
        let current = [
            throughput_point(100.0, 90.0),
            throughput_point(200.0, 150.0),
        ];
        let mut notes = Vec::new();
        let changes = compare_throughput(&baseline, &current, &mut notes);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].target_rate, 100.0);
        let relative = changes[0].relative_change.expect("nonzero baseline");
        assert!((relative - (90.0 / 99.0 - 1.0)).abs() < 1e-12);
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
