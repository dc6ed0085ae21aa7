//! `baseline save`, and where stored runs and baselines are found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use tasker_harness::result::RunResult;

#[derive(Subcommand)]
pub(super) enum BaselineCommand {
    /// Copy a run to reports/baselines/<name>.json.
    Save {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "latest")]
        run: String,
    },
}

pub(super) fn baseline(reports: &Path, command: BaselineCommand) -> anyhow::Result<ExitCode> {
    match command {
        BaselineCommand::Save { name, run } => {
            let source = resolve_run(reports, &run)?;
            let result = RunResult::load(&source)?;
            let target = baseline_path(reports, &name);
            result.save(&target)?;
            println!(
                "baseline {name}: {} -> {}",
                source.display(),
                target.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) fn baseline_path(reports: &Path, name: &str) -> PathBuf {
    if name.ends_with(".json") {
        PathBuf::from(name)
    } else {
        reports.join("baselines").join(format!("{name}.json"))
    }
}

/// A run file by path, or the newest under reports/runs for "latest".
pub(super) fn resolve_run(reports: &Path, run: &str) -> anyhow::Result<PathBuf> {
    if run != "latest" {
        return Ok(PathBuf::from(run));
    }
    let dir = reports.join("runs");
    let newest = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .max();
    newest.with_context(|| {
        format!(
            "no runs in {} (run `tasker-harness run` first)",
            dir.display()
        )
    })
}
