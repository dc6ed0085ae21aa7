//! `compare` and `gate`: a run against a stored baseline, with re-runs to confirm.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use async_trait::async_trait;
use clap::Args;
use tasker_harness::compare::{self, CompareConfig, Rerun};
use tasker_harness::provision::Provisioned;
use tasker_harness::result::RunResult;
use tasker_harness::run::{self, RunPlan};

use super::ab::{self, AbSides};
use super::baseline::{baseline_path, resolve_run};
use super::run::{prepare, save_run, RunArgs};

#[derive(Args)]
pub(super) struct CompareArgs {
    /// Baseline name (reports/baselines/<name>.json) or a file.
    #[arg(long)]
    baseline: String,
    /// A run file, or "latest".
    #[arg(long, default_value = "latest")]
    run: String,
}

#[derive(Args)]
pub(super) struct GateArgs {
    /// Stored baseline (reports/baselines/<name>.json, or a file).
    #[arg(long, required_unless_present = "against", conflicts_with = "against")]
    baseline: Option<String>,
    /// Gate this stored run instead of running now (no re-run possible).
    #[arg(long, conflicts_with = "against")]
    run: Option<String>,
    #[command(flatten)]
    ab: AbSides,
    #[command(flatten)]
    plan: RunArgs,
}

pub(super) fn compare(reports: &Path, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let baseline = RunResult::load(&baseline_path(reports, &args.baseline))?;
    let current = RunResult::load(&resolve_run(reports, &args.run)?)?;
    let comparison =
        compare::compare_runs(&baseline, &current, &compare_config(&baseline, &current));
    println!("{}", compare::render_markdown(&comparison));
    Ok(ExitCode::SUCCESS)
}

/// With --against, the A/B gate; otherwise this run (or --run) against the
/// stored baseline.
pub(super) async fn gate(reports: &Path, args: GateArgs) -> anyhow::Result<ExitCode> {
    if args.ab.against.is_some() {
        return ab::ab_gate(&args.ab, &args.plan).await;
    }
    let name = args
        .baseline
        .context("--baseline or --against is required")?;
    let baseline = RunResult::load(&baseline_path(reports, &name))?;
    let (current, mut rerun): (RunResult, Box<dyn Rerun>) = match &args.run {
        Some(run) => (
            RunResult::load(&resolve_run(reports, run)?)?,
            Box::new(NoRerun),
        ),
        None => {
            let (server, plan) = prepare(&args.plan).await?;
            let current = run::run(&plan).await?;
            save_run(reports, &current)?;
            (
                current,
                Box::new(LiveRerun {
                    _server: server,
                    plan,
                }),
            )
        }
    };
    let config = compare_config(&baseline, &current);
    let first = compare::compare_runs(&baseline, &current, &config);
    let verdict = compare::gate(first, &baseline, &current, rerun.as_mut()).await?;
    println!("{}", compare::render_markdown(&verdict));
    if !baseline.comparable_wall_clock(&current) {
        println!(
            "note: baseline {} ran on {} ({} cores, {} build), this run on {} ({} cores, {} build): \
             wall-clock figures are shown for information only; per-step costs decide",
            baseline.id,
            baseline.machine.cpu_model,
            baseline.machine.cpus,
            baseline.build_profile,
            current.machine.cpu_model,
            current.machine.cpus,
            current.build_profile
        );
    }
    Ok(verdict_exit(&verdict))
}

/// Prints the gate's last line; its exit code.
pub(super) fn verdict_exit(comparison: &compare::Comparison) -> ExitCode {
    if comparison.passed() {
        println!("gate: passed");
        ExitCode::SUCCESS
    } else {
        println!("gate: REGRESSED");
        ExitCode::FAILURE
    }
}

/// Wall-clock latency decides only between comparable runs (same machine
/// model and build); otherwise its threshold is infinite and it is shown
/// for information, while per-step costs still decide.
pub(super) fn compare_config(baseline: &RunResult, current: &RunResult) -> CompareConfig {
    let mut config = CompareConfig::default();
    if !baseline.comparable_wall_clock(current) {
        config.noise_threshold = f64::INFINITY;
    }
    config
}

/// Re-runs scenarios on the same server with the same plan.
struct LiveRerun {
    _server: Provisioned,
    plan: RunPlan,
}

#[async_trait]
impl Rerun for LiveRerun {
    async fn rerun(&mut self, scenarios: &[String]) -> anyhow::Result<RunResult> {
        eprintln!("gate: re-running {} to confirm", scenarios.join(", "));
        let plan = RunPlan {
            scenarios: self
                .plan
                .scenarios
                .iter()
                .filter(|s| scenarios.contains(&s.name))
                .cloned()
                .collect(),
            ..self.plan.clone()
        };
        run::run(&plan).await
    }
}

/// A stored run cannot be re-run: its wall-clock regressions stand.
struct NoRerun;

#[async_trait]
impl Rerun for NoRerun {
    async fn rerun(&mut self, _: &[String]) -> anyhow::Result<RunResult> {
        bail!("gating a stored run (--run): wall-clock regressions cannot be confirmed by a re-run; gate without --run")
    }
}
