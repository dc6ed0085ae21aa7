//! A recorder attached to a running process (`perf record -p`, `samply
//! record -p`): a child process, stopped with SIGINT — its Ctrl-C, on which
//! both save what they recorded — and checked for the files it must write.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

pub struct Recording {
    child: Child,
    tool: &'static str,
    /// What it must write; the first is the recording.
    files: Vec<PathBuf>,
}

impl Recording {
    /// Starts `command`. Leftovers of `files` from an earlier run are
    /// removed first, so they cannot hide a failed recording.
    pub fn spawn(
        mut command: Command,
        tool: &'static str,
        files: Vec<PathBuf>,
    ) -> anyhow::Result<Self> {
        for file in &files {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let _ = std::fs::remove_file(file);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {tool}"))?;
        Ok(Self { child, tool, files })
    }

    /// Waits until the recorder has written the start of its recording:
    /// `perf record` writes its file's header once its events are open on
    /// the processes, so what runs after this is recorded from its start
    /// (a short window was otherwise over before perf had attached). An
    /// error with the recorder's messages when it exits first, or after
    /// `timeout`.
    pub async fn started(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let begun = Instant::now();
        loop {
            let written = std::fs::metadata(&self.files[0]).map_or(0, |m| m.len());
            if written > 0 {
                return Ok(());
            }
            if self.child.try_wait()?.is_some() {
                let mut stderr = String::new();
                if let Some(pipe) = self.child.stderr.as_mut() {
                    pipe.read_to_string(&mut stderr).await?;
                }
                bail!("{} exited before recording: {}", self.tool, stderr.trim());
            }
            if begun.elapsed() > timeout {
                bail!("{} did not start recording within {timeout:?}", self.tool);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops recording and returns the recording; an error with the
    /// recorder's messages when a file it should have written is missing.
    pub async fn stop(self) -> anyhow::Result<PathBuf> {
        if let Some(pid) = self.child.id() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            )?;
        }
        let output = self.child.wait_with_output().await?;
        for file in &self.files {
            if !file.exists() {
                bail!(
                    "{} wrote no {}: {}",
                    self.tool,
                    file.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        Ok(self.files[0].clone())
    }
}
