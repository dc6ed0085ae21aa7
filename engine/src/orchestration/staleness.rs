//! The staleness detector: finds work that is due but that nobody was told
//! about, and wakes its consumers.
//!
//! Notifications make the hot path event driven, but some work becomes due
//! without one: a claim's lease lapses when its worker died (its message is
//! visible again, silently), a retry's delayed message comes due after the
//! orchestrator that set its timer died, a notification is sent while a
//! consumer's LISTEN connection is down. Every `staleness_interval_ms` an
//! orchestrator notifies each queue that holds a visible message, so a
//! lapsed lease is re-claimed within the interval rather than at the
//! consumers' slow fallback poll.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::OrchestrationConfig;
use crate::database::Outage;

/// One pass: the queues whose consumers were woken.
pub async fn run_once(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT * FROM tasker.notify_visible_work()")
        .fetch_all(pool)
        .await
}

/// Run a pass every `staleness_interval_ms` until shutdown.
pub(crate) async fn run(pool: PgPool, config: OrchestrationConfig, shutdown: CancellationToken) {
    let interval = std::time::Duration::from_millis(config.staleness_interval_ms);
    let mut outage = Outage::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match run_once(&pool).await {
            Ok(woken) => {
                outage.recovered("the staleness detector");
                if !woken.is_empty() {
                    tracing::trace!(?woken, "woke consumers of visible work");
                }
            }
            Err(error) => outage.failed("the staleness detector", &error),
        }
    }
}
