//! Per-statement server cost from pg_stat_statements.
//!
//! With `pg_stat_statements.track = all` the statements PL/pgSQL functions
//! run are counted too, as `toplevel = false` entries: the hot path's
//! functions (claim, submit, process results) open up into their own
//! queries. A nested statement's time is also inside its caller's, so the
//! top-level rows add up to the server's time and the nested rows say
//! where inside it the time went.

use std::collections::HashMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::one_line;

/// One statement's cumulative counters (pg_stat_statements' row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StatementStats {
    pub queryid: i64,
    /// False for a statement run inside a function (track = all).
    pub toplevel: bool,
    pub query: String,
    pub calls: i64,
    /// Execution time, ms.
    pub total_exec_time: f64,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
    pub wal_bytes: i64,
}

/// Every statement of the current database at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub statements: Vec<StatementStats>,
}

impl Snapshot {
    /// Reads pg_stat_statements for `database` (the server must load it:
    /// `shared_preload_libraries`). Read from another database, the
    /// reading itself is not among the statements it reads.
    pub async fn read(pool: &PgPool, database: &str) -> anyhow::Result<Self> {
        let statements = sqlx::query_as(
            "SELECT queryid, toplevel, query, calls, total_exec_time, rows,
                    shared_blks_hit, shared_blks_read, wal_bytes::bigint AS wal_bytes
               FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
        )
        .bind(database)
        .fetch_all(pool)
        .await?;
        Ok(Self { statements })
    }

    /// What ran between `self` (before) and `after`: each statement's
    /// counters' growth, statements that did not run left out, the most
    /// time first.
    pub fn since(&self, after: &Snapshot) -> Vec<StatementStats> {
        let before: HashMap<(i64, bool), &StatementStats> = self
            .statements
            .iter()
            .map(|s| ((s.queryid, s.toplevel), s))
            .collect();
        let mut grown: Vec<StatementStats> = after
            .statements
            .iter()
            .map(|a| match before.get(&(a.queryid, a.toplevel)) {
                Some(b) => StatementStats {
                    calls: a.calls - b.calls,
                    total_exec_time: a.total_exec_time - b.total_exec_time,
                    rows: a.rows - b.rows,
                    shared_blks_hit: a.shared_blks_hit - b.shared_blks_hit,
                    shared_blks_read: a.shared_blks_read - b.shared_blks_read,
                    wal_bytes: a.wal_bytes - b.wal_bytes,
                    ..a.clone()
                },
                None => a.clone(),
            })
            .filter(|s| s.calls > 0)
            .collect();
        grown.sort_by(|x, y| y.total_exec_time.total_cmp(&x.total_exec_time));
        grown
    }
}

/// Server time of the top-level statements, ms: the database's share of
/// the steps' time (nested statements are inside it).
pub fn toplevel_ms(statements: &[StatementStats]) -> f64 {
    statements
        .iter()
        .filter(|s| s.toplevel)
        .map(|s| s.total_exec_time)
        .sum()
}

/// The `top` statements by time as a markdown table, per step over
/// `steps`.
pub fn markdown(statements: &[StatementStats], steps: u64, top: usize) -> String {
    let steps = steps.max(1) as f64;
    let mut md = String::from(
        "| statement | level | calls a step | µs a step | rows a step | blocks hit / read a step | WAL bytes a step |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for s in statements.iter().take(top) {
        let per = |v: i64| v as f64 / steps;
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.2} | {:.1} | {:.2} | {:.1} / {:.2} | {:.0} |",
            one_line(&s.query, 70).replace('|', "\\|"),
            if s.toplevel { "top" } else { "nested" },
            per(s.calls),
            s.total_exec_time * 1000.0 / steps,
            per(s.rows),
            per(s.shared_blks_hit),
            per(s.shared_blks_read),
            per(s.wal_bytes),
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(queryid: i64, toplevel: bool, query: &str, calls: i64, ms: f64) -> StatementStats {
        StatementStats {
            queryid,
            toplevel,
            query: query.into(),
            calls,
            total_exec_time: ms,
            rows: calls,
            shared_blks_hit: 10 * calls,
            shared_blks_read: 0,
            wal_bytes: 100 * calls,
        }
    }

    /// Before and after 100 steps of linear: the claim function and one
    /// of its nested statements, result submission, and a statement that
    /// appeared only after (task creation).
    fn snapshots() -> (Snapshot, Snapshot) {
        let claim = "SELECT * FROM tasker.claim_steps($1, $2, $3)";
        let nested = "UPDATE tasker.workflow_steps SET claimed_by = $1 WHERE uuid = $2";
        let before = Snapshot {
            statements: vec![
                stats(1, true, claim, 40, 12.0),
                stats(2, false, nested, 40, 4.0),
                stats(3, true, "SELECT tasker.submit_step_results($1)", 40, 9.0),
            ],
        };
        let after = Snapshot {
            statements: vec![
                stats(1, true, claim, 140, 40.0),
                stats(2, false, nested, 140, 14.0),
                stats(3, true, "SELECT tasker.submit_step_results($1)", 40, 9.0),
                stats(4, true, "SELECT tasker.create_task($1)", 25, 30.0),
            ],
        };
        (before, after)
    }

    #[test]
    fn only_what_ran_in_between_counts_most_time_first() {
        let (before, after) = snapshots();
        let ran = before.since(&after);
        let names: Vec<(i64, i64, f64)> = ran
            .iter()
            .map(|s| (s.queryid, s.calls, s.total_exec_time))
            .collect();
        // submit did not run in between; create_task is new.
        assert_eq!(names, [(4, 25, 30.0), (1, 100, 28.0), (2, 100, 10.0)]);
        assert_eq!(ran[1].wal_bytes, 100 * 100);
        assert_eq!(
            toplevel_ms(&ran),
            58.0,
            "nested time is inside its caller's"
        );
    }

    #[test]
    fn the_table_gives_each_statement_per_step() {
        let (before, after) = snapshots();
        let md = markdown(&before.since(&after), 100, 10);
        let claim = md.lines().find(|l| l.contains("claim_steps")).unwrap();
        assert_eq!(
            claim,
            "| `SELECT * FROM tasker.claim_steps($1, $2, $3)` | top | 1.00 | 280.0 | 1.00 | 10.0 / 0.00 | 100 |"
        );
        assert!(md.contains("| nested | 1.00 | 100.0 |"), "{md}");
        assert_eq!(markdown(&before.since(&after), 100, 1).lines().count(), 3);
    }
}
