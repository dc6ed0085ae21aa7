//! Latency: tasks one at a time after a warm-up, each timed from submit to
//! the completion notification.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use tasker_engine::{TaskRequest, TaskState, TaskerClient};
use uuid::Uuid;

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

/// The measured tasks: their latencies and uuids (for phases and checks).
pub async fn measure(
    client: &TaskerClient,
    requests: &mut Requests,
    samples: u64,
    warmup: u64,
    timeout: Duration,
    progress: &ProgressBar,
) -> anyhow::Result<(LatencyResult, Vec<Uuid>)> {
    let mut samples_us = Vec::with_capacity(samples as usize);
    let mut tasks = Vec::with_capacity(samples as usize);
    let wall = Instant::now();
    for _ in 0..samples {
        let (task, elapsed) = one_task(client, &requests.next(), timeout).await?;
        samples_us.push(elapsed.as_micros() as u64);
        tasks.push(task);
        progress.inc(1);
    }
    let wall_seconds = wall.elapsed().as_secs_f64();
    Ok((
        LatencyResult {
            warmup,
            summary: Summary::of(&samples_us),
            samples_us,
            wall_seconds,
            tasks_per_second: samples as f64 / wall_seconds,
        },
        tasks,
    ))
}
