//! The fault campaign (`tasker-harness chaos`): the cluster topology (two
//! orchestrators, two workers, as processes) on its own PostgreSQL, under
//! load of random scenario shapes with injected handler failures, while
//! faults chosen from a seed are injected one after another: processes
//! killed and restarted, paused past their leases and resumed, PostgreSQL
//! restarted, the engine's sessions terminated, connection slots
//! exhausted. Then every submitted task is checked from the database, and
//! every handler run from the run records (see `check`).
//!
//! The same seed gives the same tasks and the same sequence of fault kinds
//! and targets; when each fault lands relative to the work in flight is up
//! to the machine.

pub mod check;
pub mod containers;
pub mod faults;
pub mod fleet;
pub mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::build::EngineBuild;
use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Connection, PgPool};
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::orchestration::register_templates;
use tasker_engine::postgres::{ClusterOptions, LocalCluster, StopMode};
use tasker_engine::{TaskRequest, TaskerClient};
use tokio_util::sync::CancellationToken;

use check::{Expect, Submitted, Verdict};
use containers::{Network, PgContainer};
use faults::{FaultKind, Targets};
use fleet::{Fleet, Role, Runtime};
use templates::Shape;

/// What a campaign does.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub tasks: u64,
    pub seed: u64,
    /// How long tasks are submitted and faults injected.
    pub duration: Duration,
    pub orchestrators: usize,
    pub workers: usize,
    /// Every step's timeout_seconds (its lease is this plus the margin).
    pub step_timeout_s: u32,
    pub lease_margin_s: i32,
    pub max_attempts: u32,
    /// Seconds between faults: uniform in this range.
    pub fault_gap_s: (f64, f64),
    pub kinds: Vec<FaultKind>,
    /// PostgreSQL and the engine in containers (adds network cuts).
    pub containers: bool,
    /// Where templates, run records, process logs and the result go.
    pub out_dir: PathBuf,
}

impl Plan {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.step_timeout_s as u64 + self.lease_margin_s.max(0) as u64)
    }
}

/// One fault as injected.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub kind: FaultKind,
    /// Seconds from the campaign's start.
    pub at_s: f64,
    pub took_s: f64,
    pub what: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub plan: Plan,
    pub faults: Vec<Injected>,
    pub faults_by_kind: BTreeMap<FaultKind, usize>,
    /// From the last fault's end until every task had finished, s.
    pub drain_s: f64,
    pub verdict: Verdict,
}

/// Where the campaign's PostgreSQL runs: a throwaway local cluster, or a
/// container on the campaign's network.
pub enum Postgres {
    Local(LocalCluster),
    Container(PgContainer),
}

impl Postgres {
    /// The harness's URL of `database`.
    pub fn url(&self, database: &str) -> String {
        match self {
            Self::Local(cluster) => cluster.url(database),
            Self::Container(pg) => pg.url(database),
        }
    }

    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// Fast shutdown (every commit flushed, sessions cut), down for
    /// `down_for`, started again; returns once it accepts connections.
    pub async fn restart(&self, down_for: Duration) -> anyhow::Result<()> {
        match self {
            // Blocking: the cluster's stop and start wait on processes.
            Self::Local(cluster) => {
                tokio::task::block_in_place(|| cluster.restart(StopMode::Fast, down_for))?
            }
            Self::Container(pg) => pg.restart(down_for).await?,
        }
        Ok(())
    }
}

/// The engine's processes on their own PostgreSQL, with the campaign's
/// templates registered: what the campaign and the fault tests run on.
pub struct Rig {
    pub postgres: Postgres,
    pub database: &'static str,
    pub pool: PgPool,
    pub client: TaskerClient,
    pub fleet: Fleet,
    pub shapes: Vec<Shape>,
    pub runs_dir: PathBuf,
    pub lease_margin_s: i32,
    network: Option<Network>,
    shutdown: CancellationToken,
}

/// How a rig is made.
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub out_dir: PathBuf,
    pub orchestrators: usize,
    pub workers: usize,
    pub step_timeout_s: u32,
    pub lease_margin_s: i32,
    pub max_attempts: u32,
    /// PostgreSQL and the engine in containers on a private network.
    pub containers: bool,
}

impl Rig {
    /// PostgreSQL (max_connections 100, so exhausting it is quick), a
    /// database, the campaign's templates under `out_dir/templates`, run
    /// records under `out_dir/runs`, a copy of the configuration under
    /// `out_dir/config`, logs under `out_dir/logs`, and the engine started.
    pub async fn start(options: &RigOptions) -> anyhow::Result<Self> {
        let database = "chaos";
        let build = EngineBuild::this()?;
        let (postgres, network) = match options.containers {
            false => {
                let cluster = LocalCluster::start(&ClusterOptions {
                    fsync: false,
                    settings: vec![("max_connections".into(), "100".into())],
                })
                .context("starting a local PostgreSQL for the campaign")?;
                (Postgres::Local(cluster), None)
            }
            true => {
                containers::sweep_orphans();
                let name = format!("tasker-chaos-{}", std::process::id());
                let network = Network::create(&name)?;
                let pg = PgContainer::start(
                    &format!("{name}-pg"),
                    &network,
                    &options.out_dir.join("pg-socket"),
                )
                .await?;
                (Postgres::Container(pg), Some(network))
            }
        };
        let mut admin = sqlx::PgConnection::connect(&postgres.admin_url()).await?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let url = postgres.url(database);

        let shapes = templates::shapes(options.step_timeout_s, options.max_attempts)?;
        let templates_dir = options.out_dir.join("templates");
        let runs_dir = options.out_dir.join("runs");
        templates::write(&shapes, &templates_dir)?;
        create_shared_dir(&runs_dir)?;

        let pool = database::connect(&url, &PoolSettings::default()).await?;
        database::migrate(&pool).await?;
        let all: Vec<_> = shapes.iter().map(|s| s.template.clone()).collect();
        register_templates(&pool, &all).await?;

        // The processes read a copy of the configuration taken now: a
        // process restarted an hour into a campaign must not pick up a
        // config file edited meanwhile.
        let config_dir = options.out_dir.join("config");
        copy_config(&build.config_dir(), &config_dir)?;
        let logs = options.out_dir.join("logs");
        let mut fleet = match &network {
            None => Fleet::processes(
                &url,
                engine_env(options, &config_dir, &templates_dir, &runs_dir),
                &logs,
            )?,
            Some(network) => {
                let Postgres::Container(pg) = &postgres else {
                    unreachable!("containers run with PostgreSQL in a container")
                };
                let mut env = engine_env(
                    options,
                    Path::new("/chaos/config"),
                    Path::new("/chaos/templates"),
                    Path::new("/chaos/runs"),
                );
                env.push(("DATABASE_URL".into(), pg.network_url(database)));
                let mounts = vec![
                    format!("{}:/chaos/config:ro", config_dir.display()),
                    format!("{}:/chaos/templates:ro", templates_dir.display()),
                    format!("{}:/chaos/runs", runs_dir.display()),
                ];
                let runtime = Runtime::Containers {
                    image: containers::engine_image(&build)?,
                    network: network.clone(),
                    env,
                    mounts,
                    prefix: network.name.clone(),
                };
                Fleet::new(runtime, &logs)?
            }
        };
        for _ in 0..options.orchestrators {
            fleet.add(Role::Orchestrator).await?;
        }
        for _ in 0..options.workers {
            fleet.add(Role::Worker).await?;
        }
        let shutdown = CancellationToken::new();
        let client = TaskerClient::new(pool.clone(), shutdown.clone()).await?;
        Ok(Self {
            postgres,
            database,
            pool,
            client,
            fleet,
            shapes,
            runs_dir,
            lease_margin_s: options.lease_margin_s,
            network,
            shutdown,
        })
    }

    /// The shape of a scenario template by its scenario name (`linear_workflow`).
    pub fn shape(&self, scenario: &str) -> &Shape {
        let name = format!("chaos_{scenario}");
        self.shapes
            .iter()
            .find(|s| s.template.name == name)
            .unwrap_or_else(|| panic!("no campaign shape {name}"))
    }

    /// Waits until every task finished or `deadline` passed, then checks
    /// them all.
    pub async fn finish(
        &self,
        submitted: &[Submitted],
        deadline: Duration,
    ) -> anyhow::Result<Verdict> {
        wait_for_all(&self.client, submitted, deadline).await;
        check::check(&self.pool, submitted, &self.runs_dir, self.lease_margin_s).await
    }

    pub async fn stop(self) {
        self.fleet.stop().await;
        self.shutdown.cancel();
        self.pool.close().await;
        if let Postgres::Container(pg) = &self.postgres {
            pg.remove();
        }
        if let Some(network) = &self.network {
            network.remove();
        }
    }
}

/// The engine's environment: where its configuration, templates and run
/// records are (as it sees them), the lease margin, and a detector that
/// looks every half second.
fn engine_env(
    options: &RigOptions,
    config_dir: &Path,
    templates_dir: &Path,
    runs_dir: &Path,
) -> Vec<(String, String)> {
    vec![
        ("TASKER_CONFIG_DIR".into(), path_str(config_dir)),
        ("TASKER__TEMPLATES__PATHS".into(), path_str(templates_dir)),
        (
            tasker_scenarios::chaos::RUNS_DIR_ENV.into(),
            path_str(runs_dir),
        ),
        (
            "TASKER__WORKER__CLAIM_LEASE_MARGIN_S".into(),
            options.lease_margin_s.to_string(),
        ),
        (
            "TASKER__ORCHESTRATION__STALENESS_INTERVAL_MS".into(),
            "500".into(),
        ),
    ]
}

/// A directory every process may write, whatever user it runs as (the
/// containers' is not this one).
fn create_shared_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("opening {} to every user", dir.display()))
}

/// Runs the campaign and returns its report (also written to
/// `<out_dir>/chaos.json`).
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let mut rig = Rig::start(&RigOptions {
        out_dir: plan.out_dir.clone(),
        orchestrators: plan.orchestrators,
        workers: plan.workers,
        step_timeout_s: plan.step_timeout_s,
        lease_margin_s: plan.lease_margin_s,
        max_attempts: plan.max_attempts,
        containers: plan.containers,
    })
    .await?;
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let load = tokio::spawn(submit_load(
        rig.client.clone(),
        rig.shapes.clone(),
        plan.tasks,
        plan.duration,
        ChaCha8Rng::seed_from_u64(plan.seed ^ 0x5eed),
    ));

    let mut injected = Vec::new();
    let mut targets = Targets {
        fleet: &mut rig.fleet,
        postgres: &rig.postgres,
        database: rig.database,
        lease: plan.lease(),
    };
    loop {
        let gap = rng.random_range(plan.fault_gap_s.0..=plan.fault_gap_s.1);
        if started.elapsed() + Duration::from_secs_f64(gap) >= plan.duration {
            break;
        }
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        let kind = plan.kinds[rng.random_range(0..plan.kinds.len())];
        let at = started.elapsed();
        let what = faults::inject(kind, &mut targets, &mut rng).await?;
        let took = started.elapsed() - at;
        eprintln!("chaos: {:>6.1} s  {what}", at.as_secs_f64());
        injected.push(Injected {
            kind,
            at_s: at.as_secs_f64(),
            took_s: took.as_secs_f64(),
            what,
        });
    }
    let submitted = load.await.context("the load generator panicked")??;
    let last_fault = Instant::now();
    let verdict = rig
        .finish(&submitted, plan.lease() * 2 + Duration::from_secs(120))
        .await?;
    let drain = last_fault.elapsed();
    rig.stop().await;

    let mut faults_by_kind = BTreeMap::new();
    for fault in &injected {
        *faults_by_kind.entry(fault.kind).or_insert(0) += 1;
    }
    let report = Report {
        plan: plan.clone(),
        faults: injected,
        faults_by_kind,
        drain_s: drain.as_secs_f64(),
        verdict,
    };
    let path = plan.out_dir.join("chaos.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

/// `tasker.toml` and `environments/*.toml` of `from`, copied to `to`.
fn copy_config(from: &Path, to: &Path) -> anyhow::Result<()> {
    for dir in ["", "environments"] {
        let (source, target) = (from.join(dir), to.join(dir));
        std::fs::create_dir_all(&target)?;
        let Ok(entries) = std::fs::read_dir(&source) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&path, target.join(entry.file_name()))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Submits `tasks` tasks evenly over `duration`: a random shape each, a
/// handler delay, and in some of them injected failures (retryable ones
/// the task survives, or a fatal one it must end in error with). A
/// submission that fails (the database is down) is retried: creating a
/// task is idempotent.
async fn submit_load(
    client: TaskerClient,
    shapes: Vec<Shape>,
    tasks: u64,
    duration: Duration,
    mut rng: ChaCha8Rng,
) -> anyhow::Result<Vec<Submitted>> {
    let started = tokio::time::Instant::now();
    let mut submitted = Vec::with_capacity(tasks as usize);
    for id in 0..tasks {
        tokio::time::sleep_until(started + duration.mul_f64(id as f64 / tasks as f64)).await;
        let shape = &shapes[rng.random_range(0..shapes.len())];
        let (chaos, expect) = random_faults(shape, &mut rng);
        let request = shape.request(id, chaos);
        submitted.push(submit(&client, &request, expect).await);
    }
    Ok(submitted)
}

/// Creates a task, retrying while the database does not answer (creating
/// a task is idempotent: its identity includes its context).
pub async fn submit(client: &TaskerClient, request: &TaskRequest, expect: Expect) -> Submitted {
    let mut delay = Duration::from_millis(100);
    loop {
        match client.create_task(request).await {
            Ok(created) => {
                return Submitted {
                    task_uuid: created.task_uuid,
                    expect,
                }
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn random_faults(shape: &Shape, rng: &mut impl Rng) -> (Value, Expect) {
    let steps = &shape.template.steps;
    let step = |rng: &mut dyn rand::RngCore| steps[rng.random_range(0..steps.len())].name.clone();
    let delay_ms: u64 = rng.random_range(20..400);
    let roll: f64 = rng.random();
    if roll < 0.05 {
        let fatal = step(rng);
        (
            json!({"delay_ms": delay_ms, "fatal": fatal}),
            Expect::Error { step: fatal },
        )
    } else {
        let mut chaos = json!({"delay_ms": delay_ms});
        if roll < 0.25 {
            chaos["fail"] = json!({ step(rng): rng.random_range(1..=2u64) });
        }
        (chaos, shape.completes())
    }
}

/// Waits (by the engine's completion notifications) until every task has
/// finished or `deadline` has passed; the checker says which did not.
async fn wait_for_all(client: &TaskerClient, submitted: &[Submitted], deadline: Duration) {
    let until = Instant::now() + deadline;
    for task in submitted {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = client.wait_for_completion(task.task_uuid, left).await;
    }
}

/// The campaign's verdict as the command prints it.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "Chaos campaign: seed {}, {} tasks over {:?}, {} orchestrators + {} workers, lease {:?}\n\nFaults injected: {}\n",
        report.plan.seed,
        report.plan.tasks,
        report.plan.duration,
        report.plan.orchestrators,
        report.plan.workers,
        report.plan.lease(),
        report.faults.len()
    );
    for (kind, n) in &report.faults_by_kind {
        out.push_str(&format!("  {:<50} {n:>10}\n", format!("{kind:?}")));
    }
    out.push_str(&format!(
        "\nAfter the last fault every task had finished within {:.1} s.\n\n",
        report.drain_s
    ));
    out.push_str(&check::render(&report.verdict));
    out.push_str(if report.verdict.passed() {
        "\nPASSED: no task lost, no attempt run twice.\n"
    } else {
        "\nFAILED: tasks lost or attempts run twice (see above).\n"
    });
    out
}
