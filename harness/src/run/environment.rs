//! What a run records about where it ran: machine, commit, PostgreSQL.

use std::collections::BTreeMap;
use std::process::Command;

use sqlx::PgPool;

use crate::result::{Commit, Machine, PostgresInfo};

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    Machine {
        hostname: output("hostname", &[]).unwrap_or_else(|| "unknown".into()),
        os,
        kernel: output("uname", &["-r"]).unwrap_or_else(|| "unknown".into()),
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
    }
}

pub fn commit() -> Commit {
    let sha = output("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    Commit { sha, dirty }
}

/// The server's version and the settings that move the numbers.
pub async fn postgres(pool: &PgPool, backend: &str, reason: &str) -> anyhow::Result<PostgresInfo> {
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings
          WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'full_page_writes',
                         'wal_sync_method', 'max_connections', 'shared_preload_libraries',
                         'work_mem', 'max_wal_size', 'checkpoint_timeout', 'autovacuum')",
    )
    .fetch_all(pool)
    .await?;
    Ok(PostgresInfo {
        backend: backend.to_string(),
        reason: reason.to_string(),
        version,
        settings: rows.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
