//! SVG plots of a run: what percentiles summarize away.
//!
//! A latency CDF shows the whole distribution (a shifted body, a new tail,
//! a bimodal split) and, against the baseline, where a change moved it. A
//! latency-vs-rate curve shows how latency grows as load approaches the
//! knee. SVG only: plotters' SVG backend writes text as `<text>` elements,
//! so no system font or font library is needed to draw the plots.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use crate::result::{RunResult, ScenarioResult, ThroughputPoint};

/// A plot written to disk, for the report to link.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotLink {
    pub title: String,
    pub path: PathBuf,
}

const SIZE: (u32, u32) = (800, 500);
const CURRENT: RGBColor = RGBColor(31, 119, 180);
const BASELINE: RGBColor = RGBColor(214, 39, 40);

/// One line of a plot. The baseline's are dashed and drawn first, so the
/// current run's lines stay visible where they coincide.
struct Series {
    label: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Writes, per scenario, a latency CDF (with the baseline's when given)
/// and, per throughput scenario, P50/P99 against the achieved rate.
/// Returns the plots written, with paths under `dir`.
pub fn write_plots(
    run: &RunResult,
    baseline: Option<&RunResult>,
    dir: &Path,
) -> anyhow::Result<Vec<PlotLink>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create plot directory {}", dir.display()))?;
    let mut links = Vec::new();
    for s in &run.scenarios {
        let before = baseline.and_then(|b| b.scenario(&s.name));
        if let Some(link) = write_cdf(s, before, dir)? {
            links.push(link);
        }
        if let Some(link) = write_rate_curve(s, before, dir)? {
            links.push(link);
        }
    }
    Ok(links)
}

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Points (latency ms, percentile) of the samples, sorted.
pub fn cdf_points(samples_us: &[u64]) -> Vec<(f64, f64)> {
    let mut sorted = samples_us.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &us)| (us.max(1) as f64 / 1000.0, 100.0 * (i + 1) as f64 / n))
        .collect()
}

fn write_cdf(
    s: &ScenarioResult,
    before: Option<&ScenarioResult>,
    dir: &Path,
) -> anyhow::Result<Option<PlotLink>> {
    let Some(latency) = s.latency.as_ref().filter(|l| !l.samples_us.is_empty()) else {
        return Ok(None);
    };
    let mut series = Vec::new();
    if let Some(base) = before
        .and_then(|b| b.latency.as_ref())
        .filter(|l| !l.samples_us.is_empty())
    {
        series.push(Series {
            label: "baseline".into(),
            color: BASELINE,
            dashed: true,
            points: cdf_points(&base.samples_us),
        });
    }
    let points = cdf_points(&latency.samples_us);
    series.push(Series {
        label: "current".into(),
        color: CURRENT,
        dashed: false,
        points,
    });
    let title = format!("{}: latency CDF (sequential tasks)", s.name);
    let path = dir.join(format!("{}-latency-cdf.svg", file_stem(&s.name)));
    let labels = ("latency (ms, log)", "percentile");
    let svg = draw(&title, labels, &series, Some((0.0, 100.0)))
        .with_context(|| format!("cannot draw {}", path.display()))?;
    write_svg(&path, &svg)?;
    Ok(Some(PlotLink { title, path }))
}

fn rate_series(
    label: &str,
    points: &[ThroughputPoint],
    colors: [RGBColor; 2],
    dashed: bool,
) -> [Series; 2] {
    let mut sorted: Vec<&ThroughputPoint> = points.iter().collect();
    sorted.sort_by(|a, b| {
        a.achieved_tasks_per_second
            .total_cmp(&b.achieved_tasks_per_second)
    });
    let line = |pick: fn(&ThroughputPoint) -> u64| -> Vec<(f64, f64)> {
        sorted
            .iter()
            .map(|p| (p.achieved_tasks_per_second, pick(p).max(1) as f64 / 1000.0))
            .collect()
    };
    [
        Series {
            label: format!("{label} P50"),
            color: colors[0],
            dashed,
            points: line(|p| p.latency.p50_us),
        },
        Series {
            label: format!("{label} P99"),
            color: colors[1],
            dashed,
            points: line(|p| p.latency.p99_us),
        },
    ]
}

fn write_rate_curve(
    s: &ScenarioResult,
    before: Option<&ScenarioResult>,
    dir: &Path,
) -> anyhow::Result<Option<PlotLink>> {
    if s.throughput.is_empty() {
        return Ok(None);
    }
    let mut series = Vec::new();
    if let Some(base) = before.filter(|b| !b.throughput.is_empty()) {
        series.extend(rate_series(
            "baseline",
            &base.throughput,
            [BASELINE, RGBColor(148, 103, 189)],
            true,
        ));
    }
    series.extend(rate_series(
        "current",
        &s.throughput,
        [CURRENT, RGBColor(255, 127, 14)],
        false,
    ));
    let title = format!("{}: latency against achieved rate", s.name);
    let path = dir.join(format!("{}-latency-vs-rate.svg", file_stem(&s.name)));
    let labels = ("achieved tasks/s", "latency (ms, log)");
    let svg = draw(&title, labels, &series, None)
        .with_context(|| format!("cannot draw {}", path.display()))?;
    write_svg(&path, &svg)?;
    Ok(Some(PlotLink { title, path }))
}

fn write_svg(path: &Path, svg: &str) -> anyhow::Result<()> {
    std::fs::write(path, svg).with_context(|| format!("cannot write plot {}", path.display()))
}

/// The range covering `values`, widened a little (and when empty or flat).
fn span(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    if log {
        (lo / 1.2, hi.max(lo * 1.5) * 1.2)
    } else {
        let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1.0);
        ((lo - pad).max(0.0), hi + pad)
    }
}

/// Draws the series into an SVG string. With `y_range` (the CDF) the x
/// axis is logarithmic latency; without it (latency vs rate) the y axis
/// is, from the data.
fn draw(
    title: &str,
    labels: (&str, &str),
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> anyhow::Result<String> {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60);
        match y_range {
            Some((y0, y1)) => {
                let (x0, x1) = span(points().map(|p| p.0), true);
                let mut chart = builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
                draw_series(&mut chart, labels, series)?;
            }
            None => {
                let (x0, x1) = span(points().map(|p| p.0), false);
                let (y0, y1) = span(points().map(|p| p.1), true);
                let mut chart = builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
                draw_series(&mut chart, labels, series)?;
            }
        }
        root.present()?;
    }
    Ok(svg)
}

fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    labels: (&str, &str),
    series: &[Series],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(labels.0).y_desc(labels.1);
    mesh.x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    for s in series {
        let style = s.color.stroke_width(2);
        let points = s.points.iter().copied();
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(points, 8, 5, style))?
        } else {
            chart.draw_series(LineSeries::new(points, style))?
        };
        drawn
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if s.points.len() <= 20 {
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, s.color.filled())),
            )?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// An axis label without trailing zeros: 10, 2.5, 0.25.
fn tick(v: &f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
