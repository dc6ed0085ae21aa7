//! The report as markdown: the run's context first (a latency means
//! nothing without the machine and the PostgreSQL settings that produced
//! it), then latency per tier against the baseline and the published
//! figures, each scenario against its floor, throughput and its knee,
//! where the time goes, and what a step costs (those detail sections in
//! `markdown/detail.rs`). Formatting only: the analysis is in the parent
//! module.

use super::{
    format_ratio, format_ratio_interval, goals, published_p50, PlotLink, TASKER_PUBLISHED,
};
use crate::result::{FloorRatio, RunResult, ScenarioResult};

mod detail;

/// The whole report. `comparison_md` is the gate's comparison, included
/// as given; `plots` are linked with their paths as given (make them
/// relative to where the markdown is written).
pub fn render_markdown(
    run: &RunResult,
    baseline: Option<&RunResult>,
    comparison_md: Option<&str>,
    plots: &[PlotLink],
) -> String {
    let mut md = header(run, baseline);
    md.extend(reference(run));
    let mut tiers: Vec<u8> = run.scenarios.iter().map(|s| s.tier).collect();
    tiers.sort_unstable();
    tiers.dedup();
    for tier in tiers {
        md.extend(tier_table(run, tier, baseline));
    }
    md.extend(against_the_floor(run));
    md.extend(detail::ffi(run));
    md.extend(detail::throughput(run));
    md.extend(detail::phases(run));
    md.extend(detail::costs(run));
    if let Some(comparison) = comparison_md {
        let text = comparison.trim_end().to_string();
        md.extend(section("## Comparison with the baseline", Some(text)));
    }
    md.extend(plot_links(plots));
    md.join("\n")
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// A table's header rows from its column names, separated by `|`.
fn table_head(names: &str) -> [String; 2] {
    let cells: Vec<String> = names.split('|').map(str::to_string).collect();
    [row(&cells), row(&vec!["---".to_string(); cells.len()])]
}

/// A section's heading and, when given, an introductory paragraph.
fn section(heading: &str, intro: Option<String>) -> Vec<String> {
    let mut md = vec![heading.to_string(), String::new()];
    md.extend(intro.into_iter().flat_map(|text| [text, String::new()]));
    md
}

const DASH: &str = "—";

fn header(run: &RunResult, baseline: Option<&RunResult>) -> Vec<String> {
    let m = &run.machine;
    let pg = &run.postgres;
    let dirty = [" (dirty: uncommitted changes)", ""][usize::from(!run.commit.dirty)];
    let setting = |k: &str| format!("{k}={}", pg.settings.get(k).map_or("?", String::as_str));
    let mut md = vec![
        "# Tasker end-to-end report".into(),
        String::new(),
        format!(
            "- Run: `{}`, started {}",
            run.id,
            run.started_at.to_rfc3339()
        ),
        format!("- Commit: `{}`{dirty}", run.commit.sha),
        format!(
            "- Machine: {}, {} cores, {:.1} GiB memory ({}, {}, kernel {})",
            m.cpu_model,
            m.cpus,
            m.memory_bytes as f64 / (1u64 << 30) as f64,
            m.hostname,
            m.os,
            m.kernel
        ),
        format!(
            "- PostgreSQL {} ({}: {}); {}, {}, {}",
            pg.version,
            pg.backend,
            pg.reason,
            setting("fsync"),
            setting("synchronous_commit"),
            setting("shared_buffers")
        ),
    ];
    if let Some(t) = &run.server_timings {
        md.push(format!(
            "- Server timings (medians of {} statements): commit {} ms, round trip {} ms",
            t.samples,
            ms3(t.commit_us),
            ms3(t.round_trip_us)
        ));
    }
    if let Some(b) = baseline {
        let dirty = if b.commit.dirty { " (dirty)" } else { "" };
        md.push(format!(
            "- Baseline: `{}`, commit `{}`{dirty}",
            b.id, b.commit.sha
        ));
    }
    md.push(String::new());
    md
}

fn reference(run: &RunResult) -> Vec<String> {
    let published: Vec<String> = TASKER_PUBLISHED
        .iter()
        .map(|(w, _, p50)| format!("{w} {p50}"))
        .collect();
    let intro = format!(
        "Tasker's published P50s (their 12-core laptop, 50 ms polling resolution): {}.",
        published.join(", ")
    );
    let mut md = section("## Goals and reference", Some(intro));
    md.extend(table_head("goal|this run|met"));
    for goal in goals(run) {
        let met = match goal.met {
            Some(true) => "✅ yes",
            Some(false) => "❌ no",
            None => "not measured",
        };
        let measured = goal.measured.unwrap_or_else(|| DASH.into());
        md.push(row(&[goal.goal.into(), measured, met.into()]));
    }
    md.push(String::new());
    md
}

/// Each scenario against its floor (the floor scenario of its template in
/// this run), and the critical-path floor its per-step costs imply on this
/// server.
fn against_the_floor(run: &RunResult) -> Vec<String> {
    let timings = run.server_timings.as_ref();
    let shown: Vec<&ScenarioResult> = run
        .scenarios
        .iter()
        .filter(|s| {
            s.floor
                || run.floor_of(s).is_some()
                || timings.and_then(|t| t.implied_floor_us(s)).is_some()
        })
        .collect();
    if shown.is_empty() {
        return vec![];
    }
    let mut intro = "A floor scenario runs its template's DAG on the harness's minimal model of \
                     the same durable queue-based chain (plain tokio-postgres, no engine code: \
                     three commits, one of them asynchronous, and two wake-ups a step, every \
                     transaction one statement). Every other scenario of that template is shown \
                     as a multiple of it, percentile by percentile."
        .to_string();
    if let Some(t) = timings {
        intro.push_str(&format!(
            " The implied floor is what the scenario's per-step costs take on this server one \
             after another: commits × {} ms (commit) + statements × {} ms (round trip), over \
             the task's steps; an upper estimate of a sequential floor, since it counts the \
             asynchronous claims as synchronous commits and overlaps nothing.",
            ms3(t.commit_us),
            ms3(t.round_trip_us)
        ));
    }
    let mut md = section("## Against the floor", Some(intro));
    md.extend(table_head(
        "scenario|floor|P50 ms|floor P50 ms|P50 × floor|95% interval|P99 ms|floor P99 ms|P99 × floor|implied floor ms",
    ));
    for s in shown {
        let floor = run.floor_of(s);
        let summary = |s: &ScenarioResult| s.latency.as_ref().map(|l| l.summary);
        let cell = |v: Option<String>| v.unwrap_or_else(|| DASH.into());
        let ratio = floor.and_then(|f| FloorRatio::of(s, f));
        let own = summary(s);
        let of_floor = floor.and_then(summary);
        let floor_name = match (s.floor, floor) {
            (true, _) => "(a floor)".to_string(),
            (false, Some(f)) => f.name.clone(),
            (false, None) => DASH.into(),
        };
        md.push(row(&[
            s.name.clone(),
            floor_name,
            cell(own.map(|x| ms(x.p50_us as f64))),
            cell(of_floor.map(|x| ms(x.p50_us as f64))),
            cell(ratio.map(|r| format_ratio(r.p50))),
            cell(
                ratio
                    .and_then(|r| r.p50_interval)
                    .map(format_ratio_interval),
            ),
            cell(own.map(|x| ms(x.p99_us as f64))),
            cell(of_floor.map(|x| ms(x.p99_us as f64))),
            cell(ratio.map(|r| format_ratio(r.p99))),
            cell(timings.and_then(|t| t.implied_floor_us(s)).map(ms)),
        ]));
    }
    md.push(String::new());
    md
}

/// Milliseconds with three decimals (server timings are fractions of one).
fn ms3(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

fn tier_table(run: &RunResult, tier: u8, baseline: Option<&RunResult>) -> Vec<String> {
    let mut md = section(&format!("## Tier {tier}: sequential latency"), None);
    let scenarios: Vec<&ScenarioResult> = run.scenarios.iter().filter(|s| s.tier == tier).collect();
    // A rows/s column in tiers whose scenarios process rows (the batch tier).
    let with_rows = scenarios.iter().any(|s| s.rows.is_some());
    let mut names = "scenario|steps/task|P50 ms|P95 ms|P99 ms|max ms|mean ms".to_string();
    names.push_str("|tasks/s (sequential)");
    if with_rows {
        names.push_str("|rows/s (rows / P50)");
    }
    names.push_str("|Tasker P50");
    if baseline.is_some() {
        names.push_str("|baseline P50 ms|P50 change");
    }
    md.extend(table_head(&names));
    for s in scenarios {
        md.push(row(&latency_cells(s, baseline, with_rows)));
    }
    md.push(String::new());
    if let Some(b) = baseline.filter(|b| !b.comparable_wall_clock(run)) {
        md.push(format!(
            "The baseline ran on {} ({} build), this run on {} ({} build): the P50 change \
             compares machines, not commits.",
            b.machine.cpu_model, b.build_profile, run.machine.cpu_model, run.build_profile
        ));
        md.push(String::new());
    }
    md
}

fn latency_cells(s: &ScenarioResult, baseline: Option<&RunResult>, with_rows: bool) -> Vec<String> {
    let mut cells = vec![s.name.clone(), s.steps_per_task.to_string()];
    let Some(latency) = &s.latency else {
        let columns = 7 + usize::from(with_rows) + 2 * usize::from(baseline.is_some());
        cells.extend(std::iter::repeat_n(DASH.to_string(), columns));
        return cells;
    };
    let sum = &latency.summary;
    let values = [sum.p50_us, sum.p95_us, sum.p99_us, sum.max_us].map(|us| ms(us as f64));
    cells.extend(values);
    cells.push(ms(sum.mean_us));
    cells.push(format!("{:.1}", latency.tasks_per_second));
    if with_rows {
        cells.push(rows_per_second(s.rows_per_second_at_p50()));
    }
    cells.push(published_p50(s).unwrap_or(DASH).into());
    if let Some(b) = baseline {
        let base = b
            .scenario(&s.name)
            .and_then(|b| b.latency.as_ref())
            .map(|l| l.summary.p50_us);
        cells.push(base.map_or(DASH.into(), |us| ms(us as f64)));
        cells.push(base.map_or(DASH.into(), |us| change(us as f64, sum.p50_us as f64)));
    }
    cells
}

/// Rows/s as a cell: whole rows, or a dash.
fn rows_per_second(rate: Option<f64>) -> String {
    rate.map_or(DASH.into(), |r| format!("{r:.0}"))
}

fn change(before: f64, after: f64) -> String {
    if before <= 0.0 {
        return DASH.into();
    }
    format!("{:+.1} %", 100.0 * (after - before) / before)
}

fn plot_links(plots: &[PlotLink]) -> Vec<String> {
    if plots.is_empty() {
        return vec![];
    }
    let mut md = section("## Plots", None);
    let link = |p: &PlotLink| {
        format!(
            "- [{}]({})",
            p.title,
            p.path.display().to_string().replace('\\', "/")
        )
    };
    md.extend(plots.iter().map(link));
    md.push(String::new());
    md
}
