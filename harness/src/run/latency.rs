//! Latency: tasks one at a time after a warm-up, each timed from submit to
//! the completion notification.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tasker_engine::{TaskRequest, TaskState, TaskerClient};
use uuid::Uuid;

use super::costs::Counters;
use crate::result::{LatencyResult, Summary};

/// Requests with unique idempotency keys (the same context would otherwise
/// be the same task).
pub struct Requests {
    base: TaskRequest,
    label: String,
    next: u64,
}

impl Requests {
    pub fn new(base: TaskRequest, label: &str) -> Self {
        Self {
            base,
            label: label.to_string(),
            next: 0,
        }
    }

    pub fn next(&mut self) -> TaskRequest {
        self.next += 1;
        self.base.clone().with_idempotency_key(format!(
            "{}-{}-{}",
            self.label,
            std::process::id(),
            self.next
        ))
    }
}

/// Run one task to completion; its latency, or an error naming the task.
pub async fn one_task(
    client: &TaskerClient,
    request: &TaskRequest,
    timeout: Duration,
) -> anyhow::Result<(Uuid, Duration)> {
    let started = Instant::now();
    let (task, state) = client.run_task(request, timeout).await?;
    let elapsed = started.elapsed();
    if state != TaskState::Complete {
        bail!("task {task} ended {state}, not complete");
    }
    Ok((task, elapsed))
}

pub async fn warm_up(
    client: &TaskerClient,
    requests: &mut Requests,
    count: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    for _ in 0..count {
        one_task(client, &requests.next(), timeout)
            .await
            .context("warm-up task")?;
    }
    Ok(())
}

/// A latency run in progress, whatever runs its tasks (the engine, or the
/// floor): the counters read before it, and each measured task with its
/// latency.
pub(crate) struct Samples<T> {
    pub timeout: Duration,
    warmup: u64,
    /// How many tasks to measure.
    pub count: u64,
    before: Counters,
    samples_us: Vec<u64>,
    tasks: Vec<T>,
}

impl<T> Samples<T> {
    pub fn new(timeout: Duration, warmup: u64, count: u64, before: Counters) -> Self {
        Self {
            timeout,
            warmup,
            count,
            before,
            samples_us: Vec::with_capacity(count as usize),
            tasks: Vec::with_capacity(count as usize),
        }
    }

    pub fn push(&mut self, task: T, elapsed: Duration) {
        self.samples_us.push(elapsed.as_micros() as u64);
        self.tasks.push(task);
    }

    pub fn tasks(&self) -> &[T] {
        &self.tasks
    }

    /// The counters read before the measured tasks.
    pub fn before(&self) -> &Counters {
        &self.before
    }

    /// The latency result, and the counters read before.
    pub fn finish(self) -> (LatencyResult, Counters) {
        (result(self.warmup, self.samples_us), self.before)
    }
}

/// The latency result of measured tasks run one at a time. Their wall
/// time is their latencies added up: a task's own time, whether the tasks
/// ran back to back or interleaved with another system's (`paired`).
fn result(warmup: u64, samples_us: Vec<u64>) -> LatencyResult {
    let wall_seconds = samples_us.iter().sum::<u64>() as f64 / 1e6;
    LatencyResult {
        warmup,
        summary: Summary::of(&samples_us),
        tasks_per_second: samples_us.len() as f64 / wall_seconds.max(1e-9),
        samples_us,
        wall_seconds,
    }
}
