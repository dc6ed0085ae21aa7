//! The engine's processes under the campaign: orchestrators (tasker-server)
//! and workers (tasker-worker), each of which can be killed, restarted,
//! paused and resumed by index. Their messages go to one log file each.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::build::EngineBuild;
use crate::run::engine::{engine_command, spawn_until_ready};
use crate::run::Side;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Orchestrator,
    Worker,
}

struct Process {
    role: Role,
    index: usize,
    child: Option<Child>,
}

impl Process {
    fn label(&self) -> String {
        match self.role {
            Role::Orchestrator => format!("orchestrator #{}", self.index),
            Role::Worker => format!("worker #{}", self.index),
        }
    }
}

pub struct Fleet {
    side: Side,
    url: String,
    logs: PathBuf,
    processes: Vec<Process>,
}

impl Fleet {
    /// A fleet of this build's binaries on `url`, with `env` on every
    /// process and logs under `logs`; nothing started yet.
    pub fn new(url: &str, env: Vec<(String, String)>, logs: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Self {
            side: Side::new(EngineBuild::this()?, env),
            url: url.to_string(),
            logs: logs.to_path_buf(),
            processes: Vec::new(),
        })
    }

    /// Starts a process and returns its index in the fleet.
    pub async fn add(&mut self, role: Role) -> anyhow::Result<usize> {
        let index = self.processes.iter().filter(|p| p.role == role).count();
        self.processes.push(Process {
            role,
            index,
            child: None,
        });
        let at = self.processes.len() - 1;
        self.start(at).await?;
        Ok(at)
    }

    /// Indices of the processes of one role.
    pub fn of(&self, role: Role) -> Vec<usize> {
        (0..self.processes.len())
            .filter(|&i| self.processes[i].role == role)
            .collect()
    }

    pub fn label(&self, at: usize) -> String {
        self.processes[at].label()
    }

    pub fn pid(&self, at: usize) -> Option<u32> {
        self.processes[at].child.as_ref()?.id()
    }

    /// (Re)starts the process at `at` and waits until it says it is ready.
    pub async fn start(&mut self, at: usize) -> anyhow::Result<()> {
        let process = &self.processes[at];
        let label = process.label();
        let log_path = self
            .logs
            .join(format!("{}.log", label.replace([' ', '#'], "")));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let (program, ready) = match process.role {
            Role::Orchestrator => ("tasker-server", "listening on"),
            Role::Worker => ("tasker-worker", "running"),
        };
        let mut command = engine_command(&self.side, program, &self.url)?;
        match process.role {
            Role::Orchestrator => command.args(["--bind", "127.0.0.1:0"]),
            Role::Worker => {
                command.args(["--worker-id", &format!("chaos-worker-{}", process.index)])
            }
        };
        command.env("RUST_LOG", "info").stderr(Stdio::from(log));
        let child = spawn_until_ready(command, ready, &label).await?;
        self.processes[at].child = Some(child);
        Ok(())
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self, at: usize) {
        if let Some(mut child) = self.processes[at].child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT.
    pub fn signal(&self, at: usize, signal: Signal) {
        if let Some(pid) = self.pid(at) {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// SIGTERM to every process (resumed first), then wait for them.
    pub async fn stop(mut self) {
        for at in 0..self.processes.len() {
            self.signal(at, Signal::SIGCONT);
            self.signal(at, Signal::SIGTERM);
        }
        for process in &mut self.processes {
            if let Some(child) = process.child.as_mut() {
                let waited =
                    tokio::time::timeout(std::time::Duration::from_secs(20), child.wait()).await;
                if waited.is_err() {
                    let _ = child.start_kill();
                }
            }
        }
    }
}
