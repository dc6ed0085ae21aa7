//! Running scenarios: a fresh database per scenario on the provisioned
//! server, the engine in the scenario's topology, then the latency run
//! (with phases and per-step costs) and the throughput rates; every task's
//! result is checked against the scenario's expectation. Floor scenarios
//! run the harness's minimal model instead of the engine (`floor`), and
//! the server's round trip and commit latency are measured once a run. A
//! scenario whose floor is in the same run has its latency tasks
//! interleaved with the floor's (`paired`).

pub mod ab;
pub(crate) mod costs;
pub(crate) mod engine;
pub mod environment;
mod ffi;
mod floor;
pub mod languages;
pub(crate) mod latency;
mod paired;
mod phases;
mod throughput;

use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{Connection, PgConnection, PgPool};
use tasker_engine::config::TaskerConfig;
use tasker_engine::orchestration::maintenance;
use tasker_engine::TaskTemplate;
use uuid::Uuid;

use crate::result::{RunResult, ScenarioResult, SCHEMA_VERSION};
use crate::scenario::{Scenario, Topology};
use engine::EngineUnderTest;
pub use engine::Side;
use languages::PreparedWorkers;
use latency::Requests;

/// What to run and on which server.
#[derive(Clone)]
pub struct RunPlan {
    pub scenarios: Vec<Scenario>,
    pub engine_config: TaskerConfig,
    /// Superuser URL of the server (its `postgres` database).
    pub admin_url: String,
    pub backend: String,
    pub reason: String,
    /// Overrides every scenario's latency sample count (quick runs, CI).
    pub samples: Option<u64>,
    /// Skip the throughput rates.
    pub latency_only: bool,
}

pub async fn run(plan: &RunPlan) -> anyhow::Result<RunResult> {
    let started_at = chrono::Utc::now();
    let commit = environment::commit();
    let mut scenarios = Vec::new();
    let mut workers = PreparedWorkers::default();
    // What a statement and a commit cost on this server, before anything
    // else runs: the floor every scenario's costs imply.
    let server_timings = floor::timings::measure(&plan.admin_url)
        .await
        .context("measuring the server's round trip and commit latency")?;
    // A scenario and its floor run their latency tasks interleaved; the
    // floor's result waits for its place in the order.
    let pairs = paired::pairs(&plan.scenarios);
    let mut paired_floors: Vec<Option<ScenarioResult>> = vec![None; plan.scenarios.len()];
    for (i, scenario) in plan.scenarios.iter().enumerate() {
        let at = || format!("scenario '{}'", scenario.name);
        if let Some(floor) = paired_floors[i].take() {
            scenarios.push(floor);
            continue;
        }
        if let Some(j) = pairs[i] {
            let (result, floor) = paired::run_pair(plan, scenario, &plan.scenarios[j]).await?;
            scenarios.push(result);
            paired_floors[j] = Some(floor);
            continue;
        }
        if scenario.topology == Topology::Floor {
            let url = fresh_database(&plan.admin_url, &scenario.name).await?;
            let result = floor::run_scenario(plan, scenario, &url)
                .await
                .with_context(at)?;
            scenarios.push(result);
            continue;
        }
        if let Topology::Ffi { language } = scenario.topology {
            if let Some(result) = ffi::run_scenario(plan, scenario, language, &mut workers)
                .await
                .with_context(at)?
            {
                scenarios.push(result);
            }
            continue;
        }
        let url = fresh_database(&plan.admin_url, &scenario.name).await?;
        let result = run_scenario(plan, scenario, &url).await.with_context(at)?;
        scenarios.push(result);
    }
    // Server-wide settings: read on the server's own database.
    let postgres = server_info(plan, &plan.admin_url).await?;
    let short = commit.sha.chars().take(10).collect::<String>();
    Ok(RunResult {
        schema_version: SCHEMA_VERSION,
        id: format!("{}-{short}", started_at.format("%Y%m%dT%H%M%SZ")),
        started_at,
        machine: environment::machine(),
        commit,
        build_profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
        engine_config: serde_json::to_value(&plan.engine_config)?,
        postgres,
        server_timings: Some(server_timings),
        scenarios,
    })
}

async fn server_info(plan: &RunPlan, url: &str) -> anyhow::Result<crate::result::PostgresInfo> {
    let pool = PgPool::connect(url).await?;
    let info = environment::postgres(&pool, &plan.backend, &plan.reason).await?;
    pool.close().await;
    Ok(info)
}

async fn run_scenario(
    plan: &RunPlan,
    scenario: &Scenario,
    url: &str,
) -> anyhow::Result<ScenarioResult> {
    let template = scenario.load_template()?;
    let engine =
        EngineUnderTest::start(scenario.topology, url, &template, &plan.engine_config).await?;
    let outcome = measure(plan, scenario, &template, &engine).await;
    engine.stop().await;
    outcome
}

async fn measure(
    plan: &RunPlan,
    scenario: &Scenario,
    template: &TaskTemplate,
    engine: &EngineUnderTest,
) -> anyhow::Result<ScenarioResult> {
    let mut result = empty_result(scenario, template);
    let mut requests = Requests::new(scenario.request(template), &scenario.name);
    if let Some(mut latency) = EngineLatency::begin(plan, scenario, engine, &mut requests).await? {
        let progress = bar(latency.run.count, &format!("{} latency", scenario.name));
        for _ in 0..latency.run.count {
            latency.sample(&mut requests).await?;
            progress.inc(1);
        }
        progress.finish_and_clear();
        latency.finish(scenario, template, &mut result).await?;
    }
    measure_throughput(plan, scenario, engine, &mut requests, &mut result).await?;
    Ok(result)
}

/// A scenario's result before anything is measured.
fn empty_result(scenario: &Scenario, template: &TaskTemplate) -> ScenarioResult {
    ScenarioResult {
        name: scenario.name.clone(),
        tier: scenario.tier,
        template: template.key().to_string(),
        rows: scenario.rows,
        // The template's steps until the measured tasks are counted (a
        // batch template's batch_worker is not a step until run time).
        steps_per_task: template.steps.len() as u32,
        critical_path_steps: Some(template.critical_path_len() as u32),
        latency: None,
        throughput: Vec::new(),
        phases: None,
        costs: None,
        ffi: None,
        floor: false,
    }
}

/// The engine's latency run in three parts, so that it can be interleaved
/// with its floor's (`paired`): the warm-up and the counters before
/// (`begin`), one task at a time (`sample`), then the counters after, the
/// checks, phases and costs (`finish`).
pub(crate) struct EngineLatency<'a> {
    client: &'a tasker_engine::TaskerClient,
    pool: &'a PgPool,
    pub run: latency::Samples<Uuid>,
}

impl<'a> EngineLatency<'a> {
    /// Warms the engine up; None when the scenario has no latency run.
    pub async fn begin(
        plan: &RunPlan,
        scenario: &Scenario,
        engine: &'a EngineUnderTest,
        requests: &mut Requests,
    ) -> anyhow::Result<Option<EngineLatency<'a>>> {
        let (client, pool) = (engine.client(), engine.pool());
        costs::enable_statements(pool).await;
        let Some(latency_plan) = &scenario.latency else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(scenario.timeout_s);
        let samples = plan.samples.unwrap_or(latency_plan.samples);
        latency::warm_up(client, requests, latency_plan.warmup, timeout).await?;
        // What orchestration's maintenance does every few seconds in a long
        // run: vacuum the queue tables the warm-up filled with dead rows
        // (not counted as cost).
        let settled = costs::Counters::read_settled(pool).await?;
        maintenance::run_once(pool, &plan.engine_config.orchestration).await?;
        let before = costs::Counters::read(pool).await?.with_rows_from(&settled);
        Ok(Some(Self {
            client,
            pool,
            run: latency::Samples::new(timeout, latency_plan.warmup, samples, before),
        }))
    }

    /// One measured task.
    pub async fn sample(&mut self, requests: &mut Requests) -> anyhow::Result<()> {
        let (task, elapsed) =
            latency::one_task(self.client, &requests.next(), self.run.timeout).await?;
        self.run.push(task, elapsed);
        Ok(())
    }

    /// The latency, costs and phases of the measured tasks, into `result`.
    pub async fn finish(
        self,
        scenario: &Scenario,
        template: &TaskTemplate,
        result: &mut ScenarioResult,
    ) -> anyhow::Result<()> {
        let after = costs::Counters::read_settled(self.pool).await?;
        let after = after.with_commits_since(self.pool, self.run.before()).await;
        let tasks = self.run.tasks();
        check_results(self.pool, scenario, tasks).await?;
        // Counted after the counters were read, so this query is no cost.
        let steps = steps_of(self.pool, tasks).await?;
        if steps.tasks > 0 {
            result.steps_per_task = steps.per_task();
        }
        result.phases = Some(phases::breakdown(self.pool, tasks, template).await?);
        let (latency, before) = self.run.finish();
        result.costs = before.per_step(&after, steps.total);
        result.latency = Some(latency);
        Ok(())
    }
}

async fn measure_throughput(
    plan: &RunPlan,
    scenario: &Scenario,
    engine: &EngineUnderTest,
    requests: &mut Requests,
    result: &mut ScenarioResult,
) -> anyhow::Result<()> {
    let (client, pool) = (engine.client(), engine.pool());
    let timeout = Duration::from_secs(scenario.timeout_s);
    if let (Some(throughput_plan), false) = (&scenario.throughput, plan.latency_only) {
        for &rate in &throughput_plan.rates {
            let duration = Duration::from_secs_f64(throughput_plan.duration_s);
            let progress = bar(
                (rate * throughput_plan.duration_s) as u64,
                &format!("{} at {rate}/s", scenario.name),
            );
            let (point, tasks) =
                throughput::run_rate(client, pool, requests, rate, duration, timeout, &progress)
                    .await?;
            progress.finish_and_clear();
            check_results(pool, scenario, &tasks).await?;
            if scenario.latency.is_none() && result.throughput.is_empty() && !tasks.is_empty() {
                result.steps_per_task = steps_of(pool, &tasks).await?.per_task();
            }
            result.throughput.push(point);
        }
    }
    Ok(())
}

/// Every task produced the expected result at the expected step.
async fn check_results(pool: &PgPool, scenario: &Scenario, tasks: &[Uuid]) -> anyhow::Result<()> {
    let Some(expect) = &scenario.expect else {
        return Ok(());
    };
    let expected = serde_json::to_value(&expect.result)?;
    let wrong: Vec<(Uuid, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT t, s.results FROM unnest($1::uuid[]) t
           LEFT JOIN tasker.workflow_steps s ON s.task_uuid = t AND s.name = $2
          WHERE s.results IS DISTINCT FROM $3",
    )
    .bind(tasks)
    .bind(&expect.step)
    .bind(&expected)
    .fetch_all(pool)
    .await?;
    if let Some((task, got)) = wrong.first() {
        bail!(
            "{} of {} tasks have a wrong result at step '{}': task {task} has {}, expected {expected}",
            wrong.len(),
            tasks.len(),
            expect.step,
            got.as_ref().map_or("nothing".to_string(), |v| v.to_string())
        );
    }
    Ok(())
}

/// The steps some finished tasks had, counted in the database: a batch
/// task's steps are made at run time (its batchable step, one step per
/// batch, its convergence step), so the template's step count is not the
/// task's. For other templates it is: every template step is a row from
/// the task's creation, run or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCount {
    /// Steps of all the tasks together.
    pub total: u64,
    pub tasks: u64,
}

impl StepCount {
    /// Steps of one task: the mean, rounded (exact when all tasks had the
    /// same number); 0 without tasks.
    pub fn per_task(&self) -> u32 {
        if self.tasks == 0 {
            return 0;
        }
        (self.total as f64 / self.tasks as f64).round() as u32
    }
}

/// Counts the steps of `tasks` (finished tasks: a batch task has made all
/// its steps once it is complete).
pub async fn steps_of(pool: &PgPool, tasks: &[Uuid]) -> anyhow::Result<StepCount> {
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = ANY($1)")
            .bind(tasks)
            .fetch_one(pool)
            .await
            .context("counting the steps of the measured tasks")?;
    Ok(StepCount {
        total: total as u64,
        tasks: tasks.len() as u64,
    })
}

/// A new database for one scenario, so scenarios never see each other's rows.
pub(crate) async fn fresh_database(admin_url: &str, scenario: &str) -> anyhow::Result<String> {
    let name = format!("bench_{scenario}_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(admin_url).await.with_context(|| {
        format!(
            "connecting to {}",
            tasker_engine::database::redact(admin_url)
        )
    })?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let mut url = url::Url::parse(admin_url).context("the server URL is not a URL")?;
    url.set_path(&name);
    Ok(url.to_string())
}

pub(crate) fn bar(length: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>28} [{bar:40}] {pos}/{len} tasks ({per_sec}, eta {eta})",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::StepCount;

    #[test]
    fn steps_per_task_is_the_rounded_mean_of_the_counted_steps() {
        let count = |total, tasks| StepCount { total, tasks }.per_task();
        assert_eq!(count(20 * 7, 20), 7, "every batch_1000_rows task has 7");
        assert_eq!(count(30 * 22, 30), 22, "every batch_100k_rows task has 22");
        assert_eq!(count(7 + 7 + 8, 3), 7, "7.33 rounds to 7");
        assert_eq!(count(7 + 8, 2), 8, "7.5 rounds up");
        assert_eq!(count(0, 0), 0, "no tasks");
    }
}
