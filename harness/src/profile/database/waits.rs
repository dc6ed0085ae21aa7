//! What the engine's backends are doing, sampled from pg_stat_activity
//! every few milliseconds: how much of their busy time is CPU, WAL flush,
//! locks, other I/O, or waiting on the client inside a transaction.
//!
//! PostgreSQL keeps no history of wait events, so sampling is the only
//! way to see them (as pg_wait_sampling does inside the server). Idle
//! backends are not counted: they have nothing to do.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// One busy backend as one sample saw it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Activity {
    pub state: String,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
}

/// Where a busy backend's time goes, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    /// Active and waiting on nothing: executing.
    Cpu,
    /// Writing or flushing WAL at commit (IO:WALSync, IO:WALWrite,
    /// LWLock:WALWrite).
    WalFlush,
    /// Heavyweight locks and lightweight locks other than the WAL's.
    Lock,
    /// Data file and other I/O.
    Io,
    /// Inside a transaction, waiting for the client's next statement.
    Client,
    Other,
}

impl Category {
    pub fn of(activity: &Activity) -> Self {
        if activity.state.starts_with("idle in transaction") {
            return Self::Client;
        }
        let event = activity.wait_event.as_deref().unwrap_or_default();
        match activity.wait_event_type.as_deref() {
            None => Self::Cpu,
            Some("IO") if event.starts_with("WAL") => Self::WalFlush,
            Some("LWLock") if event.starts_with("WAL") => Self::WalFlush,
            Some("Lock" | "LWLock") => Self::Lock,
            Some("IO") => Self::Io,
            Some("Client") => Self::Client,
            Some(_) => Self::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "CPU (executing)",
            Self::WalFlush => "WAL write and flush",
            Self::Lock => "locks",
            Self::Io => "other I/O",
            Self::Client => "client (idle in transaction)",
            Self::Other => "other waits",
        }
    }
}

/// Busy-backend samples by wait event (`type:event`, or `CPU`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitProfile {
    /// Sampling rounds taken.
    pub rounds: u64,
    /// Between rounds: a sample stands for this much of a backend's time.
    pub interval_us: u64,
    pub events: BTreeMap<String, u64>,
    pub categories: BTreeMap<Category, u64>,
}

impl WaitProfile {
    pub fn add(&mut self, activity: &Activity) {
        let event = match (&activity.wait_event_type, &activity.wait_event) {
            (Some(kind), Some(event)) => format!("{kind}:{event}"),
            _ if activity.state.starts_with("idle in transaction") => "idle in transaction".into(),
            _ => "CPU".into(),
        };
        *self.events.entry(event).or_default() += 1;
        *self.categories.entry(Category::of(activity)).or_default() += 1;
    }

    /// Busy-backend samples in all.
    pub fn busy(&self) -> u64 {
        self.categories.values().sum()
    }

    /// A category's backend time a step over `steps`, µs: each sample
    /// stands for one interval of one backend.
    pub fn per_step_us(&self, category: Category, steps: u64) -> f64 {
        let samples = self.categories.get(&category).copied().unwrap_or(0);
        (samples * self.interval_us) as f64 / steps.max(1) as f64
    }

    /// Each category's share of the busy samples and its estimated
    /// backend time a step, as a markdown table.
    pub fn markdown(&self, steps: u64) -> String {
        let busy = self.busy().max(1) as f64;
        let mut md = format!(
            "{} busy-backend samples in {} rounds, one every {} µs\n\n\
             | where | samples | share | ≈ µs a step |\n|---|---:|---:|---:|\n",
            self.busy(),
            self.rounds,
            self.interval_us
        );
        for (category, samples) in &self.categories {
            let share = 100.0 * *samples as f64 / busy;
            let _ = writeln!(
                md,
                "| {} | {samples} | {share:.1} % | {:.0} |",
                category.name(),
                self.per_step_us(*category, steps)
            );
        }
        md
    }
}

/// Samples the client backends of `database` every `interval` until
/// `stop`, from a connection of `pool` (whose own backend is left out).
pub async fn sample(
    pool: &PgPool,
    database: &str,
    interval: Duration,
    stop: CancellationToken,
) -> anyhow::Result<WaitProfile> {
    let mut profile = WaitProfile {
        interval_us: interval.as_micros() as u64,
        ..WaitProfile::default()
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut connection = pool.acquire().await?;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(profile),
            _ = ticks.tick() => {}
        }
        let busy: Vec<Activity> = sqlx::query_as(
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity
              WHERE datname = $1 AND backend_type = 'client backend'
                AND pid <> pg_backend_pid() AND state <> 'idle'",
        )
        .bind(database)
        .fetch_all(&mut *connection)
        .await?;
        profile.rounds += 1;
        busy.iter().for_each(|a| profile.add(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(state: &str, kind: Option<&str>, event: Option<&str>) -> Activity {
        Activity {
            state: state.into(),
            wait_event_type: kind.map(Into::into),
            wait_event: event.map(Into::into),
        }
    }

    #[test]
    fn samples_fall_into_categories_by_their_wait_event() {
        let cases = [
            (busy("active", None, None), Category::Cpu),
            (
                busy("active", Some("IO"), Some("WALSync")),
                Category::WalFlush,
            ),
            (
                busy("active", Some("LWLock"), Some("WALWrite")),
                Category::WalFlush,
            ),
            (
                busy("active", Some("Lock"), Some("transactionid")),
                Category::Lock,
            ),
            (
                busy("active", Some("LWLock"), Some("BufferContent")),
                Category::Lock,
            ),
            (
                busy("active", Some("IO"), Some("DataFileRead")),
                Category::Io,
            ),
            (
                busy("idle in transaction", Some("Client"), Some("ClientRead")),
                Category::Client,
            ),
            (
                busy("active", Some("Timeout"), Some("PgSleep")),
                Category::Other,
            ),
        ];
        for (activity, category) in cases {
            assert_eq!(Category::of(&activity), category, "{activity:?}");
        }
    }

    #[test]
    fn the_profile_counts_events_and_shares_busy_time() {
        let mut profile = WaitProfile {
            rounds: 4,
            interval_us: 5000,
            ..WaitProfile::default()
        };
        for activity in [
            busy("active", None, None),
            busy("active", None, None),
            busy("active", Some("IO"), Some("WALSync")),
            busy("idle in transaction", Some("Client"), Some("ClientRead")),
        ] {
            profile.add(&activity);
        }
        assert_eq!(profile.events["CPU"], 2);
        assert_eq!(profile.events["IO:WALSync"], 1);
        assert_eq!(profile.busy(), 4);
        // 2 samples of 5 ms over 10 steps: 1 ms of CPU a step.
        assert_eq!(profile.per_step_us(Category::Cpu, 10), 1000.0);
        assert_eq!(profile.per_step_us(Category::Lock, 10), 0.0);
        let md = profile.markdown(10);
        assert!(
            md.starts_with("4 busy-backend samples in 4 rounds, one every 5000 µs"),
            "{md}"
        );
        assert!(
            md.contains("| CPU (executing) | 2 | 50.0 % | 1000 |"),
            "{md}"
        );
        assert!(
            md.contains("| WAL write and flush | 1 | 25.0 % | 500 |"),
            "{md}"
        );
    }
}
