//! The result processor: drains `orchestration_step_results` in batches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::OrchestrationConfig;
use crate::database::{Dedicated, Outage};
use crate::state::TaskState;

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
                Ok(evaluated) => {
                    outage.recovered("processing step results");
                    for row in &evaluated {
                        tracing::debug!(task = ?row.task_uuid, state = ?row.task_state,
                            enqueued = row.enqueued, "task evaluated");
                        if let Some(at) = row.next_retry_at {
                            retries.push(Reverse(instant_of(at)));
                        }
                    }
                    let taken = evaluated.first().map_or(0, |r| r.batch_messages);
                    taken < self.config.result_batch_size
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
    async fn process_batch(&mut self) -> Result<Vec<Evaluated>, sqlx::Error> {
        let evaluated =
            sqlx::query_as::<_, Evaluated>("SELECT * FROM tasker.process_step_results($1)")
                .bind(self.config.result_batch_size)
                .fetch_all(self.connection.connection().await?)
                .await;
        self.connection.checked(evaluated)
    }
}

/// When, on this process's clock, a database timestamp comes round (plus a
/// millisecond, so the message is surely visible when we look).
fn instant_of(at: DateTime<Utc>) -> Instant {
    let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + wait + Duration::from_millis(1)
}
