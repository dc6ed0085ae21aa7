//! Topology `floor`: the template's DAG on a minimal model of the same
//! durable queue-based chain (`model.rs`: plain tokio-postgres, no engine
//! code), measured like any scenario on its own fresh database: the same
//! warm-up, latency samples, throughput rates and per-step costs from the
//! same pg_stat_statements counters. Every report shows the engine's
//! scenarios as multiples of the floor of their template in the same run.
//!
//! Also here: the server's round trip and commit latency (`timings`),
//! measured once a run.

mod connection;
pub mod dag;
mod model;
pub mod timings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::costs::{self, Counters};
use super::throughput::{self, Finished};
use super::{bar, RunPlan};
use crate::result::{LatencyResult, ScenarioResult, Summary};
use crate::scenario::Scenario;
use dag::Dag;
use model::{Floor, FloorClient, WaitError};

/// Runs a floor scenario on `url` (a fresh database).
pub(crate) async fn run_scenario(
    plan: &RunPlan,
    scenario: &Scenario,
    url: &str,
) -> anyhow::Result<ScenarioResult> {
    let template = scenario.load_template()?;
    let dag = Arc::new(Dag::from_template(&template)?);
    // The harness's own connection: counters and checks, never the model's.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .context("connecting to the floor's database")?;
    costs::enable_statements(&pool).await;
    let floor = Floor::start(url, dag.clone()).await?;
    let mut result = ScenarioResult {
        name: scenario.name.clone(),
        tier: scenario.tier,
        template: template.key().to_string(),
        rows: scenario.rows,
        steps_per_task: dag.len() as u32,
        latency: None,
        throughput: Vec::new(),
        phases: None,
        costs: None,
        ffi: None,
        floor: true,
    };
    let outcome = measure(plan, scenario, &dag, floor.client(), &pool, &mut result).await;
    let stopped = floor.stop().await;
    pool.close().await;
    outcome?;
    stopped?;
    Ok(result)
}

async fn measure(
    plan: &RunPlan,
    scenario: &Scenario,
    dag: &Dag,
    client: &FloorClient,
    pool: &PgPool,
    result: &mut ScenarioResult,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(scenario.timeout_s);
    let steps = dag.len() as u64;
    if let Some(latency_plan) = &scenario.latency {
        let samples = plan.samples.unwrap_or(latency_plan.samples);
        for _ in 0..latency_plan.warmup {
            client.run_task(timeout).await.context("warm-up task")?;
        }
        // As the engine's maintenance does after its warm-up: fresh
        // statistics for the grown tables (not counted as cost).
        let settled = Counters::read_settled(pool).await?;
        sqlx::query(&format!("ANALYZE {}", model::TABLES))
            .execute(pool)
            .await?;
        let before = Counters::read(pool).await?.with_rows_from(&settled);
        let progress = bar(samples, &format!("{} latency", scenario.name));
        let mut samples_us = Vec::with_capacity(samples as usize);
        let mut tasks = Vec::with_capacity(samples as usize);
        let wall = Instant::now();
        for _ in 0..samples {
            let started = Instant::now();
            let task = client.run_task(timeout).await?;
            samples_us.push(started.elapsed().as_micros() as u64);
            tasks.push(task);
            progress.inc(1);
        }
        let wall_seconds = wall.elapsed().as_secs_f64();
        progress.finish_and_clear();
        let after = Counters::read_settled(pool).await?;
        check(pool, &tasks, dag).await?;
        result.costs = before.per_step(&after, tasks.len() as u64 * steps);
        result.latency = Some(LatencyResult {
            warmup: latency_plan.warmup,
            summary: Summary::of(&samples_us),
            samples_us,
            wall_seconds,
            tasks_per_second: samples as f64 / wall_seconds,
        });
    }
    let Some(throughput_plan) = scenario.throughput.as_ref().filter(|_| !plan.latency_only) else {
        return Ok(());
    };
    for &rate in &throughput_plan.rates {
        let duration = Duration::from_secs_f64(throughput_plan.duration_s);
        let progress = bar(
            (rate * throughput_plan.duration_s) as u64,
            &format!("{} at {rate}/s", scenario.name),
        );
        let before = Counters::read(pool).await?;
        let outcomes = throughput::open_loop(rate, duration, &progress, |permit| {
            let client = client.clone();
            async move {
                let created = client.create().await;
                drop(permit);
                match created {
                    Ok(pending) => match client.wait(pending, timeout).await {
                        Ok(task) => Finished::Complete(task),
                        Err(WaitError::Timeout(..)) => Finished::TimedOut,
                        Err(WaitError::Failed(_)) => Finished::Failed,
                    },
                    Err(_) => Finished::Failed,
                }
            }
        })
        .await;
        progress.finish_and_clear();
        let after = Counters::read(pool).await?;
        let outcomes = outcomes?;
        check(pool, &outcomes.tasks, dag).await?;
        let steps_run = outcomes.tasks.len() as u64 * steps;
        result.throughput.push(throughput::point(
            rate, duration, &outcomes, steps_run, &before, &after,
        ));
    }
    Ok(())
}

/// What the floor's tables say of finished tasks: each is complete, has
/// every step recorded complete, each step's message claimed exactly once,
/// and nothing of it is left in the queue or the results.
async fn check(pool: &PgPool, tasks: &[i64], dag: &Dag) -> anyhow::Result<()> {
    let state = TaskRows::read(pool, tasks).await?;
    let expected = TaskRows {
        tasks: tasks.len() as i64,
        complete: tasks.len() as i64,
        steps: tasks.len() as i64 * dag.len() as i64,
        claimed_once: tasks.len() as i64 * dag.len() as i64,
        left_over: 0,
    };
    if state != expected {
        bail!("the floor's tables disagree with its {} finished tasks: {state:?}, expected {expected:?}", tasks.len());
    }
    Ok(())
}

/// Counts of the floor's rows for some tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct TaskRows {
    pub tasks: i64,
    pub complete: i64,
    pub steps: i64,
    /// Steps whose message was claimed exactly once.
    pub claimed_once: i64,
    /// Messages and results of these tasks still in the queue.
    pub left_over: i64,
}

impl TaskRows {
    pub(crate) async fn read(pool: &PgPool, tasks: &[i64]) -> anyhow::Result<Self> {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM floor.tasks WHERE id = ANY($1)) AS tasks,
                    (SELECT count(*) FROM floor.tasks
                      WHERE id = ANY($1) AND completed_at IS NOT NULL) AS complete,
                    (SELECT count(*) FROM floor.steps WHERE task_id = ANY($1)) AS steps,
                    (SELECT count(*) FROM floor.steps
                      WHERE task_id = ANY($1) AND claims = 1) AS claimed_once,
                    (SELECT count(*) FROM floor.queue WHERE task_id = ANY($1))
                  + (SELECT count(*) FROM floor.results WHERE task_id = ANY($1)) AS left_over",
        )
        .bind(tasks)
        .fetch_one(pool)
        .await
        .context("reading the floor's tables")
    }
}
