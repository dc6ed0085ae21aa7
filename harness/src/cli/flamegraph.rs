//! `flamegraph`: folded stacks to a flamegraph, a differential one, and the top tables.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use tasker_harness::profile::{top_table, write_diff_flamegraph, FoldedProfile};

#[derive(Args)]
pub(super) struct FlamegraphArgs {
    /// The profile as folded stacks (`frame;frame;frame count` per line).
    #[arg(long)]
    folded: PathBuf,
    /// A baseline's folded stacks: also write <name>-diff.svg.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Where the SVGs go (default: flamegraphs/ in the repository).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rows of the top tables.
    #[arg(long, default_value_t = 15)]
    top: usize,
}

pub(super) fn flamegraph(args: FlamegraphArgs) -> anyhow::Result<ExitCode> {
    let profile = FoldedProfile::load(&args.folded)?;
    let name = args
        .folded
        .file_stem()
        .map_or("profile".into(), |s| s.to_string_lossy().into_owned());
    summarize(
        &profile,
        &name,
        args.out.as_deref(),
        args.baseline.as_deref(),
        args.top,
    )
}

/// Flamegraph (and differential flamegraph against `baseline`) under
/// `out` (default flamegraphs/), and the top tables on stdout.
fn summarize(
    profile: &FoldedProfile,
    name: &str,
    out: Option<&Path>,
    baseline: Option<&Path>,
    top: usize,
) -> anyhow::Result<ExitCode> {
    let out = out.map_or_else(
        || tasker_harness::build::repo_root().join("flamegraphs"),
        Path::to_path_buf,
    );
    let svg = out.join(format!("{name}.svg"));
    profile.write_flamegraph(name, &svg)?;
    let total = profile.total_samples();
    println!("{name}: total weight {total} (samples; perf weighs each by its CPU nanoseconds)\n");
    println!(
        "{}\n",
        top_table(&profile.functions(), total, top, "function")
    );
    println!("{}\n", top_table(&profile.modules(), total, top, "module"));
    println!("flamegraph: {}", svg.display());
    if let Some(baseline) = baseline {
        let before = FoldedProfile::load(baseline)?;
        let diff = out.join(format!("{name}-diff.svg"));
        write_diff_flamegraph(
            &before,
            profile,
            &format!("{name} against {}", baseline.display()),
            &diff,
        )?;
        println!("differential flamegraph: {}", diff.display());
    }
    Ok(ExitCode::SUCCESS)
}
