//! Throughput: an open-loop load. Tasks arrive on a fixed schedule
//! (`rate` per second for `duration`) whether or not earlier ones have
//! finished, so a slow engine shows up as growing latency instead of a
//! politely slower client. Each task's latency runs from its scheduled
//! arrival to its completion notification.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use sqlx::PgPool;
use tasker_engine::{TaskState, TaskerClient};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use super::costs::Counters;
use super::latency::Requests;
use crate::result::{PostgresLoad, Summary, ThroughputPoint};

/// At most this many task creations in flight, so a stalled database
/// cannot make the harness open unbounded connections.
const MAX_IN_FLIGHT_CREATES: usize = 256;

/// How one task of an open-loop run ended.
pub(crate) enum Finished<Id> {
    Complete(Id),
    TimedOut,
    Failed,
}

/// What the tasks of one rate did.
pub(crate) struct Outcomes<Id> {
    pub latencies_us: Vec<u64>,
    pub tasks: Vec<Id>,
    pub submitted: u64,
    pub timed_out: u64,
    pub failed: u64,
    /// The first arrival and the last completion.
    pub start: Instant,
    pub last_completion: Option<Instant>,
}

impl<Id> Outcomes<Id> {
    /// From the first arrival to the last completion (the planned duration
    /// when nothing completed), seconds.
    pub fn span_seconds(&self, duration: Duration) -> f64 {
        self.last_completion
            .map_or(duration, |l| l - self.start)
            .as_secs_f64()
            .max(1e-9)
    }
}

/// Open-loop arrivals: `rate` tasks a second for `duration`, each started
/// on schedule by `task` (which holds the create permit only while it
/// creates its task, then waits for it) whether or not earlier ones have
/// finished. Latency runs from each task's scheduled arrival.
pub(crate) async fn open_loop<Id, F, Fut>(
    rate: f64,
    duration: Duration,
    progress: &ProgressBar,
    mut task: F,
) -> anyhow::Result<Outcomes<Id>>
where
    Id: Send + 'static,
    F: FnMut(OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = Finished<Id>> + Send + 'static,
{
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let creates = Arc::new(Semaphore::new(MAX_IN_FLIGHT_CREATES));
    let start = Instant::now();
    let outcomes = Arc::new(Mutex::new(Outcomes {
        latencies_us: Vec::new(),
        tasks: Vec::new(),
        submitted: total,
        timed_out: 0,
        failed: 0,
        start,
        last_completion: None,
    }));
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        let permit = creates.clone().acquire_owned().await?;
        let (finished, outcomes, progress) = (task(permit), outcomes.clone(), progress.clone());
        handles.push(tokio::spawn(async move {
            let finished = finished.await;
            let done = Instant::now();
            let mut outcomes = outcomes.lock().await;
            match finished {
                Finished::Complete(task) => {
                    outcomes
                        .latencies_us
                        .push((done - scheduled).as_micros() as u64);
                    outcomes.tasks.push(task);
                    outcomes.last_completion =
                        Some(outcomes.last_completion.map_or(done, |l| l.max(done)));
                }
                Finished::TimedOut => outcomes.timed_out += 1,
                Finished::Failed => outcomes.failed += 1,
            }
            progress.inc(1);
        }));
    }
    for handle in handles {
        handle.await?;
    }
    let outcomes = Arc::try_unwrap(outcomes)
        .map_err(|_| anyhow::anyhow!("tasks still running"))?
        .into_inner();
    anyhow::ensure!(
        outcomes.failed == 0,
        "{} tasks at {rate}/s did not complete",
        outcomes.failed
    );
    Ok(outcomes)
}

/// The point of one rate: the tasks' outcomes, the steps they ran and the
/// database's counters around them.
pub(crate) fn point<Id>(
    rate: f64,
    duration: Duration,
    outcomes: &Outcomes<Id>,
    steps: u64,
    before: &Counters,
    after: &Counters,
) -> ThroughputPoint {
    let span = outcomes.span_seconds(duration);
    let completed = outcomes.latencies_us.len() as u64;
    ThroughputPoint {
        target_rate: rate,
        duration_seconds: duration.as_secs_f64(),
        submitted: outcomes.submitted,
        completed,
        timed_out: outcomes.timed_out,
        achieved_tasks_per_second: completed as f64 / span,
        achieved_steps_per_second: steps as f64 / span,
        latency: Summary::of(&outcomes.latencies_us),
        postgres: PostgresLoad {
            commits_per_second: after.commits_since(before) as f64 / span,
            wal_bytes_per_second: after.wal_bytes_since(before) as f64 / span,
        },
    }
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
    let before = Counters::read(pool).await?;
    let outcomes = open_loop(rate, duration, progress, |permit| {
        let (client, request) = (client.clone(), requests.next());
        async move {
            let watched = client.create_and_watch(&request).await;
            drop(permit);
            let state = match watched {
                Ok(watch) => {
                    let task = watch.created().task_uuid;
                    watch.wait(timeout).await.map(|state| (task, state))
                }
                Err(error) => Err(error),
            };
            match state {
                Ok((task, TaskState::Complete)) => Finished::Complete(task),
                Err(tasker_engine::client::ClientError::Timeout { .. }) => Finished::TimedOut,
                _ => Finished::Failed,
            }
        }
    })
    .await?;
    let after = Counters::read(pool)
        .await?
        .with_commits_since(pool, &before)
        .await;
    // The completed tasks' own steps, counted after the counters were read
    // (a batch task makes its batches' steps at run time).
    let steps = super::steps_of(pool, &outcomes.tasks).await?;
    let point = point(rate, duration, &outcomes, steps.total, &before, &after);
    Ok((point, outcomes.tasks))
}
