//! The database's probes around a profiled run's measured tasks: the
//! database is configured so the engine's sessions are tracked (nested
//! statements, functions, WAL timing, auto_explain); after the warm-up the
//! counters are read, the wait-event sampler and perf (on the engine's
//! backends) start; after the tasks everything is read again and the
//! difference is the tasks' [`DatabaseProfile`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::critical_path::CriticalPath;
use super::functions::{FunctionSnapshot, FunctionStats};
use super::plans::{self, PlanSummary};
use super::statements::{Snapshot, StatementStats};
use super::waits::{self, WaitProfile};
use super::wal::WalStats;
use crate::profile::attached::Recording;
use crate::profile::perf;
use crate::profile::recipe::DatabaseSettings;
use crate::run::costs::{enable_statements, STATS_SETTLE};

/// Everything the probes saw over the measured tasks (saved as the
/// profile's recording, `reports/profiles/postgres-<scenario>.postgres.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseProfile {
    pub steps: u64,
    /// Statements that ran, the most time first (top-level and nested).
    pub statements: Vec<StatementStats>,
    /// PL/pgSQL functions called, the most self time first.
    pub functions: Vec<FunctionStats>,
    pub waits: WaitProfile,
    pub wal: WalStats,
    /// Whether `track_wal_io_timing` was on (the WAL times are known).
    pub wal_timed: bool,
    /// auto_explain's plans, by statement; empty when the server's log
    /// could not be read.
    pub plans: Vec<PlanSummary>,
    /// The markdown file with each statement's slowest plan.
    pub plans_file: Option<PathBuf>,
    /// perf's recording of the engine's backends, when perf could run.
    pub perf_data: Option<PathBuf>,
    /// Why there is no CPU profile of the backends or no plans, if so.
    pub notes: Vec<String>,
    pub critical_path: CriticalPath,
}

/// Sets, on `database`, what the profile reads: every session of the
/// engine then tracks nested statements and functions, times its WAL I/O
/// and has auto_explain log a sample of its plans (to the server's log).
pub async fn configure(
    admin_url: &str,
    database: &str,
    settings: &DatabaseSettings,
) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url).await?;
    let sample_rate = settings.explain_sample_rate.to_string();
    let min_duration = settings.explain_min_duration_ms.to_string();
    for (name, value) in [
        ("pg_stat_statements.track", "all"),
        ("track_functions", "all"),
        ("track_wal_io_timing", "on"),
        ("session_preload_libraries", "auto_explain"),
        ("auto_explain.log_min_duration", min_duration.as_str()),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_buffers", "on"),
        ("auto_explain.log_timing", "on"),
        ("auto_explain.log_nested_statements", "on"),
        ("auto_explain.log_format", "json"),
        ("auto_explain.sample_rate", sample_rate.as_str()),
    ] {
        sqlx::query(&format!("ALTER DATABASE {database} SET {name} = '{value}'"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("setting {name} on database {database}"))?;
    }
    admin.close().await?;
    Ok(())
}

/// What the probes are pointed at.
pub struct ProbeTargets {
    /// The server's `postgres` database: the probes' own statements run
    /// there, so that they are not among the profiled database's.
    pub admin_url: String,
    /// The profiled database (its URL and name).
    pub url: String,
    pub database: String,
    /// The engine's processes, whose CPU is the client's part.
    pub engine_pids: Vec<u32>,
    /// The server's log file, where auto_explain writes (local clusters).
    pub server_log: Option<PathBuf>,
    /// Where perf writes the backends' recording, and where the plans go.
    pub perf_data: PathBuf,
    pub plans_file: PathBuf,
}

/// Counters that are read before and after.
struct Readings {
    statements: Snapshot,
    functions: FunctionSnapshot,
    wal: WalStats,
}

/// The probes, running over the measured tasks.
pub struct Probe {
    targets: ProbeTargets,
    /// On the `postgres` database: statements, WAL, waits, round trips.
    admin: PgPool,
    /// On the profiled database: functions are only seen from inside it.
    profiled: PgPool,
    before: Readings,
    cpu_before: u64,
    round_trip_us: f64,
    backends: Vec<u32>,
    stop: CancellationToken,
    sampler: JoinHandle<anyhow::Result<WaitProfile>>,
    perf: Option<Recording>,
    log_offset: Option<u64>,
    notes: Vec<String>,
    started: Instant,
}

impl Probe {
    /// Starts the probes after the warm-up. Waits first until the
    /// warm-up's statistics are published (backends publish function and
    /// WAL counters only some time after they go idle), so that they are
    /// left out.
    pub async fn start(targets: ProbeTargets, settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(&targets.admin_url)
            .await?;
        let profiled = PgPoolOptions::new()
            .max_connections(1)
            .connect(&targets.url)
            .await?;
        enable_statements(&admin).await;
        tokio::time::sleep(STATS_SETTLE).await;
        let round_trip_us = round_trip_us(&admin).await?;
        // Functions first: their reading runs in the profiled database,
        // before the statements' snapshot, so it is not counted.
        let functions = FunctionSnapshot::read(&profiled).await?;
        let before = Readings {
            functions,
            statements: Snapshot::read(&admin, &targets.database).await?,
            wal: WalStats::read(&admin).await?,
        };
        let backends = engine_backends(&admin, &targets.database).await?;
        let mut notes = Vec::new();
        let perf = match record_backends(&backends, &targets.perf_data).await {
            Ok(recording) => Some(recording),
            Err(why) => {
                notes.push(format!("no CPU profile of the backends: {why:#}"));
                None
            }
        };
        let log_offset = match &targets.server_log {
            Some(log) => Some(std::fs::metadata(log)?.len()),
            None => {
                notes.push("no plans: the server's log is not readable from here".into());
                None
            }
        };
        let stop = CancellationToken::new();
        let sampler = tokio::spawn({
            let (pool, database, stop) = (admin.clone(), targets.database.clone(), stop.clone());
            let interval = Duration::from_millis(settings.wait_interval_ms);
            async move { waits::sample(&pool, &database, interval, stop).await }
        });
        Ok(Self {
            cpu_before: cpu_ticks(&targets.engine_pids),
            targets,
            admin,
            profiled,
            before,
            round_trip_us,
            backends,
            stop,
            sampler,
            perf,
            log_offset,
            notes,
            started: Instant::now(),
        })
    }

    /// Stops the probes after the tasks; `steps` ran, taking `wall_us` a
    /// step on average.
    pub async fn finish(mut self, steps: u64, wall_us: f64) -> anyhow::Result<DatabaseProfile> {
        let elapsed = self.started.elapsed();
        let cpu_ticks = cpu_ticks(&self.targets.engine_pids) - self.cpu_before;
        self.stop.cancel();
        let waits = self
            .sampler
            .await
            .context("the wait-event sampler panicked")??;
        let perf_data = match self.perf.take() {
            Some(recording) => Some(recording.stop().await?),
            None => None,
        };
        let database = &self.targets.database;
        let statements = self
            .before
            .statements
            .since(&Snapshot::read(&self.admin, database).await?);
        let now = engine_backends(&self.admin, database).await?;
        let late = now.iter().filter(|p| !self.backends.contains(p)).count();
        if late > 0 && perf_data.is_some() {
            self.notes.push(format!(
                "{late} of the engine's {} backends opened after perf attached: their CPU is not \
                 in the flamegraph",
                now.len()
            ));
        }
        tokio::time::sleep(STATS_SETTLE).await;
        let functions = self
            .before
            .functions
            .since(&FunctionSnapshot::read(&self.profiled).await?);
        let wal = self.before.wal.since(&WalStats::read(&self.admin).await?);
        let wal_timed = setting_on(&self.profiled, "track_wal_io_timing").await?;
        let plans = plans(&self.targets, self.log_offset, &mut self.notes)?;
        let per_step = |ms: f64| ms * 1000.0 / steps.max(1) as f64;
        let critical_path = CriticalPath {
            wall_us,
            // /proc counts CPU in USER_HZ ticks, 100 a second on Linux.
            client_cpu_us: (cpu_ticks * 10_000) as f64 / steps.max(1) as f64,
            round_trips: statements
                .iter()
                .filter(|s| s.toplevel)
                .map(|s| s.calls as f64)
                .sum::<f64>()
                / steps.max(1) as f64,
            round_trip_us: self.round_trip_us,
            server_us: per_step(super::statements::toplevel_ms(&statements)),
            commit_flush_us: per_step(wal.wal_sync_time),
        };
        eprintln!(
            "database probes: {} statements, {} functions, {} wait samples over {elapsed:.1?}",
            statements.len(),
            functions.len(),
            waits.busy()
        );
        self.admin.close().await;
        self.profiled.close().await;
        Ok(DatabaseProfile {
            steps,
            statements,
            functions,
            waits,
            wal,
            wal_timed,
            plans_file: (!plans.is_empty()).then(|| self.targets.plans_file.clone()),
            plans,
            perf_data,
            notes: self.notes,
            critical_path,
        })
    }
}

/// auto_explain's plans logged from `offset` of the server's log on,
/// summarized and written to the plans file.
fn plans(
    targets: &ProbeTargets,
    offset: Option<u64>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<PlanSummary>> {
    let (Some(log), Some(offset)) = (&targets.server_log, offset) else {
        return Ok(Vec::new());
    };
    let summaries = plans::summarize(&plans::parse(&plans::read_from(log, offset)?));
    if summaries.is_empty() {
        notes.push(format!(
            "no plans: auto_explain logged nothing to {} (is it installed with the server?)",
            log.display()
        ));
        return Ok(summaries);
    }
    plans::write(
        &summaries,
        &format!("auto_explain plans of {}", targets.database),
        &targets.plans_file,
    )?;
    Ok(summaries)
}

/// How long perf may take to attach to the backends.
const PERF_START: Duration = Duration::from_secs(10);

/// perf recording the backends, once it has attached to them.
async fn record_backends(backends: &[u32], output: &Path) -> anyhow::Result<Recording> {
    let mut recording = perf::record(backends, output)?;
    recording.started(PERF_START).await?;
    Ok(recording)
}

/// The backends of the engine's sessions (its pools name themselves
/// `tasker`) on `database`.
async fn engine_backends(pool: &PgPool, database: &str) -> anyhow::Result<Vec<u32>> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tasker'",
    )
    .bind(database)
    .fetch_all(pool)
    .await?;
    Ok(pids.into_iter().map(|p| p as u32).collect())
}

/// The median round trip of a trivial prepared statement, µs: what every
/// statement the engine sends costs on top of its execution.
async fn round_trip_us(pool: &PgPool) -> anyhow::Result<f64> {
    let mut connection = pool.acquire().await?;
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&mut *connection).await?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

async fn setting_on(pool: &PgPool, name: &str) -> anyhow::Result<bool> {
    let value: String = sqlx::query_scalar("SELECT current_setting($1)")
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(value == "on")
}

/// User and system CPU of the processes so far, in clock ticks; a
/// process that is gone counts nothing.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| process_ticks(&stat))
        .sum()
}

/// utime + stime from a /proc/<pid>/stat line (fields 14 and 15; the
/// command name, in parentheses, may hold spaces).
fn process_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The database's name in a connection URL.
pub fn database_name(url: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(url).context("the database URL is not a URL")?;
    Ok(url.path().trim_start_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_from_proc_stat() {
        let line = "4242 (tasker worker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(process_ticks(line), Some(325));
        assert_eq!(process_ticks("garbage"), None);
        assert_eq!(cpu_ticks(&[u32::MAX]), 0);
    }

    #[test]
    fn the_database_is_the_urls_path() {
        assert_eq!(
            database_name("postgres://u@localhost:5432/bench_linear_x?sslmode=disable").unwrap(),
            "bench_linear_x"
        );
    }
}
