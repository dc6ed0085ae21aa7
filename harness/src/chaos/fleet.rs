//! The engine's processes under the campaign: orchestrators (tasker-server)
//! and workers (tasker-worker), each of which can be killed, restarted,
//! paused and resumed by index; as processes on this machine, or as
//! containers on the campaign's network (which can also be cut off it).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

use super::containers::{self, docker, Network};
use crate::build::EngineBuild;
use crate::run::engine::{engine_command, spawn_until_ready};
use crate::run::Side;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Orchestrator,
    Worker,
}

impl Role {
    fn program(self) -> &'static str {
        match self {
            Role::Orchestrator => "tasker-server",
            Role::Worker => "tasker-worker",
        }
    }

    /// What the program prints once it is ready.
    fn ready_line(self) -> &'static str {
        match self {
            Role::Orchestrator => "listening on",
            Role::Worker => "running",
        }
    }
}

/// How the fleet runs its members.
pub enum Runtime {
    /// Processes of this build, with extra environment.
    Processes { side: Side, url: String },
    /// Containers of `image` on `network`, with environment and mounts
    /// (`host:container[:ro]`); names start with `prefix`.
    Containers {
        image: String,
        network: Network,
        env: Vec<(String, String)>,
        mounts: Vec<String>,
        prefix: String,
    },
}

struct Member {
    role: Role,
    index: usize,
    child: Option<Child>,
    /// The container's name, once created.
    container: Option<String>,
}

impl Member {
    fn label(&self) -> String {
        match self.role {
            Role::Orchestrator => format!("orchestrator #{}", self.index),
            Role::Worker => format!("worker #{}", self.index),
        }
    }

    fn args(&self) -> Vec<String> {
        match self.role {
            Role::Orchestrator => vec!["--bind".into(), "127.0.0.1:0".into()],
            Role::Worker => vec!["--worker-id".into(), format!("chaos-worker-{}", self.index)],
        }
    }
}

pub struct Fleet {
    runtime: Runtime,
    logs: PathBuf,
    members: Vec<Member>,
}

impl Fleet {
    /// A fleet of this build's binaries as processes on `url`, with `env`
    /// on every process and logs under `logs`; nothing started yet.
    pub fn processes(url: &str, env: Vec<(String, String)>, logs: &Path) -> anyhow::Result<Self> {
        Self::new(
            Runtime::Processes {
                side: Side::new(EngineBuild::this()?, env),
                url: url.to_string(),
            },
            logs,
        )
    }

    pub fn new(runtime: Runtime, logs: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Self {
            runtime,
            logs: logs.to_path_buf(),
            members: Vec::new(),
        })
    }

    pub fn in_containers(&self) -> bool {
        matches!(self.runtime, Runtime::Containers { .. })
    }

    /// Starts a member and returns its index in the fleet.
    pub async fn add(&mut self, role: Role) -> anyhow::Result<usize> {
        let index = self.members.iter().filter(|p| p.role == role).count();
        self.members.push(Member {
            role,
            index,
            child: None,
            container: None,
        });
        let at = self.members.len() - 1;
        self.start(at).await?;
        Ok(at)
    }

    /// Indices of the members of one role.
    pub fn of(&self, role: Role) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].role == role)
            .collect()
    }

    pub fn label(&self, at: usize) -> String {
        self.members[at].label()
    }

    fn log_path(&self, at: usize) -> PathBuf {
        let label = self.members[at].label().replace([' ', '#'], "");
        self.logs.join(format!("{label}.log"))
    }

    /// (Re)starts the member at `at` and waits until it says it is ready.
    pub async fn start(&mut self, at: usize) -> anyhow::Result<()> {
        let log_path = self.log_path(at);
        let member = &self.members[at];
        let (role, label, args) = (member.role, member.label(), member.args());
        match &self.runtime {
            Runtime::Processes { side, url } => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .with_context(|| format!("opening {}", log_path.display()))?;
                let mut command = engine_command(side, role.program(), url)?;
                command.args(&args);
                command.env("RUST_LOG", "info").stderr(Stdio::from(log));
                let child = spawn_until_ready(command, role.ready_line(), &label).await?;
                self.members[at].child = Some(child);
            }
            Runtime::Containers {
                image,
                network,
                env,
                mounts,
                prefix,
            } => {
                if let Some(name) = &member.container {
                    let seen = containers::log_count(name, role.ready_line());
                    docker(&["start", name])?;
                    return containers::wait_for_log(name, role.ready_line(), seen).await;
                }
                let name = format!("{prefix}-{}", label.replace([' ', '#'], ""));
                let address = network.address(10 + at as u8);
                let mut run = containers::run_args(&name, network, &address);
                for (key, value) in env {
                    run.extend(["-e".to_string(), format!("{key}={value}")]);
                }
                run.extend(["-e".to_string(), "RUST_LOG=info".to_string()]);
                for mount in mounts {
                    run.extend(["-v".to_string(), mount.clone()]);
                }
                run.extend([image.clone(), role.program().to_string()]);
                run.extend(args);
                let run: Vec<&str> = run.iter().map(String::as_str).collect();
                docker(&run)?;
                self.members[at].container = Some(name.clone());
                containers::wait_for_log(&name, role.ready_line(), 0).await?;
            }
        }
        Ok(())
    }

    /// SIGKILL, and wait for the member to be gone.
    pub async fn kill(&mut self, at: usize) {
        let member = &mut self.members[at];
        if let Some(mut child) = member.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        if let Some(name) = &member.container {
            let _ = docker(&["kill", name]);
            let _ = docker(&["wait", name]);
        }
    }

    /// Freeze the member (SIGSTOP, or `docker pause`).
    pub fn pause(&self, at: usize) {
        self.freeze(at, true)
    }

    /// Thaw it (SIGCONT, or `docker unpause`).
    pub fn resume(&self, at: usize) {
        self.freeze(at, false)
    }

    fn freeze(&self, at: usize, frozen: bool) {
        let member = &self.members[at];
        if let Some(pid) = member.child.as_ref().and_then(Child::id) {
            let signal = if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
        if let Some(name) = &member.container {
            let _ = docker(&[if frozen { "pause" } else { "unpause" }, name]);
        }
    }

    /// Cut the member off the network (containers only); `reconnect`
    /// brings it back at the same address.
    pub fn disconnect(&self, at: usize) -> anyhow::Result<()> {
        let (network, name) = self.on_network(at)?;
        docker(&["network", "disconnect", &network.name, name]).map(|_| ())
    }

    pub fn reconnect(&self, at: usize) -> anyhow::Result<()> {
        let (network, name) = self.on_network(at)?;
        let address = network.address(10 + at as u8);
        docker(&["network", "connect", "--ip", &address, &network.name, name]).map(|_| ())
    }

    /// The network and the container of member `at`.
    fn on_network(&self, at: usize) -> anyhow::Result<(&Network, &str)> {
        match (&self.runtime, &self.members[at].container) {
            (Runtime::Containers { network, .. }, Some(name)) => Ok((network, name)),
            _ => bail!("cutting the network needs the campaign in containers (--containers)"),
        }
    }

    /// Stop every member (resumed first; SIGTERM, the engine's graceful
    /// shutdown) and wait for them; containers' output goes to the logs
    /// directory and the containers are removed.
    pub async fn stop(mut self) {
        for at in 0..self.members.len() {
            self.resume(at);
            if let Some(pid) = self.members[at].child.as_ref().and_then(Child::id) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for at in 0..self.members.len() {
            let log_path = self.log_path(at);
            let member = &mut self.members[at];
            if let Some(child) = member.child.as_mut() {
                let waited =
                    tokio::time::timeout(std::time::Duration::from_secs(20), child.wait()).await;
                if waited.is_err() {
                    let _ = child.start_kill();
                }
            }
            if let Some(name) = &member.container {
                let _ = docker(&["stop", "--time", "20", name]);
                if let Ok(output) = std::process::Command::new("docker")
                    .args(["logs", name])
                    .output()
                {
                    let _ = std::fs::write(&log_path, [output.stdout, output.stderr].concat());
                }
                let _ = docker(&["rm", "-f", name]);
            }
        }
    }
}
