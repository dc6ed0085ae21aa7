//! The commands of tasker-harness.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use async_trait::async_trait;
use clap::{Args, Parser, Subcommand};
use tasker_engine::config::TaskerConfig;
use tasker_harness::compare::{self, CompareConfig, Rerun};
use tasker_harness::provision::{self, Backend, ProvisionOptions, Provisioned};
use tasker_harness::result::RunResult;
use tasker_harness::run::{self, RunPlan};
use tasker_harness::{report, scenario, summary};

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
    /// Write reports/e2e-report.md and its plots.
    Report(ReportArgs),
    /// Interleaved A/B: the engine as configured (A) against the same
    /// engine with extra environment (B), tasks alternating between them;
    /// paired statistics; exit 1 if B is slower beyond the noise threshold.
    Ab(AbArgs),
    /// Baselines under reports/baselines/.
    #[command(subcommand)]
    Baseline(BaselineCommand),
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Tiers to run (default: 1).
    #[arg(long = "tier")]
    tiers: Vec<u8>,
    /// Scenarios to run by name (besides --tier).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    #[arg(long, default_value_os_t = scenario::default_path())]
    scenarios_file: PathBuf,
    /// Where PostgreSQL comes from.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    postgres: Backend,
    /// Latency samples per scenario (overrides the scenario file).
    #[arg(long)]
    samples: Option<u64>,
    /// Skip the throughput rates.
    #[arg(long)]
    latency_only: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// Baseline name (reports/baselines/<name>.json) or a file.
    #[arg(long)]
    baseline: String,
    /// A run file, or "latest".
    #[arg(long, default_value = "latest")]
    run: String,
}

#[derive(Args)]
struct GateArgs {
    #[arg(long)]
    baseline: String,
    /// Gate this stored run instead of running now (no re-run possible).
    #[arg(long)]
    run: Option<String>,
    #[command(flatten)]
    plan: RunArgs,
}

#[derive(Args)]
struct AbArgs {
    /// Pairs of tasks (one on A, one on B).
    #[arg(long, default_value_t = 200)]
    pairs: u64,
    /// NAME=VALUE set on B's processes, e.g. TASKER__WORKER__INJECTED_DELAY_US=250.
    #[arg(long = "candidate-env", value_parser = parse_env_pair)]
    candidate_env: Vec<(String, String)>,
    /// The scenario (one; default: linear) and where PostgreSQL comes from.
    #[command(flatten)]
    plan: RunArgs,
}

fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))
}

#[derive(Args)]
struct ReportArgs {
    #[arg(long, default_value = "latest")]
    run: String,
    /// Baseline to compare against, if it exists.
    #[arg(long)]
    baseline: Option<String>,
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Copy a run to reports/baselines/<name>.json.
    Save {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "latest")]
        run: String,
    },
}

pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let reports = cli.reports_dir.as_path();
    match cli.command {
        Command::Run(args) => {
            let (server, plan) = prepare(&args).await?;
            let result = run::run(&plan).await?;
            drop(server);
            let path = save_run(reports, &result)?;
            println!("{}", summary::table(&result));
            println!("result: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(args) => {
            let baseline = RunResult::load(&baseline_path(reports, &args.baseline))?;
            let current = RunResult::load(&resolve_run(reports, &args.run)?)?;
            let comparison =
                compare::compare_runs(&baseline, &current, &compare_config(&baseline, &current));
            println!("{}", compare::render_markdown(&comparison));
            Ok(ExitCode::SUCCESS)
        }
        Command::Gate(args) => gate(reports, args).await,
        Command::Ab(args) => ab(args).await,
        Command::Report(args) => {
            let current = RunResult::load(&resolve_run(reports, &args.run)?)?;
            let baseline = match &args.baseline {
                Some(name) if baseline_path(reports, name).exists() => {
                    Some(RunResult::load(&baseline_path(reports, name))?)
                }
                _ => None,
            };
            let comparison = baseline.as_ref().map(|b| {
                compare::render_markdown(&compare::compare_runs(
                    b,
                    &current,
                    &compare_config(b, &current),
                ))
            });
            let path =
                report::write_report(&current, baseline.as_ref(), comparison.as_deref(), reports)?;
            println!("report: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Baseline(BaselineCommand::Save { name, run }) => {
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

/// Provision PostgreSQL and build the run plan.
async fn prepare(args: &RunArgs) -> anyhow::Result<(Provisioned, RunPlan)> {
    let scenarios = scenario::select(
        scenario::load(&args.scenarios_file)?,
        &args.tiers,
        &args.scenarios,
    )?;
    if scenarios.is_empty() {
        bail!(
            "no scenarios in tiers {:?} of {}",
            args.tiers,
            args.scenarios_file.display()
        );
    }
    let options = ProvisionOptions {
        // Per-step statement counts come from pg_stat_statements.
        settings: vec![(
            "shared_preload_libraries".into(),
            "pg_stat_statements".into(),
        )],
        ..ProvisionOptions::default()
    };
    let server = provision::provision(args.postgres, &options).await?;
    eprintln!("PostgreSQL: {} ({})", server.backend, server.reason);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // The engine's own config files and TASKER__* overrides apply (e.g.
    // TASKER__WORKER__INJECTED_DELAY_US to check that the gate sees a
    // slowdown).
    let engine_config = TaskerConfig::load(
        &repo.join("config"),
        std::env::var("TASKER_ENV").ok().as_deref(),
    )?;
    let plan = RunPlan {
        scenarios,
        engine_config,
        admin_url: server.admin_url.clone(),
        backend: server.backend.to_string(),
        reason: server.reason.clone(),
        samples: args.samples,
        latency_only: args.latency_only,
    };
    Ok((server, plan))
}

async fn gate(reports: &Path, args: GateArgs) -> anyhow::Result<ExitCode> {
    let baseline = RunResult::load(&baseline_path(reports, &args.baseline))?;
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
    if verdict.passed() {
        println!("gate: passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("gate: REGRESSED");
        Ok(ExitCode::FAILURE)
    }
}

async fn ab(mut args: AbArgs) -> anyhow::Result<ExitCode> {
    if args.plan.scenarios.is_empty() && args.plan.tiers.is_empty() {
        args.plan.scenarios.push("linear".into());
    }
    let (_server, plan) = prepare(&args.plan).await?;
    let [scenario] = plan.scenarios.as_slice() else {
        bail!("ab compares one scenario at a time; name it with --scenario");
    };
    let samples = run::ab::run_ab(&plan, scenario, args.pairs, &args.candidate_env).await?;
    let config = CompareConfig::default();
    let result =
        compare::compare_interleaved(&samples.baseline_us, &samples.candidate_us, &config)?;
    println!(
        "{}: {} pairs, A median {:.2} ms, B median {:.2} ms, B/A {:+.1}% (95% CI {:+.1}% .. {:+.1}%), Wilcoxon p {:.3}: {}",
        scenario.name,
        result.pairs,
        result.baseline_median_us / 1000.0,
        result.candidate_median_us / 1000.0,
        result.relative_change * 100.0,
        result.ci_low * 100.0,
        result.ci_high * 100.0,
        result.p_value,
        result.verdict.label()
    );
    Ok(if result.verdict == compare::Verdict::Regressed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Wall-clock latency decides only between comparable runs (same machine
/// model and build); otherwise its threshold is infinite and it is shown
/// for information, while per-step costs still decide.
fn compare_config(baseline: &RunResult, current: &RunResult) -> CompareConfig {
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

fn save_run(reports: &Path, result: &RunResult) -> anyhow::Result<PathBuf> {
    let path = reports.join("runs").join(format!("{}.json", result.id));
    result.save(&path)?;
    Ok(path)
}

fn baseline_path(reports: &Path, name: &str) -> PathBuf {
    if name.ends_with(".json") {
        PathBuf::from(name)
    } else {
        reports.join("baselines").join(format!("{name}.json"))
    }
}

/// A run file by path, or the newest under reports/runs for "latest".
fn resolve_run(reports: &Path, run: &str) -> anyhow::Result<PathBuf> {
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

fn default_reports_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../reports")
}
