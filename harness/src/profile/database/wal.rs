//! What commits cost in WAL writes and flushes, from pg_stat_wal
//! (server-wide; `track_wal_io_timing = on` for the times): between two
//! readings, the writes and fsyncs and the time they took, per step.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// pg_stat_wal's cumulative counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct WalStats {
    pub wal_records: i64,
    pub wal_bytes: i64,
    /// Times WAL buffers were written out (by commits, or when full).
    pub wal_write: i64,
    /// Times WAL was flushed to disk (fsync and friends): one per
    /// synchronous commit that found its WAL not flushed yet.
    pub wal_sync: i64,
    /// ms; zero unless `track_wal_io_timing` is on.
    pub wal_write_time: f64,
    pub wal_sync_time: f64,
}

impl WalStats {
    pub async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        Ok(sqlx::query_as(
            "SELECT wal_records, wal_bytes::bigint AS wal_bytes, wal_write, wal_sync,
                    wal_write_time, wal_sync_time
               FROM pg_stat_wal",
        )
        .fetch_one(pool)
        .await?)
    }

    /// The growth from `self` (before) to `after`.
    pub fn since(&self, after: &WalStats) -> WalStats {
        WalStats {
            wal_records: after.wal_records - self.wal_records,
            wal_bytes: after.wal_bytes - self.wal_bytes,
            wal_write: after.wal_write - self.wal_write,
            wal_sync: after.wal_sync - self.wal_sync,
            wal_write_time: after.wal_write_time - self.wal_write_time,
            wal_sync_time: after.wal_sync_time - self.wal_sync_time,
        }
    }

    /// Per step over `steps`, as a markdown table; `timed` says whether
    /// `track_wal_io_timing` was on (otherwise the times are not known).
    pub fn markdown(&self, steps: u64, timed: bool) -> String {
        let steps = steps.max(1) as f64;
        let per = |v: i64| v as f64 / steps;
        let time = |ms: f64| match timed {
            true => format!("{:.1}", ms * 1000.0 / steps),
            false => "— (track_wal_io_timing off)".into(),
        };
        let mut md = String::from("| WAL, a step | count | µs |\n|---|---:|---:|\n");
        let _ = writeln!(
            md,
            "| writes | {:.2} | {} |",
            per(self.wal_write),
            time(self.wal_write_time)
        );
        let _ = writeln!(
            md,
            "| flushes (fsync) | {:.2} | {} |",
            per(self.wal_sync),
            time(self.wal_sync_time)
        );
        let _ = writeln!(
            md,
            "| records / bytes | {:.1} / {:.0} | |",
            per(self.wal_records),
            per(self.wal_bytes)
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_cost_per_step_between_two_readings() {
        let before = WalStats {
            wal_records: 1_000,
            wal_bytes: 90_000,
            wal_write: 50,
            wal_sync: 40,
            wal_write_time: 5.0,
            wal_sync_time: 20.0,
        };
        let after = WalStats {
            wal_records: 7_700,
            wal_bytes: 710_000,
            wal_write: 350,
            wal_sync: 260,
            wal_write_time: 35.0,
            wal_sync_time: 130.0,
        };
        let grown = before.since(&after);
        assert_eq!((grown.wal_sync, grown.wal_sync_time), (220, 110.0));
        let md = grown.markdown(100, true);
        assert!(md.contains("| flushes (fsync) | 2.20 | 1100.0 |"), "{md}");
        assert!(md.contains("| writes | 3.00 | 300.0 |"), "{md}");
        assert!(md.contains("| records / bytes | 67.0 / 6200 | |"), "{md}");
        assert!(grown
            .markdown(100, false)
            .contains("track_wal_io_timing off"));
    }
}
