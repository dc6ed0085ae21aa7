//! The result processor: drains `orchestration_step_results` in batches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::OrchestrationConfig;
use crate::database::{Dedicated, Outage};
use crate::state::TaskState;

/// The plain completions of a batch, taken in one statement (its header
/// says when a task is left to `tasker.process_step_results`).
const COMPLETE_STEPS: &str = include_str!("../../sql/statements/complete_steps.sql");

/// `complete_steps.sql` as a worker sends it in its submit's transaction,
/// for the orchestration messages that submit wrote (`$1`, an array of
/// msg_ids): its two lines marked `-- worker:` replaced (the statement's
/// header says why).
pub(crate) static WORKER_COMPLETE_STEPS: LazyLock<String> =
    LazyLock::new(|| for_worker(COMPLETE_STEPS));

fn for_worker(statement: &str) -> String {
    let mut replaced = 0;
    let lines: Vec<&str> = statement
        .lines()
        .map(|line| {
            if line.ends_with("-- worker: picked") {
                replaced += 1;
                "     WHERE q.msg_id = ANY ($1::bigint[])"
            } else if line.ends_with("-- worker: locked") {
                replaced += 1;
                "       FOR NO KEY UPDATE SKIP LOCKED"
            } else {
                line
            }
        })
        .collect();
    assert_eq!(replaced, 2, "complete_steps.sql lost a `-- worker:` line");
    lines.join("\n")
}

/// What the plain completions statement (`engine/sql/statements/complete_steps.sql`) did.
#[derive(Debug, sqlx::FromRow)]
pub struct Completed {
    /// Messages looked at (at most the batch size).
    pub looked_at: i32,
    /// Messages taken: plain completions of tasks it could decide.
    pub taken: i32,
    pub finished: i32,
    pub enqueued: i32,
}

impl Completed {
    /// Messages looked at and left to the function.
    pub fn left(&self) -> i32 {
        self.looked_at - self.taken
    }
}

/// One batch of results processed ([`process_results`]).
#[derive(Debug)]
pub struct Processed {
    pub completed: Completed,
    /// The function's rows, when it ran.
    evaluated: Vec<Evaluated>,
}

/// Processes a batch of at most `batch` result messages on `conn`: the
/// plain completions in one statement, then, only when that left messages
/// (other results, retries, tasks it could not decide), the function,
/// which takes any message. Two transactions: what the first committed is
/// not taken again.
pub async fn process_results(
    conn: &mut PgConnection,
    batch: i32,
) -> Result<Processed, sqlx::Error> {
    let completed = sqlx::query_as::<_, Completed>(COMPLETE_STEPS)
        .bind(i64::from(batch))
        .fetch_one(&mut *conn)
        .await?;
    let evaluated = if completed.left() == 0 {
        Vec::new()
    } else {
        sqlx::query_as::<_, Evaluated>("SELECT * FROM tasker.process_step_results($1)")
            .bind(batch)
            .fetch_all(conn)
            .await?
    };
    Ok(Processed {
        completed,
        evaluated,
    })
}

#[derive(Debug, sqlx::FromRow)]
struct Evaluated {
    /// None on the one row of a batch whose messages were all rejected.
    task_uuid: Option<Uuid>,
    task_state: Option<TaskState>,
    enqueued: i32,
    next_retry_at: Option<DateTime<Utc>>,
    batch_messages: i32,
}

pub(crate) struct ResultProcessor {
    pub connection: Dedicated,
    pub wakeup: Arc<Notify>,
    pub config: OrchestrationConfig,
    pub shutdown: CancellationToken,
}

impl ResultProcessor {
    pub async fn run(mut self) {
        // Earliest retries this processor scheduled: a retry's message
        // becomes visible when its backoff has passed, without a
        // notification, so the processor wakes itself then.
        let mut retries: BinaryHeap<Reverse<Instant>> = BinaryHeap::new();
        let mut outage = Outage::default();
        loop {
            let drained = match self.process_batch().await {
                Ok(Processed {
                    completed,
                    evaluated,
                }) => {
                    outage.recovered("processing step results");
                    tracing::debug!(
                        taken = completed.taken,
                        finished = completed.finished,
                        enqueued = completed.enqueued,
                        "plain completions"
                    );
                    for row in &evaluated {
                        tracing::debug!(task = ?row.task_uuid, state = ?row.task_state,
                            enqueued = row.enqueued, "task evaluated");
                        if let Some(at) = row.next_retry_at {
                            retries.push(Reverse(instant_of(at)));
                        }
                    }
                    let batch = self.config.result_batch_size;
                    match evaluated.first() {
                        Some(row) => row.batch_messages < batch,
                        None => completed.looked_at < batch,
                    }
                }
                Err(error) => {
                    // The batch rolled back: its messages are there again.
                    outage.failed("processing step results", &error);
                    true
                }
            };
            if !drained {
                continue;
            }
            let now = Instant::now();
            while retries.peek().is_some_and(|Reverse(at)| *at <= now) {
                retries.pop();
            }
            let fallback = now + self.config.fallback_poll();
            let deadline = retries
                .peek()
                .map_or(fallback, |Reverse(at)| (*at).min(fallback));
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    #[tracing::instrument(name = "process_step_results", level = "debug", skip_all)]
    async fn process_batch(&mut self) -> Result<Processed, sqlx::Error> {
        let batch = self.config.result_batch_size;
        let processed = process_results(self.connection.connection().await?, batch).await;
        self.connection.checked(processed)
    }
}

/// When, on this process's clock, a database timestamp comes round (plus a
/// millisecond, so the message is surely visible when we look).
fn instant_of(at: DateTime<Utc>) -> Instant {
    let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + wait + Duration::from_millis(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_variant_picks_its_messages_and_skips_locked_tasks() {
        let worker = &*WORKER_COMPLETE_STEPS;
        assert!(worker.contains("WHERE q.msg_id = ANY ($1::bigint[])"));
        assert!(worker.contains("FOR NO KEY UPDATE SKIP LOCKED"));
        assert!(!worker.contains("LIMIT $1"));
        assert!(COMPLETE_STEPS.contains("LIMIT $1"));
        assert_eq!(worker.lines().count(), COMPLETE_STEPS.lines().count());
    }
}
