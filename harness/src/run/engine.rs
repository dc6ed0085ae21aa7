//! The engine under test, in the scenario's topology: embedded (one
//! process) or a cluster of separate tasker-server and tasker-worker
//! processes. Either way the harness submits tasks and observes their
//! completion through an in-process client on the same database.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::PgPool;
use tasker_engine::config::TaskerConfig;
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::{Embedded, TaskTemplate, TaskerClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::languages::LanguageWorker;
use crate::build::EngineBuild;
use crate::scenario::Topology;

pub enum EngineUnderTest {
    Embedded(Box<Embedded>),
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
                Ok(Self::Embedded(Box::new(embedded)))
            }
            // Tier 4 runs through the A/B runner (run::ffi), never here.
            Topology::Ffi { language } => {
                bail!("a {language} scenario runs with its Rust counterpart (run::ffi)")
            }
            Topology::Floor => {
                bail!("a floor scenario runs the harness's model (run::floor), not the engine")
            }
            Topology::Cluster {
                orchestrators,
                workers,
            } => {
                let build = EngineBuild::this()?;
                let side = Side::new(build, Vec::new());
                let cluster = Cluster::start(url, &side, config, orchestrators, workers).await?;
                Ok(Self::Cluster(cluster))
            }
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

    /// The process id of the `index`th process started (orchestrators
    /// first, then workers), while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.processes.get(index)?.id()
    }
}

impl Cluster {
    /// Starts the side's processes; the first orchestrator migrates the
    /// database and registers the side's templates (each build applies its
    /// own schema), then the harness connects its client.
    pub(crate) async fn start(
        url: &str,
        side: &Side,
        config: &TaskerConfig,
        orchestrators: u8,
        workers: u8,
    ) -> anyhow::Result<Self> {
        let mut processes = Vec::new();
        for i in 0..orchestrators {
            let mut command = engine_command(side, "tasker-server", url)?;
            command.args(["--bind", "127.0.0.1:0"]);
            let label = format!("tasker-server #{i} ({})", side.build.label);
            processes.push(spawn_until_ready(command, "listening on", &label).await?);
        }
        for i in 0..workers {
            let worker_id = format!("harness-worker-{i}");
            let (command, label) = match &side.worker {
                None => {
                    let mut command = engine_command(side, "tasker-worker", url)?;
                    command.args(["--worker-id", &worker_id]);
                    (
                        command,
                        format!("tasker-worker #{i} ({})", side.build.label),
                    )
                }
                Some(host) => {
                    let mut command = host.command(&worker_id);
                    configure(&mut command, side, url);
                    let label = format!("{} worker #{i} ({})", host.language, side.build.label);
                    (command, label)
                }
            };
            processes.push(spawn_until_ready(command, "running", &label).await?);
        }
        let pool = database::connect(url, &PoolSettings::from(&config.database)).await?;
        let shutdown = CancellationToken::new();
        let client = TaskerClient::new(pool.clone(), shutdown.clone()).await?;
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
            // Profiling builds write their profile on the way out.
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
            let _ = child.start_kill();
        }
        self.shutdown.cancel();
        self.pool.close().await;
    }
}

/// One engine of a run: a build, environment set on its processes
/// (e.g. `TASKER__WORKER__INJECTED_DELAY_US`, the gate's self-test), and
/// its workers: the Rust `tasker-worker`, or a language's (tier 4).
#[derive(Debug, Clone)]
pub struct Side {
    pub build: EngineBuild,
    pub env: Vec<(String, String)>,
    pub worker: Option<LanguageWorker>,
}

impl Side {
    pub fn new(build: EngineBuild, env: Vec<(String, String)>) -> Self {
        Self {
            build,
            env,
            worker: None,
        }
    }

    /// The same side with `worker` in place of the Rust worker.
    pub fn with_worker(mut self, worker: LanguageWorker) -> Self {
        self.worker = Some(worker);
        self
    }

    /// "this build", with its extra environment if any.
    pub fn label(&self) -> String {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match env.is_empty() {
            true => self.build.label.clone(),
            false => format!("{} with {}", self.build.label, env.join(" ")),
        }
    }
}

pub(crate) fn engine_command(side: &Side, name: &str, url: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(side.build.binary(name)?);
    configure(&mut command, side, url);
    Ok(command)
}

/// The environment every engine process of `side` gets: its database,
/// configuration and templates, and the side's extra variables.
fn configure(command: &mut Command, side: &Side, url: &str) {
    let build = &side.build;
    command
        .current_dir(&build.source_dir)
        .env("DATABASE_URL", url)
        .env("TASKER_CONFIG_DIR", build.config_dir())
        .env("TASKER__TEMPLATES__PATHS", build.templates_dir())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command.envs(side.env.iter().map(|(k, v)| (k, v)));
}

/// Start a process and wait (up to 30 s) for the line saying it is ready.
pub(crate) async fn spawn_until_ready(
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
