//! Submitting handler results: everything waiting on the completion channel
//! goes to the database in one statement per queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::dispatch::Completion;
use super::HandlerError;
use crate::database::{is_data_error, Dedicated, Outage};
use crate::orchestration::results::{Completed, WORKER_COMPLETE_STEPS};
use crate::queue;

pub(crate) struct Submitter {
    pub connection: Dedicated,
    pub batch_size: usize,
    /// Complete plain results in the submit's transaction
    /// (`worker.complete_results`).
    pub complete: bool,
    pub shutdown: CancellationToken,
}

impl Submitter {
    /// Runs until every sender is gone (the dispatcher and the handler runs
    /// it spawned), so results of handlers running at shutdown still land.
    pub async fn run(mut self, mut completions: mpsc::Receiver<Completion>) {
        let mut outage = Outage::default();
        while let Some(first) = completions.recv().await {
            // Steps claimed together usually finish together (a diamond's
            // middle): one turn of the scheduler lets the others that are
            // already runnable report, so they go in this statement rather
            // than a second one behind it. No timer: nothing waits for
            // results that are not ready.
            tokio::task::yield_now().await;
            let mut batch = vec![first];
            while batch.len() < self.batch_size {
                match completions.try_recv() {
                    Ok(completion) => batch.push(completion),
                    Err(_) => break,
                }
            }
            let mut by_queue: BTreeMap<Arc<str>, Vec<Completion>> = BTreeMap::new();
            for completion in batch {
                by_queue
                    .entry(completion.queue.clone())
                    .or_default()
                    .push(completion);
            }
            for (queue, completions) in by_queue {
                self.submit(&queue, completions, &mut outage).await;
            }
        }
    }

    /// Results must not be lost: a submission that fails for the state of
    /// the database is retried until it lands (meanwhile the steps stay
    /// in_progress and their messages stay in the queue). One the database
    /// refuses for its content (a result it cannot store) is split, and a
    /// result that cannot be stored becomes a failure saying why, so one
    /// bad result never blocks the others.
    #[tracing::instrument(name = "submit_results", level = "debug", skip_all, fields(%queue))]
    async fn submit(&mut self, queue: &str, completions: Vec<Completion>, outage: &mut Outage) {
        let mut pending = vec![completions];
        let mut delay = Duration::from_millis(50);
        while let Some(batch) = pending.pop() {
            match self.send(queue, &batch).await {
                Ok(refused) => {
                    outage.recovered("submitting step results");
                    log_refused(&batch, &refused);
                }
                Err(error) if is_data_error(&error) => {
                    if batch.len() > 1 {
                        pending.extend(batch.into_iter().map(|c| vec![c]));
                    } else {
                        let unstorable = unstorable(batch.into_iter().next(), &error);
                        pending.extend(unstorable.map(|c| vec![c]));
                    }
                }
                Err(error) if self.shutdown.is_cancelled() && delay > Duration::from_secs(5) => {
                    tracing::error!(%queue, %error, "giving up submitting results at shutdown");
                    return;
                }
                Err(error) => {
                    outage.failed("submitting step results", &error);
                    pending.push(batch);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One statement for the batch; returns the steps whose result was
    /// refused (their claim was taken over).
    async fn send(&mut self, queue: &str, batch: &[Completion]) -> Result<Vec<Uuid>, sqlx::Error> {
        let results = Value::Array(batch.iter().map(result_json).collect());
        let connection = self.connection.connection().await?;
        let refused = if self.complete {
            submit_and_complete_results(connection, queue, &results).await
        } else {
            submit_results(connection, queue, &results).await
        };
        self.connection.checked(refused)
    }
}

/// The plain statement that records a batch of one queue's results when
/// every one is its step's current claim (its header says the rest).
const SUBMIT_RESULTS: &str = include_str!("../../sql/statements/submit_results.sql");

/// Records `results` (the entries [`result_json`] writes) of `queue`'s
/// steps; returns the steps whose result was refused. The plain statement
/// first; when it declines (an entry is not its step's current claim:
/// TK005, nothing changed), the queue's `submit_` function, which refuses
/// such entries one by one. Run on a connection with
/// [`HOT_PATH_SESSION`](crate::database::HOT_PATH_SESSION), outside a
/// transaction of the caller's (a declined statement aborts it).
pub async fn submit_results(
    connection: &mut PgConnection,
    queue: &str,
    results: &Value,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let recorded = sqlx::query(&submit_statement(queue))
        .bind(results)
        .bind(true)
        .execute(&mut *connection)
        .await;
    match recorded {
        Ok(_) => Ok(Vec::new()),
        Err(error) if declined(&error) => submit_one_by_one(connection, queue, results).await,
        Err(error) => Err(error),
    }
}

/// As [`submit_results`], and the plain completions among them taken in
/// the same transaction (`complete_steps.sql` for the messages the submit
/// wrote): a completed step's children are enqueued, or its task
/// finished, without orchestration's commit, wake-up and round trip.
/// Orchestration is woken only for the messages left (other results,
/// tasks another transaction holds or changed). When the plain submit
/// declines, the transaction is rolled back and the function records the
/// batch for orchestration, as [`submit_results`] does.
pub async fn submit_and_complete_results(
    connection: &mut PgConnection,
    queue: &str,
    results: &Value,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut transaction = connection.begin().await?;
    let submitted = sqlx::query(&submit_statement(queue))
        .bind(results)
        .bind(false)
        .fetch_one(&mut *transaction)
        .await;
    let messages: Vec<i64> = match submitted {
        Ok(row) => row.try_get("messages")?,
        Err(error) if declined(&error) => {
            transaction.rollback().await?;
            return submit_one_by_one(connection, queue, results).await;
        }
        Err(error) => return Err(error),
    };
    let completed = sqlx::query_as::<_, Completed>(&WORKER_COMPLETE_STEPS)
        .bind(&messages)
        .fetch_one(&mut *transaction)
        .await?;
    if completed.left() > 0 {
        sqlx::query("SELECT pg_notify('orchestration_step_results', '')")
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(Vec::new())
}

/// The submit statement for `queue`'s table.
fn submit_statement(queue: &str) -> String {
    SUBMIT_RESULTS.replace("{QUEUE_TABLE}", &queue::queue_table(queue))
}

/// The queue's `submit_` function, which refuses the entries that are not
/// their step's current claim; returns those steps.
async fn submit_one_by_one(
    connection: &mut PgConnection,
    queue: &str,
    results: &Value,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let sql = format!(
        "SELECT workflow_step_uuid FROM {}($1) WHERE NOT accepted",
        queue::queue_function("submit", queue)
    );
    sqlx::query_scalar(&sql)
        .bind(results)
        .fetch_all(connection)
        .await
}

/// The plain statement declined the batch (TK005): nothing was changed.
fn declined(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("TK005"))
}

/// A result the database cannot store, replaced by a permanent failure
/// that says why (None if it already was such a failure: nothing to send).
fn unstorable(completion: Option<Completion>, error: &sqlx::Error) -> Option<Completion> {
    let mut completion = completion?;
    if matches!(&completion.outcome, Err(e) if e.error_type == "ResultNotStorable") {
        tracing::error!(step = %completion.step_uuid, %error, "cannot store even the failure result");
        return None;
    }
    tracing::warn!(step = %completion.step_uuid, %error, "the handler's result cannot be stored; failing the step");
    completion.outcome = Err(HandlerError::permanent(
        "ResultNotStorable",
        format!("the handler's result could not be stored: {error}"),
    ));
    Some(completion)
}

/// A refused result is the fencing at work: this worker's claim lapsed
/// (it was paused or cut off past its lease) and the step was claimed
/// again or moved on. The newer attempt's outcome stands.
fn log_refused(batch: &[Completion], refused: &[Uuid]) {
    for step in refused {
        if let Some(c) = batch.iter().find(|c| c.step_uuid == *step) {
            tracing::warn!(step = %step, attempt = c.attempt, claim_token = %c.claim_token,
                "result refused: this claim had lapsed and the step was claimed again or moved on");
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
        "claim_token": completion.claim_token,
        "success": success,
        "result": result,
        "error": error,
        "execution_time_us": completion.execution_time.as_micros() as i64,
        "worker_id": &*completion.worker_id,
    })
}
