//! Database upkeep for a queue-shaped workload.
//!
//! The queue tables fill with dead rows between autovacuum's visits (one a
//! minute by default): every message is inserted, updated and deleted, and
//! each claim's pick steps over the dead index entries. So every
//! `maintenance_interval_ms` an orchestrator reads the table statistics
//! and runs `VACUUM` on the queue tables with many dead rows. Of several
//! orchestrators, one does a given pass (an advisory lock), and it uses
//! SKIP_LOCKED so it never waits on autovacuum.
//!
//! It does not ANALYZE the engine's tables. It used to, every pass, so that
//! cached plans made while the tables were empty would follow their
//! growth; the hot path's statements now look every row up by key
//! whatever the statistics say (engine/sql/README.md, tests/e2e/plans.rs),
//! and each ANALYZE made every backend plan its hot-path statements again
//! and cost CPU in the middle of the load: linear at 250 tasks/s had a P99
//! of 268-549 ms with it and 98-130 ms without (docs/performance.md).
//! Autovacuum still keeps the statistics for everything else.

use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::OrchestrationConfig;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// The queue tables vacuumed.
    pub vacuumed: Vec<String>,
}

/// Arbitrary key of the advisory lock one maintenance pass holds.
const MAINTENANCE_LOCK_KEY: i64 = 0x7461_736b_6d61_696e; // "taskmain"

/// Run one pass now (nothing, if another orchestrator is running one).
pub async fn run_once(
    pool: &PgPool,
    config: &OrchestrationConfig,
) -> Result<MaintenanceReport, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(MAINTENANCE_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(MaintenanceReport::default());
    }
    // SKIP_LOCKED reports each skipped table as a WARNING ("skipping
    // vacuum of ... lock not available"): expected, not worth a log line.
    // Errors still fail the statement.
    sqlx::query("SET client_min_messages = error")
        .execute(&mut *conn)
        .await?;
    let report = pass(&mut conn, config).await;
    sqlx::query("RESET client_min_messages")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MAINTENANCE_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    report
}

async fn pass(
    conn: &mut PgConnection,
    config: &OrchestrationConfig,
) -> Result<MaintenanceReport, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, relname)
           FROM pg_stat_user_tables
          WHERE schemaname = 'pgmq' AND relname LIKE 'q\\_%' AND n_dead_tup >= $1
          ORDER BY relname",
    )
    .bind(config.vacuum_min_dead_rows)
    .fetch_all(&mut *conn)
    .await?;
    let mut report = MaintenanceReport::default();
    for name in tables {
        // VACUUM may not run inside a transaction block: it goes alone,
        // in autocommit. Not kept as a prepared statement.
        sqlx::query(&format!("VACUUM (SKIP_LOCKED, ANALYZE) {name}"))
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        report.vacuumed.push(name);
    }
    Ok(report)
}

/// Run a pass every `maintenance_interval_ms` until shutdown.
pub(crate) async fn run(pool: PgPool, config: OrchestrationConfig, shutdown: CancellationToken) {
    let interval = std::time::Duration::from_millis(config.maintenance_interval_ms);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match run_once(&pool, &config).await {
            Ok(report) if report != MaintenanceReport::default() => {
                tracing::debug!(?report, "database maintenance")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "database maintenance failed"),
        }
    }
}
