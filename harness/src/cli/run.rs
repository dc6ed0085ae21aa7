//! `run`: the scenario options every measuring command shares, provisioning, the run itself.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use tasker_engine::config::TaskerConfig;
use tasker_harness::provision::{self, Backend, ProvisionOptions, Provisioned};
use tasker_harness::result::RunResult;
use tasker_harness::run::{self, RunPlan};
use tasker_harness::{scenario, summary};

#[derive(Args, Clone)]
pub(super) struct RunArgs {
    /// Tiers to run (default: 1).
    #[arg(long = "tier")]
    tiers: Vec<u8>,
    /// Scenarios to run by name (besides --tier).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    #[arg(long, default_value_os_t = scenario::default_path())]
    scenarios_file: PathBuf,
    /// Where PostgreSQL comes from.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    postgres: Backend,
    /// Latency samples per scenario (overrides the scenario file).
    #[arg(long)]
    samples: Option<u64>,
    /// Skip the throughput rates.
    #[arg(long)]
    latency_only: bool,
}

impl RunArgs {
    /// The throwaway local cluster, unless another backend was asked for,
    /// which is refused with `why`.
    pub(super) fn require_local_postgres(&mut self, why: &str) -> anyhow::Result<()> {
        match self.postgres {
            Backend::Auto | Backend::Local => {
                self.postgres = Backend::Local;
                Ok(())
            }
            other => bail!("--postgres {other:?} cannot be used here: {why}; use --postgres local"),
        }
    }

    /// Runs `name` when neither a tier nor a scenario was asked for.
    pub(super) fn default_to_scenario(&mut self, name: &str) {
        if self.scenarios.is_empty() && self.tiers.is_empty() {
            self.scenarios.push(name.to_string());
        }
    }
}

pub(super) async fn run(reports: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let (server, plan) = prepare(args).await?;
    let result = run::run(&plan).await?;
    drop(server);
    let path = save_run(reports, &result)?;
    println!("{}", summary::table(&result));
    println!("result: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Provision PostgreSQL and build the run plan.
pub(super) async fn prepare(args: &RunArgs) -> anyhow::Result<(Provisioned, RunPlan)> {
    let scenarios = scenario::select(
        scenario::load(&args.scenarios_file)?,
        &args.tiers,
        &args.scenarios,
    )?;
    if scenarios.is_empty() {
        bail!(
            "no scenarios in tiers {:?} of {}",
            args.tiers,
            args.scenarios_file.display()
        );
    }
    let options = ProvisionOptions {
        settings: vec![
            // Per-step statement counts come from pg_stat_statements.
            (
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            ),
            // Commits are counted from the WAL a measurement wrote
            // (run/costs.rs): a checkpoint during it must not recycle the
            // WAL's first segments, or the count falls back to statements.
            ("wal_keep_size".into(), "1GB".into()),
        ],
        ..ProvisionOptions::default()
    };
    let server = provision::provision(args.postgres, &options).await?;
    eprintln!("PostgreSQL: {} ({})", server.backend, server.reason);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // The engine's own config files and TASKER__* overrides apply (e.g.
    // TASKER__WORKER__INJECTED_DELAY_US to check that the gate sees a
    // slowdown).
    let engine_config = TaskerConfig::load(
        &repo.join("config"),
        std::env::var("TASKER_ENV").ok().as_deref(),
    )?;
    let plan = RunPlan {
        scenarios,
        engine_config,
        admin_url: server.admin_url.clone(),
        backend: server.backend.to_string(),
        reason: server.reason.clone(),
        samples: args.samples,
        latency_only: args.latency_only,
    };
    Ok((server, plan))
}

pub(super) fn save_run(reports: &Path, result: &RunResult) -> anyhow::Result<PathBuf> {
    let path = reports.join("runs").join(format!("{}.json", result.id));
    result.save(&path)?;
    Ok(path)
}
