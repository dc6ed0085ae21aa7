//! The report on the stored sample run (`tests/data/sample-run.json`):
//! what it says, checked against the data, not a snapshot of the text.

use std::path::{Path, PathBuf};

use super::*;
use crate::result::{FfiComparison, PostgresLoad, Summary};
use crate::scenario::Language;

fn sample() -> RunResult {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample-run.json");
    RunResult::load(&path).expect("the sample run loads")
}

/// The sample with every latency 10% higher: a baseline the run improved on.
fn slower(run: &RunResult) -> RunResult {
    let mut base = run.clone();
    base.id = "20261120T080000Z-1a2b3c4".into();
    for latency in base.scenarios.iter_mut().filter_map(|s| s.latency.as_mut()) {
        latency
            .samples_us
            .iter_mut()
            .for_each(|us| *us = *us * 11 / 10);
        latency.summary = Summary::of(&latency.samples_us);
    }
    for point in base
        .scenarios
        .iter_mut()
        .flat_map(|s| s.throughput.iter_mut())
    {
        point.latency.p50_us = point.latency.p50_us * 11 / 10;
        point.latency.p99_us = point.latency.p99_us * 11 / 10;
    }
    base
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tasker-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The cells of the table row whose first cell is `first`.
fn row_cells<'a>(md: &'a str, first: &str) -> Vec<&'a str> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row for {first}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

fn point(target: f64, achieved: f64, p99_ms: u64) -> ThroughputPoint {
    let latency = Summary {
        count: 100,
        p50_us: 5_000,
        p95_us: 8_000,
        p99_us: p99_ms * 1000,
        max_us: 0,
        mean_us: 0.0,
    };
    ThroughputPoint {
        target_rate: target,
        duration_seconds: 5.0,
        submitted: (target * 5.0) as u64,
        completed: (achieved * 5.0) as u64,
        timed_out: 0,
        achieved_tasks_per_second: achieved,
        achieved_steps_per_second: achieved * 4.0,
        latency,
        postgres: PostgresLoad {
            commits_per_second: 0.0,
            wal_bytes_per_second: 0.0,
        },
    }
}

#[test]
fn sample_summaries_match_their_samples() {
    for s in sample().scenarios {
        let latency = s.latency.expect("every sample scenario has a latency run");
        let computed = Summary::of(&latency.samples_us);
        let stored = latency.summary;
        assert_eq!(stored.count, computed.count, "{}", s.name);
        for (a, b) in [
            (stored.p50_us, computed.p50_us),
            (stored.p99_us, computed.p99_us),
        ] {
            assert!(
                (a as f64 - b as f64).abs() <= 0.01 * b as f64,
                "{}: {a} vs {b}",
                s.name
            );
        }
    }
}

#[test]
fn markdown_has_a_row_per_scenario_with_its_p50_under_its_tier() {
    let run = sample();
    let md = render_markdown(&run, None, None, &[]);
    for tier in [1, 2, 3] {
        assert!(
            md.contains(&format!("## Tier {tier}: sequential latency")),
            "tier {tier} heading"
        );
    }
    for s in &run.scenarios {
        let cells = row_cells(&md, &s.name);
        assert_eq!(cells[1], s.steps_per_task.to_string());
        assert_eq!(
            cells[2],
            ms(s.latency.as_ref().unwrap().summary.p50_us),
            "{} P50",
            s.name
        );
        let tier_heading = md.find(&format!("## Tier {}:", s.tier)).unwrap();
        assert!(md.find(&format!("| {} |", s.name)).unwrap() > tier_heading);
    }
    assert_eq!(
        row_cells(&md, "linear")[8],
        "255 ms",
        "Tasker's published P50"
    );
    assert!(md.contains("(dirty: uncommitted changes)"));
    assert!(md.contains("fsync=on, synchronous_commit=on, shared_buffers=128MB"));
    assert!(md.contains("2 cores"));
}

#[test]
fn goals_are_judged_on_the_run() {
    let run = sample();
    let goals = goals(&run);
    assert_eq!(goals[0].met, Some(true), "linear P50 8.99 ms < 10 ms");
    assert_eq!(goals[1].met, Some(false), "tree P50 15.22 ms ≥ 15 ms");
    assert_eq!(
        goals[2].met,
        Some(false),
        "at most 796 steps/s were sustained"
    );
    let md = render_markdown(&run, None, None, &[]);
    assert_eq!(row_cells(&md, "linear P50 under 10 ms")[2], "✅ yes");
    assert_eq!(row_cells(&md, "tree P50 under 15 ms")[2], "❌ no");
}

#[test]
fn baseline_p50_and_change_are_shown() {
    let run = sample();
    let base = slower(&run);
    let md = render_markdown(
        &run,
        Some(&base),
        Some("| metric | verdict |\n|---|---|\n| P50 | ok |"),
        &[],
    );
    let cells = row_cells(&md, "linear");
    let base_p50 = base
        .scenario("linear")
        .unwrap()
        .latency
        .as_ref()
        .unwrap()
        .summary
        .p50_us;
    assert_eq!(cells[9], ms(base_p50));
    let change: f64 = cells[10].trim_end_matches(" %").parse().unwrap();
    assert!(
        (change + 9.1).abs() < 0.3,
        "about -9.1 % (1/1.1 - 1), got {change}"
    );
    assert!(md.contains("## Comparison with the baseline\n\n| metric | verdict |"));
}

#[test]
fn knee_is_the_highest_rate_kept_up_with_within_twice_the_sequential_p99() {
    let series = [
        point(50.0, 50.0, 10),
        point(200.0, 191.0, 24),  // 95.5 % achieved, P99 exactly 2× 12 ms
        point(500.0, 490.0, 25),  // kept up, but P99 above 24 ms
        point(1000.0, 600.0, 20), // P99 fine, only 60 % achieved
    ];
    assert_eq!(knee(&series, 12_000).map(|p| p.target_rate), Some(200.0));
    assert_eq!(knee(&series, 13_000).map(|p| p.target_rate), Some(500.0));
    assert_eq!(knee(&series, 4_000).map(|p| p.target_rate), None);
    assert_eq!(knee(&[], 12_000), None);
    let md = render_markdown(&sample(), None, None, &[]);
    assert!(
        md.contains("Knee: 200 tasks/s"),
        "linear keeps up with 200/s at P99 26.1 ms ≤ 45.34 ms"
    );
    assert!(md.contains("at least 95 % of the target and the P99 at most 2×"));
}

#[test]
fn phase_shares_sum_to_one_hundred_percent() {
    let run = sample();
    let md = render_markdown(&run, None, None, &[]);
    for s in &run.scenarios {
        let phases = s.phases.as_ref().unwrap();
        assert!((phase_shares(&phases.per_task).iter().sum::<f64>() - 100.0).abs() < 1e-9);
        let section = &md[md.find(&format!("### {}\n\n| step |", s.name)).unwrap()..];
        let shown: f64 = row_cells(section, "share of the task")[1..5]
            .iter()
            .map(|c| c.trim_end_matches(" %").parse::<f64>().unwrap())
            .sum();
        assert!(
            (shown - 100.0).abs() < 0.3,
            "{}: shares shown sum to {shown}",
            s.name
        );
    }
}

#[test]
fn costs_and_plot_links_are_listed() {
    let run = sample();
    let links = [PlotLink {
        title: "linear: latency CDF".into(),
        path: "plots/linear-latency-cdf.svg".into(),
    }];
    let md = render_markdown(&run, None, None, &links);
    let cells = row_cells(&md, "conditional");
    assert!(md.contains("## Deterministic cost per step"));
    assert!(
        md.lines()
            .any(|l| l == "| conditional | 3.25 | 3.50 | 14.20 | 81.00 | 7610 |"),
        "{cells:?}"
    );
    assert!(md.contains("- [linear: latency CDF](plots/linear-latency-cdf.svg)"));
}

fn assert_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "{} is not SVG",
        path.display()
    );
    assert!(
        text.contains("<path") || text.contains("<polyline"),
        "{} draws no line",
        path.display()
    );
    assert!(text.trim_end().ends_with("</svg>"));
}

#[test]
fn write_plots_writes_a_cdf_per_scenario_and_a_curve_per_throughput_scenario() {
    let run = sample();
    let dir = temp_dir("plots");
    let links = write_plots(&run, Some(&slower(&run)), &dir).unwrap();
    assert_eq!(links.len(), 6 + 3);
    for link in &links {
        assert!(link.path.starts_with(&dir));
        assert_svg(&link.path);
    }
    let cdf = std::fs::read_to_string(dir.join("linear-latency-cdf.svg")).unwrap();
    assert!(
        cdf.contains("baseline") && cdf.contains("current"),
        "both legends"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn write_report_writes_the_markdown_and_its_plots() {
    let run = sample();
    let dir = temp_dir("report");
    let path = write_report(&run, None, None, &dir).unwrap();
    assert_eq!(path, dir.join(REPORT_FILE));
    let md = std::fs::read_to_string(&path).unwrap();
    let links: Vec<&str> = md
        .lines()
        .filter_map(|l| l.split("](").nth(1)?.strip_suffix(')'))
        .collect();
    assert_eq!(links.len(), 9);
    for link in links {
        assert!(link.starts_with("plots/"), "relative link {link}");
        assert_svg(&dir.join(link));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The sample plus the batch tier: batch_1000_rows (P50 `p50_1000_ms`,
/// with the linear scenario's throughput points) and batch_100k_rows
/// (P50 `p50_100k_ms`, latency only).
fn with_batches(p50_1000_ms: u64, p50_100k_ms: u64) -> RunResult {
    let mut run = sample();
    let linear = run.scenario("linear").unwrap().clone();
    let batch = |name: &str, rows: u64, steps: u32, p50_ms: u64, throughput| {
        let mut s = linear.clone();
        s.name = name.into();
        s.tier = 5;
        s.template = format!("batch/{name}@1.0.0");
        s.rows = Some(rows);
        s.steps_per_task = steps;
        s.throughput = throughput;
        let latency = s.latency.as_mut().unwrap();
        latency.samples_us = vec![p50_ms * 1000; 20];
        latency.summary = Summary::of(&latency.samples_us);
        s
    };
    run.scenarios.push(batch(
        "batch_1000_rows",
        1000,
        7,
        p50_1000_ms,
        linear.throughput.clone(),
    ));
    run.scenarios
        .push(batch("batch_100k_rows", 100_000, 22, p50_100k_ms, vec![]));
    run
}

#[test]
fn tasker_published_batch_figure_is_shown_beside_batch_1000_rows() {
    let run = with_batches(30, 400);
    let batch = run.scenario("batch_1000_rows").unwrap();
    assert_eq!(template_name(batch), "batch_1000_rows");
    assert_eq!(published_p50(batch), Some("358–368 ms"));
    assert_eq!(
        published_p50(run.scenario("batch_100k_rows").unwrap()),
        None
    );
    let md = render_markdown(&run, None, None, &[]);
    assert!(md.contains("## Tier 5: sequential latency"));
    let head = md
        .lines()
        .find(|l| l.starts_with("| scenario |") && l.contains("rows/s"))
        .expect("tier 5 has a rows/s column");
    let head: Vec<&str> = head.trim_matches('|').split('|').map(str::trim).collect();
    let tasker = head.iter().position(|c| *c == "Tasker P50").unwrap();
    assert_eq!(row_cells(&md, "batch_1000_rows")[tasker], "358–368 ms");
    assert_eq!(row_cells(&md, "batch_1000_rows")[1], "7", "steps per task");
    // The tiers without rows keep their columns.
    assert_eq!(row_cells(&md, "linear")[8], "255 ms");
}

#[test]
fn rows_per_second_is_rows_over_the_p50_and_under_load() {
    let run = with_batches(25, 400);
    let md = render_markdown(&run, None, None, &[]);
    let head = md
        .lines()
        .find(|l| l.starts_with("| scenario |") && l.contains("rows/s"))
        .unwrap();
    let head: Vec<&str> = head.trim_matches('|').split('|').map(str::trim).collect();
    let column = head.iter().position(|c| c.starts_with("rows/s")).unwrap();
    assert_eq!(column, 8, "after tasks/s (sequential)");
    let p50 = |name: &str| {
        run.scenario(name)
            .unwrap()
            .latency
            .as_ref()
            .unwrap()
            .summary
            .p50_us as f64
    };
    let expected = |rows: f64, name: &str| format!("{:.0}", rows * 1e6 / p50(name));
    assert_eq!(
        row_cells(&md, "batch_1000_rows")[column],
        expected(1000.0, "batch_1000_rows")
    );
    assert_eq!(
        row_cells(&md, "batch_100k_rows")[column],
        expected(100_000.0, "batch_100k_rows")
    );
    // Under load: achieved tasks/s × rows, in a rows/s column of the
    // batch scenario's throughput table only.
    let section = &md[md
        .find("### batch_1000_rows\n\n| target tasks/s |")
        .unwrap()..];
    let batch = run.scenario("batch_1000_rows").unwrap();
    for point in &batch.throughput {
        let cells = row_cells(section, &format!("{}", point.target_rate));
        assert_eq!(
            cells[8],
            format!("{:.0}", 1000.0 * point.achieved_tasks_per_second)
        );
    }
    let linear = &md[md.find("### linear\n\n| target tasks/s |").unwrap()..];
    assert!(!linear.lines().nth(2).unwrap().contains("rows/s"));
}

#[test]
fn batch_goals_are_judged_when_the_batch_tier_ran() {
    assert_eq!(goals(&sample()).len(), 3, "no batch goals without the tier");
    let find = |goals: &[Goal], prefix: &str| {
        goals
            .iter()
            .find(|g| g.goal.starts_with(prefix))
            .cloned()
            .unwrap()
    };
    // 30 ms < 40 ms; 100,000 rows in 400 ms = 250,000 rows/s > 200,000.
    let mut run = with_batches(30, 400);
    // More steps/s than any other scenario: still not counted, the
    // steps/s goal is for no-op handlers and batches parse CSV.
    for point in &mut run
        .scenarios
        .iter_mut()
        .find(|s| s.tier == 5)
        .unwrap()
        .throughput
    {
        point.achieved_steps_per_second = 5000.0;
    }
    let met = goals(&run);
    assert_eq!(met.len(), 5);
    assert_eq!(met[2].met, Some(false), "{:?}", met[2].measured);
    assert!(met[2].measured.as_ref().unwrap().contains("cluster"));
    let p50 = find(&met, "batch_1000_rows P50 under 40 ms (bar 60 ms)");
    assert_eq!(p50.met, Some(true));
    assert!(p50.measured.unwrap().contains("under the 60 ms bar"));
    let rows = find(&met, "batch_100k_rows over 200,000 rows/s end to end");
    assert_eq!(rows.met, Some(true));
    let measured = rows.measured.unwrap();
    let rate: f64 = measured.split(' ').next().unwrap().parse().unwrap();
    assert!((rate - 250_000.0).abs() < 250.0, "{measured}");
    assert!(measured.ends_with("rows/s at the P50 (batch_100k_rows)"));
    // 50 ms misses the goal but clears the bar; 600 ms is 166,667 rows/s.
    let missed = goals(&with_batches(50, 600));
    let p50 = find(&missed, "batch_1000_rows P50");
    assert_eq!(p50.met, Some(false));
    assert!(p50.measured.unwrap().contains("under the 60 ms bar"));
    assert_eq!(find(&missed, "batch_100k_rows").met, Some(false));
    let over = find(&goals(&with_batches(70, 400)), "batch_1000_rows P50");
    assert!(over.measured.unwrap().contains("over the 60 ms bar"));
    let md = render_markdown(&with_batches(30, 400), None, None, &[]);
    assert_eq!(
        row_cells(&md, "batch_100k_rows over 200,000 rows/s end to end")[2],
        "✅ yes"
    );
}

#[test]
fn results_without_rows_still_load_and_rows_round_trip() {
    // The sample was written before `rows` existed.
    assert!(sample().scenarios.iter().all(|s| s.rows.is_none()));
    let run = with_batches(30, 400);
    let dir = temp_dir("rows");
    let path = dir.join("run.json");
    run.save(&path).unwrap();
    assert_eq!(RunResult::load(&path).unwrap(), run);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches("\"rows\":").count(),
        2,
        "only the batch scenarios"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tier_4_shows_each_language_against_rust_and_tasker_ffi_figure() {
    let mut run = sample();
    let linear = run.scenario("linear").unwrap().clone();
    let ffi = |name: &str, template: &str| {
        let mut s = linear.clone();
        s.name = name.into();
        s.tier = 4;
        s.template = template.into();
        s.ffi = Some(FfiComparison {
            language: Language::Ruby,
            rust: Summary {
                p50_us: 9_000,
                p99_us: 12_000,
                ..s.latency.as_ref().unwrap().summary
            },
            pairs: 200,
            overhead_per_step_us: 150.4,
            overhead_ci_low_us: 120.0,
            overhead_ci_high_us: 181.0,
            rust_costs: s.costs,
        });
        s
    };
    run.scenarios
        .push(ffi("linear_ruby", "linear/linear_workflow@1.0.0"));
    run.scenarios
        .push(ffi("diamond_ruby", "diamond/diamond_workflow@1.0.0"));
    let md = render_markdown(&run, None, None, &[]);
    let tier = &md[md
        .find("## Tier 4: sequential latency")
        .expect("tier 4 table")..];
    assert_eq!(
        row_cells(tier, "linear_ruby")[8],
        "312–316 ms",
        "Tasker's FFI linear"
    );
    assert_eq!(
        row_cells(tier, "diamond_ruby")[8],
        "—",
        "Tasker publishes no FFI diamond"
    );
    let section = &md[md
        .find("## Tier 4: what another language adds")
        .expect("ffi section")..];
    let cells = row_cells(section, "linear_ruby");
    assert_eq!(
        &cells[1..4],
        ["ruby", "200", &ms(linear.latency.unwrap().summary.p50_us)]
    );
    assert_eq!(&cells[5..9], ["9.00", "12.00", "+150", "+120 to +181"]);
    let statements = format!("{:.2}", linear.costs.unwrap().statements_per_step);
    assert_eq!(cells[9], format!("{statements} ({statements})"));
}

/// The sample with a floor of the linear template listed first (every
/// latency of linear's divided by 4) and server timings.
fn with_floor() -> RunResult {
    let mut run = sample();
    let mut floor = run.scenario("linear").unwrap().clone();
    floor.name = "floor_linear".into();
    floor.floor = true;
    floor.throughput.clear();
    let latency = floor.latency.as_mut().unwrap();
    latency.samples_us.iter_mut().for_each(|us| *us /= 4);
    latency.summary = Summary::of(&latency.samples_us);
    run.scenarios.insert(0, floor);
    run.server_timings = Some(crate::result::ServerTimings {
        round_trip_us: 50.0,
        commit_us: 1_000.0,
        samples: 200,
    });
    run
}

#[test]
fn markdown_shows_each_scenario_against_its_floor_and_the_server_timings() {
    let run = with_floor();
    let md = render_markdown(&run, None, None, &[]);
    assert!(md.contains(
        "- Server timings (medians of 200 statements): commit 1.000 ms, round trip 0.050 ms"
    ));
    let section = &md[md.find("## Against the floor").unwrap()..];
    let section = &section[..section.find("\n## ").unwrap()];
    assert!(section.contains("an upper estimate"), "{section}");
    let (linear, floor) = (
        run.scenario("linear").unwrap(),
        run.scenario("floor_linear").unwrap(),
    );
    let ratio = crate::result::FloorRatio::of(linear, floor).unwrap();
    let implied = run
        .server_timings
        .unwrap()
        .implied_floor_us(linear)
        .unwrap();
    let cells = row_cells(section, "linear");
    assert_eq!(cells[1], "floor_linear");
    assert_eq!(
        cells[2],
        ms(linear.latency.as_ref().unwrap().summary.p50_us)
    );
    assert_eq!(cells[3], ms(floor.latency.as_ref().unwrap().summary.p50_us));
    assert_eq!(cells[4], format_ratio(ratio.p50));
    assert_eq!(
        cells[5],
        format_ratio_interval(ratio.p50_interval.expect("samples kept"))
    );
    assert_eq!(cells[8], format_ratio(ratio.p99));
    assert_eq!(cells[9], format!("{:.2}", implied / 1000.0));
    assert!((3.8..=4.2).contains(&ratio.p50), "{ratio:?}");
    // Another topology of the template is measured against the same floor.
    assert_eq!(row_cells(section, "cluster")[1], "floor_linear");
    assert_eq!(row_cells(section, "floor_linear")[1], "(a floor)");
    assert_eq!(row_cells(section, "diamond")[4], "—", "no floor of diamond");
    // A floor is not the engine: no published figure beside it.
    assert_eq!(row_cells(&md, "floor_linear")[8], "—");
    assert_eq!(format_ratio(2.0), "2.00×");
}

#[test]
fn the_floor_goal_is_judged_and_floors_count_for_no_engine_goal() {
    assert!(
        goals(&sample()).iter().all(|g| !g.goal.contains("floor")),
        "no floor goal without a floor"
    );
    let run = with_floor();
    let goals = goals(&run);
    // The floor is listed first, yet linear's P50 goal is the engine's.
    assert_eq!(goals[0].measured.as_deref(), Some("8.99 ms (linear)"));
    let steps = goals[2].measured.as_deref().unwrap();
    assert!(!steps.contains("floor"), "{steps}");
    let floor = goals.iter().find(|g| g.goal.contains("floor")).unwrap();
    assert_eq!(floor.met, Some(false), "{floor:?}");
    let measured = floor.measured.as_deref().unwrap();
    assert!(
        measured.contains("linear 8.99 ms") && measured.contains("floor_linear"),
        "{measured}"
    );
    // Within 1.3×: met.
    let mut close = run.clone();
    let floor = close.scenarios.iter_mut().find(|s| s.floor).unwrap();
    let latency = floor.latency.as_mut().unwrap();
    latency.samples_us.iter_mut().for_each(|us| *us *= 4);
    latency.summary = Summary::of(&latency.samples_us);
    let goals = super::goals(&close);
    let floor = goals.iter().find(|g| g.goal.contains("floor")).unwrap();
    assert_eq!(floor.met, Some(true), "{floor:?}");
}
