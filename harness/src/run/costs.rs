//! The deterministic cost of a step, from PostgreSQL's own counters, read
//! before and after the measured tasks; the difference divided by the
//! steps run.
//!
//! Statements and WAL come from pg_stat_statements, which counts each
//! statement the moment it ends: top-level calls (BEGIN and COMMIT
//! included: each is a round trip) and the WAL they wrote. Commits are the
//! commit records in the WAL between the two readings of the transactions
//! that wrote this database (pg_walinspect): a transaction of several
//! statements that write is one commit. Where pg_walinspect cannot be read
//! (not installed, or the WAL already recycled), they are the calls of
//! statements that wrote WAL, which counts each such statement of a longer
//! transaction as one. Rows written come from pg_stat_user_tables, which
//! backends publish lazily (when idle, at most once a second, or ten
//! seconds later): that reading first waits for the idle engine's backends
//! to publish. The harness's own statistics queries and orchestration's
//! maintenance (VACUUM of the queues) are left out.

use std::time::Duration;

use sqlx::PgPool;

use crate::result::StepCosts;

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    statements: i64,
    commits: i64,
    wal_records: i64,
    wal_bytes: i64,
    /// Server-wide WAL position, for load figures when pg_stat_statements
    /// is missing.
    wal_lsn_bytes: i64,
    rows_written: Option<i64>,
    has_statements: bool,
}

/// PostgreSQL publishes an idle backend's table statistics at the latest
/// ten seconds after it went idle (PGSTAT_IDLE_INTERVAL).
pub(crate) const STATS_SETTLE: Duration = Duration::from_millis(11_000);

/// Makes pg_stat_statements readable in this database, where the server
/// loads it (without it, costs are simply not reported).
pub async fn enable_statements(pool: &PgPool) {
    for extension in ["pg_stat_statements", "pg_walinspect"] {
        let _ = sqlx::query(&format!("CREATE EXTENSION IF NOT EXISTS {extension}"))
            .execute(pool)
            .await;
    }
}

impl Counters {
    /// Counters that are exact at once (statements, commits, WAL).
    pub async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let statements: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT coalesce(sum(calls), 0)::bigint,
                    coalesce(sum(calls) FILTER (WHERE wal_records > 0), 0)::bigint,
                    coalesce(sum(wal_records), 0)::bigint,
                    coalesce(sum(wal_bytes), 0)::bigint
               FROM pg_stat_statements
              WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND query NOT ILIKE '%pg_stat%' AND query NOT ILIKE '%pg_current_wal%'
                AND query NOT ILIKE 'ANALYZE%' AND query NOT ILIKE 'VACUUM%'",
        )
        .fetch_one(pool)
        .await
        .ok();
        let wal_lsn_bytes: i64 =
            sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
                .fetch_one(pool)
                .await?;
        let (statements, commits, wal_records, wal_bytes) = statements.unwrap_or_default();
        Ok(Self {
            statements,
            commits,
            wal_records,
            wal_bytes,
            wal_lsn_bytes,
            rows_written: None,
            has_statements: statements > 0,
        })
    }

    /// All counters, rows written included: waits until the idle engine's
    /// table statistics are published.
    pub async fn read_settled(pool: &PgPool) -> anyhow::Result<Self> {
        tokio::time::sleep(STATS_SETTLE).await;
        let rows: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self {
            rows_written: Some(rows),
            ..Self::read(pool).await?
        })
    }

    /// These counters (read after `before`) with their commits counted from
    /// the WAL's commit records since `before`: those of transactions that
    /// wrote a block of a user relation of this database (other databases
    /// of the server, an A/B run's other side or a floor interleaved with
    /// its scenario, are left out, and so is autoanalyze). When
    /// pg_walinspect cannot read them, left as pg_stat_statements counted
    /// them.
    pub async fn with_commits_since(mut self, pool: &PgPool, before: &Counters) -> Self {
        let records: Result<i64, sqlx::Error> = sqlx::query_scalar(
            r"WITH r AS MATERIALIZED (
                 SELECT xid, resource_manager, record_type, block_ref
                   FROM pg_get_wal_records_info('0/0'::pg_lsn + $1::numeric,
                                                '0/0'::pg_lsn + $2::numeric)
             ), wrote AS (
                 -- transactions that wrote a block of a user relation of
                 -- this database (not a catalog's, as autoanalyze does)
                 SELECT DISTINCT r.xid
                   FROM r, regexp_matches(r.block_ref, ' rel \d+/(\d+)/(\d+)', 'g') m
                  WHERE m[1]::oid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND m[2]::bigint >= 16384
             )
             SELECT count(*) FROM r
              WHERE r.resource_manager = 'Transaction' AND r.record_type = 'COMMIT'
                AND r.xid IN (SELECT w.xid FROM wrote w)",
        )
        .bind(before.wal_lsn_bytes)
        .bind(self.wal_lsn_bytes)
        .fetch_one(pool)
        .await;
        if let Ok(records) = records {
            self.commits = before.commits + records;
        }
        self
    }

    /// These counters with the rows written of an earlier settled reading
    /// (nothing wrote user tables in between).
    pub fn with_rows_from(self, settled: &Counters) -> Self {
        Self {
            rows_written: settled.rows_written,
            ..self
        }
    }

    /// Costs per step between `self` (before) and `after`. None without
    /// pg_stat_statements (statements and commits need it).
    pub fn per_step(&self, after: &Counters, steps: u64) -> Option<StepCosts> {
        if !(self.has_statements && after.has_statements) {
            return None;
        }
        let steps = steps.max(1) as f64;
        let per = |before: i64, after: i64| (after - before) as f64 / steps;
        Some(StepCosts {
            statements_per_step: per(self.statements, after.statements),
            commits_per_step: per(self.commits, after.commits),
            rows_written_per_step: per(self.rows_written?, after.rows_written?),
            wal_records_per_step: per(self.wal_records, after.wal_records),
            wal_bytes_per_step: per(self.wal_bytes, after.wal_bytes),
        })
    }

    /// Commits since `before` (pg_stat_statements), for load figures.
    pub fn commits_since(&self, before: &Counters) -> i64 {
        self.commits - before.commits
    }

    /// WAL bytes since `before`: the server's WAL position, which also
    /// counts commit records and background writes.
    pub fn wal_bytes_since(&self, before: &Counters) -> i64 {
        self.wal_lsn_bytes - before.wal_lsn_bytes
    }
}
