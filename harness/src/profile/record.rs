//! What one profiling run leaves for the profiling report: which recipe,
//! process and scenario, where the recording and flamegraphs are, the
//! tables printed at the time, and the findings — candidate optimization
//! targets, each with its cost per step and the evidence — that the report
//! ranks across every profile.
//!
//! Stored as `reports/profiles/<target>-<scenario>.<recipe>.record.json`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::database::critical_path::CriticalPath;
use super::folded::{Cost, FoldedProfile};
use crate::result::{Commit, Machine};

/// Records are told from the recordings beside them (samply's JSON and its
/// `.syms.json`) by this suffix.
const RECORD_SUFFIX: &str = ".record.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub recipe: String,
    pub description: String,
    /// orchestration or worker.
    pub target: String,
    pub binary: String,
    pub scenario: String,
    /// Tasks the recording covers, and their steps.
    pub tasks: u64,
    pub steps: u64,
    pub recorded_at: DateTime<Utc>,
    pub machine: Machine,
    pub commit: Commit,
    /// Paths relative to the repository.
    pub recording: String,
    pub flamegraph: Option<String>,
    pub diff_flamegraph: Option<String>,
    /// The tables as printed (markdown).
    pub tables: String,
    pub findings: Vec<Finding>,
    /// The database profile's critical path of a step (postgres recipe).
    #[serde(default)]
    pub critical_path: Option<CriticalPath>,
}

/// A candidate optimization target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What to look at: a function, module, span, allocation site, task.
    pub what: String,
    pub unit: Unit,
    /// Its cost per step, in `unit`.
    pub per_step: f64,
    /// Why: the figures behind it.
    pub evidence: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Time (CPU, busy or wall) in microseconds.
    Micros,
    /// Heap bytes allocated.
    Bytes,
}

impl ProfileRecord {
    pub fn file_name(target: &str, scenario: &str, recipe: &str) -> String {
        format!("{target}-{scenario}.{recipe}{RECORD_SUFFIX}")
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(Self::file_name(&self.target, &self.scenario, &self.recipe));
        let text = serde_json::to_string_pretty(self).expect("a profile record serializes");
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a profile record", path.display()))
    }

    /// Every record under `dir` (reports/profiles/), newest first.
    pub fn load_all(dir: &Path) -> anyhow::Result<Vec<Self>> {
        let mut records = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(records);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.to_string_lossy().ends_with(RECORD_SUFFIX) {
                records.push(Self::load(&path)?);
            }
        }
        records.sort_by_key(|r| std::cmp::Reverse(r.recorded_at));
        Ok(records)
    }
}

/// Findings from a profile weighted in nanoseconds (perf's cpu-clock,
/// samply's CPU time, tracing-flame's span time): the heaviest functions
/// and modules by self time, as microseconds per step. Native leaves
/// (system calls, malloc) count for the Rust function that called them,
/// so that a finding names code this project can change.
pub fn time_findings(
    profile: &FoldedProfile,
    steps: u64,
    source: &str,
    functions: usize,
    modules: usize,
) -> Vec<Finding> {
    let profile = profile.native_into_callers();
    let total = profile.total_samples().max(1);
    let mut findings = Vec::new();
    let mut take = |costs: Vec<Cost>, n: usize, what: &str| {
        let mut costs = costs;
        costs.sort_by_key(|c| std::cmp::Reverse(c.self_samples));
        for cost in costs.into_iter().filter(|c| c.self_samples > 0).take(n) {
            findings.push(Finding {
                what: format!("{what} `{}`", cost.name),
                unit: Unit::Micros,
                per_step: cost.self_samples as f64 / steps.max(1) as f64 / 1000.0,
                evidence: format!(
                    "{:.1}% of {source}'s time in its own code and the system calls it makes \
                     ({:.1}% with what it calls)",
                    100.0 * cost.self_samples as f64 / total as f64,
                    100.0 * cost.total_samples as f64 / total as f64
                ),
            });
        }
    };
    take(profile.functions(), functions, "function");
    // Only the workspace's modules: another crate's module repeats its
    // heaviest function and names nothing this project can change.
    let ours = |c: &Cost| c.name.starts_with("tasker_");
    take(
        profile.modules().into_iter().filter(ours).collect(),
        modules,
        "module",
    );
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_findings_are_self_time_per_step_in_micros() {
        // 3 ms of CPU over 10 steps: a; a;b (2 ms self in b)
        let profile = FoldedProfile::parse("main;a 1000000\nmain;a;b 2000000\n").unwrap();
        let findings = time_findings(&profile, 10, "the worker", 2, 0);
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].what, "function `b`");
        assert!((findings[0].per_step - 200.0).abs() < 1e-9);
        assert!(findings[0]
            .evidence
            .starts_with("66.7% of the worker's time in its own code"));
        assert_eq!(findings[1].what, "function `a`");
        assert!((findings[1].per_step - 100.0).abs() < 1e-9);
    }

    #[test]
    fn records_round_trip_through_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let record = ProfileRecord {
            recipe: "dhat".into(),
            description: "heap profile (DHAT)".into(),
            target: "worker".into(),
            binary: "tasker-worker".into(),
            scenario: "linear".into(),
            tasks: 10,
            steps: 40,
            recorded_at: Utc::now(),
            machine: crate::run::environment::machine(),
            commit: crate::run::environment::commit(),
            recording: "reports/profiles/x".into(),
            flamegraph: None,
            diff_flamegraph: None,
            tables: "| a |".into(),
            findings: vec![],
            critical_path: None,
        };
        let path = record.save(dir.path()).unwrap();
        assert!(path.ends_with("worker-linear.dhat.record.json"));
        // a recording beside it is not taken for a record
        std::fs::write(dir.path().join("worker-linear.samply.json.syms.json"), "{}").unwrap();
        let all = ProfileRecord::load_all(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].steps, 40);
        assert!(ProfileRecord::load_all(&dir.path().join("none"))
            .unwrap()
            .is_empty());
    }
}
