//! The report's detail sections: what another language's handlers add a
//! step, throughput and its knee, where a task's time goes, and what a step
//! costs the database. Kept apart from the headline latency tables they
//! explain.

use super::{ms, row, rows_per_second, section, table_head};
use crate::report::{
    knee, phase_shares, phase_values, KNEE_MAX_P99_FACTOR, KNEE_MIN_ACHIEVED, PHASE_NAMES,
};
use crate::result::{
    FfiComparison, PhaseBreakdown, RunResult, ScenarioResult, StepCosts, ThroughputPoint,
};

/// Tier 4: each language against the Rust worker on the same template,
/// from the same interleaved pairs.
pub(super) fn ffi(run: &RunResult) -> Vec<String> {
    let measured: Vec<(&ScenarioResult, &FfiComparison)> = run
        .scenarios
        .iter()
        .filter_map(|s| Some((s, s.ffi.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return vec![];
    }
    let intro = "Each scenario ran interleaved with the same template on the Rust worker \
                 (tasks alternating between two engines, one pair at a time); the overhead \
                 is the median over pairs of the difference, over the task's steps, with \
                 its bootstrap 95% interval."
        .to_string();
    let mut md = section("## Tier 4: what another language adds a step", Some(intro));
    md.extend(table_head(
        "scenario|language|pairs|P50 ms|P99 ms|Rust P50 ms|Rust P99 ms|overhead µs/step|95% interval|statements/step (Rust)",
    ));
    for (s, ffi) in measured {
        let Some(latency) = &s.latency else { continue };
        md.push(row(&[
            s.name.clone(),
            ffi.language.to_string(),
            ffi.pairs.to_string(),
            ms(latency.summary.p50_us as f64),
            ms(latency.summary.p99_us as f64),
            ms(ffi.rust.p50_us as f64),
            ms(ffi.rust.p99_us as f64),
            format!("{:+.0}", ffi.overhead_per_step_us),
            format!(
                "{:+.0} to {:+.0}",
                ffi.overhead_ci_low_us, ffi.overhead_ci_high_us
            ),
            statements(s.costs.as_ref(), ffi.rust_costs.as_ref()),
        ]));
    }
    md.push(String::new());
    md
}

/// Statements a step on the language's side (and on Rust's).
fn statements(own: Option<&StepCosts>, rust: Option<&StepCosts>) -> String {
    let cell = |c: Option<&StepCosts>| {
        c.map_or("—".to_string(), |c| {
            format!("{:.2}", c.statements_per_step)
        })
    };
    format!("{} ({})", cell(own), cell(rust))
}

pub(super) fn throughput(run: &RunResult) -> Vec<String> {
    let measured: Vec<&ScenarioResult> = run
        .scenarios
        .iter()
        .filter(|s| !s.throughput.is_empty())
        .collect();
    if measured.is_empty() {
        return vec![];
    }
    let intro = format!(
        "Open-loop arrivals at a fixed rate; latency from each task's scheduled arrival. \
         The knee is the highest target rate at which the achieved rate was at least \
         {:.0} % of the target and the P99 at most {KNEE_MAX_P99_FACTOR}× the scenario's \
         sequential P99.",
        100.0 * KNEE_MIN_ACHIEVED
    );
    let mut md = section("## Throughput", Some(intro));
    for s in measured {
        md.extend(throughput_table(s));
    }
    md
}

fn throughput_table(s: &ScenarioResult) -> Vec<String> {
    let mut md = section(&format!("### {}", s.name), None);
    let mut names =
        "target tasks/s|achieved tasks/s|steps/s|P50 ms|P99 ms|commits/s|WAL MB/s|timed out"
            .to_string();
    if s.rows.is_some() {
        names.push_str("|rows/s");
    }
    md.extend(table_head(&names));
    md.extend(s.throughput.iter().map(|p| {
        let mut cells = throughput_cells(p);
        if s.rows.is_some() {
            cells.push(rows_per_second(s.rows_per_second_under(p)));
        }
        row(&cells)
    }));
    md.push(String::new());
    md.push(knee_line(s));
    md.push(String::new());
    md
}

fn throughput_cells(p: &ThroughputPoint) -> Vec<String> {
    vec![
        format!("{}", p.target_rate),
        format!("{:.1}", p.achieved_tasks_per_second),
        format!("{:.0}", p.achieved_steps_per_second),
        ms(p.latency.p50_us as f64),
        ms(p.latency.p99_us as f64),
        format!("{:.0}", p.postgres.commits_per_second),
        format!("{:.2}", p.postgres.wal_bytes_per_second / 1e6),
        p.timed_out.to_string(),
    ]
}

fn knee_line(s: &ScenarioResult) -> String {
    let Some(latency) = &s.latency else {
        return "Knee: not defined (no sequential latency run to compare the P99 with).".into();
    };
    let limit = ms(KNEE_MAX_P99_FACTOR * latency.summary.p99_us as f64);
    match knee(&s.throughput, latency.summary.p99_us) {
        Some(p) => format!(
            "Knee: {} tasks/s ({:.0} steps/s achieved, P99 {} ms ≤ {limit} ms).",
            p.target_rate,
            p.achieved_steps_per_second,
            ms(p.latency.p99_us as f64)
        ),
        None => format!("Knee: none of the rates was kept up with at a P99 ≤ {limit} ms."),
    }
}

pub(super) fn phases(run: &RunResult) -> Vec<String> {
    let measured: Vec<(&str, &PhaseBreakdown)> = run
        .scenarios
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.phases.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return vec![];
    }
    let intro = "Means per step over the measured tasks, from the recorded transitions (µs). \
                 A batch worker's row is the mean of one batch; the task's sum adds every batch.";
    let mut md = section("## Where the time goes", Some(intro.into()));
    for (name, breakdown) in measured {
        md.extend(phase_table(name, breakdown));
    }
    md
}

fn phase_table(name: &str, b: &PhaseBreakdown) -> Vec<String> {
    let mut md = section(&format!("### {name}"), None);
    md.extend(table_head(&format!("step|{}|total", PHASE_NAMES.join("|"))));
    let cells = |label: String, values: [f64; 4]| {
        let mut cells = vec![label];
        cells.extend(values.iter().map(|v| format!("{v:.0}")));
        cells.push(format!("{:.0}", values.iter().sum::<f64>()));
        row(&cells)
    };
    md.extend(
        b.steps
            .iter()
            .map(|p| cells(p.step.clone(), phase_values(p))),
    );
    md.push(cells("**task (sum)**".into(), phase_values(&b.per_task)));
    let mut shares = vec!["share of the task".to_string()];
    shares.extend(
        phase_shares(&b.per_task)
            .iter()
            .map(|s| format!("{s:.1} %")),
    );
    shares.push("100 %".into());
    md.extend([row(&shares), String::new()]);
    md
}

pub(super) fn costs(run: &RunResult) -> Vec<String> {
    let measured: Vec<(&str, &StepCosts)> = run
        .scenarios
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.costs.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return vec![];
    }
    let mut md = section("## Deterministic cost per step", None);
    md.extend(table_head(
        "scenario|statements|commits|rows written|WAL records|WAL bytes",
    ));
    for (name, c) in measured {
        let values = [
            c.statements_per_step,
            c.commits_per_step,
            c.rows_written_per_step,
            c.wal_records_per_step,
        ];
        let mut cells = vec![name.to_string()];
        cells.extend(values.iter().map(|v| format!("{v:.2}")));
        cells.push(format!("{:.0}", c.wal_bytes_per_step));
        md.push(row(&cells));
    }
    md.push(String::new());
    md
}
