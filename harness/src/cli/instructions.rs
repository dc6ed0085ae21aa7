//! `instructions`: callgrind instruction counts of the hot-path pieces against their baseline.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub(super) struct InstructionsArgs {
    /// Cargo profile of the workload binary: `bench` (release), or `dev`
    /// (what CI has already built).
    #[arg(long, default_value = tasker_harness::instructions::BENCH_PROFILE)]
    profile: String,
    /// Allowed growth, percent.
    #[arg(long, default_value_t = tasker_harness::instructions::DEFAULT_TOLERANCE_PCT)]
    tolerance: f64,
    /// Store these counts as the baseline instead of comparing.
    #[arg(long)]
    save_baseline: bool,
}

pub(super) fn instruction_counts(
    reports: &Path,
    args: &InstructionsArgs,
) -> anyhow::Result<ExitCode> {
    use tasker_harness::instructions::{self as ins, InstructionCounts};
    // Before building: a missing valgrind is said at once.
    ins::check_valgrind("valgrind")?;
    let binary = ins::build_bench(&args.profile)?;
    let current = ins::measure_all(&binary, &args.profile)?;
    for (workload, count) in &current.counts {
        println!("{workload}: {count} instructions an iteration");
    }
    let path = reports
        .join("baselines")
        .join(format!("instructions-{}.json", args.profile));
    if args.save_baseline {
        current.save(&path)?;
        println!("baseline: {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !path.exists() {
        println!(
            "no baseline {} (save one with --save-baseline)",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let baseline = InstructionCounts::load(&path)?;
    let verdicts = ins::compare(&baseline, &current, args.tolerance);
    println!(
        "{}",
        ins::render_markdown(&baseline, &current, &verdicts, args.tolerance)
    );
    Ok(match ins::any_failure(&verdicts) {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}
