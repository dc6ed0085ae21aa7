//! The result of a run: the documented JSON schema every other part reads.
//!
//! A run writes one `RunResult` to `reports/runs/<id>.json`; `baseline save`
//! copies one to `reports/baselines/<name>.json`. `compare`, `gate` and
//! `report` read them back. Bump `SCHEMA_VERSION` on any incompatible change.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::scenario::Language;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema_version: u32,
    /// `<UTC start time>-<short commit>`, also the file name.
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub machine: Machine,
    pub commit: Commit,
    /// `release` or `debug`: wall-clock figures of different builds are not
    /// comparable (per-step costs are).
    #[serde(default = "unknown")]
    pub build_profile: String,
    /// The engine configuration the run used (TaskerConfig as JSON).
    pub engine_config: serde_json::Value,
    pub postgres: PostgresInfo,
    /// The server's round trip and commit latency, measured once at the
    /// start of the run (absent in results written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_timings: Option<ServerTimings>,
    pub scenarios: Vec<ScenarioResult>,
}

/// What one statement and one commit cost on the run's server, from the
/// harness's own connection to a fresh database of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerTimings {
    /// Median of `samples` prepared `SELECT 1`, µs.
    pub round_trip_us: f64,
    /// Median of `samples` single-row INSERTs, each its own synchronous
    /// transaction, minus `round_trip_us`: the commit's flush, µs.
    pub commit_us: f64,
    pub samples: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Full SHA, or "unknown" outside a git checkout.
    pub sha: String,
    /// Uncommitted changes were present.
    pub dirty: bool,
}

/// Which PostgreSQL the run used and how it was configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresInfo {
    /// `container`, `local` or `url`.
    pub backend: String,
    /// Why that backend (e.g. "docker answered and tasker-postgres:15 is present").
    pub reason: String,
    /// `SHOW server_version`.
    pub version: String,
    /// shared_buffers, synchronous_commit, fsync, wal_sync_method, ...
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub tier: u8,
    /// `namespace/name@version` of the template.
    pub template: String,
    /// Items (CSV rows) one task processes, for scenarios that have them
    /// (the batch tier): rows/s is this over a task's latency. Absent in
    /// results written before it existed, and for other scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Steps of one task as counted in the database after the measured
    /// tasks finished (a batch task's batches are steps made at run time).
    pub steps_per_task: u32,
    /// Steps on the template's longest chain of dependencies. Fewer than
    /// `steps_per_task` when steps run at the same time, and then timing
    /// decides how many of them share a transaction (see
    /// `sharing_spread`). Absent in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_path_steps: Option<u32>,
    pub latency: Option<LatencyResult>,
    /// One point per arrival rate, in the order run.
    pub throughput: Vec<ThroughputPoint>,
    pub phases: Option<PhaseBreakdown>,
    pub costs: Option<StepCosts>,
    /// Tier 4: the same template with Rust handlers, run interleaved with
    /// this one, and the difference a step. Absent for other scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffi: Option<FfiComparison>,
    /// This scenario ran the harness's minimal model of the template's
    /// DAG (topology `floor`), not the engine: the other scenarios of the
    /// same template are shown as multiples of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub floor: bool,
}

/// A scenario whose handlers are in another language against the same
/// template with Rust handlers, both measured in one run, tasks
/// alternating between the two engines (A B, B A, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FfiComparison {
    pub language: Language,
    /// The Rust worker's latencies over the same pairs.
    pub rust: Summary,
    pub pairs: u64,
    /// Median over pairs of (this − Rust), over the task's steps: what the
    /// language's boundary and handlers add to one step, µs.
    pub overhead_per_step_us: f64,
    /// Bootstrap 95% interval of `overhead_per_step_us`.
    pub overhead_ci_low_us: f64,
    pub overhead_ci_high_us: f64,
    /// The Rust side's per-step database costs, beside the scenario's own
    /// `costs`: a language's handlers must not change what a step costs
    /// the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust_costs: Option<StepCosts>,
}

/// Percentiles of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// Tasks one at a time: each from submit to completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    pub warmup: u64,
    pub summary: Summary,
    /// Every measured sample in run order (µs): the statistics of
    /// `compare` need the raw samples, not just percentiles.
    pub samples_us: Vec<u64>,
    pub wall_seconds: f64,
    pub tasks_per_second: f64,
}

/// An open-loop load at a fixed arrival rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputPoint {
    pub target_rate: f64,
    pub duration_seconds: f64,
    pub submitted: u64,
    pub completed: u64,
    /// Tasks that had not finished within the scenario timeout.
    pub timed_out: u64,
    pub achieved_tasks_per_second: f64,
    pub achieved_steps_per_second: f64,
    /// From each task's scheduled arrival (not its actual submit, so a
    /// saturated submitter does not hide queueing) to its completion.
    pub latency: Summary,
    pub postgres: PostgresLoad,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostgresLoad {
    pub commits_per_second: f64,
    pub wal_bytes_per_second: f64,
}

/// Where the time of a task goes, from the recorded transitions (means over
/// the measured tasks, microseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseBreakdown {
    pub steps: Vec<StepPhases>,
    /// Sums over the steps of one task.
    pub per_task: StepPhases,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPhases {
    /// Step name (or "task" for the per-task sums).
    pub step: String,
    /// Enqueued to claimed by a worker.
    pub queue_wait_us: f64,
    /// Claimed to result recorded (handler, dispatch, submit).
    pub handler_us: f64,
    /// Result recorded to processed by orchestration (step complete).
    pub result_to_complete_us: f64,
    /// Complete to the next step's enqueue (0 for the last step).
    pub complete_to_next_us: f64,
}

/// The deterministic cost of a step: counts that do not move with machine
/// noise, compared exactly by the gate (small tolerance).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepCosts {
    /// Top-level SQL statements (pg_stat_statements calls).
    pub statements_per_step: f64,
    /// Statements that wrote WAL, each its own transaction: commits that
    /// wrote (pg_stat_statements).
    pub commits_per_step: f64,
    /// Rows inserted + updated + deleted (pg_stat_user_tables).
    pub rows_written_per_step: f64,
    pub wal_records_per_step: f64,
    pub wal_bytes_per_step: f64,
}

fn unknown() -> String {
    "unknown".to_string()
}

impl ScenarioResult {
    /// How far timing alone can move a task's transactions (statements,
    /// commits) per step: steps that run at the same time may share each
    /// transaction or none, so the count lies between the critical path's
    /// share and every step's, a factor of steps / critical path apart
    /// (diamond: 4 / 3). 1 for a chain, or when the path is unknown.
    pub fn sharing_spread(&self) -> f64 {
        self.critical_path_steps
            .map_or(1.0, |path| sharing_spread(self.steps_per_task, path))
    }
}

/// Steps over the critical path's, at least 1 (see
/// `ScenarioResult::sharing_spread`).
pub fn sharing_spread(steps: u32, critical_path_steps: u32) -> f64 {
    (f64::from(steps) / f64::from(critical_path_steps.max(1))).max(1.0)
}

impl RunResult {
    /// Wall-clock figures of `self` and `other` can be compared: same
    /// machine model, core count and build profile.
    pub fn comparable_wall_clock(&self, other: &RunResult) -> bool {
        self.machine.cpu_model == other.machine.cpu_model
            && self.machine.cpus == other.machine.cpus
            && self.build_profile == other.build_profile
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read run result {}", path.display()))?;
        let result: RunResult = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run result", path.display()))?;
        anyhow::ensure!(
            result.schema_version == SCHEMA_VERSION,
            "{}: schema version {} (this harness reads {SCHEMA_VERSION}); re-run it or save a new baseline",
            path.display(),
            result.schema_version
        );
        Ok(result)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).expect("a run result serializes");
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn scenario(&self, name: &str) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// The floor `scenario` is measured against: a floor scenario of the
    /// same template in this run (`floor_<name>` when there are several),
    /// with a latency run. None for a floor scenario itself.
    pub fn floor_of(&self, scenario: &ScenarioResult) -> Option<&ScenarioResult> {
        if scenario.floor {
            return None;
        }
        let floors = || {
            self.scenarios
                .iter()
                .filter(|f| f.floor && f.template == scenario.template && f.latency.is_some())
        };
        let named = format!("floor_{}", scenario.name);
        floors()
            .find(|f| f.name == named)
            .or_else(|| floors().next())
    }
}

/// A scenario's latency against its floor's, at the same percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloorRatio {
    pub p50: f64,
    pub p99: f64,
    /// The 95% bootstrap interval of the P50 ratio (both scenarios' samples
    /// resampled), when both runs kept their samples: whether a run's
    /// ratio is within a bar, or only its point estimate is.
    pub p50_interval: Option<(f64, f64)>,
}

/// Resamples of [`FloorRatio::p50_interval`], and their seed (the same
/// samples give the same interval, run to run).
const RATIO_RESAMPLES: usize = 2_000;
const RATIO_SEED: u64 = 0x5EED_F100;

impl FloorRatio {
    /// `scenario`'s P50 and P99 over `floor`'s; None without both latency
    /// runs (or with a zero floor).
    pub fn of(scenario: &ScenarioResult, floor: &ScenarioResult) -> Option<Self> {
        let (s, f) = (scenario.latency.as_ref()?, floor.latency.as_ref()?);
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        Some(Self {
            p50: ratio(s.summary.p50_us, f.summary.p50_us)?,
            p99: ratio(s.summary.p99_us, f.summary.p99_us)?,
            p50_interval: median_ratio_interval(&s.samples_us, &f.samples_us),
        })
    }
}

/// The 95% percentile-bootstrap interval of median(`a`) / median(`b`),
/// each resampled on its own; None when either is empty or a resampled
/// median of `b` is zero.
fn median_ratio_interval(a: &[u64], b: &[u64]) -> Option<(f64, f64)> {
    use crate::compare::stats::{bootstrap_interval, median_in_place, resample_into, SeededRng};
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let to_f64 = |v: &[u64]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (a, b) = (to_f64(a), to_f64(b));
    let mut rng = SeededRng::new(RATIO_SEED);
    let (mut ra, mut rb) = (Vec::with_capacity(a.len()), Vec::with_capacity(b.len()));
    let mut zero = false;
    let interval = bootstrap_interval(RATIO_RESAMPLES, 0.95, || {
        resample_into(&mut rng, &a, &mut ra);
        resample_into(&mut rng, &b, &mut rb);
        let below = median_in_place(&mut rb);
        zero |= below <= 0.0;
        median_in_place(&mut ra) / below
    });
    (!zero).then_some(interval)
}

impl ServerTimings {
    /// The critical-path floor a scenario's per-step costs imply for one
    /// task, µs: every commit at the measured commit latency plus every
    /// statement at one round trip, one after another (commits × commit
    /// latency + statements × RTT, over the task's steps). An upper
    /// estimate of a sequential floor: it counts asynchronous commits
    /// (the claims) as synchronous and overlaps nothing. None without costs.
    pub fn implied_floor_us(&self, scenario: &ScenarioResult) -> Option<f64> {
        let costs = scenario.costs.as_ref()?;
        let steps = f64::from(scenario.steps_per_task);
        Some(
            costs.commits_per_step * steps * self.commit_us
                + costs.statements_per_step * steps * self.round_trip_us,
        )
    }
}

impl ScenarioResult {
    /// Rows a second of one task end to end: its rows over the sequential
    /// P50 latency. None without rows or a latency run.
    pub fn rows_per_second_at_p50(&self) -> Option<f64> {
        let p50_us = self.latency.as_ref()?.summary.p50_us;
        rows_per_second(self.rows?, p50_us)
    }

    /// Rows a second under load: the tasks completed a second at `point`
    /// times the rows of each. None without rows.
    pub fn rows_per_second_under(&self, point: &ThroughputPoint) -> Option<f64> {
        Some(self.rows? as f64 * point.achieved_tasks_per_second)
    }
}

/// `rows` processed in `latency_us` microseconds, per second.
pub fn rows_per_second(rows: u64, latency_us: u64) -> Option<f64> {
    (latency_us > 0).then(|| rows as f64 * 1e6 / latency_us as f64)
}

impl Summary {
    /// Percentiles of samples in microseconds.
    pub fn of(samples_us: &[u64]) -> Self {
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits");
        for &sample in samples_us {
            histogram
                .record(sample.max(1))
                .expect("auto-resizing histogram");
        }
        Self {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p95_us: histogram.value_at_quantile(0.95),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::testdata::{run, scenario, step_costs};

    /// A run of engine scenarios and floors, each with samples of one value.
    fn with_floors() -> RunResult {
        let of = |name: &str, template: &str, us: u64, floor: bool| ScenarioResult {
            template: format!("{template}/{template}_workflow@1.0.0"),
            floor,
            ..scenario(name, vec![us; 10], step_costs())
        };
        run(
            "floors",
            vec![
                of("linear", "linear", 9_000, false),
                of("cluster", "linear", 12_000, false),
                of("floor_other", "linear", 5_000, true),
                of("floor_linear", "linear", 4_000, true),
                of("diamond", "diamond", 8_000, false),
            ],
        )
    }

    #[test]
    fn a_scenario_is_measured_against_the_floor_of_its_template() {
        let run = with_floors();
        let floor = |name: &str| {
            run.floor_of(run.scenario(name).unwrap())
                .map(|f| f.name.as_str())
        };
        assert_eq!(floor("linear"), Some("floor_linear"), "floor_<name> first");
        assert_eq!(
            floor("cluster"),
            Some("floor_other"),
            "else the first of its template"
        );
        assert_eq!(floor("floor_linear"), None, "a floor has no floor");
        assert_eq!(floor("diamond"), None, "no floor of its template ran");
        let mut without_latency = run.clone();
        for s in without_latency.scenarios.iter_mut().filter(|s| s.floor) {
            s.latency = None;
        }
        let linear = without_latency.scenario("linear").unwrap();
        assert!(
            without_latency.floor_of(linear).is_none(),
            "a floor needs a latency run"
        );
    }

    #[test]
    fn the_ratio_to_the_floor_is_taken_percentile_by_percentile() {
        let run = with_floors();
        let linear = run.scenario("linear").unwrap();
        let ratio = FloorRatio::of(linear, run.floor_of(linear).unwrap()).unwrap();
        let (s, f) = (
            linear.latency.as_ref().unwrap().summary,
            run.scenario("floor_linear")
                .unwrap()
                .latency
                .as_ref()
                .unwrap()
                .summary,
        );
        assert_eq!(ratio.p50, s.p50_us as f64 / f.p50_us as f64);
        assert_eq!(ratio.p99, s.p99_us as f64 / f.p99_us as f64);
        assert!((ratio.p50 - 2.25).abs() < 0.01, "9 ms over 4 ms: {ratio:?}");
    }

    #[test]
    fn the_implied_floor_is_commits_at_the_commit_latency_plus_statements_at_the_round_trip() {
        let timings = ServerTimings {
            round_trip_us: 50.0,
            commit_us: 1_000.0,
            samples: 200,
        };
        let mut s = scenario("linear", vec![1], step_costs());
        s.steps_per_task = 4;
        s.costs = Some(StepCosts {
            statements_per_step: 3.25,
            commits_per_step: 3.0,
            ..s.costs.unwrap()
        });
        // 4 steps: 12 commits × 1 ms + 13 statements × 0.05 ms.
        assert_eq!(timings.implied_floor_us(&s), Some(12_000.0 + 650.0));
        s.costs = None;
        assert_eq!(timings.implied_floor_us(&s), None);
    }

    #[test]
    fn results_without_the_floor_fields_still_load_and_write_none() {
        let run = run("old", vec![scenario("linear", vec![1, 2], step_costs())]);
        let text = serde_json::to_string(&run).unwrap();
        assert!(
            !text.contains("server_timings") && !text.contains("\"floor\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<RunResult>(&text).unwrap(), run);
    }

    #[test]
    fn the_ratio_of_medians_has_a_bootstrap_interval_around_it() {
        // The engine's samples twice the floor's, with the same spread.
        let floor: Vec<u64> = (0..400).map(|i| 4_000 + (i * 37) % 1_000).collect();
        let engine: Vec<u64> = floor.iter().map(|us| us * 2).collect();
        let (low, high) = median_ratio_interval(&engine, &floor).unwrap();
        assert!(low < 2.0 && 2.0 < high, "[{low}, {high}]");
        assert!(high - low < 0.3, "[{low}, {high}]");
        // Seeded: the same samples, the same interval.
        assert_eq!(median_ratio_interval(&engine, &floor), Some((low, high)));
        // Fewer samples, a wider interval.
        let (l, h) = median_ratio_interval(&engine[..40], &floor[..40]).unwrap();
        assert!(h - l > high - low, "[{l}, {h}] against [{low}, {high}]");
        assert_eq!(median_ratio_interval(&engine, &[]), None);
        assert_eq!(median_ratio_interval(&engine, &[0, 0, 0]), None);
    }
}
