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

use super::database::probe::{DatabaseProfile, Probe, ProbeTargets};
use super::recipe::{Recipe, Tool};
use super::{database, perf, samply};
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
    /// The PostgreSQL backends serving the engine (the postgres recipe).
    Database,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Orchestration => "orchestration",
            Target::Worker => "worker",
            Target::Host(Language::Python) => "worker-python",
            Target::Host(Language::Ruby) => "worker-ruby",
            Target::Host(Language::Typescript) => "worker-typescript",
            Target::Database => "postgres",
        }
    }

    pub fn binary(self) -> &'static str {
        match self {
            Target::Orchestration => "tasker-server",
            Target::Worker => "tasker-worker",
            Target::Host(Language::Python) => "python (tasker_worker)",
            Target::Host(Language::Ruby) => "ruby (tasker_worker)",
            Target::Host(Language::Typescript) => "node (tasker_worker)",
            Target::Database => "postgres (the engine's backends)",
        }
    }

    /// Its index among the cluster's processes (orchestrators first);
    /// the database is none of them.
    fn index(self) -> Option<usize> {
        match self {
            Target::Orchestration => Some(0),
            Target::Worker | Target::Host(_) => Some(1),
            Target::Database => None,
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
    /// The database's probes (the postgres recipe).
    pub database: Option<DatabaseProfile>,
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
    /// The server's log file, where auto_explain writes (the postgres
    /// recipe; local clusters only).
    pub server_log: Option<PathBuf>,
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
    if spec.recipe.tool == Tool::Postgres {
        database::probe::configure(
            &plan.admin_url,
            &database::probe::database_name(&url)?,
            &spec.recipe.database,
        )
        .await?;
    }
    let cluster = Cluster::start(&url, &side, &plan.engine_config, 1, 1).await?;
    if spec.live {
        eprintln!(
            "tokio-console: connect with `tokio-console http://127.0.0.1:6669` (tasker-server) \
             or `http://127.0.0.1:6670` (tasker-worker) while the {} tasks run",
            spec.tasks
        );
    }
    let outcome = drive(scenario, spec, &cluster, (&plan.admin_url, &url), &name).await;
    cluster.stop().await;
    let driven = outcome?;
    let recording = match (driven.attached, &driven.database) {
        (Some(path), _) => path,
        (None, Some(profile)) => save_database_profile(profile, &files)?,
        (None, None) if spec.live => files,
        (None, None) => in_process_file(&files, spec.target, spec.recipe.tool)?,
    };
    Ok(Profiled {
        recording,
        tasks: driven.tasks,
        steps: driven.tasks * u64::from(driven.steps_per_task),
        database: driven.database,
    })
}

/// The database's profile as JSON beside the other recordings.
fn save_database_profile(profile: &DatabaseProfile, files: &Path) -> anyhow::Result<PathBuf> {
    let path = files.with_extension("postgres.json");
    let text = serde_json::to_string_pretty(profile).expect("a database profile serializes");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
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

/// What driving the tasks gave.
struct Driven {
    /// Tasks the recording covers.
    tasks: u64,
    /// The attached recorder's file.
    attached: Option<PathBuf>,
    /// Steps of one task, counted in the database from the recorded tasks
    /// (a batch task makes its batches' steps at run time, so the
    /// template's step count is not the task's).
    steps_per_task: u32,
    database: Option<DatabaseProfile>,
}

/// Warm-up, then the tasks one at a time; an attaching recorder (or the
/// database's probes) runs around the tasks only.
async fn drive(
    scenario: &Scenario,
    spec: &ProfileSpec<'_>,
    cluster: &Cluster,
    urls: (&str, &str),
    name: &str,
) -> anyhow::Result<Driven> {
    let template = scenario.load_template()?;
    let base = scenario.request(&template);
    let timeout = Duration::from_secs(scenario.timeout_s);
    let mut requests = Requests::new(base, &format!("{}-profile", scenario.name));
    let warmup = scenario.latency.as_ref().map_or(20, |l| l.warmup);
    warm_up(cluster.client(), &mut requests, warmup, timeout).await?;
    let pid = || {
        let index = spec
            .target
            .index()
            .context("the database has no engine process")?;
        cluster
            .pid(index)
            .with_context(|| format!("the {} process has exited", spec.target.name()))
    };
    let recorder = match spec.recipe.tool {
        Tool::Perf => Some(perf::record(
            &[pid()?],
            &spec.out_dir.join(format!("{name}.perf.data")),
        )?),
        Tool::Samply => Some(samply::record(
            pid()?,
            &spec.out_dir.join(format!("{name}.samply.json.gz")),
        )?),
        _ => None,
    };
    let probe = match spec.recipe.tool {
        Tool::Postgres => Some(start_probe(spec, cluster, urls, name).await?),
        _ => None,
    };
    let progress = bar(
        spec.tasks,
        &format!("{} under {}", scenario.name, spec.recipe.name),
    );
    let mut tasks = Vec::with_capacity(spec.tasks as usize);
    let mut wall = Duration::ZERO;
    for _ in 0..spec.tasks {
        let (task, latency) = one_task(cluster.client(), &requests.next(), timeout).await?;
        tasks.push(task);
        wall += latency;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let steps_per_task = match tasks.is_empty() {
        true => template.steps.len() as u32,
        false => steps_of(cluster.pool(), &tasks).await?.per_task(),
    };
    let steps = spec.tasks * u64::from(steps_per_task);
    let database = match probe {
        Some(probe) => {
            let wall_us = wall.as_secs_f64() * 1e6 / steps.max(1) as f64;
            Some(probe.finish(steps, wall_us).await?)
        }
        None => None,
    };
    let (tasks, attached) = match recorder {
        Some(recorder) => (spec.tasks, Some(recorder.stop().await?)),
        None if database.is_some() => (spec.tasks, None),
        None => (spec.tasks + warmup, None),
    };
    Ok(Driven {
        tasks,
        attached,
        steps_per_task,
        database,
    })
}

/// The database's probes, on the engine's processes and the backends
/// that serve them.
async fn start_probe(
    spec: &ProfileSpec<'_>,
    cluster: &Cluster,
    (admin_url, url): (&str, &str),
    name: &str,
) -> anyhow::Result<Probe> {
    let targets = ProbeTargets {
        admin_url: admin_url.to_string(),
        url: url.to_string(),
        database: database::probe::database_name(url)?,
        engine_pids: (0..2).filter_map(|i| cluster.pid(i)).collect(),
        server_log: spec.server_log.clone(),
        perf_data: spec.out_dir.join(format!("{name}.perf.data")),
        plans_file: spec.out_dir.join(format!("{name}.plans.md")),
    };
    Probe::start(targets, &spec.recipe.database).await
}

/// The file an in-process recorder of `target` wrote (see the engine's
/// telemetry module for the names).
fn in_process_file(dir: &Path, target: Target, tool: Tool) -> anyhow::Result<PathBuf> {
    let suffix = match tool {
        Tool::Dhat => "dhat-heap.json",
        Tool::Console => "console.jsonl",
        Tool::TracingFlame => "tracing.folded",
        Tool::Perf | Tool::Samply | Tool::Postgres => {
            unreachable!("attached recorders name their own files")
        }
    };
    let binary = match target {
        Target::Host(_) | Target::Database => {
            unreachable!("a language worker and the database are recorded attached")
        }
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
