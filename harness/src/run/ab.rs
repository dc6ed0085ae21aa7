//! Interleaved A/B runs: two engines side by side, each on its own
//! database, tasks alternating between them (A B, B A, A B, ...), so both
//! see the same machine at the same moments and its drift cancels out in
//! the pair differences. A is the reference (another git ref's build, or
//! this build), B the build under test, possibly with extra environment
//! (for instance `TASKER__WORKER__INJECTED_DELAY_US=250`, the gate's
//! self-test). Each side's per-step costs are read from its own database.

use std::time::Duration;

use anyhow::Context;
use tasker_engine::orchestration::maintenance;
use tasker_engine::TaskerClient;
use uuid::Uuid;

use super::costs::{self, Counters};
use super::engine::{Cluster, Side};
use super::latency::{one_task, Requests};
use super::phases;
use super::{bar, check_results, fresh_database, steps_of, RunPlan};
use crate::result::{PhaseBreakdown, StepCosts};
use crate::scenario::{Scenario, Topology};

/// Paired latencies, µs: `baseline_us[i]` and `candidate_us[i]` ran back
/// to back; and each side's per-step costs over the measured pairs.
pub struct AbSamples {
    pub baseline_us: Vec<u64>,
    pub candidate_us: Vec<u64>,
    pub baseline_costs: Option<StepCosts>,
    pub candidate_costs: Option<StepCosts>,
    /// Where each side's measured tasks spent their time, step by step.
    pub baseline_phases: Option<PhaseBreakdown>,
    pub candidate_phases: Option<PhaseBreakdown>,
}

/// Run `pairs` pairs of `scenario` tasks, A on `a` and B on `b`, each in
/// the scenario's topology as separate processes (embedded scenarios: one
/// orchestrator and one worker).
pub async fn run_ab(
    plan: &RunPlan,
    scenario: &Scenario,
    pairs: u64,
    a: &Side,
    b: &Side,
) -> anyhow::Result<AbSamples> {
    let (orchestrators, workers) = match scenario.topology {
        Topology::Embedded | Topology::Ffi { .. } => (1, 1),
        Topology::Floor => anyhow::bail!(
            "scenario '{}' is a floor: it runs the harness's model, not an engine build, \
             so it has no A/B pair",
            scenario.name
        ),
        Topology::Cluster {
            orchestrators,
            workers,
        } => (orchestrators, workers),
    };
    let config = &plan.engine_config;
    let url_a = fresh_database(&plan.admin_url, &format!("{}_a", scenario.name)).await?;
    let url_b = fresh_database(&plan.admin_url, &format!("{}_b", scenario.name)).await?;
    let a = Cluster::start(&url_a, a, config, orchestrators, workers)
        .await
        .context("starting side A")?;
    let b = match Cluster::start(&url_b, b, config, orchestrators, workers).await {
        Ok(b) => b,
        Err(error) => {
            a.stop().await;
            return Err(error.context("starting side B"));
        }
    };
    let outcome = alternate(plan, scenario, pairs, &a, &b).await;
    a.stop().await;
    b.stop().await;
    outcome
}

async fn alternate(
    plan: &RunPlan,
    scenario: &Scenario,
    pairs: u64,
    a: &Cluster,
    b: &Cluster,
) -> anyhow::Result<AbSamples> {
    let template = scenario.load_template()?;
    let timeout = Duration::from_secs(scenario.timeout_s);
    let base = scenario.request(&template);
    let mut requests = Requests::new(base, &format!("{}-ab", scenario.name));
    for side in [a, b] {
        costs::enable_statements(side.pool()).await;
    }
    let warmup = scenario.latency.as_ref().map_or(20, |l| l.warmup);
    for _ in 0..warmup {
        one_task(a.client(), &requests.next(), timeout).await?;
        one_task(b.client(), &requests.next(), timeout).await?;
    }
    let (settled_a, settled_b) = tokio::try_join!(
        Counters::read_settled(a.pool()),
        Counters::read_settled(b.pool())
    )?;
    for side in [a, b] {
        maintenance::run_once(side.pool(), &plan.engine_config.orchestration).await?;
    }
    let before_a = Counters::read(a.pool()).await?.with_rows_from(&settled_a);
    let before_b = Counters::read(b.pool()).await?.with_rows_from(&settled_b);
    let progress = bar(pairs, &format!("{} A/B pairs", scenario.name));
    let mut samples = AbSamples {
        baseline_us: Vec::with_capacity(pairs as usize),
        candidate_us: Vec::with_capacity(pairs as usize),
        baseline_costs: None,
        candidate_costs: None,
        baseline_phases: None,
        candidate_phases: None,
    };
    let (mut tasks_a, mut tasks_b) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which side goes first, so neither always follows the other.
        let order: [(&TaskerClient, bool); 2] = if i % 2 == 0 {
            [(a.client(), false), (b.client(), true)]
        } else {
            [(b.client(), true), (a.client(), false)]
        };
        for (client, is_candidate) in order {
            let (task, elapsed) = one_task(client, &requests.next(), timeout).await?;
            let us = elapsed.as_micros() as u64;
            let (latencies, tasks): (&mut Vec<u64>, &mut Vec<Uuid>) = match is_candidate {
                true => (&mut samples.candidate_us, &mut tasks_b),
                false => (&mut samples.baseline_us, &mut tasks_a),
            };
            latencies.push(us);
            tasks.push(task);
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (after_a, after_b) = tokio::try_join!(
        Counters::read_settled(a.pool()),
        Counters::read_settled(b.pool())
    )?;
    let (after_a, after_b) = tokio::join!(
        after_a.with_commits_since(a.pool(), &before_a),
        after_b.with_commits_since(b.pool(), &before_b)
    );
    check_results(a.pool(), scenario, &tasks_a)
        .await
        .context("side A")?;
    check_results(b.pool(), scenario, &tasks_b)
        .await
        .context("side B")?;
    // Each side's measured tasks' steps, counted in its database after its
    // counters were read (a batch task makes its batches' steps at run time).
    let steps_a = steps_of(a.pool(), &tasks_a).await?.total;
    let steps_b = steps_of(b.pool(), &tasks_b).await?.total;
    samples.baseline_costs = before_a.per_step(&after_a, steps_a);
    samples.candidate_costs = before_b.per_step(&after_b, steps_b);
    samples.baseline_phases = Some(phases::breakdown(a.pool(), &tasks_a, &template).await?);
    samples.candidate_phases = Some(phases::breakdown(b.pool(), &tasks_b, &template).await?);
    Ok(samples)
}
