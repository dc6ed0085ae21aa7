//! The engine under test, in the scenario's topology: embedded (one
//! process) or a cluster of separate tasker-server and tasker-worker
//! processes. Either way the harness submits tasks and observes their
//! completion through an in-process client on the same database.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::PgPool;
use tasker_engine::config::TaskerConfig;
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::orchestration::register_templates;
use tasker_engine::{Embedded, TaskTemplate, TaskerClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::scenario::Topology;

pub enum EngineUnderTest {
    Embedded(Embedded),
    Cluster(Cluster),
}

pub struct Cluster {
    pool: PgPool,
    client: TaskerClient,
    processes: Vec<Child>,
    shutdown: CancellationToken,
}

impl EngineUnderTest {
    pub async fn start(
        topology: Topology,
        url: &str,
        template: &TaskTemplate,
        config: &TaskerConfig,
    ) -> anyhow::Result<Self> {
        match topology {
            Topology::Embedded => {
                let embedded = Embedded::start(
                    url,
                    config.clone(),
                    std::slice::from_ref(template),
                    tasker_scenarios::registry(),
                )
                .await
                .context("starting the embedded engine")?;
                Ok(Self::Embedded(embedded))
            }
            Topology::Cluster {
                orchestrators,
                workers,
            } => Ok(Self::Cluster(
                Cluster::start(url, template, config, orchestrators, workers, &[]).await?,
            )),
        }
    }

    pub fn client(&self) -> &TaskerClient {
        match self {
            Self::Embedded(e) => &e.client,
            Self::Cluster(c) => &c.client,
        }
    }

    pub fn pool(&self) -> &PgPool {
        match self {
            Self::Embedded(e) => &e.pool,
            Self::Cluster(c) => &c.pool,
        }
    }

    pub async fn stop(self) {
        match self {
            Self::Embedded(e) => e.shutdown().await,
            Self::Cluster(c) => c.stop().await,
        }
    }
}

impl Cluster {
    pub fn client(&self) -> &TaskerClient {
        &self.client
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl Cluster {
    /// `env` is set on every process (e.g. `TASKER__WORKER__...`
    /// overrides: the A/B runner's candidate).
    pub(crate) async fn start(
        url: &str,
        template: &TaskTemplate,
        config: &TaskerConfig,
        orchestrators: u8,
        workers: u8,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let pool = database::connect(url, &PoolSettings::from(&config.database)).await?;
        database::migrate(&pool).await?;
        register_templates(&pool, std::slice::from_ref(template)).await?;
        let shutdown = CancellationToken::new();
        let client = TaskerClient::new(pool.clone(), shutdown.clone()).await?;
        let mut processes = Vec::new();
        for i in 0..orchestrators {
            let mut command = engine_command("tasker-server", url, env)?;
            command.args(["--bind", "127.0.0.1:0"]);
            processes.push(
                spawn_until_ready(command, "listening on", &format!("tasker-server #{i}")).await?,
            );
        }
        for i in 0..workers {
            let mut command = engine_command("tasker-worker", url, env)?;
            command.args(["--worker-id", &format!("harness-worker-{i}")]);
            processes
                .push(spawn_until_ready(command, "running", &format!("tasker-worker #{i}")).await?);
        }
        Ok(Self {
            pool,
            client,
            processes,
            shutdown,
        })
    }

    pub async fn stop(mut self) {
        for child in &mut self.processes {
            if let Some(pid) = child.id() {
                // SIGTERM: the engine's graceful shutdown.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for child in &mut self.processes {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = child.start_kill();
        }
        self.shutdown.cancel();
        self.pool.close().await;
    }
}

/// A binary built beside the harness (same target directory).
fn engine_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the harness executable")?;
    let path = exe
        .parent()
        .context("harness executable has no directory")?
        .join(name);
    if !path.exists() {
        bail!(
            "{} not found: the cluster tier runs the engine's binaries; build them with \
             `cargo build --release --bins` (cargo make bench-e2e-cluster does)",
            path.display()
        );
    }
    Ok(path)
}

fn engine_command(name: &str, url: &str, env: &[(String, String)]) -> anyhow::Result<Command> {
    let mut command = Command::new(engine_binary(name)?);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    command
        .current_dir(&repo)
        .env("DATABASE_URL", url)
        .env("TASKER_CONFIG_DIR", repo.join("config"))
        .env(
            "TASKER__TEMPLATES__PATHS",
            tasker_scenarios::templates_dir(),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    Ok(command)
}

/// Start a process and wait (up to 30 s) for the line saying it is ready.
async fn spawn_until_ready(
    mut command: Command,
    ready: &str,
    label: &str,
) -> anyhow::Result<Child> {
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {label}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(ready) {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(Ok(true)) => {
            // Keep draining its stdout so the process never blocks on it.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(child)
        }
        Ok(Ok(false)) => bail!("{label} exited before it was ready (see its messages above)"),
        Ok(Err(error)) => Err(error).with_context(|| format!("reading {label}'s output")),
        Err(_) => bail!("{label} did not say it was ready within 30 s"),
    }
}
