//! The commands of tasker-harness.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use async_trait::async_trait;
use clap::{Args, Parser, Subcommand};
use tasker_engine::config::TaskerConfig;
use tasker_harness::build::EngineBuild;
use tasker_harness::compare::{self, CompareConfig, Rerun};
use tasker_harness::profile::{top_table, write_diff_flamegraph, FoldedProfile};
use tasker_harness::provision::{self, Backend, ProvisionOptions, Provisioned};
use tasker_harness::result::RunResult;
use tasker_harness::run::{self, RunPlan, Side};
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

#[derive(Args)]
struct ChaosArgs {
    /// Tasks submitted, evenly over --duration.
    #[arg(long, default_value_t = 1000)]
    tasks: u64,
    /// Seed of the tasks' shapes and faults and of the faults' sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of load and faults (the drain comes after).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    #[arg(long, default_value_t = 2)]
    orchestrators: usize,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// timeout_seconds of every step; a claim's lease is this plus
    /// --lease-margin.
    #[arg(long, default_value_t = 3)]
    step_timeout: u32,
    #[arg(long, default_value_t = 2)]
    lease_margin: i32,
    #[arg(long, default_value_t = 6)]
    max_attempts: u32,
    /// Shortest and longest gap between faults, seconds.
    #[arg(long, default_value_t = 1.0)]
    min_gap: f64,
    #[arg(long, default_value_t = 5.0)]
    max_gap: f64,
    /// Fault kinds to inject (default: all that apply).
    #[arg(long = "fault", value_enum)]
    faults: Vec<tasker_harness::chaos::faults::FaultKind>,
    /// Run PostgreSQL and the engine in containers on a private Docker
    /// network (images built locally, never pulled); adds network cuts of
    /// workers, and pauses orchestrators with `docker pause`.
    #[arg(long)]
    containers: bool,
}

#[derive(Args)]
struct InstructionsArgs {
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

#[derive(Args)]
struct ProfileArgs {
    /// The profiler: a recipe in profiles/ (samply, perf, dhat, console,
    /// tracing-flame). samply falls back to perf where it cannot run.
    #[arg(long = "with", default_value = "samply")]
    with: String,
    /// Which process to record.
    #[arg(long, value_enum, default_value_t = ProfileTarget::Orchestration)]
    target: ProfileTarget,
    /// Tasks run one at a time while recording (after the warm-up;
    /// default: the recipe's).
    #[arg(long)]
    tasks: Option<u64>,
    /// Folded stacks to diff against (default: the saved baseline profile
    /// in reports/baselines/profiles/, when there is one).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Save this profile's folded stacks as the baseline profile.
    #[arg(long)]
    save_baseline: bool,
    /// tokio-console only: serve the console live (connect
    /// `tokio-console`) while the tasks run, instead of recording.
    #[arg(long)]
    live: bool,
    /// Rows of the top tables.
    #[arg(long, default_value_t = 15)]
    top: usize,
    /// The scenario (one; default: linear) and where PostgreSQL comes from.
    #[command(flatten)]
    plan: RunArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProfileTarget {
    Orchestration,
    Worker,
}

#[derive(Args)]
struct FlamegraphArgs {
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

#[derive(Args)]
struct AbArgs {
    #[command(flatten)]
    sides: AbSides,
    /// The scenario (one; default: linear) and where PostgreSQL comes from.
    #[command(flatten)]
    plan: RunArgs,
}

/// The two engines of an A/B run.
#[derive(Args)]
struct AbSides {
    /// A/B mode: build this git ref (under target/against/) and run it as A,
    /// interleaved with this build as B, instead of a stored baseline.
    #[arg(long)]
    against: Option<String>,
    /// NAME=VALUE set on B's processes, e.g.
    /// TASKER__WORKER__INJECTED_DELAY_US=250 (the gate's self-test).
    #[arg(long = "candidate-env", value_parser = parse_env_pair)]
    candidate_env: Vec<(String, String)>,
}

impl AbSides {
    /// A: the ref's build (built now if needed) or this build; B: this
    /// build with the candidate environment.
    async fn resolve(&self) -> anyhow::Result<(Side, Side)> {
        let this = EngineBuild::this()?;
        let reference = match &self.against {
            Some(git_ref) => {
                let git_ref = git_ref.clone();
                tokio::task::spawn_blocking(move || EngineBuild::of_ref(&git_ref)).await??
            }
            None => this.clone(),
        };
        Ok((
            Side::new(reference, Vec::new()),
            Side::new(this, self.candidate_env.clone()),
        ))
    }
}

impl RunArgs {
    /// Runs `name` when neither a tier nor a scenario was asked for.
    fn default_to_scenario(&mut self, name: &str) {
        if self.scenarios.is_empty() && self.tiers.is_empty() {
            self.scenarios.push(name.to_string());
        }
    }
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
        Command::Gate(args) if args.ab.against.is_some() => ab_gate(&args.ab, &args.plan).await,
        Command::Gate(args) => gate(reports, args).await,
        Command::Ab(mut args) => {
            args.plan.default_to_scenario("linear");
            ab_gate(&args.sides, &args.plan).await
        }
        Command::Report(args) => write_reports(reports, &args),
        Command::Flamegraph(args) => flamegraph(args),
        Command::Profile(args) => profile(reports, args).await,
        Command::Instructions(args) => instruction_counts(reports, &args),
        Command::Chaos(args) => chaos(reports, &args).await,
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

async fn chaos(reports: &Path, args: &ChaosArgs) -> anyhow::Result<ExitCode> {
    use tasker_harness::chaos::{self, faults::FaultKind};
    if args.min_gap <= 0.0 || args.max_gap < args.min_gap {
        bail!("--min-gap must be positive and at most --max-gap");
    }
    if !args.containers && args.faults.iter().any(|k| !k.works_on_processes()) {
        bail!("--fault disconnect-worker needs --containers (a process on this machine has no network of its own to cut)");
    }
    if args.containers && !chaos::containers::available() {
        bail!("--containers: no Docker engine answers (docker version failed); start it or drop --containers");
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let plan = chaos::Plan {
        tasks: args.tasks,
        seed: args.seed,
        duration: std::time::Duration::from_secs(args.duration),
        orchestrators: args.orchestrators.max(1),
        workers: args.workers.max(1),
        step_timeout_s: args.step_timeout.max(1),
        lease_margin_s: args.lease_margin.max(0),
        max_attempts: args.max_attempts.max(1),
        fault_gap_s: (args.min_gap, args.max_gap),
        kinds: match args.faults.is_empty() {
            true => FaultKind::ALL
                .into_iter()
                .filter(|k| args.containers || k.works_on_processes())
                .collect(),
            false => args.faults.clone(),
        },
        containers: args.containers,
        out_dir: reports
            .join("chaos")
            .join(format!("{stamp}-seed{}", args.seed)),
    };
    let report = chaos::run(&plan).await?;
    println!("{}", chaos::render(&report));
    println!("result: {}", plan.out_dir.join("chaos.json").display());
    Ok(match report.verdict.passed() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
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

async fn profile(reports: &Path, mut args: ProfileArgs) -> anyhow::Result<ExitCode> {
    use tasker_harness::profile::analyze::{analyze, baseline_folded, Analysis};
    use tasker_harness::profile::recipe::{Recipe, Tool};
    args.plan.default_to_scenario("linear");
    let target = match args.target {
        ProfileTarget::Orchestration => run::profiled::Target::Orchestration,
        ProfileTarget::Worker => run::profiled::Target::Worker,
    };
    // Before anything is built or started: a missing or refused profiler
    // is said at once.
    let recipe = usable_recipe(Recipe::load(&args.with)?)?;
    if args.live && recipe.tool != Tool::Console {
        bail!("--live is for --with console (tokio-console)");
    }
    let build = recipe.build()?;
    let (_server, plan) = prepare(&args.plan).await?;
    let [scenario] = plan.scenarios.as_slice() else {
        bail!("profile runs one scenario at a time; name it with --scenario");
    };
    let out_dir = reports.join("profiles");
    std::fs::create_dir_all(&out_dir)?;
    let spec = run::profiled::ProfileSpec {
        recipe: &recipe,
        build,
        target,
        tasks: args.tasks.unwrap_or(recipe.tasks),
        out_dir: &out_dir,
        live: args.live,
    };
    let profiled = run::profiled::run_profiled(&plan, scenario, &spec).await?;
    if args.live {
        return Ok(ExitCode::SUCCESS);
    }
    let saved = baseline_folded(reports, target, &scenario.name, &recipe.name);
    let baseline = args
        .baseline
        .clone()
        .or_else(|| (saved.exists() && !args.save_baseline).then(|| saved.clone()));
    let flamegraphs = tasker_harness::build::repo_root().join("flamegraphs");
    let record = analyze(&Analysis {
        recipe: &recipe,
        target,
        scenario: &scenario.name,
        profiled: &profiled,
        baseline: baseline.as_deref(),
        flamegraphs: &flamegraphs,
        out_dir: &out_dir,
        top: args.top,
    })?;
    println!("{}\n", record.tables);
    for (what, path) in [
        ("flamegraph", &record.flamegraph),
        ("differential flamegraph", &record.diff_flamegraph),
    ] {
        if let Some(path) = path {
            println!("{what}: {path}");
        }
    }
    println!("profile record: {}", record.save(&out_dir)?.display());
    if args.save_baseline {
        let folded = out_dir.join(format!(
            "{}-{}.{}.folded",
            target.name(),
            scenario.name,
            recipe.name
        ));
        anyhow::ensure!(
            folded.exists(),
            "the {} recipe gives no folded stacks to keep as a baseline",
            recipe.name
        );
        std::fs::create_dir_all(saved.parent().expect("has a directory"))?;
        std::fs::copy(&folded, &saved)?;
        println!("baseline profile: {}", saved.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn instruction_counts(reports: &Path, args: &InstructionsArgs) -> anyhow::Result<ExitCode> {
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

/// e2e-report.md from the run, and profiling-report.md from the run and
/// the profiles; with no run yet (and none named), the profiling report
/// alone.
fn write_reports(reports: &Path, args: &ReportArgs) -> anyhow::Result<ExitCode> {
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

/// The recipe, once its recorder is known to work here; samply falls back
/// to perf (the rule) with the reason said.
fn usable_recipe(
    recipe: tasker_harness::profile::recipe::Recipe,
) -> anyhow::Result<tasker_harness::profile::recipe::Recipe> {
    use tasker_harness::profile::recipe::{Recipe, Tool};
    use tasker_harness::profile::{perf, samply};
    match recipe.tool {
        Tool::Samply => match samply::check() {
            Ok(()) => Ok(recipe),
            Err(why) => {
                eprintln!("samply cannot run here ({why:#}); falling back to perf");
                perf::check()?;
                Recipe::load("perf")
            }
        },
        Tool::Perf => perf::check().map(|()| recipe),
        _ => Ok(recipe),
    }
}

fn flamegraph(args: FlamegraphArgs) -> anyhow::Result<ExitCode> {
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

/// Prints the gate's last line; its exit code.
fn verdict_exit(comparison: &compare::Comparison) -> ExitCode {
    if comparison.passed() {
        println!("gate: passed");
        ExitCode::SUCCESS
    } else {
        println!("gate: REGRESSED");
        ExitCode::FAILURE
    }
}

/// Builds the sides, provisions PostgreSQL, runs the A/B gate; its exit code.
async fn ab_gate(sides: &AbSides, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let (reference, candidate) = sides.resolve().await?;
    let (_server, plan) = prepare(args).await?;
    let comparison = gate_ab(&plan, &reference, &candidate).await?;
    Ok(verdict_exit(&comparison))
}

/// A/B run of every planned scenario: paired latency and each side's
/// per-step costs; a latency regression is confirmed by a second A/B run
/// of that scenario. Prints the comparison.
async fn gate_ab(
    plan: &RunPlan,
    reference: &Side,
    candidate: &Side,
) -> anyhow::Result<compare::Comparison> {
    let config = CompareConfig::default();
    eprintln!("A/B: A = {}, B = {}", reference.label(), candidate.label());
    let mut scenarios = Vec::new();
    for scenario in &plan.scenarios {
        let pairs = plan
            .samples
            .or(scenario.latency.as_ref().map(|l| l.samples))
            .unwrap_or(200);
        let run = || async {
            let samples = run::ab::run_ab(plan, scenario, pairs, reference, candidate)
                .await
                .with_context(|| format!("A/B run of scenario '{}'", scenario.name))?;
            let paired =
                compare::compare_interleaved(&samples.baseline_us, &samples.candidate_us, &config)?;
            anyhow::Ok((samples, paired))
        };
        let (samples, paired) = run().await?;
        let mut comparison = compare::compare_ab_scenario(
            &scenario.name,
            paired,
            samples.baseline_costs.as_ref(),
            samples.candidate_costs.as_ref(),
            &config,
        );
        let pending = comparison
            .paired
            .as_ref()
            .is_some_and(|p| p.needs_confirmation());
        if pending && comparison.cost_verdict() != compare::Verdict::Regressed {
            eprintln!(
                "gate: latency of {} regressed; a second A/B run to confirm",
                scenario.name
            );
            let (_, again) = run().await?;
            if let Some(outcome) = comparison.paired.as_mut() {
                outcome.rerun = Some(again);
            }
        }
        scenarios.push(comparison);
    }
    let comparison = compare::Comparison {
        baseline_id: reference.label(),
        current_id: candidate.label(),
        config,
        scenarios,
        only_in_baseline: Vec::new(),
        only_in_current: Vec::new(),
    };
    println!("{}", compare::render_markdown(&comparison));
    Ok(comparison)
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
    tasker_harness::build::repo_root().join("reports")
}
