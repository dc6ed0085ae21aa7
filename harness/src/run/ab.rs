//! Interleaved A/B runs: two engines side by side, each on its own
//! database, tasks alternating between them (A B, B A, A B, ...), so both
//! see the same machine at the same moments and its drift cancels out in
//! the pair differences. A is the engine as configured; B is the same
//! binaries with extra environment (for instance
//! `TASKER__WORKER__INJECTED_DELAY_US=250`, the gate's self-test).

use std::time::Duration;

use anyhow::Context;
use tasker_engine::orchestration::maintenance;
use tasker_engine::{TaskRequest, TaskerClient};

use super::engine::Cluster;
use super::latency::{one_task, Requests};
use super::{bar, fresh_database, RunPlan};
use crate::scenario::Scenario;

/// Paired latencies, µs: `baseline[i]` and `candidate[i]` ran back to back.
pub struct AbSamples {
    pub baseline_us: Vec<u64>,
    pub candidate_us: Vec<u64>,
}

/// Run `pairs` pairs of `scenario` tasks, A without and B with
/// `candidate_env`, each engine one orchestrator and one worker process.
pub async fn run_ab(
    plan: &RunPlan,
    scenario: &Scenario,
    pairs: u64,
    candidate_env: &[(String, String)],
) -> anyhow::Result<AbSamples> {
    let template = tasker_scenarios::template(&scenario.template)
        .with_context(|| format!("template {} not found", scenario.template))?;
    let config = &plan.engine_config;
    let url_a = fresh_database(&plan.admin_url, &format!("{}_a", scenario.name)).await?;
    let url_b = fresh_database(&plan.admin_url, &format!("{}_b", scenario.name)).await?;
    let a = Cluster::start(&url_a, &template, config, 1, 1, &[]).await?;
    let b = Cluster::start(&url_b, &template, config, 1, 1, candidate_env).await?;
    let outcome = alternate(plan, scenario, &template, pairs, &a, &b).await;
    a.stop().await;
    b.stop().await;
    outcome
}

async fn alternate(
    plan: &RunPlan,
    scenario: &Scenario,
    template: &tasker_engine::TaskTemplate,
    pairs: u64,
    a: &Cluster,
    b: &Cluster,
) -> anyhow::Result<AbSamples> {
    let timeout = Duration::from_secs(scenario.timeout_s);
    let base = TaskRequest::new(
        &template.namespace_name,
        &template.name,
        &template.version,
        scenario.context_json(),
    );
    let mut requests = Requests::new(base, &format!("{}-ab", scenario.name));
    let warmup = scenario.latency.as_ref().map_or(20, |l| l.warmup);
    for _ in 0..warmup {
        one_task(a.client(), &requests.next(), timeout).await?;
        one_task(b.client(), &requests.next(), timeout).await?;
    }
    for side in [a, b] {
        maintenance::run_once(side.pool(), &plan.engine_config.orchestration).await?;
    }
    let progress = bar(pairs, &format!("{} A/B pairs", scenario.name));
    let mut samples = AbSamples {
        baseline_us: Vec::with_capacity(pairs as usize),
        candidate_us: Vec::with_capacity(pairs as usize),
    };
    for i in 0..pairs {
        // Alternate which side goes first, so neither always follows the other.
        let order: [(&TaskerClient, bool); 2] = if i % 2 == 0 {
            [(a.client(), false), (b.client(), true)]
        } else {
            [(b.client(), true), (a.client(), false)]
        };
        for (client, is_candidate) in order {
            let (_, elapsed) = one_task(client, &requests.next(), timeout).await?;
            let us = elapsed.as_micros() as u64;
            if is_candidate {
                samples.candidate_us.push(us);
            } else {
                samples.baseline_us.push(us);
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(samples)
}
