//! The table a run prints when it ends: per scenario, sequential latency
//! and the best throughput reached; for scenarios that process rows (the
//! batch tier), rows/s too.

use std::fmt::Write;

use crate::result::RunResult;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Rows/s as a table cell: whole rows, or "-" when there are none.
fn rows_cell(rows_per_second: Option<f64>) -> String {
    rows_per_second.map_or("-".to_string(), |r| format!("{r:.0}"))
}

pub fn table(run: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  ({}, PostgreSQL {} via {})",
        run.id, run.machine.cpu_model, run.postgres.version, run.postgres.backend
    );
    // The rows/s column only when a scenario processes rows.
    let with_rows = run.scenarios.iter().any(|s| s.rows.is_some());
    let rows_column = |cell: &str| match with_rows {
        true => format!(" {cell:>12}"),
        false => String::new(),
    };
    let _ = writeln!(
        out,
        "{:<18} {:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}{}",
        "scenario",
        "tier",
        "steps",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "max ms",
        "tasks/s",
        "best steps/s",
        rows_column("rows/s (P50)")
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
        let rows = rows_column(&rows_cell(scenario.rows_per_second_at_p50()));
        match &scenario.latency {
            Some(latency) => {
                let s = &latency.summary;
                let _ = writeln!(
                    out,
                    "{:<18} {:>4} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>12}{rows}",
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
                    "{:<18} {:>4} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}{rows}",
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
    for scenario in &run.scenarios {
        if let Some(ffi) = &scenario.ffi {
            let _ = writeln!(
                out,
                "{}: {:+.0} µs a step over the Rust worker (95% interval {:+.0} to {:+.0}; \
                 Rust P50 {:.2} ms over the same {} pairs)",
                scenario.name,
                ffi.overhead_per_step_us,
                ffi.overhead_ci_low_us,
                ffi.overhead_ci_high_us,
                ms(ffi.rust.p50_us),
                ffi.pairs
            );
        }
    }
    for scenario in run.scenarios.iter().filter(|s| !s.throughput.is_empty()) {
        let rows_column = |cell: &str| match scenario.rows {
            Some(_) => format!(" {cell:>10}"),
            None => String::new(),
        };
        let _ = writeln!(out, "\n{} under load (open loop):", scenario.name);
        let _ = writeln!(
            out,
            "{:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}{}",
            "rate/s",
            "tasks/s",
            "steps/s",
            "P50 ms",
            "P99 ms",
            "commits/s",
            "timeouts",
            rows_column("rows/s")
        );
        for point in &scenario.throughput {
            let _ = writeln!(
                out,
                "{:>10.0} {:>10.1} {:>10.0} {:>9.2} {:>9.2} {:>10.0} {:>9}{}",
                point.target_rate,
                point.achieved_tasks_per_second,
                point.achieved_steps_per_second,
                ms(point.latency.p50_us),
                ms(point.latency.p99_us),
                point.postgres.commits_per_second,
                point.timed_out,
                rows_column(&rows_cell(scenario.rows_per_second_under(point)))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunResult {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample-run.json");
        RunResult::load(&path).expect("the sample run loads")
    }

    /// The sample with its linear scenario turned into a batch scenario of
    /// `rows` rows.
    fn with_rows(rows: u64) -> RunResult {
        let mut run = sample();
        let linear = run
            .scenarios
            .iter_mut()
            .find(|s| s.name == "linear")
            .unwrap();
        linear.name = "batch_1000_rows".into();
        linear.rows = Some(rows);
        run
    }

    #[test]
    fn without_rows_there_is_no_rows_column() {
        let text = table(&sample());
        assert!(!text.contains("rows/s"), "{text}");
    }

    #[test]
    fn rows_per_second_is_rows_over_the_p50_and_under_load() {
        let run = with_rows(1000);
        let text = table(&run);
        let batch = run.scenario("batch_1000_rows").unwrap();
        let p50_us = batch.latency.as_ref().unwrap().summary.p50_us;
        let expected = format!("{:.0}", 1000.0 * 1e6 / p50_us as f64);
        let header = text.lines().nth(1).unwrap();
        assert!(header.ends_with("rows/s (P50)"), "{header}");
        let line = text
            .lines()
            .find(|l| l.starts_with("batch_1000_rows "))
            .unwrap();
        assert_eq!(
            line.split_whitespace().last(),
            Some(expected.as_str()),
            "{line}"
        );
        // Scenarios without rows show a dash in that column.
        let diamond = text.lines().find(|l| l.starts_with("diamond ")).unwrap();
        assert_eq!(diamond.split_whitespace().last(), Some("-"), "{diamond}");
        // Under load: achieved tasks/s × rows, on every point.
        let load = &text[text.find("batch_1000_rows under load").unwrap()..];
        let mut lines = load.lines().skip(1);
        assert!(lines.next().unwrap().ends_with("rows/s"));
        for point in &batch.throughput {
            let line = lines.next().unwrap();
            let expected = format!("{:.0}", 1000.0 * point.achieved_tasks_per_second);
            assert_eq!(
                line.split_whitespace().last(),
                Some(expected.as_str()),
                "{line}"
            );
        }
        let diamond_load = &text[text.find("diamond under load").unwrap()..];
        assert!(!diamond_load.lines().nth(1).unwrap().contains("rows/s"));
    }
}
