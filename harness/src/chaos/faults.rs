//! The faults the campaign injects, and how each is done to the fleet and
//! the database.

use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;

use super::fleet::{Fleet, Role};
use super::Postgres;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a worker mid-step, restart it after a moment.
    KillWorker,
    /// SIGKILL an orchestrator, restart it after a moment.
    KillOrchestrator,
    /// SIGSTOP a worker past its claims' leases, then SIGCONT: its late
    /// results must be refused.
    PauseWorker,
    /// SIGSTOP an orchestrator for a few seconds, then SIGCONT.
    PauseOrchestrator,
    /// Stop PostgreSQL (fast shutdown), keep it down 1-3 s, start it.
    RestartPostgres,
    /// pg_terminate_backend on every engine session.
    TerminateBackends,
    /// SIGKILL the same worker three times in a row.
    RepeatedKills,
    /// Take every free connection slot of the server for a few seconds.
    ExhaustConnections,
    /// Cut a worker off the network (`docker network disconnect`) past its
    /// leases, then reconnect it at the same address (containers only).
    DisconnectWorker,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        Self::KillWorker,
        Self::KillOrchestrator,
        Self::PauseWorker,
        Self::PauseOrchestrator,
        Self::RestartPostgres,
        Self::TerminateBackends,
        Self::RepeatedKills,
        Self::ExhaustConnections,
        Self::DisconnectWorker,
    ];

    /// Whether the fault can be done to processes on this machine (or
    /// needs the campaign in containers).
    pub fn works_on_processes(self) -> bool {
        self != Self::DisconnectWorker
    }
}

/// What the faults act on.
pub struct Targets<'a> {
    pub fleet: &'a mut Fleet,
    pub postgres: &'a Postgres,
    /// The campaign's database (for terminating its sessions).
    pub database: &'a str,
    /// A step's lease: its timeout plus the workers' margin.
    pub lease: Duration,
}

/// Inject one fault and undo it (restart, resume, release); returns a
/// description of what was done.
pub async fn inject(
    kind: FaultKind,
    targets: &mut Targets<'_>,
    rng: &mut impl Rng,
) -> anyhow::Result<String> {
    let workers = targets.fleet.of(Role::Worker);
    let orchestrators = targets.fleet.of(Role::Orchestrator);
    match kind {
        FaultKind::KillWorker | FaultKind::KillOrchestrator => {
            let of = if kind == FaultKind::KillWorker {
                &workers
            } else {
                &orchestrators
            };
            let at = pick(rng, of);
            targets.fleet.kill(at).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
            targets.fleet.start(at).await?;
            Ok(format!("killed and restarted {}", targets.fleet.label(at)))
        }
        FaultKind::RepeatedKills => {
            let at = pick(rng, &workers);
            for _ in 0..3 {
                targets.fleet.kill(at).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                targets.fleet.start(at).await?;
                tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
            }
            Ok(format!("killed {} three times", targets.fleet.label(at)))
        }
        FaultKind::PauseWorker | FaultKind::PauseOrchestrator => {
            let (of, pause) = if kind == FaultKind::PauseWorker {
                (&workers, targets.lease + Duration::from_secs(1))
            } else {
                (
                    &orchestrators,
                    Duration::from_millis(rng.random_range(1000..4000)),
                )
            };
            let at = pick(rng, of);
            targets.fleet.pause(at);
            tokio::time::sleep(pause).await;
            targets.fleet.resume(at);
            Ok(format!("paused {} for {pause:?}", targets.fleet.label(at)))
        }
        FaultKind::DisconnectWorker => {
            let at = pick(rng, &workers);
            let cut = targets.lease + Duration::from_secs(1);
            targets.fleet.disconnect(at)?;
            tokio::time::sleep(cut).await;
            targets.fleet.reconnect(at)?;
            Ok(format!(
                "cut {} off the network for {cut:?}",
                targets.fleet.label(at)
            ))
        }
        FaultKind::RestartPostgres => {
            let down = Duration::from_millis(rng.random_range(1000..3000));
            targets
                .postgres
                .restart(down)
                .await
                .context("restarting PostgreSQL")?;
            Ok(format!("restarted PostgreSQL, down for {down:?}"))
        }
        FaultKind::TerminateBackends => {
            let n = terminate_backends(targets.postgres, targets.database).await?;
            Ok(format!("terminated {n} engine sessions"))
        }
        FaultKind::ExhaustConnections => {
            let hold = Duration::from_millis(rng.random_range(2000..4000));
            let n = exhaust_connections(&targets.postgres.url(targets.database), hold).await?;
            Ok(format!("held all {n} free connection slots for {hold:?}"))
        }
    }
}

fn pick(rng: &mut impl Rng, of: &[usize]) -> usize {
    of[rng.random_range(0..of.len())]
}

/// Ends every session of the engine on `database` (not the caller's).
pub async fn terminate_backends(postgres: &Postgres, database: &str) -> anyhow::Result<i64> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres.admin_url())
        .await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = $1 AND application_name = 'tasker' AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(n)
}

/// Opens connections until the server refuses more, holds them for
/// `hold`, then closes them; returns how many it held.
async fn exhaust_connections(url: &str, hold: Duration) -> anyhow::Result<usize> {
    use sqlx::Connection;
    let mut held = Vec::new();
    // Bounded, in case the server's limit is higher than expected.
    while held.len() < 500 {
        match sqlx::PgConnection::connect(url).await {
            Ok(connection) => held.push(connection),
            Err(_) => break,
        }
    }
    let n = held.len();
    tokio::time::sleep(hold).await;
    for connection in held {
        let _ = connection.close().await;
    }
    Ok(n)
}
