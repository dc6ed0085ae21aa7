//! A scenario driven against the engine as separate processes (one
//! orchestrator, one worker) while one of them runs under a profiler.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::engine::{Cluster, Side};
use super::latency::{one_task, warm_up, Requests};
use super::{bar, fresh_database, RunPlan};
use crate::build::EngineBuild;
use crate::profile::perf::Recording;
use crate::scenario::Scenario;

/// The engine process to profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Orchestration,
    Worker,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Orchestration => "orchestration",
            Target::Worker => "worker",
        }
    }
}

/// Warms up, then records `target` with perf while `tasks` tasks of the
/// scenario run one at a time; returns perf's data file.
pub async fn run_profiled(
    plan: &RunPlan,
    scenario: &Scenario,
    tasks: u64,
    target: Target,
    perf_data: &Path,
) -> anyhow::Result<PathBuf> {
    let build = EngineBuild::this()?;
    if !build.bin_dir.ends_with("profiling") {
        eprintln!(
            "note: the engine binaries in {} may lack debug info, so stacks can be shallow; \
             build with `cargo build --profile profiling --bins` and run the harness from \
             target/profiling (cargo make profile-{} does)",
            build.bin_dir.display(),
            target.name()
        );
    }
    let url = fresh_database(&plan.admin_url, &format!("{}_profile", scenario.name)).await?;
    let side = Side::new(build, Vec::new());
    let cluster = Cluster::start(&url, &side, &plan.engine_config, 1, 1).await?;
    let outcome = drive(scenario, tasks, target, &cluster, perf_data).await;
    cluster.stop().await;
    outcome
}

async fn drive(
    scenario: &Scenario,
    tasks: u64,
    target: Target,
    cluster: &Cluster,
    perf_data: &Path,
) -> anyhow::Result<PathBuf> {
    let template = scenario.load_template()?;
    let base = scenario.request(&template);
    let timeout = Duration::from_secs(scenario.timeout_s);
    let mut requests = Requests::new(base, &format!("{}-profile", scenario.name));
    let warmup = scenario.latency.as_ref().map_or(20, |l| l.warmup);
    warm_up(cluster.client(), &mut requests, warmup, timeout).await?;
    let index = match target {
        Target::Orchestration => 0,
        Target::Worker => 1,
    };
    let pid = cluster
        .pid(index)
        .with_context(|| format!("the {} process has exited", target.name()))?;
    let recording = Recording::start(pid, perf_data)?;
    let progress = bar(tasks, &format!("{} under perf", scenario.name));
    for _ in 0..tasks {
        one_task(cluster.client(), &requests.next(), timeout).await?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    recording.stop().await
}
