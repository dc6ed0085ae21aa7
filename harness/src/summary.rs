//! The table a run prints when it ends: per scenario, sequential latency
//! and the best throughput reached; for scenarios that process rows (the
//! batch tier), rows/s too.

use std::fmt::Write;

use crate::report::{format_ratio, format_ratio_interval};
use crate::result::{FloorRatio, RunResult};

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
    out.push_str(&floor_block(run));
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

/// The server's timings, then each scenario against its floor: its P50
/// and P99 as multiples of the floor scenario of its template in this run,
/// and the critical-path floor its per-step costs imply. Empty when the
/// run has neither.
fn floor_block(run: &RunResult) -> String {
    let mut out = String::new();
    let timings = run.server_timings.as_ref();
    if let Some(t) = timings {
        let _ = writeln!(
            out,
            "\nserver: commit {:.3} ms, round trip {:.3} ms (medians of {})",
            ms_f(t.commit_us),
            ms_f(t.round_trip_us),
            t.samples
        );
    }
    let rows: Vec<String> = run
        .scenarios
        .iter()
        .filter_map(|s| {
            let floor = run.floor_of(s);
            let ratio = floor.and_then(|f| FloorRatio::of(s, f));
            let implied = timings.and_then(|t| t.implied_floor_us(s));
            if floor.is_none() && implied.is_none() && !s.floor {
                return None;
            }
            let floor_name = match (s.floor, floor) {
                (true, _) => "(a floor)",
                (false, Some(f)) => f.name.as_str(),
                (false, None) => "-",
            };
            let times = |r: Option<f64>| r.map_or("-".to_string(), format_ratio);
            let interval = ratio
                .and_then(|r| r.p50_interval)
                .map_or("-".to_string(), format_ratio_interval);
            Some(format!(
                "{:<18} {:<18} {:>10} {:>16} {:>10} {:>11}",
                s.name,
                floor_name,
                times(ratio.map(|r| r.p50)),
                interval,
                times(ratio.map(|r| r.p99)),
                implied.map_or("-".to_string(), |us| format!("{:.2}", ms_f(us)))
            ))
        })
        .collect();
    if rows.is_empty() {
        return out;
    }
    if timings.is_none() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "against the floor: P50 and P99 over those of the floor scenario of the same template \
         (this run; a scenario's latency tasks interleaved with its floor's), with the P50 \
         ratio's 95% bootstrap interval;\nimplied floor: \
         commits × commit + statements × round trip, a task, one after another (an upper \
         estimate)"
    );
    let _ = writeln!(
        out,
        "{:<18} {:<18} {:>10} {:>16} {:>10} {:>11}",
        "scenario", "floor", "P50 ×floor", "95% interval", "P99 ×floor", "implied ms"
    );
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    out
}

fn ms_f(us: f64) -> f64 {
    us / 1000.0
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

    /// The sample with a floor of the linear template (every latency of
    /// linear's divided by 2) and server timings.
    fn with_floor() -> RunResult {
        let mut run = sample();
        let mut floor = run.scenario("linear").unwrap().clone();
        floor.name = "floor_linear".into();
        floor.floor = true;
        let latency = floor.latency.as_mut().unwrap();
        latency.samples_us.iter_mut().for_each(|us| *us /= 2);
        latency.summary = crate::result::Summary::of(&latency.samples_us);
        run.scenarios.push(floor);
        run.server_timings = Some(crate::result::ServerTimings {
            round_trip_us: 60.0,
            commit_us: 1_250.0,
            samples: 200,
        });
        run
    }

    #[test]
    fn each_scenario_is_shown_against_its_floor_with_the_floor_its_costs_imply() {
        let run = with_floor();
        let text = table(&run);
        assert!(
            text.contains("server: commit 1.250 ms, round trip 0.060 ms (medians of 200)"),
            "{text}"
        );
        let block = &text[text.find("implied floor:").unwrap()..];
        let cells = |name: &str| -> Vec<String> {
            let line = block
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no line for {name} in {block}"));
            line.split_whitespace().map(str::to_string).collect()
        };
        let (linear, floor) = (
            run.scenario("linear").unwrap(),
            run.scenario("floor_linear").unwrap(),
        );
        let ratio = FloorRatio::of(linear, floor).unwrap();
        let implied = |s| {
            let us = run.server_timings.unwrap().implied_floor_us(s).unwrap();
            format!("{:.2}", us / 1000.0)
        };
        let (low, high) = ratio.p50_interval.expect("both runs kept their samples");
        assert_eq!(
            cells("linear"),
            [
                "linear".to_string(),
                "floor_linear".into(),
                format_ratio(ratio.p50),
                format!("[{},", format_ratio(low)),
                format!("{}]", format_ratio(high)),
                format_ratio(ratio.p99),
                implied(linear)
            ]
        );
        assert!((1.9..=2.1).contains(&ratio.p50), "{ratio:?}");
        assert!(low <= ratio.p50 && ratio.p50 <= high, "{ratio:?}");
        // The cluster runs the same template: measured against it too.
        assert_eq!(cells("cluster")[1], "floor_linear");
        // The floor itself, and a template without a floor.
        assert_eq!(cells("floor_linear")[1..4], ["(a", "floor)", "-"]);
        assert_eq!(cells("diamond")[1..4], ["-", "-", "-"]);
    }

    #[test]
    fn without_timings_or_floors_there_is_no_floor_block() {
        let text = table(&sample());
        assert!(
            !text.contains("against the floor") && !text.contains("server:"),
            "{text}"
        );
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
