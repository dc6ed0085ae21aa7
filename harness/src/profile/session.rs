//! A profiling session: a scenario driven against the engine as separate
//! processes (one orchestrator, one worker) built by a profiler recipe,
//! while one of them is recorded: attached after the warm-up (samply,
//! perf), or from inside for its whole life (DHAT, tokio-console,
//! tracing-flame), which write their files when the processes exit.
//!
//! It lives in profile/, not run/, because it drives run/'s pieces with a
//! recorder around them: profile/ uses run/, never the reverse.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::recipe::{Recipe, Tool};
use super::{perf, samply};
use crate::build::EngineBuild;
use crate::run::engine::{Cluster, Side};
use crate::run::languages::{LanguageWorker, Prepared};
use crate::run::latency::{one_task, warm_up, Requests};
use crate::run::{bar, fresh_database, steps_of, RunPlan};
use crate::scenario::{Language, Scenario};

/// The engine process to profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Orchestration,
    Worker,
    /// A language's worker (the worker core in a Python, Ruby or Node
    /// process) in place of the Rust worker; recorded by samply or perf.
    Host(Language),
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Orchestration => "orchestration",
            Target::Worker => "worker",
            Target::Host(Language::Python) => "worker-python",
            Target::Host(Language::Ruby) => "worker-ruby",
            Target::Host(Language::Typescript) => "worker-typescript",
        }
    }

    pub fn binary(self) -> &'static str {
        match self {
            Target::Orchestration => "tasker-server",
            Target::Worker => "tasker-worker",
            Target::Host(Language::Python) => "python (tasker_worker)",
            Target::Host(Language::Ruby) => "ruby (tasker_worker)",
            Target::Host(Language::Typescript) => "node (tasker_worker)",
        }
    }

    /// Its index among the cluster's processes (orchestrators first).
    fn index(self) -> usize {
        match self {
            Target::Orchestration => 0,
            Target::Worker | Target::Host(_) => 1,
        }
    }
}

/// What one profiled run did and where its recording is.
#[derive(Debug, Clone)]
pub struct Profiled {
    /// The target's recording (perf.data, samply's profile, or the file
    /// the process wrote).
    pub recording: PathBuf,
    /// Tasks while recording; for in-process tools, the warm-up's too.
    pub tasks: u64,
    pub steps: u64,
}

/// How a profiled run goes.
pub struct ProfileSpec<'a> {
    pub recipe: &'a Recipe,
    pub build: EngineBuild,
    pub target: Target,
    pub tasks: u64,
    /// Where recordings go (reports/profiles/).
    pub out_dir: &'a Path,
    /// tokio-console only: serve live instead of recording, until the
    /// tasks are done.
    pub live: bool,
}

pub async fn run_profiled(
    plan: &RunPlan,
    scenario: &Scenario,
    spec: &ProfileSpec<'_>,
) -> anyhow::Result<Profiled> {
    let name = format!("{}-{}", spec.target.name(), scenario.name);
    let files = spec.out_dir.join(format!("{name}.{}", spec.recipe.name));
    let mut env = Vec::new();
    if !spec.recipe.tool.attaches() && !spec.live {
        // In-process recorders write <binary>.<suffix> here (fresh each run).
        let _ = std::fs::remove_dir_all(&files);
        std::fs::create_dir_all(&files)
            .with_context(|| format!("cannot create {}", files.display()))?;
        env.push((
            tasker_engine::telemetry::PROFILE_DIR_ENV.to_string(),
            files.display().to_string(),
        ));
    }
    let mut side = Side::new(spec.build.clone(), env);
    if let Target::Host(language) = spec.target {
        side = side.with_worker(host_worker(language, spec, scenario)?);
    }
    let url = fresh_database(&plan.admin_url, &format!("{}_profile", scenario.name)).await?;
    let cluster = Cluster::start(&url, &side, &plan.engine_config, 1, 1).await?;
    if spec.live {
        eprintln!(
            "tokio-console: connect with `tokio-console http://127.0.0.1:6669` (tasker-server) \
             or `http://127.0.0.1:6670` (tasker-worker) while the {} tasks run",
            spec.tasks
        );
    }
    let outcome = drive(scenario, spec, &cluster, &name).await;
    cluster.stop().await;
    let (tasks, attached, steps_per_task) = outcome?;
    let recording = match attached {
        Some(path) => path,
        None if spec.live => files,
        None => in_process_file(&files, spec.target, spec.recipe.tool)?,
    };
    Ok(Profiled {
        recording,
        tasks,
        steps: tasks * u64::from(steps_per_task),
    })
}

/// The language's worker, built, serving the scenario's namespace; only
/// the attaching profilers see into it.
fn host_worker(
    language: Language,
    spec: &ProfileSpec<'_>,
    scenario: &Scenario,
) -> anyhow::Result<LanguageWorker> {
    if !spec.recipe.tool.attaches() {
        bail!(
            "--target {} records with samply or perf only: {} is built into the Rust binaries",
            spec.target.name(),
            spec.recipe.name
        );
    }
    let release = spec.recipe.cargo_profile != "dev";
    match LanguageWorker::prepare(language, &spec.build.source_dir, release)? {
        Prepared::Ready(worker) => Ok(worker.serving(&scenario.load_template()?.namespace_name)),
        Prepared::Skipped(why) => bail!("the {language} worker cannot be built here: {why}"),
    }
}

/// Warm-up, then the tasks one at a time; an attaching recorder runs
/// around the tasks only. Returns the tasks the recording covers, the
/// attached recorder's file, and the steps of one task (counted in the
/// database from the recorded tasks: a batch task makes its batches'
/// steps at run time, so the template's step count is not the task's).
async fn drive(
    scenario: &Scenario,
    spec: &ProfileSpec<'_>,
    cluster: &Cluster,
    name: &str,
) -> anyhow::Result<(u64, Option<PathBuf>, u32)> {
    let template = scenario.load_template()?;
    let base = scenario.request(&template);
    let timeout = Duration::from_secs(scenario.timeout_s);
    let mut requests = Requests::new(base, &format!("{}-profile", scenario.name));
    let warmup = scenario.latency.as_ref().map_or(20, |l| l.warmup);
    warm_up(cluster.client(), &mut requests, warmup, timeout).await?;
    let pid = cluster
        .pid(spec.target.index())
        .with_context(|| format!("the {} process has exited", spec.target.name()))?;
    let recorder = match spec.recipe.tool {
        Tool::Perf => Some(perf::record(
            pid,
            &spec.out_dir.join(format!("{name}.perf.data")),
        )?),
        Tool::Samply => Some(samply::record(
            pid,
            &spec.out_dir.join(format!("{name}.samply.json.gz")),
        )?),
        _ => None,
    };
    let progress = bar(
        spec.tasks,
        &format!("{} under {}", scenario.name, spec.recipe.name),
    );
    let mut tasks = Vec::with_capacity(spec.tasks as usize);
    for _ in 0..spec.tasks {
        let (task, _) = one_task(cluster.client(), &requests.next(), timeout).await?;
        tasks.push(task);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (recorded, attached) = match recorder {
        Some(recorder) => (spec.tasks, Some(recorder.stop().await?)),
        None => (spec.tasks + warmup, None),
    };
    let steps = match tasks.is_empty() {
        true => template.steps.len() as u32,
        false => steps_of(cluster.pool(), &tasks).await?.per_task(),
    };
    Ok((recorded, attached, steps))
}

/// The file an in-process recorder of `target` wrote (see the engine's
/// telemetry module for the names).
fn in_process_file(dir: &Path, target: Target, tool: Tool) -> anyhow::Result<PathBuf> {
    let suffix = match tool {
        Tool::Dhat => "dhat-heap.json",
        Tool::Console => "console.jsonl",
        Tool::TracingFlame => "tracing.folded",
        Tool::Perf | Tool::Samply => unreachable!("attached recorders name their own files"),
    };
    let binary = match target {
        Target::Host(_) => unreachable!("a language worker is recorded attached (host_worker)"),
        _ => target.binary(),
    };
    let path = dir.join(format!("{binary}.{suffix}"));
    if !path.exists() {
        bail!(
            "{} wrote no {} — was it built with the recipe's feature, and did it exit cleanly? \
             (its messages are above)",
            target.binary(),
            path.display()
        );
    }
    Ok(path)
}
