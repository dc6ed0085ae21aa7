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

use sqlx::postgres::{PgListener, PgNotification};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::database::Outage;
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
    format!("tasker.{}", quoted(&format!("{prefix}_{queue}")))
}

/// The SQL name of a queue's pgmq table (`pgmq.q_<queue>`), quoted as
/// PostgreSQL's `%I` would.
pub fn queue_table(queue: &str) -> String {
    format!("pgmq.{}", quoted(&format!("q_{queue}")))
}

/// An identifier in double quotes, its own double quotes doubled.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A LISTEN connection that survives its connection: when the connection
/// drops (PostgreSQL restarted, the session was terminated), it connects
/// again with backoff, LISTENs again on every channel, and then says so
/// with [`Received::Reconnected`], because whatever was notified while it
/// was down was missed and its owner must look for itself. Without that,
/// a lost LISTEN is a silent stall until the fallback poll.
pub struct Listener {
    pool: PgPool,
    channels: Vec<String>,
    connection: Option<PgListener>,
    outage: Outage,
}

pub enum Received {
    Notification(PgNotification),
    Reconnected,
}

impl Listener {
    /// LISTEN on `channels`; returns once the LISTENs are in place, so
    /// nothing sent after this returns can be missed.
    pub async fn connect(pool: &PgPool, channels: &[String]) -> Result<Self, sqlx::Error> {
        let connection = Self::open(pool, channels).await?;
        Ok(Self {
            pool: pool.clone(),
            channels: channels.to_vec(),
            connection: Some(connection),
            outage: Outage::default(),
        })
    }

    async fn open(pool: &PgPool, channels: &[String]) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener
            .listen_all(channels.iter().map(String::as_str))
            .await?;
        Ok(listener)
    }

    /// The next notification, or `Reconnected` after an outage; None at
    /// shutdown.
    pub async fn recv(&mut self, shutdown: &CancellationToken) -> Option<Received> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(connection) = self.connection.as_mut() else {
                // Biased: at shutdown the pool closes right after the token
                // is cancelled, and that error must not be logged.
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return None,
                    opened = Self::open(&self.pool, &self.channels) => match opened {
                        Ok(connection) => {
                            self.connection = Some(connection);
                            self.outage.recovered("listening for notifications");
                            return Some(Received::Reconnected);
                        }
                        Err(error) => self.outage.failed("listening for notifications", &error),
                    },
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            };
            let received = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                received = connection.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => return Some(Received::Notification(notification)),
                _ if shutdown.is_cancelled() => return None,
                Ok(None) => {
                    self.outage
                        .failed("listening for notifications", &"connection lost");
                    self.connection = None;
                }
                Err(error) => {
                    self.outage.failed("listening for notifications", &error);
                    self.connection = None;
                }
            }
        }
    }
}

/// Wake-ups for a set of notification channels, fed by one [`Listener`]
/// in a background task.
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
        let listener = Listener::connect(pool, channels).await?;
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

    async fn forward(&self, mut listener: Listener, shutdown: CancellationToken) {
        while let Some(received) = listener.recv(&shutdown).await {
            match received {
                Received::Notification(notification) => {
                    if let Some(notify) = self.by_channel.get(notification.channel()) {
                        notify.notify_one();
                    }
                }
                // Notifications may have been lost while the connection
                // was down: wake everyone to drain.
                Received::Reconnected => self.wake_all(),
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
    fn queue_functions_and_tables_are_quoted_like_format_i() {
        assert_eq!(
            queue_function("claim", "worker_linear_queue"),
            r#"tasker."claim_worker_linear_queue""#
        );
        assert_eq!(
            queue_function("submit", r#"worker_a"b_queue"#),
            r#"tasker."submit_worker_a""b_queue""#
        );
        assert_eq!(
            queue_table(r#"worker_a"b_queue"#),
            r#"pgmq."q_worker_a""b_queue""#
        );
    }
}
