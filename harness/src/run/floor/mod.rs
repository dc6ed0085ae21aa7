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
use super::{bar, latency, RunPlan};
use crate::result::ScenarioResult;
use crate::scenario::Scenario;
use dag::Dag;
use model::{Floor, WaitError};

/// A floor scenario's model running on its own fresh database, with the
/// harness's own connection to it (counters and checks, never the model's).
pub(crate) struct FloorSession {
    floor: Floor,
    pool: PgPool,
    dag: Arc<Dag>,
    pub result: ScenarioResult,
}

impl FloorSession {
    pub async fn start(scenario: &Scenario, url: &str) -> anyhow::Result<Self> {
        let template = scenario.load_template()?;
        let dag = Arc::new(Dag::from_template(&template)?);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .context("connecting to the floor's database")?;
        costs::enable_statements(&pool).await;
        let floor = Floor::start(url, dag.clone()).await?;
        let result = ScenarioResult {
            name: scenario.name.clone(),
            tier: scenario.tier,
            template: template.key().to_string(),
            rows: scenario.rows,
            steps_per_task: dag.len() as u32,
            critical_path_steps: Some(template.critical_path_len() as u32),
            latency: None,
            throughput: Vec::new(),
            phases: None,
            costs: None,
            ffi: None,
            floor: true,
        };
        Ok(Self {
            floor,
            pool,
            dag,
            result,
        })
    }

    /// Stops the model; its result.
    pub async fn stop(self) -> anyhow::Result<ScenarioResult> {
        let stopped = self.floor.stop().await;
        self.pool.close().await;
        stopped?;
        Ok(self.result)
    }

    /// The latency run's first part (warm-up, counters); None when the
    /// scenario has none.
    pub async fn begin_latency(
        &self,
        plan: &RunPlan,
        scenario: &Scenario,
    ) -> anyhow::Result<Option<FloorLatency>> {
        let Some(latency_plan) = &scenario.latency else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(scenario.timeout_s);
        let client = self.floor.client();
        for _ in 0..latency_plan.warmup {
            client.run_task(timeout).await.context("warm-up task")?;
        }
        // As the engine's maintenance does after its warm-up: fresh
        // statistics for the grown tables (not counted as cost).
        let settled = Counters::read_settled(&self.pool).await?;
        sqlx::query(&format!("ANALYZE {}", model::TABLES))
            .execute(&self.pool)
            .await?;
        let before = Counters::read(&self.pool).await?.with_rows_from(&settled);
        let samples = plan.samples.unwrap_or(latency_plan.samples);
        Ok(Some(FloorLatency::new(
            timeout,
            latency_plan.warmup,
            samples,
            before,
        )))
    }

    /// One measured task.
    pub async fn sample(&self, latency: &mut FloorLatency) -> anyhow::Result<()> {
        let started = Instant::now();
        let task = self.floor.client().run_task(latency.timeout).await?;
        latency.push(task, started.elapsed());
        Ok(())
    }

    /// The latency and costs of the measured tasks, checked in the tables.
    pub async fn finish_latency(&mut self, latency: FloorLatency) -> anyhow::Result<()> {
        let after = Counters::read_settled(&self.pool).await?;
        let after = after.with_commits_since(&self.pool, latency.before()).await;
        check(&self.pool, latency.tasks(), &self.dag).await?;
        let steps = latency.tasks().len() as u64 * self.dag.len() as u64;
        let (result, before) = latency.finish();
        self.result.costs = before.per_step(&after, steps);
        self.result.latency = Some(result);
        Ok(())
    }

    /// The scenario's throughput rates, unless the run is latency only.
    pub async fn throughput(&mut self, plan: &RunPlan, scenario: &Scenario) -> anyhow::Result<()> {
        let Some(throughput_plan) = scenario.throughput.as_ref().filter(|_| !plan.latency_only)
        else {
            return Ok(());
        };
        let timeout = Duration::from_secs(scenario.timeout_s);
        let steps = self.dag.len() as u64;
        for &rate in &throughput_plan.rates {
            let duration = Duration::from_secs_f64(throughput_plan.duration_s);
            let progress = bar(
                (rate * throughput_plan.duration_s) as u64,
                &format!("{} at {rate}/s", scenario.name),
            );
            let before = Counters::read(&self.pool).await?;
            let outcomes = throughput::open_loop(rate, duration, &progress, |permit| {
                let client = self.floor.client().clone();
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
            let after = Counters::read(&self.pool).await?;
            let outcomes = outcomes?;
            check(&self.pool, &outcomes.tasks, &self.dag).await?;
            let steps_run = outcomes.tasks.len() as u64 * steps;
            self.result.throughput.push(throughput::point(
                rate, duration, &outcomes, steps_run, &before, &after,
            ));
        }
        Ok(())
    }
}

/// A floor's latency run in progress (see `FloorSession::begin_latency`).
pub(crate) type FloorLatency = latency::Samples<i64>;

/// Runs a floor scenario on `url` (a fresh database).
pub(crate) async fn run_scenario(
    plan: &RunPlan,
    scenario: &Scenario,
    url: &str,
) -> anyhow::Result<ScenarioResult> {
    let mut session = FloorSession::start(scenario, url).await?;
    let outcome = measure(plan, scenario, &mut session).await;
    let result = session.stop().await;
    outcome?;
    result
}

async fn measure(
    plan: &RunPlan,
    scenario: &Scenario,
    session: &mut FloorSession,
) -> anyhow::Result<()> {
    if let Some(mut latency) = session.begin_latency(plan, scenario).await? {
        let progress = bar(latency.count, &format!("{} latency", scenario.name));
        for _ in 0..latency.count {
            session.sample(&mut latency).await?;
            progress.inc(1);
        }
        progress.finish_and_clear();
        session.finish_latency(latency).await?;
    }
    session.throughput(plan, scenario).await
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
