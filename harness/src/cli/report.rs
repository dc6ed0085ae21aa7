//! `report`: e2e-report.md from a run (against a baseline), profiling-report.md from the profiles.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use tasker_harness::compare;
use tasker_harness::report;
use tasker_harness::result::RunResult;

use super::baseline::{baseline_path, resolve_run};
use super::compare::compare_config;

#[derive(Args)]
pub(super) struct ReportArgs {
    #[arg(long, default_value = "latest")]
    run: String,
    /// Baseline to compare against, if it exists.
    #[arg(long)]
    baseline: Option<String>,
}

/// e2e-report.md from the run, and profiling-report.md from the run and
/// the profiles; with no run yet (and none named), the profiling report
/// alone.
pub(super) fn write_reports(reports: &Path, args: &ReportArgs) -> anyhow::Result<ExitCode> {
    use tasker_harness::profile::record::ProfileRecord;
    let current = match resolve_run(reports, &args.run) {
        Ok(path) => Some(RunResult::load(&path)?),
        Err(none) if args.run == "latest" => {
            eprintln!(
                "{none:#}: no e2e-report.md; the profiling report goes without end-to-end figures"
            );
            None
        }
        Err(error) => return Err(error),
    };
    if let Some(current) = &current {
        let baseline = match &args.baseline {
            Some(name) if baseline_path(reports, name).exists() => {
                Some(RunResult::load(&baseline_path(reports, name))?)
            }
            _ => None,
        };
        let comparison = baseline.as_ref().map(|b| {
            compare::render_markdown(&compare::compare_runs(
                b,
                current,
                &compare_config(b, current),
            ))
        });
        let path =
            report::write_report(current, baseline.as_ref(), comparison.as_deref(), reports)?;
        println!("report: {}", path.display());
    }
    let records = ProfileRecord::load_all(&reports.join("profiles"))?;
    let path = report::profiling::write_profiling_report(current.as_ref(), &records, reports)?;
    println!(
        "profiling report: {} ({} profiles)",
        path.display(),
        records.len()
    );
    Ok(ExitCode::SUCCESS)
}
