//! Claiming steps from one worker queue.

use std::sync::Arc;

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::WorkerConfig;
use crate::database::{Dedicated, Outage};
use crate::queue;

/// A step this worker owns until it reports a result.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ClaimedStep {
    pub msg_id: i64,
    pub task_uuid: Uuid,
    pub workflow_step_uuid: Uuid,
    pub step_name: String,
    pub step_type: String,
    pub handler_callable: String,
    pub handler_initialization: serde_json::Value,
    pub inputs: Option<serde_json::Value>,
    pub task_context: serde_json::Value,
    pub dependency_results: serde_json::Value,
    pub attempt: i32,
    pub timeout_seconds: i32,
    pub child_step_names: Vec<String>,
    /// Fences this claim: a result is recorded only under the step's
    /// current token, so a claim that lapsed cannot overwrite a newer one.
    pub claim_token: Uuid,
}

/// A claimed step on its way to a handler, with the queue it came from and
/// the permit that counts it against the concurrency bound.
pub(crate) struct Dispatch {
    pub step: ClaimedStep,
    pub queue: Arc<str>,
    pub permit: OwnedSemaphorePermit,
}

pub(crate) struct Claimer {
    /// From the claim pool (asynchronous commit).
    pub connection: Dedicated,
    pub queue: String,
    pub wakeup: Arc<Notify>,
    pub worker_id: String,
    pub config: Arc<WorkerConfig>,
    pub permits: Arc<Semaphore>,
    pub dispatch: mpsc::Sender<Dispatch>,
    pub shutdown: CancellationToken,
}

impl Claimer {
    pub async fn run(mut self) {
        let queue: Arc<str> = Arc::from(self.queue.as_str());
        let mut outage = Outage::default();
        // Named once: the success path below runs on every claim.
        let what = format!("claiming steps from {}", self.queue);
        loop {
            // Wait for room to run at least one handler, then claim as many
            // steps as there is room for (up to the batch size).
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let mut permits = vec![first];
            while permits.len() < self.config.claim_batch_size.max(1) as usize {
                match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let wanted = permits.len();
            let claimed = match self.claim(wanted).await {
                Ok(claimed) => {
                    outage.recovered(&what);
                    claimed
                }
                Err(error) => {
                    outage.failed(&what, &error);
                    drop(permits);
                    // The listener wakes every claimer when its connection
                    // is back; until then, retry at the fallback poll.
                    if !queue::wait(&self.wakeup, self.config.fallback_poll(), &self.shutdown).await
                    {
                        return;
                    }
                    continue;
                }
            };
            let drained = claimed.len() < wanted;
            for step in claimed {
                let permit = permits.pop().expect("one permit per claimed step");
                let dispatch = Dispatch {
                    step,
                    queue: queue.clone(),
                    permit,
                };
                if self.dispatch.send(dispatch).await.is_err() {
                    return;
                }
            }
            drop(permits);
            // Only sleep once the queue came back short: a wake-up that
            // arrived meanwhile is kept as a Notify permit, so the wait
            // below returns at once and nothing is lost.
            if drained
                && !queue::wait(&self.wakeup, self.config.fallback_poll(), &self.shutdown).await
            {
                return;
            }
        }
    }

    #[tracing::instrument(name = "claim", level = "debug", skip_all, fields(queue = %self.queue))]
    async fn claim(&mut self, qty: usize) -> Result<Vec<ClaimedStep>, sqlx::Error> {
        let sql = format!(
            "SELECT * FROM {}($1, $2, $3)",
            queue::queue_function("claim", &self.queue)
        );
        let claimed = sqlx::query_as::<_, ClaimedStep>(&sql)
            .bind(self.config.claim_lease_margin_s)
            .bind(qty as i32)
            .bind(&self.worker_id)
            .fetch_all(self.connection.connection().await?)
            .await;
        self.connection.checked(claimed)
    }
}
