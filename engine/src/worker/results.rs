//! Submitting handler results: everything waiting on the completion channel
//! goes to the database in one statement per queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dispatch::Completion;
use crate::queue;

pub(crate) struct Submitter {
    pub pool: PgPool,
    pub batch_size: usize,
    pub shutdown: CancellationToken,
}

impl Submitter {
    /// Runs until every sender is gone (the dispatcher and the handler runs
    /// it spawned), so results of handlers running at shutdown still land.
    pub async fn run(self, mut completions: mpsc::Receiver<Completion>) {
        while let Some(first) = completions.recv().await {
            let mut batch = vec![first];
            while batch.len() < self.batch_size {
                match completions.try_recv() {
                    Ok(completion) => batch.push(completion),
                    Err(_) => break,
                }
            }
            let mut by_queue: BTreeMap<Arc<str>, Vec<Value>> = BTreeMap::new();
            for completion in batch {
                by_queue
                    .entry(completion.queue.clone())
                    .or_default()
                    .push(result_json(&completion));
            }
            for (queue, results) in by_queue {
                self.submit(&queue, Value::Array(results)).await;
            }
        }
    }

    /// Results must not be lost: a failed submission is retried until it
    /// lands. (Until then the steps stay in_progress and their messages
    /// stay in the queue.)
    #[tracing::instrument(name = "submit_results", level = "debug", skip_all, fields(%queue))]
    async fn submit(&self, queue: &str, results: Value) {
        let mut delay = Duration::from_millis(50);
        let sql = format!(
            "SELECT * FROM {}($1)",
            queue::queue_function("submit", queue)
        );
        loop {
            let submitted = sqlx::query(&sql).bind(&results).execute(&self.pool).await;
            match submitted {
                Ok(_) => return,
                Err(error) if self.shutdown.is_cancelled() && delay > Duration::from_secs(5) => {
                    tracing::error!(%queue, %error, "giving up submitting results at shutdown");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%queue, %error, ?delay, "submitting step results failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The JSON element the worker submits for one completion.
pub fn result_json(completion: &Completion) -> Value {
    let (success, result, error) = match &completion.outcome {
        Ok(value) => (true, value.clone(), Value::Null),
        Err(error) => (false, Value::Null, json!(error)),
    };
    json!({
        "step_uuid": completion.step_uuid,
        "msg_id": completion.msg_id,
        "success": success,
        "result": result,
        "error": error,
        "execution_time_us": completion.execution_time.as_micros() as i64,
        "worker_id": &*completion.worker_id,
    })
}
