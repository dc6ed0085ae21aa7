//! The floor model: the minimum a durable queue-based chain must do, in
//! plain SQL over tokio-postgres, three roles on their own connections.
//!
//! - **client**: creates a task in one statement (the task row, its root
//!   steps' messages, NOTIFY the worker), then waits for the completion
//!   notification of that task (its own LISTEN connection).
//! - **worker**: woken by NOTIFY, claims messages (visibility timeout,
//!   `FOR UPDATE SKIP LOCKED`, asynchronous commit: a lost claim only
//!   makes its message visible again), "runs" them (no handlers: a
//!   trivial result), then in one synchronous statement deletes the
//!   messages it still holds, stores their results and NOTIFYs
//!   orchestration with the (task, step) pairs.
//! - **orchestrator**: woken by NOTIFY, computes in memory (the template's
//!   DAG, `dag.rs`) which steps became ready, then in one statement
//!   consumes the results, records the steps complete, enqueues the ready
//!   steps (NOTIFY the worker) or completes the task (NOTIFY the client).
//!
//! So a step costs three commits (the claim's asynchronous) and two
//! wake-ups, every transaction one statement: one round trip. Each loop
//! LISTENs before it first looks at its table, then drains everything
//! available before it waits again, so no wake-up is lost; a notification
//! that arrives while it works is kept in its channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

use super::connection::{connect, Connection};
use super::dag::{Dag, Progress};

/// The floor's own schema, created in the scenario's fresh database.
pub const SCHEMA: &str = "
CREATE SCHEMA floor;
CREATE TABLE floor.tasks (
    id bigint PRIMARY KEY,
    steps int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
-- The step messages: visible from visible_at; a claim pushes it out by
-- the visibility timeout and counts itself (the claim's token).
CREATE TABLE floor.queue (
    id bigserial PRIMARY KEY,
    task_id bigint NOT NULL,
    step int NOT NULL,
    visible_at timestamptz NOT NULL DEFAULT now(),
    claims int NOT NULL DEFAULT 0
);
-- Results on their way to orchestration.
CREATE TABLE floor.results (
    id bigserial PRIMARY KEY,
    task_id bigint NOT NULL,
    step int NOT NULL,
    claims int NOT NULL,
    value jsonb NOT NULL
);
CREATE INDEX ON floor.results (task_id, step);
-- Completed steps, with the claims their message took.
CREATE TABLE floor.steps (
    task_id bigint NOT NULL,
    step int NOT NULL,
    claims int NOT NULL,
    value jsonb NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, step)
);
";

/// The tables, for ANALYZE after the warm-up.
pub const TABLES: &str = "floor.tasks, floor.queue, floor.results, floor.steps";

/// Channels: work for the worker, results for orchestration, finished
/// tasks for the client.
const WORK: &str = "floor_work";
const RESULTS: &str = "floor_results";
const DONE: &str = "floor_done";

/// Client: the task, its root steps' messages, the worker woken.
const CREATE: &str = "
WITH task AS (
    INSERT INTO floor.tasks (id, steps) VALUES ($1::bigint, $2::int)
), enqueued AS (
    INSERT INTO floor.queue (task_id, step)
    SELECT $1::bigint, unnest($3::int[])
    RETURNING task_id
), woken AS (
    SELECT pg_notify('floor_work', '') FROM enqueued LIMIT 1
)
SELECT count(*) FROM woken";

/// Worker: visible messages claimed for the visibility timeout; the
/// transaction commits asynchronously (`set_config(.., true)` is `SET
/// LOCAL` inside the statement's own transaction).
const CLAIM: &str = "
WITH next AS (
    SELECT id FROM floor.queue
     WHERE visible_at <= now()
     ORDER BY id
     LIMIT $1::bigint
       FOR UPDATE SKIP LOCKED
)
UPDATE floor.queue q
   SET visible_at = now() + make_interval(secs => $2::float8),
       claims = q.claims + 1
  FROM next
 WHERE q.id = next.id
   AND set_config('synchronous_commit', 'off', true) = 'off'
RETURNING q.id, q.task_id, q.step, q.claims";

/// Worker: the messages still held (same claim count) deleted, their
/// results stored, orchestration woken with the (task, step) pairs.
const SUBMIT: &str = "
WITH done AS (
    DELETE FROM floor.queue q
     USING unnest($1::bigint[], $2::int[], $3::text[]) AS m(id, claims, value)
     WHERE q.id = m.id AND q.claims = m.claims
    RETURNING q.task_id, q.step, q.claims, m.value
), stored AS (
    INSERT INTO floor.results (task_id, step, claims, value)
    SELECT task_id, step, claims, value::jsonb FROM done
    RETURNING task_id, step
), woken AS (
    SELECT pg_notify('floor_results', string_agg(task_id || ':' || step, ','))
      FROM stored
    HAVING count(*) > 0
)
SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM woken)";

/// Orchestrator: results consumed and their steps recorded complete, the
/// steps that became ready enqueued (worker woken), finished tasks
/// completed (client woken).
const PROCESS: &str = "
WITH consumed AS (
    DELETE FROM floor.results r
     USING unnest($1::bigint[], $2::int[]) AS m(task_id, step)
     WHERE r.task_id = m.task_id AND r.step = m.step
    RETURNING r.task_id, r.step, r.claims, r.value
), recorded AS (
    INSERT INTO floor.steps (task_id, step, claims, value)
    SELECT task_id, step, claims, value FROM consumed
), enqueued AS (
    INSERT INTO floor.queue (task_id, step)
    SELECT * FROM unnest($3::bigint[], $4::int[])
    RETURNING task_id
), completed AS (
    UPDATE floor.tasks SET completed_at = now()
     WHERE id = ANY($5::bigint[]) AND completed_at IS NULL
    RETURNING id
), work AS (
    SELECT pg_notify('floor_work', '') FROM enqueued LIMIT 1
), done AS (
    SELECT pg_notify('floor_done', string_agg(id::text, ','))
      FROM completed
    HAVING count(*) > 0
)
SELECT (SELECT count(*) FROM consumed), (SELECT count(*) FROM completed),
       (SELECT count(*) FROM work), (SELECT count(*) FROM done)";

/// Most messages one claim takes (the engine's claim_batch_size).
const CLAIM_BATCH: i64 = 16;
/// A claimed message is invisible this long (the engine's lease: the
/// step's default timeout plus its margin).
const VISIBILITY_S: f64 = 35.0;
/// Most results one orchestration statement consumes.
const PROCESS_BATCH: usize = 256;
/// The client's connections for creating tasks (the engine's pool size):
/// under an open-loop load creations are spread over them.
const CLIENT_CONNECTIONS: usize = 10;

/// The first error of a role; waiting clients see it at once.
#[derive(Default)]
struct Failure {
    token: CancellationToken,
    error: Mutex<Option<String>>,
}

impl Failure {
    fn set(&self, role: &str, error: &anyhow::Error) {
        let mut slot = self.error.lock().expect("failure lock");
        slot.get_or_insert_with(|| format!("the floor's {role} failed: {error:#}"));
        self.token.cancel();
    }

    fn message(&self) -> String {
        let slot = self.error.lock().expect("failure lock");
        slot.clone()
            .unwrap_or_else(|| "the floor stopped".to_string())
    }
}

/// The model running on one database.
pub struct Floor {
    client: FloorClient,
    roles: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    shutdown: CancellationToken,
}

impl Floor {
    /// Creates the schema, then starts the orchestrator, the worker and
    /// the client, each LISTENing before it returns.
    pub async fn start(url: &str, dag: Arc<Dag>) -> anyhow::Result<Self> {
        let setup = connect(url, "floor-setup").await?;
        setup
            .client
            .batch_execute(SCHEMA)
            .await
            .context("creating the floor's schema")?;
        drop(setup);
        let failure = Arc::new(Failure::default());
        let shutdown = CancellationToken::new();
        let orchestrator = Orchestrator::start(url, dag.clone()).await?;
        let worker = Worker::start(url).await?;
        let (client, listener) = FloorClient::start(url, &dag, failure.clone()).await?;
        let roles = vec![
            watch("orchestrator", orchestrator.run(shutdown.clone()), &failure),
            watch("worker", worker.run(shutdown.clone()), &failure),
            watch("client", listener.run(shutdown.clone()), &failure),
        ];
        Ok(Self {
            client,
            roles,
            shutdown,
        })
    }

    pub fn client(&self) -> &FloorClient {
        &self.client
    }

    /// Stops the roles; the first error one of them ended with.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first = None;
        for (role, handle) in self.roles {
            let outcome = handle.await.map_err(anyhow::Error::from).and_then(|r| r);
            if let (Err(error), None) = (outcome, &first) {
                first = Some(error.context(format!("the floor's {role}")));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A role's loop spawned; its error, when it ends with one, is the
/// floor's failure.
fn watch(
    role: &'static str,
    run: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    failure: &Arc<Failure>,
) -> (&'static str, JoinHandle<anyhow::Result<()>>) {
    let failure = failure.clone();
    let handle = tokio::spawn(async move {
        let outcome = run.await;
        if let Err(error) = &outcome {
            failure.set(role, error);
        }
        outcome
    });
    (role, handle)
}

/// How waiting for a task ended, when it did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("task {0} did not complete within {1:?}")]
    Timeout(i64, Duration),
    #[error("{0}")]
    Failed(String),
}

/// Creates tasks and waits for them; cheap to clone.
#[derive(Clone)]
pub struct FloorClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    connections: Vec<(Connection, Statement)>,
    next_connection: AtomicUsize,
    next_task: AtomicI64,
    waiters: Arc<Mutex<HashMap<i64, oneshot::Sender<()>>>>,
    steps: i32,
    roots: Vec<i32>,
    failure: Arc<Failure>,
}

/// A created task, until it completes.
pub struct Pending {
    pub task: i64,
    done: oneshot::Receiver<()>,
}

impl FloorClient {
    async fn start(
        url: &str,
        dag: &Dag,
        failure: Arc<Failure>,
    ) -> anyhow::Result<(Self, Listener)> {
        let waiters = Arc::new(Mutex::new(HashMap::new()));
        let listener = Listener::start(url, waiters.clone()).await?;
        let mut connections = Vec::with_capacity(CLIENT_CONNECTIONS);
        for i in 0..CLIENT_CONNECTIONS {
            let connection = connect(url, &format!("floor-client-{i}")).await?;
            let create = connection.client.prepare(CREATE).await?;
            connections.push((connection, create));
        }
        let inner = ClientInner {
            connections,
            next_connection: AtomicUsize::new(0),
            next_task: AtomicI64::new(1),
            waiters,
            steps: dag.len() as i32,
            roots: dag.roots().into_iter().map(|s| s as i32).collect(),
            failure,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            listener,
        ))
    }

    /// Creates a task (one statement); its completion is waited for with
    /// [`FloorClient::wait`]. The waiter is registered first, so the
    /// notification cannot come too early.
    pub async fn create(&self) -> anyhow::Result<Pending> {
        let inner = &self.inner;
        let task = inner.next_task.fetch_add(1, Ordering::Relaxed);
        let (sender, done) = oneshot::channel();
        inner.waiters.lock().expect("waiters").insert(task, sender);
        let i = inner.next_connection.fetch_add(1, Ordering::Relaxed) % inner.connections.len();
        let (connection, create) = &inner.connections[i];
        let created = connection
            .client
            .query_one(create, &[&task, &inner.steps, &inner.roots])
            .await;
        if let Err(error) = created {
            inner.waiters.lock().expect("waiters").remove(&task);
            return Err(anyhow::Error::from(error).context(format!("creating floor task {task}")));
        }
        Ok(Pending { task, done })
    }

    /// Waits for a created task's completion notification.
    pub async fn wait(&self, pending: Pending, timeout: Duration) -> Result<i64, WaitError> {
        let failure = &self.inner.failure;
        tokio::select! {
            done = pending.done => match done {
                Ok(()) => Ok(pending.task),
                Err(_) => Err(WaitError::Failed(failure.message())),
            },
            _ = tokio::time::sleep(timeout) => {
                self.inner.waiters.lock().expect("waiters").remove(&pending.task);
                Err(WaitError::Timeout(pending.task, timeout))
            }
            _ = failure.token.cancelled() => Err(WaitError::Failed(failure.message())),
        }
    }

    /// One task from creation to completion.
    pub async fn run_task(&self, timeout: Duration) -> anyhow::Result<i64> {
        let pending = self.create().await?;
        Ok(self.wait(pending, timeout).await?)
    }
}

/// The client's LISTEN connection: completion notifications wake the
/// tasks' waiters.
struct Listener {
    connection: Connection,
    waiters: Arc<Mutex<HashMap<i64, oneshot::Sender<()>>>>,
}

impl Listener {
    async fn start(
        url: &str,
        waiters: Arc<Mutex<HashMap<i64, oneshot::Sender<()>>>>,
    ) -> anyhow::Result<Self> {
        let connection = connect(url, "floor-client-listener").await?;
        connection
            .client
            .batch_execute(&format!("LISTEN {DONE}"))
            .await?;
        Ok(Self {
            connection,
            waiters,
        })
    }

    async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let notification = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                n = self.connection.notifications.recv() => n,
            };
            let Some(notification) = notification else {
                // Dropping the waiters' senders fails their waits.
                self.waiters.lock().expect("waiters").clear();
                bail!("the client's LISTEN connection closed");
            };
            let mut waiters = self.waiters.lock().expect("waiters");
            for id in notification.payload().split(',') {
                let id: i64 = id
                    .parse()
                    .with_context(|| format!("completion payload {id:?}"))?;
                // None: the task's waiter gave up (timed out).
                if let Some(waiter) = waiters.remove(&id) {
                    let _ = waiter.send(());
                }
            }
        }
    }
}

/// Waits for a notification (None: shut down), then takes the others
/// already there: what they announced is visible to the next statement.
async fn woken(
    connection: &mut Connection,
    shutdown: &CancellationToken,
    role: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Ok(None),
        n = connection.notifications.recv() => n,
    };
    let Some(first) = first else {
        bail!("the {role}'s connection closed");
    };
    let mut payloads = vec![first.payload().to_string()];
    while let Ok(n) = connection.notifications.try_recv() {
        payloads.push(n.payload().to_string());
    }
    Ok(Some(payloads))
}

struct Worker {
    connection: Connection,
    claim: Statement,
    submit: Statement,
}

impl Worker {
    async fn start(url: &str) -> anyhow::Result<Self> {
        let connection = connect(url, "floor-worker").await?;
        let client = &connection.client;
        client.batch_execute(&format!("LISTEN {WORK}")).await?;
        let claim = client.prepare(CLAIM).await?;
        let submit = client.prepare(SUBMIT).await?;
        Ok(Self {
            connection,
            claim,
            submit,
        })
    }

    /// Claims until a claim comes back short, then waits for a wake-up.
    async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            loop {
                let claimed =
                    claim_and_run(&self.connection.client, &self.claim, &self.submit).await?;
                if claimed < CLAIM_BATCH as usize {
                    break;
                }
            }
            if woken(&mut self.connection, &shutdown, "worker")
                .await?
                .is_none()
            {
                return Ok(());
            }
        }
    }
}

/// One claim, the steps "run" (a trivial result each), one submission.
async fn claim_and_run(
    client: &Client,
    claim: &Statement,
    submit: &Statement,
) -> anyhow::Result<usize> {
    let rows = client
        .query(claim, &[&CLAIM_BATCH, &VISIBILITY_S])
        .await
        .context("claiming")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut claims = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(row.get::<_, i64>(0));
        let step: i32 = row.get(2);
        claims.push(row.get::<_, i32>(3));
        values.push(step.to_string());
    }
    let row = client
        .query_one(submit, &[&ids, &claims, &values])
        .await
        .context("submitting results")?;
    let stored: i64 = row.get(0);
    anyhow::ensure!(
        stored == rows.len() as i64,
        "{} of {} claimed messages were no longer held when their results were submitted",
        rows.len() as i64 - stored,
        rows.len()
    );
    Ok(rows.len())
}

struct Orchestrator {
    connection: Connection,
    process: Statement,
    dag: Arc<Dag>,
    progress: Progress,
    /// Results found when it started (none on a fresh schema).
    pending: Vec<(i64, i32)>,
}

impl Orchestrator {
    /// LISTENs, then reads what it must know from the tables: the
    /// complete steps of unfinished tasks, and results not yet processed.
    async fn start(url: &str, dag: Arc<Dag>) -> anyhow::Result<Self> {
        let connection = connect(url, "floor-orchestrator").await?;
        let client = &connection.client;
        client.batch_execute(&format!("LISTEN {RESULTS}")).await?;
        let process = client.prepare(PROCESS).await?;
        let mut progress = Progress::default();
        let recorded = client
            .query(
                "SELECT s.task_id, s.step FROM floor.steps s
                   JOIN floor.tasks t ON t.id = s.task_id
                  WHERE t.completed_at IS NULL",
                &[],
            )
            .await?;
        for row in recorded {
            let step: i32 = row.get(1);
            if let Ok(step) = usize::try_from(step) {
                if step < dag.len() {
                    progress.recorded(&dag, row.get(0), step);
                }
            }
        }
        let pending = client
            .query("SELECT task_id, step FROM floor.results ORDER BY id", &[])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        Ok(Self {
            connection,
            process,
            dag,
            progress,
            pending,
        })
    }

    async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            if self.pending.is_empty() {
                let Some(payloads) = woken(&mut self.connection, &shutdown, "orchestrator").await?
                else {
                    return Ok(());
                };
                for payload in payloads {
                    self.pending.extend(parse_results(&payload)?);
                }
            }
            let take = self.pending.len().min(PROCESS_BATCH);
            let batch: Vec<(i64, i32)> = self.pending.drain(..take).collect();
            let plan = self.progress.apply(&self.dag, batch);
            if plan.results.is_empty() {
                continue;
            }
            let column =
                |pairs: &[(i64, i32)]| -> (Vec<i64>, Vec<i32>) { pairs.iter().copied().unzip() };
            let (result_tasks, result_steps) = column(&plan.results);
            let (ready_tasks, ready_steps) = column(&plan.ready);
            let row = self
                .connection
                .client
                .query_one(
                    &self.process,
                    &[
                        &result_tasks,
                        &result_steps,
                        &ready_tasks,
                        &ready_steps,
                        &plan.completed,
                    ],
                )
                .await
                .context("processing results")?;
            let (consumed, completed): (i64, i64) = (row.get(0), row.get(1));
            anyhow::ensure!(
                consumed == plan.results.len() as i64 && completed == plan.completed.len() as i64,
                "orchestration consumed {consumed} of {} results and completed {completed} of {} \
                 tasks: the floor's tables disagree with its orchestrator",
                plan.results.len(),
                plan.completed.len()
            );
        }
    }
}

/// A results notification's payload: `task:step` pairs, comma-separated.
fn parse_results(payload: &str) -> anyhow::Result<Vec<(i64, i32)>> {
    payload
        .split(',')
        .map(|pair| {
            let parsed = pair
                .split_once(':')
                .and_then(|(t, s)| Some((t.parse().ok()?, s.parse().ok()?)));
            parsed.with_context(|| format!("results payload {pair:?} is not task:step"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_results;

    #[test]
    fn a_results_payload_is_task_step_pairs() {
        assert_eq!(
            parse_results("12:0,12:3,7:1").unwrap(),
            [(12, 0), (12, 3), (7, 1)]
        );
        assert!(parse_results("12").is_err());
        assert!(parse_results("").is_err());
    }
}
