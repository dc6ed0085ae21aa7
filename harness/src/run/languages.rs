//! Tier 4's language workers: the engine's worker core serving step
//! handlers written in Python, Ruby or TypeScript (`workers/<language>`),
//! each a process of its own running the tier-4 handlers in
//! `scenarios/ffi/<language>/`.
//!
//! The harness builds each with its script (`scripts/<language>-worker
//! build`), optimised when the engine it runs beside is, so the native
//! extension is compiled like the Rust worker it is compared with. A script that finds
//! its toolchain missing says so in one `SKIPPED` line, which the run
//! prints instead of the scenario.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::process::Command;

use crate::scenario::Language;

/// How to start one language's worker.
#[derive(Debug, Clone)]
pub struct LanguageWorker {
    pub language: Language,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    /// The namespaces it serves (`worker.namespaces`): the templates
    /// directory holds every scenario's template, and the worker has
    /// handlers for its own only.
    namespaces: Vec<String>,
}

/// What preparing a language worker found.
#[derive(Debug, Clone)]
pub enum Prepared {
    Ready(LanguageWorker),
    /// The toolchain is missing: the script's line saying what to install.
    Skipped(String),
}

/// Each language's worker prepared at most once a run: its script runs
/// the build (maturin, cargo, tsc) even when nothing changed.
#[derive(Debug, Default)]
pub struct PreparedWorkers(HashMap<Language, Prepared>);

impl PreparedWorkers {
    /// [`LanguageWorker::prepare`], the first time `language` is asked for.
    pub fn get(
        &mut self,
        language: Language,
        root: &Path,
        release: bool,
    ) -> anyhow::Result<Prepared> {
        if let Some(prepared) = self.0.get(&language) {
            return Ok(prepared.clone());
        }
        let prepared = LanguageWorker::prepare(language, root, release)?;
        self.0.insert(language, prepared.clone());
        Ok(prepared)
    }
}

impl LanguageWorker {
    /// Builds the language's worker with its script (a no-op when it is
    /// up to date), optimised when `release`, and returns how to start it.
    pub fn prepare(language: Language, root: &Path, release: bool) -> anyhow::Result<Prepared> {
        let script = root.join("scripts").join(format!("{language}-worker"));
        let mut command = std::process::Command::new(&script);
        command.arg("build").current_dir(root).stdin(Stdio::null());
        if release {
            command.arg("--release");
        }
        eprintln!("building the {language} worker ({})", script.display());
        let output = command
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "{} build failed ({}):\n{}{stderr}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout)
            );
        }
        if let Some(line) = stderr.lines().find(|l| l.contains("SKIPPED")) {
            return Ok(Prepared::Skipped(line.trim().to_string()));
        }
        Ok(Prepared::Ready(Self::launcher(language, root)))
    }

    /// The command line each workers/<language>/README.md documents, on
    /// the tier-4 handlers.
    fn launcher(language: Language, root: &Path) -> Self {
        let handlers = root.join("scenarios").join("ffi").join(language.name());
        let target = root.join("target");
        let path = |p: PathBuf| p.into_os_string();
        let (program, args, env): (OsString, Vec<OsString>, Vec<(String, OsString)>) =
            match language {
                Language::Python => (
                    path(target.join("python-venv").join("bin").join("python")),
                    ["-m", "tasker_worker", "--handlers", "handlers"]
                        .map(OsString::from)
                        .to_vec(),
                    vec![("PYTHONPATH".into(), path(handlers))],
                ),
                Language::Ruby => (
                    "ruby".into(),
                    vec![
                        path(root.join("workers/ruby/bin/tasker-worker-ruby")),
                        "--handlers".into(),
                        path(handlers.join("handlers.rb")),
                    ],
                    Vec::new(),
                ),
                Language::Typescript => (
                    "node".into(),
                    vec![
                        // tsc's output mirrors the repository's folders.
                        path(target.join("typescript/workers/typescript/src-ts/cli.js")),
                        "--handlers".into(),
                        path(target.join("typescript/scenarios/ffi/typescript/handlers.js")),
                    ],
                    Vec::new(),
                ),
            };
        Self {
            language,
            program,
            args,
            env,
            namespaces: Vec::new(),
        }
    }

    /// The same worker, serving only `namespace`.
    pub fn serving(mut self, namespace: &str) -> Self {
        self.namespaces = vec![namespace.to_string()];
        self
    }

    /// The worker's command, without the engine's environment (which
    /// `engine::configure` adds as for the Rust binaries).
    pub fn command(&self, worker_id: &str) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .args(["--worker-id", worker_id])
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if !self.namespaces.is_empty() {
            command.env("TASKER__WORKER__NAMESPACES", self.namespaces.join(","));
        }
        command
    }
}
