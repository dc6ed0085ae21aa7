//! The commands of tasker-harness: the top-level parser and its dispatch.

mod ab;
mod baseline;
mod chaos;
mod compare;
mod flamegraph;
mod instructions;
mod profile;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ab::AbArgs;
use baseline::BaselineCommand;
use chaos::ChaosArgs;
use compare::{CompareArgs, GateArgs};
use flamegraph::FlamegraphArgs;
use instructions::InstructionsArgs;
use profile::ProfileArgs;
use report::ReportArgs;
use run::RunArgs;

#[derive(Parser)]
#[command(version, about = "Tiered end-to-end benchmarks of the Tasker engine")]
pub struct Cli {
    /// Where runs, baselines and reports live.
    #[arg(long, global = true, default_value_os_t = default_reports_dir())]
    reports_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios, write reports/runs/<id>.json and print the table.
    Run(RunArgs),
    /// Compare a run with a baseline and print the verdicts.
    Compare(CompareArgs),
    /// Run (or take) a run, compare with a baseline, confirm wall-clock
    /// regressions by a re-run; exit 1 on a regression.
    Gate(GateArgs),
    /// Write reports/e2e-report.md and its plots, and
    /// reports/profiling-report.md from the profiles in reports/profiles/.
    Report(ReportArgs),
    /// Interleaved A/B of one scenario: a reference engine (A: this build,
    /// or --against <ref>) and this build with --candidate-env (B), tasks
    /// alternating between them; paired statistics; exit 1 on a regression.
    Ab(AbArgs),
    /// Baselines under reports/baselines/.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Folded stacks (from perf, samply or tracing-flame) to a flamegraph,
    /// top functions and modules; with --baseline also a differential
    /// flamegraph.
    Flamegraph(FlamegraphArgs),
    /// Profile one engine process while a scenario runs (one orchestrator
    /// and one worker process, built by the recipe in profiles/): CPU with
    /// samply or perf, heap with DHAT, async tasks with tokio-console, span
    /// timings with tracing-flame; prints the tables, writes flamegraphs
    /// and reports/profiles/<target>-<scenario>.<recipe>.record.json.
    Profile(ProfileArgs),
    /// Exact instruction counts (callgrind) of the engine's CPU-only
    /// hot-path pieces, compared with reports/baselines/instructions-<profile>.json;
    /// exit 1 when one grew beyond the tolerance.
    Instructions(InstructionsArgs),
    /// The fault campaign: two orchestrators and two workers under load on
    /// their own PostgreSQL while processes are killed, paused and
    /// restarted, PostgreSQL restarted, sessions terminated and connection
    /// slots exhausted; then every task is checked from the database.
    /// Exit 1 if a task was lost or an attempt ran twice.
    Chaos(ChaosArgs),
}

pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let reports = cli.reports_dir.as_path();
    match cli.command {
        Command::Run(args) => run::run(reports, &args).await,
        Command::Compare(args) => compare::compare(reports, &args),
        Command::Gate(args) => compare::gate(reports, args).await,
        Command::Ab(args) => ab::ab(args).await,
        Command::Report(args) => report::write_reports(reports, &args),
        Command::Flamegraph(args) => flamegraph::flamegraph(args),
        Command::Profile(args) => profile::profile(reports, args).await,
        Command::Instructions(args) => instructions::instruction_counts(reports, &args),
        Command::Chaos(args) => chaos::chaos(reports, &args).await,
        Command::Baseline(command) => baseline::baseline(reports, command),
    }
}

fn default_reports_dir() -> PathBuf {
    tasker_harness::build::repo_root().join("reports")
}
