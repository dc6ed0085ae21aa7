//! Throughput: an open-loop load. Tasks arrive on a fixed schedule
//! (`rate` per second for `duration`) whether or not earlier ones have
//! finished, so a slow engine shows up as growing latency instead of a
//! politely slower client. Each task's latency runs from its scheduled
//! arrival to its completion notification.

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use sqlx::PgPool;
use tasker_engine::{TaskState, TaskerClient};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use super::costs::Counters;
use super::latency::Requests;
use crate::result::{PostgresLoad, Summary, ThroughputPoint};

/// At most this many task creations in flight, so a stalled database
/// cannot make the harness open unbounded connections.
const MAX_IN_FLIGHT_CREATES: usize = 256;

#[derive(Default)]
struct Outcomes {
    latencies_us: Vec<u64>,
    tasks: Vec<Uuid>,
    timed_out: u64,
    failed: u64,
    last_completion: Option<Instant>,
}

pub async fn run_rate(
    client: &TaskerClient,
    pool: &PgPool,
    requests: &mut Requests,
    rate: f64,
    duration: Duration,
    timeout: Duration,
    progress: &ProgressBar,
) -> anyhow::Result<(ThroughputPoint, Vec<Uuid>)> {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let creates = Arc::new(Semaphore::new(MAX_IN_FLIGHT_CREATES));
    let before = Counters::read(pool).await?;
    let start = Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        let permit = creates.clone().acquire_owned().await?;
        let (client, request, outcomes, progress) = (
            client.clone(),
            requests.next(),
            outcomes.clone(),
            progress.clone(),
        );
        handles.push(tokio::spawn(async move {
            let created = client.create_task(&request).await;
            drop(permit);
            let state = match created {
                Ok(created) => client
                    .wait_for_completion(created.task_uuid, timeout)
                    .await
                    .map(|state| (created.task_uuid, state)),
                Err(error) => Err(error),
            };
            let done = Instant::now();
            let mut outcomes = outcomes.lock().await;
            match state {
                Ok((task, TaskState::Complete)) => {
                    outcomes
                        .latencies_us
                        .push((done - scheduled).as_micros() as u64);
                    outcomes.tasks.push(task);
                    outcomes.last_completion =
                        Some(outcomes.last_completion.map_or(done, |l| l.max(done)));
                }
                Err(tasker_engine::client::ClientError::Timeout { .. }) => outcomes.timed_out += 1,
                _ => outcomes.failed += 1,
            }
            progress.inc(1);
        }));
    }
    for handle in handles {
        handle.await?;
    }
    let after = Counters::read(pool).await?;
    let outcomes = Arc::try_unwrap(outcomes)
        .map_err(|_| anyhow::anyhow!("tasks still running"))?
        .into_inner();
    anyhow::ensure!(
        outcomes.failed == 0,
        "{} tasks at {rate}/s did not complete",
        outcomes.failed
    );
    let span = outcomes
        .last_completion
        .map_or(duration, |l| l - start)
        .as_secs_f64()
        .max(1e-9);
    let completed = outcomes.latencies_us.len() as u64;
    // The completed tasks' own steps, counted after the counters were read
    // (a batch task makes its batches' steps at run time).
    let steps = super::steps_of(pool, &outcomes.tasks).await?;
    let point = ThroughputPoint {
        target_rate: rate,
        duration_seconds: duration.as_secs_f64(),
        submitted: total,
        completed,
        timed_out: outcomes.timed_out,
        achieved_tasks_per_second: completed as f64 / span,
        achieved_steps_per_second: steps.total as f64 / span,
        latency: Summary::of(&outcomes.latencies_us),
        postgres: PostgresLoad {
            commits_per_second: after.commits_since(&before) as f64 / span,
            wal_bytes_per_second: after.wal_bytes_since(&before) as f64 / span,
        },
    };
    Ok((point, outcomes.tasks))
}
