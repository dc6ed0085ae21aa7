//! End-to-end latency of the linear 4-step task in embedded mode, and what
//! each step costs the database.
//!
//!     cargo run --release -p tasker-engine --example linear_latency -- [samples] [warmup]
//!
//! Starts a throwaway PostgreSQL cluster (durable settings: fsync on,
//! synchronous_commit on; pg_stat_statements loaded), runs `warmup` tasks,
//! then `samples` tasks one at a time, each timed from the client's submit
//! to the completion notification. Prints latency percentiles (HDR
//! histogram, microseconds), then statements and WAL per step from
//! pg_stat_statements and pg_stat_wal. Where a step's time goes (phases)
//! is reported by the harness: `tasker-harness run --scenario linear`.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use pg_local::ClusterOptions;
use serde_json::json;
use sqlx::PgPool;
use tasker_engine::config::TaskerConfig;
use tasker_engine::orchestration::maintenance;
use tasker_engine::{Embedded, TaskRequest, TaskState};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let samples: u64 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let warmup: u64 = args.next().map_or(Ok(100), |a| a.parse())?;

    // PG_SETTINGS="name=value,..." adds server settings, for experiments.
    let mut settings = vec![
        (
            "shared_preload_libraries".to_string(),
            "pg_stat_statements".to_string(),
        ),
        (
            "pg_stat_statements.track".to_string(),
            std::env::var("PGSS_TRACK").unwrap_or("top".into()),
        ),
    ];
    for pair in std::env::var("PG_SETTINGS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair
            .split_once('=')
            .context("PG_SETTINGS: expected name=value")?;
        settings.push((name.to_string(), value.to_string()));
    }
    let cluster = ClusterOptions {
        fsync: true,
        settings,
    };
    let template = tasker_scenarios::template("linear_workflow").expect("linear template");
    let engine = Embedded::start_local(
        &cluster,
        TaskerConfig::default(),
        &[template],
        tasker_scenarios::registry(),
    )
    .await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&engine.pool)
        .await?;

    let mut sequence = 0u64;
    let mut run = |engine: &Embedded| {
        sequence += 1;
        let request = TaskRequest::new(
            "linear",
            "linear_workflow",
            "1.0.0",
            json!({"even_number": 2}),
        )
        .with_idempotency_key(format!("latency-{sequence}"));
        let client = engine.client.clone();
        async move {
            let started = Instant::now();
            let (_, state) = client.run_task(&request, Duration::from_secs(60)).await?;
            anyhow::ensure!(state == TaskState::Complete, "task ended {state}");
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    for _ in 0..warmup {
        run(&engine).await?;
    }
    // Orchestration's maintenance pass (every 5 s while the engine runs)
    // analyzes the tables the warm-up grew; run it now, so the measured
    // tasks see the steady state instead of the first seconds' plans.
    tokio::time::sleep(Duration::from_millis(1100)).await; // table statistics flush
    maintenance::run_once(&engine.pool, &TaskerConfig::default().orchestration).await?;

    let before = Counters::read(&engine.pool).await?;
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut tenths = vec![Histogram::<u64>::new(3)?; 10];
    let wall = Instant::now();
    for i in 0..samples {
        let us = run(&engine).await?.as_micros() as u64;
        histogram.record(us)?;
        tenths[(i * 10 / samples.max(1)) as usize].record(us)?;
    }
    let wall = wall.elapsed();
    let after = Counters::read(&engine.pool).await?;

    let ms = |us: u64| us as f64 / 1000.0;
    println!("linear (4 steps), embedded, {samples} tasks after {warmup} warm-up, one at a time:");
    println!(
        "  p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms   max {:.2} ms   mean {:.2} ms   ({:.0} tasks/s)",
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.95)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max()),
        histogram.mean() / 1000.0,
        samples as f64 / wall.as_secs_f64(),
    );
    let drift: Vec<String> = tenths
        .iter()
        .map(|h| format!("{:.2}", ms(h.value_at_quantile(0.5))))
        .collect();
    println!("  p50 by tenth of the run: {}", drift.join(" "));
    let steps = (samples * 4) as f64;
    println!("per step (deltas over the measured tasks / {steps} steps):");
    println!(
        "  WAL records {:.1}   WAL bytes {:.0}   WAL syncs (commits that waited for disk) {:.2}",
        (after.wal_records - before.wal_records) as f64 / steps,
        (after.wal_bytes - before.wal_bytes) as f64 / steps,
        (after.wal_sync - before.wal_sync) as f64 / steps,
    );
    println!("statements per step (pg_stat_statements, top level):");
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, mean_exec_time FROM pg_stat_statements
          WHERE toplevel AND calls >= $1 / 10 AND query NOT ILIKE '%pg_stat%' ORDER BY calls DESC",
    )
    .bind(samples as i64)
    .fetch_all(&engine.pool)
    .await?;
    for (query, calls, mean_ms) in rows {
        let query: String = query.chars().take(80).collect();
        println!(
            "  {:>6.2} per step, {:>6.3} ms each  {query}",
            calls as f64 / (steps + warmup as f64 * 4.0),
            mean_ms
        );
    }
    let dead: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, n_live_tup, n_dead_tup, vacuum_count + autovacuum_count, analyze_count + autoanalyze_count
           FROM pg_stat_user_tables ORDER BY n_dead_tup DESC LIMIT 6",
    )
    .fetch_all(&engine.pool)
    .await?;
    for (table, live, dead, vacuums, analyzes) in dead {
        println!(
            "  {table}: {live} live, {dead} dead rows, {vacuums} vacuums, {analyzes} analyzes"
        );
    }
    if std::env::var("PGSS_TRACK").as_deref() == Ok("all") {
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time FROM pg_stat_statements
              WHERE NOT toplevel ORDER BY total_exec_time DESC LIMIT 50",
        )
        .fetch_all(&engine.pool)
        .await?;
        for (query, calls, total) in rows {
            let query: String = query.chars().take(110).collect();
            println!("  {total:>8.1} ms {calls:>7} calls  {query}");
        }
    }
    engine.shutdown().await;
    Ok(())
}

/// Cumulative database counters, read before and after the measured run.
struct Counters {
    wal_records: i64,
    wal_bytes: i64,
    wal_sync: i64,
}

impl Counters {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        // Statistics are flushed by backends at most once a second or at
        // transaction end when idle; force ours and give others a moment.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (wal_records, wal_bytes, wal_sync): (i64, i64, i64) =
            sqlx::query_as("SELECT wal_records, wal_bytes::bigint, wal_sync FROM pg_stat_wal")
                .fetch_one(pool)
                .await?;
        Ok(Self {
            wal_records,
            wal_bytes,
            wal_sync,
        })
    }
}
