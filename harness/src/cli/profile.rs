//! `profile`: one engine process recorded while a scenario runs, then its tables and flamegraphs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use tasker_harness::profile;
use tasker_harness::scenario::Language;

use super::run::{prepare, RunArgs};

#[derive(Args)]
pub(super) struct ProfileArgs {
    /// The profiler: a recipe in profiles/ (samply, perf, dhat, console,
    /// tracing-flame, postgres). samply falls back to perf where it
    /// cannot run.
    #[arg(long = "with", default_value = "samply")]
    with: String,
    /// Which process to record (default: orchestration; with postgres,
    /// the database's backends, and no --target).
    #[arg(long, value_enum)]
    target: Option<ProfileTarget>,
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
    /// The Python worker (tasker_worker) in place of the Rust worker.
    WorkerPython,
    WorkerRuby,
    WorkerTypescript,
}

pub(super) async fn profile(reports: &Path, mut args: ProfileArgs) -> anyhow::Result<ExitCode> {
    use profile::session::Target;
    use tasker_harness::profile::analyze::{analyze, baseline_folded, Analysis};
    use tasker_harness::profile::recipe::{Recipe, Tool};
    // Before anything is built or started: a missing or refused profiler
    // is said at once.
    let recipe = usable_recipe(Recipe::load(&args.with)?)?;
    let target = match (recipe.tool, args.target) {
        (Tool::Postgres, None) => Target::Database,
        (Tool::Postgres, Some(_)) => bail!(
            "--with postgres profiles the database's backends: leave out --target \
             (it names an engine process)"
        ),
        (_, None | Some(ProfileTarget::Orchestration)) => Target::Orchestration,
        (_, Some(ProfileTarget::Worker)) => Target::Worker,
        (_, Some(ProfileTarget::WorkerPython)) => Target::Host(Language::Python),
        (_, Some(ProfileTarget::WorkerRuby)) => Target::Host(Language::Ruby),
        (_, Some(ProfileTarget::WorkerTypescript)) => Target::Host(Language::Typescript),
    };
    if target == Target::Database {
        args.plan.require_local_postgres(
            "the database profile reads the server's log (auto_explain) and attaches perf to \
             its backends, so the server must run on this machine as the harness's own cluster",
        )?;
    }
    match target {
        Target::Host(language) => args.plan.default_to_scenario(&format!("linear_{language}")),
        _ => args.plan.default_to_scenario("linear"),
    }
    if args.live && recipe.tool != Tool::Console {
        bail!("--live is for --with console (tokio-console)");
    }
    let build = recipe.build()?;
    let (server, plan) = prepare(&args.plan).await?;
    let [scenario] = plan.scenarios.as_slice() else {
        bail!("profile runs one scenario at a time; name it with --scenario");
    };
    if scenario.topology == tasker_harness::scenario::Topology::Floor {
        bail!(
            "{} is a floor scenario: it runs the harness's own model, not the engine, so there \
             is no engine process to profile",
            scenario.name
        );
    }
    let out_dir = reports.join("profiles");
    std::fs::create_dir_all(&out_dir)?;
    let spec = profile::session::ProfileSpec {
        recipe: &recipe,
        build,
        target,
        tasks: args.tasks.unwrap_or(recipe.tasks),
        out_dir: &out_dir,
        live: args.live,
        server_log: server.server_log(),
    };
    let profiled = profile::session::run_profiled(&plan, scenario, &spec).await?;
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
