//! Synthetic runs for the tests: normal latencies, fixed costs.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use crate::result::{
    Commit, LatencyResult, Machine, PostgresInfo, PostgresLoad, RunResult, ScenarioResult,
    StepCosts, Summary, ThroughputPoint, SCHEMA_VERSION,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, Normal};

/// `n` latencies in µs shaped like N(mean, sd), in an order shuffled by
/// `seed`: the quantiles at (i + ½)/n. Every seed gives the same set of
/// values, so a fixture's medians and shifts are exact and no assertion
/// hangs on what a random generator happens to draw; the seed only
/// changes the order, which the paired comparisons see.
pub fn normal_samples(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<u64> {
    let normal = Normal::new(mean, sd).expect("a positive standard deviation");
    let mut samples: Vec<u64> = (0..n)
        .map(|i| normal.inverse_cdf((i as f64 + 0.5) / n as f64))
        .map(|us| us.max(1.0).round() as u64)
        .collect();
    samples.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    samples
}

/// Every sample multiplied by `factor`.
pub fn shifted(samples: &[u64], factor: f64) -> Vec<u64> {
    samples
        .iter()
        .map(|&s| (s as f64 * factor).round() as u64)
        .collect()
}

pub fn step_costs() -> StepCosts {
    StepCosts {
        statements_per_step: 3.0,
        commits_per_step: 3.0,
        rows_written_per_step: 11.0,
        wal_records_per_step: 42.0,
        wal_bytes_per_step: 9_600.0,
    }
}

pub fn throughput_point(target_rate: f64, achieved: f64) -> ThroughputPoint {
    ThroughputPoint {
        target_rate,
        duration_seconds: 30.0,
        submitted: (target_rate * 30.0) as u64,
        completed: (achieved * 30.0) as u64,
        timed_out: 0,
        achieved_tasks_per_second: achieved,
        achieved_steps_per_second: achieved * 4.0,
        latency: Summary::of(&[9_000, 10_000, 12_000]),
        postgres: PostgresLoad {
            commits_per_second: achieved * 12.0,
            wal_bytes_per_second: achieved * 38_400.0,
        },
    }
}

pub fn scenario(name: &str, samples_us: Vec<u64>, costs: StepCosts) -> ScenarioResult {
    ScenarioResult {
        name: name.to_string(),
        tier: 1,
        template: format!("{name}/{name}_workflow@1.0.0"),
        rows: None,
        steps_per_task: 4,
        critical_path_steps: Some(4),
        latency: Some(LatencyResult {
            warmup: 100,
            summary: Summary::of(&samples_us),
            wall_seconds: samples_us.iter().sum::<u64>() as f64 / 1e6,
            tasks_per_second: 110.0,
            samples_us,
        }),
        throughput: vec![throughput_point(100.0, 99.5)],
        phases: None,
        costs: Some(costs),
        ffi: None,
        floor: false,
    }
}

pub fn run(id: &str, scenarios: Vec<ScenarioResult>) -> RunResult {
    RunResult {
        schema_version: SCHEMA_VERSION,
        id: id.to_string(),
        started_at: Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap(),
        machine: Machine {
            hostname: "test".into(),
            os: "linux".into(),
            kernel: "6".into(),
            cpu_model: "test cpu".into(),
            cpus: 2,
            memory_bytes: 24 << 30,
        },
        commit: Commit {
            sha: "0123456789abcdef".into(),
            dirty: false,
        },
        build_profile: "release".into(),
        engine_config: serde_json::json!({}),
        postgres: PostgresInfo {
            backend: "local".into(),
            reason: "test".into(),
            version: "16".into(),
            settings: BTreeMap::new(),
        },
        server_timings: None,
        scenarios,
    }
}
