//! `chaos`: the fault campaign under load, every task checked afterwards.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

#[derive(Args)]
pub(super) struct ChaosArgs {
    /// Tasks submitted, evenly over --duration.
    #[arg(long, default_value_t = 1000)]
    tasks: u64,
    /// Seed of the tasks' shapes and faults and of the faults' sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of load and faults (the drain comes after).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    #[arg(long, default_value_t = 2)]
    orchestrators: usize,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// timeout_seconds of every step; a claim's lease is this plus
    /// --lease-margin.
    #[arg(long, default_value_t = 3)]
    step_timeout: u32,
    #[arg(long, default_value_t = 2)]
    lease_margin: i32,
    #[arg(long, default_value_t = 6)]
    max_attempts: u32,
    /// Shortest and longest gap between faults, seconds.
    #[arg(long, default_value_t = 1.0)]
    min_gap: f64,
    #[arg(long, default_value_t = 5.0)]
    max_gap: f64,
    /// Fault kinds to inject (default: all that apply).
    #[arg(long = "fault", value_enum)]
    faults: Vec<tasker_harness::chaos::faults::FaultKind>,
    /// Run PostgreSQL and the engine in containers on a private Docker
    /// network (images built locally, never pulled); adds network cuts of
    /// workers, and pauses orchestrators with `docker pause`.
    #[arg(long)]
    containers: bool,
}

pub(super) async fn chaos(reports: &Path, args: &ChaosArgs) -> anyhow::Result<ExitCode> {
    use tasker_harness::chaos::{self, faults::FaultKind};
    if args.min_gap <= 0.0 || args.max_gap < args.min_gap {
        bail!("--min-gap must be positive and at most --max-gap");
    }
    if !args.containers && args.faults.iter().any(|k| !k.works_on_processes()) {
        bail!("--fault disconnect-worker needs --containers (a process on this machine has no network of its own to cut)");
    }
    if args.containers && !chaos::containers::available() {
        bail!("--containers: no Docker engine answers (docker version failed); start it or drop --containers");
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let plan = chaos::Plan {
        tasks: args.tasks,
        seed: args.seed,
        duration: std::time::Duration::from_secs(args.duration),
        orchestrators: args.orchestrators.max(1),
        workers: args.workers.max(1),
        step_timeout_s: args.step_timeout.max(1),
        lease_margin_s: args.lease_margin.max(0),
        max_attempts: args.max_attempts.max(1),
        fault_gap_s: (args.min_gap, args.max_gap),
        kinds: match args.faults.is_empty() {
            true => FaultKind::ALL
                .into_iter()
                .filter(|k| args.containers || k.works_on_processes())
                .collect(),
            false => args.faults.clone(),
        },
        containers: args.containers,
        out_dir: reports
            .join("chaos")
            .join(format!("{stamp}-seed{}", args.seed)),
    };
    let report = chaos::run(&plan).await?;
    println!("{}", chaos::render(&report));
    println!("result: {}", plan.out_dir.join("chaos.json").display());
    Ok(match report.verdict.passed() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}
