//! Stored counts and their comparison with a baseline: one verdict per workload.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

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
