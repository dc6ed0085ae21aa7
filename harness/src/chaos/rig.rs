//! The [`Rig`]: the engine's processes (orchestrators and workers, as
//! processes or containers) on their own PostgreSQL ([`Postgres`]: a
//! local cluster or a container), with the campaign's templates
//! registered, its configuration copied and its run records collected.
//! The campaign runs on one, and so do the fault tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::build::EngineBuild;
use anyhow::Context;
use pg_local::{ClusterOptions, LocalCluster, StopMode};
use sqlx::{Connection, PgPool};
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::orchestration::register_templates;
use tasker_engine::TaskerClient;
use tokio_util::sync::CancellationToken;

use super::check::{self, Submitted, Verdict};
use super::containers::{self, Network, PgContainer};
use super::create_shared_dir;
use super::fleet::{Fleet, Role, Runtime};
use super::templates::{self, Shape};

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
