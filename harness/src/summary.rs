//! The table a run prints when it ends: per scenario, sequential latency
//! and the best throughput reached.

use std::fmt::Write;

use crate::result::RunResult;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn table(run: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  ({}, PostgreSQL {} via {})",
        run.id, run.machine.cpu_model, run.postgres.version, run.postgres.backend
    );
    let _ = writeln!(
        out,
        "{:<18} {:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "scenario",
        "tier",
        "steps",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "max ms",
        "tasks/s",
        "best steps/s"
    );
    for scenario in &run.scenarios {
        let best = scenario
            .throughput
            .iter()
            .map(|p| p.achieved_steps_per_second)
            .fold(None, |best: Option<f64>, s| {
                Some(best.map_or(s, |b| b.max(s)))
            });
        let best = best.map_or("-".to_string(), |b| format!("{b:.0}"));
        match &scenario.latency {
            Some(latency) => {
                let s = &latency.summary;
                let _ = writeln!(
                    out,
                    "{:<18} {:>4} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>12}",
                    scenario.name,
                    scenario.tier,
                    scenario.steps_per_task,
                    ms(s.p50_us),
                    ms(s.p95_us),
                    ms(s.p99_us),
                    ms(s.max_us),
                    latency.tasks_per_second,
                    best
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<18} {:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
                    scenario.name,
                    scenario.tier,
                    scenario.steps_per_task,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    best
                );
            }
        }
    }
    for scenario in run.scenarios.iter().filter(|s| !s.throughput.is_empty()) {
        let _ = writeln!(out, "\n{} under load (open loop):", scenario.name);
        let _ = writeln!(
            out,
            "{:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}",
            "rate/s", "tasks/s", "steps/s", "P50 ms", "P99 ms", "commits/s", "timeouts"
        );
        for point in &scenario.throughput {
            let _ = writeln!(
                out,
                "{:>10.0} {:>10.1} {:>10.0} {:>9.2} {:>9.2} {:>10.0} {:>9}",
                point.target_rate,
                point.achieved_tasks_per_second,
                point.achieved_steps_per_second,
                ms(point.latency.p50_us),
                ms(point.latency.p99_us),
                point.postgres.commits_per_second,
                point.timed_out
            );
        }
    }
    out
}
