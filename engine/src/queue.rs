//! Queue names and wake-ups.
//!
//! Queues are pgmq queues in the same database; the SQL functions that send
//! to a queue also `pg_notify(<queue name>, '')`. A [`Wakeups`] listener
//! turns those notifications into [`tokio::sync::Notify`] permits, one per
//! channel. A permit is stored when nobody is waiting, so a notification
//! that arrives while every consumer is busy is not lost: the consumer's
//! next wait returns at once and it drains the queue again. Consumers
//! always drain until a read comes back short before they wait, and wait
//! with a slow fallback timeout as a safety net only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::telemetry::spawn_named;

/// Step results (and due retries) for orchestration.
pub const STEP_RESULTS_QUEUE: &str = "orchestration_step_results";
/// Notified with `<task uuid>:<final state>` when a task completes or errs.
pub const TASK_FINALIZED_CHANNEL: &str = "tasker_task_finalized";

/// The queue a namespace's steps are sent to.
pub fn worker_queue(namespace: &str) -> String {
    format!("worker_{namespace}_queue")
}

/// The SQL name of one of a worker queue's own functions (`claim`,
/// `submit`, `send`), made by `tasker.create_worker_queue` with static SQL
/// so their plans are cached. Quoted as PostgreSQL's `%I` would.
pub fn queue_function(prefix: &str, queue: &str) -> String {
    let name = format!("{prefix}_{queue}").replace('"', "\"\"");
    format!("tasker.\"{name}\"")
}

/// Wake-ups for a set of notification channels, fed by one LISTEN
/// connection in a background task.
#[derive(Clone)]
pub struct Wakeups {
    by_channel: Arc<HashMap<String, Arc<Notify>>>,
}

impl Wakeups {
    /// LISTEN on `channels` and keep forwarding notifications until
    /// `shutdown` is cancelled. Returns once the LISTENs are in place, so
    /// nothing sent after this returns can be missed.
    pub async fn listen(
        pool: &PgPool,
        channels: &[String],
        shutdown: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        let names: Vec<&str> = channels.iter().map(String::as_str).collect();
        listener.listen_all(names).await?;
        let by_channel: HashMap<String, Arc<Notify>> = channels
            .iter()
            .map(|c| (c.clone(), Arc::new(Notify::new())))
            .collect();
        let wakeups = Self {
            by_channel: Arc::new(by_channel),
        };
        let forwarder = wakeups.clone();
        spawn_named("wakeup-listener", async move {
            forwarder.forward(listener, shutdown).await
        });
        Ok(wakeups)
    }

    async fn forward(&self, mut listener: PgListener, shutdown: CancellationToken) {
        loop {
            // Biased: at shutdown the pool closes right after the token is
            // cancelled, and the listener's error must not win the race
            // and be logged as a failure.
            let received = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    if let Some(notify) = self.by_channel.get(notification.channel()) {
                        notify.notify_one();
                    }
                }
                // The connection dropped and notifications may have been
                // lost while it was down: wake everyone to drain.
                Ok(None) => self.wake_all(),
                Err(_) if shutdown.is_cancelled() => return,
                Err(error) => {
                    tracing::warn!(%error, "notification listener failed; retrying in 1 s");
                    self.wake_all();
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    fn wake_all(&self) {
        self.by_channel.values().for_each(|n| n.notify_one());
    }

    /// The wake-up for one channel. Panics if the channel was not listened
    /// to: that is a wiring bug, not a runtime condition.
    pub fn channel(&self, channel: &str) -> Arc<Notify> {
        self.by_channel
            .get(channel)
            .unwrap_or_else(|| panic!("not listening on channel {channel}"))
            .clone()
    }
}

/// Wait for a wake-up on `notify`, or until `timeout` passes (the fallback
/// poll), or shutdown. Returns false on shutdown.
pub async fn wait(notify: &Notify, timeout: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = notify.notified() => true,
        _ = tokio::time::sleep(timeout) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_functions_are_quoted_like_format_i() {
        assert_eq!(
            queue_function("claim", "worker_linear_queue"),
            r#"tasker."claim_worker_linear_queue""#
        );
        assert_eq!(
            queue_function("submit", r#"worker_a"b_queue"#),
            r#"tasker."submit_worker_a""b_queue""#
        );
    }
}
