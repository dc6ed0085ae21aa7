//! The staleness detector: finds work that is due but that nobody was told
//! about, and tasks that stopped moving.
//!
//! Notifications make the hot path event driven, but some work becomes due
//! without one: a claim's lease lapses when its worker died (its message is
//! visible again, silently), a retry's delayed message comes due after the
//! orchestrator that set its timer died, a notification is sent while a
//! consumer's LISTEN connection is down. Every `staleness_interval_ms` an
//! orchestrator notifies each queue that holds a visible message, so a
//! lapsed lease is re-claimed within the interval rather than at the
//! consumers' slow fallback poll.
//!
//! The same pass examines tasks with no progress for `task_stale_after_s`
//! (`tasker.repair_task`): a message one of their steps should have but has
//! not is sent again, a claim whose message is gone counts as a lapsed
//! lease, and a task whose steps wait for a worker that never claims them
//! is dead-lettered once idle for `dead_letter_after_s`.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::OrchestrationConfig;
use crate::database::Outage;

/// Stale tasks examined in one pass, at most.
const STALE_TASKS_PER_PASS: i32 = 100;

/// What one pass found and did to one task.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Repair {
    pub task_uuid: Uuid,
    /// resent, reclaimed, failed, evaluate, waiting or dead_letter.
    pub action: String,
    pub detail: String,
}

/// Wake the consumers of every queue holding visible work; returns the
/// queues woken.
pub async fn wake_consumers(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT * FROM tasker.notify_visible_work()")
        .fetch_all(pool)
        .await
}

/// Examine the tasks with no progress for `task_stale_after_s` and repair
/// or dead-letter them (at most a pass's worth).
pub async fn repair_stale_tasks(
    pool: &PgPool,
    config: &OrchestrationConfig,
) -> Result<Vec<Repair>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t AS task_uuid, r.action, r.detail
           FROM tasker.stale_tasks(make_interval(secs => $1), $3) t,
                LATERAL tasker.repair_task(t, make_interval(secs => $2)) r",
    )
    .bind(config.task_stale_after_s as f64)
    .bind(config.dead_letter_after_s as f64)
    .bind(STALE_TASKS_PER_PASS)
    .fetch_all(pool)
    .await
}

/// Run a pass every `staleness_interval_ms` until shutdown.
pub(crate) async fn run(pool: PgPool, config: OrchestrationConfig, shutdown: CancellationToken) {
    let interval = Duration::from_millis(config.staleness_interval_ms);
    // Stale tasks are looked for ten times per staleness limit: the scan
    // reads every unfinished task, and a limit of minutes needs no more.
    let scan_every = Duration::from_millis(config.task_stale_after_s * 100).max(interval);
    let mut last_scan = Instant::now();
    let mut outage = Outage::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let mut pass = wake_consumers(&pool).await.map(|_| Vec::new());
        if pass.is_ok() && last_scan.elapsed() >= scan_every {
            last_scan = Instant::now();
            pass = repair_stale_tasks(&pool, &config).await;
        }
        match pass {
            Ok(repairs) => {
                outage.recovered("the staleness detector");
                for r in repairs {
                    match r.action.as_str() {
                        "dead_letter" => tracing::warn!(task = %r.task_uuid, reason = %r.detail,
                            "stale task moved to the dead letters"),
                        "waiting" => tracing::debug!(task = %r.task_uuid, detail = %r.detail,
                            "stale task waits for a worker"),
                        action => tracing::warn!(task = %r.task_uuid, action, detail = %r.detail,
                            "stale task repaired"),
                    }
                }
            }
            Err(error) => outage.failed("the staleness detector", &error),
        }
    }
}
