//! From a recording to what a person reads: per tool, the tables (top
//! functions and modules, heap sites, async tasks, spans), the flamegraph
//! and differential flamegraph, and the findings the profiling report
//! ranks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::Utc;

use super::console::ConsoleSummary;
use super::database::probe::DatabaseProfile;
use super::database::{summary, symbols};
use super::dhat::HeapSummary;
use super::recipe::{Recipe, Tool};
use super::record::{time_findings, Finding, ProfileRecord, Unit};
use super::session::{Profiled, Target};
use super::{boundary, perf, samply, top_table, write_diff_flamegraph, FoldedProfile};
use crate::build::repo_root;
use crate::run::environment;

/// What to analyze and where to write.
pub struct Analysis<'a> {
    pub recipe: &'a Recipe,
    pub target: Target,
    pub scenario: &'a str,
    pub profiled: &'a Profiled,
    /// Folded stacks to diff against (CPU and span profiles).
    pub baseline: Option<&'a Path>,
    /// Where SVGs go (flamegraphs/).
    pub flamegraphs: &'a Path,
    /// Where folded stacks go (reports/profiles/).
    pub out_dir: &'a Path,
    pub top: usize,
}

/// The folded stacks of a CPU or span profile, where a baseline for it
/// is kept: `reports/baselines/profiles/<target>-<scenario>.<recipe>.folded`.
pub fn baseline_folded(reports: &Path, target: Target, scenario: &str, recipe: &str) -> PathBuf {
    reports
        .join("baselines")
        .join("profiles")
        .join(format!("{}-{scenario}.{recipe}.folded", target.name()))
}

pub fn analyze(a: &Analysis<'_>) -> anyhow::Result<ProfileRecord> {
    let mut record = ProfileRecord {
        recipe: a.recipe.name.clone(),
        description: a.recipe.description.clone(),
        target: a.target.name().into(),
        binary: a.target.binary().into(),
        scenario: a.scenario.into(),
        tasks: a.profiled.tasks,
        steps: a.profiled.steps,
        recorded_at: Utc::now(),
        machine: environment::machine(),
        commit: environment::commit(),
        recording: relative(&a.profiled.recording),
        flamegraph: None,
        diff_flamegraph: None,
        tables: String::new(),
        findings: Vec::new(),
        critical_path: None,
    };
    let source = match a.target {
        // "of the server's time": the findings' evidence names it so.
        Target::Database => "the server".to_string(),
        _ => format!("{} ({})", a.target.binary(), a.recipe.name),
    };
    match a.recipe.tool {
        Tool::Perf | Tool::Samply | Tool::TracingFlame => {
            let profile = match a.recipe.tool {
                Tool::Perf => perf::fold(&a.profiled.recording)?,
                Tool::Samply => samply::fold(&a.profiled.recording)?,
                _ => FoldedProfile::load(&a.profiled.recording)?,
            };
            folded(a, &profile, &mut record)?;
            let (functions, modules) = match a.recipe.tool {
                // Span names are the "functions"; their modules add little.
                Tool::TracingFlame => (5, 0),
                _ => (5, 3),
            };
            record.findings =
                time_findings(&profile, a.profiled.steps, &source, functions, modules);
            if let Target::Host(language) = a.target {
                let split = boundary::split(&profile, language);
                record.tables = format!(
                    "{}\n\n{}",
                    split.markdown(language, a.profiled.steps),
                    record.tables
                );
                record
                    .findings
                    .push(boundary_finding(&split, a.profiled.steps, &source));
            }
        }
        Tool::Dhat => {
            let heap = HeapSummary::load(&a.profiled.recording)?;
            record.tables = heap.markdown(a.top, a.profiled.tasks, a.profiled.steps);
            record.findings = heap_findings(&heap, a.profiled.steps, &source);
        }
        Tool::Console => {
            let console = ConsoleSummary::load(&a.profiled.recording)?;
            record.tables = console.markdown(a.top);
            record.findings = async_findings(&console, a.profiled.steps, &source);
        }
        Tool::Postgres => {
            let profile = a
                .profiled
                .database
                .as_ref()
                .context("the postgres recipe's run left no database profile")?;
            database(a, profile, &source, &mut record)?;
        }
    }
    Ok(record)
}

/// The database's tables and findings, and, when perf recorded its
/// backends, their flamegraph and top tables and CPU findings.
fn database(
    a: &Analysis<'_>,
    profile: &DatabaseProfile,
    source: &str,
    record: &mut ProfileRecord,
) -> anyhow::Result<()> {
    let mut cpu = String::new();
    record.findings = summary::findings(profile);
    let backends = profile.perf_data.as_deref().map(perf::fold).transpose()?;
    match backends {
        Some(backends) if backends.total_samples() == 0 => {
            cpu = "#### CPU of the engine's backends (perf)\n\nperf recorded no sample of the \
                   engine's backends: the run was too short for its sampling rate; profile \
                   more tasks."
                .to_string();
        }
        Some(backends) => {
            folded(a, &backends, record)?;
            cpu = format!(
                "#### CPU of the engine's backends (perf; {})\n\n{}",
                symbols::postgres_symbols(),
                record.tables
            );
            // `[postgres]` and the like are code perf could not name (a
            // stripped binary's static functions): nothing to act on.
            record.findings.extend(
                time_findings(&backends, a.profiled.steps, source, 5, 0)
                    .into_iter()
                    .filter(|f| !f.what.starts_with("function `["))
                    .take(3),
            );
        }
        None => {}
    }
    record.tables = [summary::tables(profile, a.top), cpu]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    record.critical_path = Some(profile.critical_path);
    Ok(())
}

/// Folded stacks saved beside the recording, flamegraph, differential
/// flamegraph, top tables.
fn folded(
    a: &Analysis<'_>,
    profile: &FoldedProfile,
    record: &mut ProfileRecord,
) -> anyhow::Result<()> {
    let name = format!("{}-{}.{}", a.target.name(), a.scenario, a.recipe.name);
    let folded = a.out_dir.join(format!("{name}.folded"));
    std::fs::write(&folded, profile.lines().join("\n") + "\n")?;
    let svg = a.flamegraphs.join(format!("{name}.svg"));
    profile.write_flamegraph(
        &format!(
            "{} — {} — {}",
            a.target.binary(),
            a.scenario,
            a.recipe.description
        ),
        &svg,
    )?;
    record.flamegraph = Some(relative(&svg));
    if let Some(baseline) = a.baseline {
        let before = FoldedProfile::load(baseline)?;
        let diff = a.flamegraphs.join(format!("{name}-diff.svg"));
        write_diff_flamegraph(
            &before,
            profile,
            &format!("{name} against {}", relative(baseline)),
            &diff,
        )?;
        record.diff_flamegraph = Some(relative(&diff));
    }
    let total = profile.total_samples();
    let (what, unit) = match a.recipe.tool {
        Tool::TracingFlame => ("span", "ns inside spans"),
        _ => ("function", "ns of CPU"),
    };
    record.tables = format!(
        "{} over {} steps ({:.1} µs a step); folded stacks: {}\n\n{}\n\n{}",
        format_args!("{total} {unit}"),
        a.profiled.steps,
        total as f64 / a.profiled.steps.max(1) as f64 / 1000.0,
        relative(&folded),
        top_table(&profile.functions(), total, a.top, what),
        top_table(&profile.modules(), total, a.top, "module"),
    );
    Ok(())
}

/// What crossing into the language costs a step (the boundary's CPU).
fn boundary_finding(split: &boundary::Split, steps: u64, source: &str) -> Finding {
    Finding {
        what: "the language boundary (binding, bridge, step JSON encoding)".into(),
        unit: Unit::Micros,
        per_step: split.boundary as f64 / 1000.0 / steps.max(1) as f64,
        evidence: format!(
            "{:.1}% of {source}'s CPU; the native core has {:.1}%, the language runtime {:.1}%",
            100.0 * split.boundary as f64 / split.total().max(1) as f64,
            100.0 * split.core as f64 / split.total().max(1) as f64,
            100.0 * split.runtime as f64 / split.total().max(1) as f64,
        ),
    }
}

/// The heaviest allocation sites by bytes; sites DHAT tells apart only by
/// deeper frames are one finding (same name, bytes summed).
fn heap_findings(heap: &HeapSummary, steps: u64, source: &str) -> Vec<Finding> {
    let steps = steps.max(1) as f64;
    let mut by_name: Vec<(String, u64, u64)> = Vec::new();
    for site in &heap.sites {
        let name = site.name();
        match by_name.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => {
                entry.1 += site.bytes;
                entry.2 += site.blocks;
            }
            None => by_name.push((name, site.bytes, site.blocks)),
        }
    }
    by_name.sort_by_key(|(_, bytes, _)| std::cmp::Reverse(*bytes));
    by_name
        .into_iter()
        .take(3)
        .map(|(name, bytes, blocks)| Finding {
            what: format!("allocation site `{name}`"),
            unit: Unit::Bytes,
            per_step: bytes as f64 / steps,
            evidence: format!(
                "{:.1} allocations a step, {:.1}% of {source}'s heap bytes",
                blocks as f64 / steps,
                100.0 * bytes as f64 / heap.total_bytes.max(1) as f64
            ),
        })
        .collect()
}

fn async_findings(console: &ConsoleSummary, steps: u64, source: &str) -> Vec<Finding> {
    let steps = steps.max(1) as f64;
    console
        .tasks
        .iter()
        .take(3)
        .map(|task| Finding {
            what: format!("async task `{}`", task.name),
            unit: Unit::Micros,
            per_step: task.busy.as_secs_f64() * 1e6 / steps,
            evidence: format!(
                "busy (polled) time in {source}; {:.2} polls and {:.2} wakes a step, longest poll {:.2?}",
                task.polls as f64 / steps,
                task.wakes as f64 / steps,
                task.max_poll
            ),
        })
        .collect()
}

/// A path relative to the repository, for the report's links.
pub(crate) fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}
