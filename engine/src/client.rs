//! The in-process client: create tasks, read them back, and wait for a task
//! to finish without polling (the engine notifies `tasker_task_finalized`
//! when a task completes or errs). The REST API is a thin layer over it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::orchestration::input::Schemas;
use crate::orchestration::{self, OrchestrationError, TaskCreated, TaskRequest};
use crate::queue::{Listener, Received, TASK_FINALIZED_CHANNEL};
use crate::state::{StepState, TaskState};
use crate::telemetry::spawn_named;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Orchestration(#[from] OrchestrationError),
    #[error("task {0} does not exist")]
    TaskNotFound(Uuid),
    #[error("task {task} did not finish within {timeout:?} (it is {state})")]
    Timeout {
        task: Uuid,
        timeout: Duration,
        state: TaskState,
    },
    #[error("task {0} is not in the dead letters (see `tasker-cli dlq list`)")]
    NotDeadLettered(Uuid),
    #[error(
        "task {task} is {state}: only a finished task (complete, error, cancelled or \
         resolved manually) can be deleted"
    )]
    NotFinished { task: Uuid, state: TaskState },
    #[error("the completion listener stopped")]
    ListenerGone,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct TaskView {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub state: TaskState,
    pub context: Value,
    pub complete: bool,
    pub priority: i32,
    pub correlation_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub total_steps: i64,
    pub completed_steps: i64,
    pub failed_steps: i64,
}

/// A workflow step as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct StepView {
    pub workflow_step_uuid: Uuid,
    pub name: String,
    pub state: StepState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub results: Option<Value>,
    pub last_error: Option<Value>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    /// What the step was given beside its parents' results: a batch
    /// worker's batch and cursor range, a convergence step's batches.
    pub inputs: Option<Value>,
    /// Every checkpoint a batch worker saved, oldest first:
    /// `[{sequence, attempt, cursor, partial, created_at}]`.
    pub checkpoints: Value,
}

/// A task the staleness detector moved to the dead letters.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub task_uuid: Uuid,
    pub namespace: String,
    pub name: String,
    pub reason: String,
    /// The task's state when it was dead-lettered, and its steps' states.
    pub task_state: TaskState,
    pub steps: Value,
    pub created_at: DateTime<Utc>,
}

/// One recorded state change.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct TransitionView {
    pub from_state: Option<String>,
    pub to_state: String,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
}

type Waiters = Arc<Mutex<HashMap<Uuid, Vec<oneshot::Sender<TaskState>>>>>;

/// Creates and reads tasks, and waits for them to finish.
#[derive(Clone)]
pub struct TaskerClient {
    pool: PgPool,
    waiters: Waiters,
    schemas: Arc<Schemas>,
    /// Cleared once the database's `tasker.create_task` turned out not to
    /// take the task's uuid (an earlier engine applied it, as the A side
    /// of an A/B run does): tasks are then created and waited for apart.
    uuid_first: Arc<AtomicBool>,
}

impl TaskerClient {
    /// Connect the client and start its completion listener.
    pub async fn new(pool: PgPool, shutdown: CancellationToken) -> Result<Self, ClientError> {
        let listener = Listener::connect(&pool, &[TASK_FINALIZED_CHANNEL.to_string()]).await?;
        let waiters: Waiters = Arc::default();
        let client = Self {
            pool,
            waiters: waiters.clone(),
            schemas: Arc::default(),
            uuid_first: Arc::new(AtomicBool::new(true)),
        };
        let forwarder = client.clone();
        spawn_named("task-completion-listener", async move {
            forwarder.forward(listener, shutdown).await
        });
        Ok(client)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Create a task, after checking the request (no NUL characters; the
    /// context against the template's input_schema).
    pub async fn create_task(&self, request: &TaskRequest) -> Result<TaskCreated, ClientError> {
        self.schemas.check(&self.pool, request).await?;
        Ok(orchestration::create_task(&self.pool, request).await?)
    }

    pub async fn get_task(&self, task: Uuid) -> Result<TaskView, ClientError> {
        sqlx::query_as::<_, TaskView>(
            "SELECT t.task_uuid, ns.name AS namespace, nt.name, nt.version,
                    t.state AS state, t.context, t.complete,
                    t.priority, t.correlation_id, t.created_at, t.completed_at,
                    (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid) AS total_steps,
                    (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid
                        AND s.state IN ('complete', 'resolved_manually')) AS completed_steps,
                    (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid
                        AND s.state = 'error') AS failed_steps
               FROM tasker.tasks t
               JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
               JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
              WHERE t.task_uuid = $1",
        )
        .bind(task)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ClientError::TaskNotFound(task))
    }

    /// The task's steps, in creation (template) order.
    pub async fn list_steps(&self, task: Uuid) -> Result<Vec<StepView>, ClientError> {
        let steps = sqlx::query_as::<_, StepView>(
            "SELECT s.workflow_step_uuid, s.name, s.state AS state,
                    s.attempts, s.max_attempts, s.results, s.last_error, s.next_retry_at,
                    s.created_at, s.processed_at, s.inputs,
                    coalesce((SELECT jsonb_agg(jsonb_build_object(
                                  'sequence', c.sequence, 'attempt', c.attempt, 'cursor', c.cursor,
                                  'partial', c.partial, 'created_at', c.created_at) ORDER BY c.sequence)
                                FROM tasker.workflow_step_checkpoints c
                               WHERE c.workflow_step_uuid = s.workflow_step_uuid), '[]') AS checkpoints
               FROM tasker.workflow_steps s WHERE s.task_uuid = $1
              ORDER BY s.created_at, s.name",
        )
        .bind(task)
        .fetch_all(&self.pool)
        .await?;
        if steps.is_empty() {
            self.get_task(task).await?;
        }
        Ok(steps)
    }

    pub async fn task_transitions(&self, task: Uuid) -> Result<Vec<TransitionView>, ClientError> {
        Ok(sqlx::query_as::<_, TransitionView>(
            "SELECT from_state::text, to_state::text, metadata, created_at
               FROM tasker.task_transitions WHERE task_uuid = $1 ORDER BY sort_key",
        )
        .bind(task)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn step_transitions(&self, step: Uuid) -> Result<Vec<TransitionView>, ClientError> {
        Ok(sqlx::query_as::<_, TransitionView>(
            "SELECT from_state::text, to_state::text, metadata, created_at
               FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = $1 ORDER BY sort_key",
        )
        .bind(step)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The dead letters not yet retried, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ClientError> {
        Ok(sqlx::query_as::<_, DeadLetter>(
            "SELECT d.task_uuid, ns.name AS namespace, nt.name, d.reason, d.task_state, d.steps,
                    d.created_at
               FROM tasker.dead_letters d
               JOIN tasker.tasks t ON t.task_uuid = d.task_uuid
               JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
               JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
              WHERE d.retried_at IS NULL ORDER BY d.created_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Put a dead-lettered task back: its failed and dead-lettered steps
    /// run again with a fresh budget of attempts. Returns the task's state
    /// after it was evaluated.
    pub async fn retry_dead_letter(&self, task: Uuid) -> Result<TaskState, ClientError> {
        let retried: Result<(Uuid, TaskState, i32), sqlx::Error> =
            sqlx::query_as("SELECT * FROM tasker.retry_dead_letter($1)")
                .bind(task)
                .fetch_one(&self.pool)
                .await;
        match retried {
            Ok((_, state, _)) => Ok(state),
            Err(error)
                if error.as_database_error().and_then(|e| e.code()).as_deref() == Some("TK003") =>
            {
                Err(ClientError::NotDeadLettered(task))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Delete a finished task with everything that is its own (steps,
    /// edges, history, checkpoints, dead letter; `tasker.delete_tasks`).
    /// A task that has not finished is left alone: its messages are still
    /// on their way.
    pub async fn delete_task(&self, task: Uuid) -> Result<(), ClientError> {
        let deleted: Vec<Uuid> = sqlx::query_scalar("SELECT * FROM tasker.delete_tasks($1)")
            .bind(vec![task])
            .fetch_all(&self.pool)
            .await?;
        if deleted.is_empty() {
            let state = self.task_state(task).await?;
            return Err(ClientError::NotFinished { task, state });
        }
        Ok(())
    }

    /// Delete up to `limit` tasks that finished before `before` (oldest
    /// first), as [`TaskerClient::delete_task`] does one; returns them.
    /// Retention: run it again until it returns fewer than `limit`.
    pub async fn delete_finished_tasks(
        &self,
        before: DateTime<Utc>,
        limit: i32,
    ) -> Result<Vec<Uuid>, ClientError> {
        Ok(
            sqlx::query_scalar("SELECT * FROM tasker.delete_tasks_finished_before($1, $2)")
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn task_state(&self, task: Uuid) -> Result<TaskState, ClientError> {
        let state: Option<TaskState> = sqlx::query_scalar("SELECT tasker.task_state_of($1)")
            .bind(task)
            .fetch_one(&self.pool)
            .await?;
        state.ok_or(ClientError::TaskNotFound(task))
    }

    /// Wait until the task is complete or in error and return that state.
    /// Event driven: the waiter is registered before the state is read, so
    /// a task finishing in between is seen one way or the other.
    pub async fn wait_for_completion(
        &self,
        task: Uuid,
        timeout: Duration,
    ) -> Result<TaskState, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.add_waiter(task, tx);
        let state = self.task_state(task).await?;
        if state.is_final() {
            self.remove_waiters(task);
            return Ok(state);
        }
        self.await_waiter(task, rx, timeout).await
    }

    /// Create a task and wait for it to finish.
    pub async fn run_task(
        &self,
        request: &TaskRequest,
        timeout: Duration,
    ) -> Result<(Uuid, TaskState), ClientError> {
        let watch = self.create_and_watch(request).await?;
        let task = watch.created().task_uuid;
        Ok((task, watch.wait(timeout).await?))
    }

    /// Create a task, ready to wait for it to finish ([`TaskWatch::wait`]),
    /// after the checks of [`TaskerClient::create_task`].
    /// The waiter exists before the task (under a uuid chosen here), so
    /// its finishing is seen without reading its state after creating it:
    /// one round trip a task fewer than `create_task` and then
    /// `wait_for_completion`. A request matching an earlier task watches
    /// that task, which may be finished already.
    pub async fn create_and_watch(&self, request: &TaskRequest) -> Result<TaskWatch, ClientError> {
        let watch = |created, waiter| TaskWatch {
            client: self.clone(),
            created,
            waiter,
        };
        self.schemas.check(&self.pool, request).await?;
        if self.uuid_first.load(Ordering::Relaxed) {
            let task = Uuid::new_v4();
            let (tx, rx) = oneshot::channel();
            self.add_waiter(task, tx);
            let created = orchestration::create_task_as(&self.pool, request, task).await;
            if !matches!(created, Ok(TaskCreated { created: true, .. })) {
                self.remove_waiters(task);
            }
            match created {
                Ok(created) => {
                    let waiter = created.created.then_some(rx);
                    return Ok(watch(created, waiter));
                }
                Err(OrchestrationError::Outdated(_)) => {
                    self.uuid_first.store(false, Ordering::Relaxed)
                }
                Err(error) => return Err(error.into()),
            }
        }
        let created = orchestration::create_task(&self.pool, request).await?;
        Ok(watch(created, None))
    }

    fn add_waiter(&self, task: Uuid, waiter: oneshot::Sender<TaskState>) {
        self.waiters
            .lock()
            .expect("waiters lock")
            .entry(task)
            .or_default()
            .push(waiter);
    }

    fn remove_waiters(&self, task: Uuid) -> Option<Vec<oneshot::Sender<TaskState>>> {
        self.waiters.lock().expect("waiters lock").remove(&task)
    }

    async fn await_waiter(
        &self,
        task: Uuid,
        waiter: oneshot::Receiver<TaskState>,
        timeout: Duration,
    ) -> Result<TaskState, ClientError> {
        match tokio::time::timeout(timeout, waiter).await {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(_)) => Err(ClientError::ListenerGone),
            Err(_) => {
                self.remove_waiters(task);
                Err(ClientError::Timeout {
                    task,
                    timeout,
                    state: self.task_state(task).await?,
                })
            }
        }
    }

    async fn forward(&self, mut listener: Listener, shutdown: CancellationToken) {
        while let Some(received) = listener.recv(&shutdown).await {
            match received {
                Received::Notification(notification) => {
                    if let Some((task, state)) = parse_finalized(notification.payload()) {
                        self.deliver(task, state);
                    }
                }
                Received::Reconnected => self.recheck_waiters().await,
            }
        }
    }

    fn deliver(&self, task: Uuid, state: TaskState) {
        let senders = self.remove_waiters(task);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(state);
        }
    }

    /// After the listener lost its connection, notifications may have been
    /// missed: read the state of every awaited task instead (the listener
    /// is back, so a task finishing after this read is notified).
    async fn recheck_waiters(&self) {
        let tasks: Vec<Uuid> = self
            .waiters
            .lock()
            .expect("waiters lock")
            .keys()
            .copied()
            .collect();
        for task in tasks {
            if let Ok(state) = self.task_state(task).await {
                if state.is_final() {
                    self.deliver(task, state);
                }
            }
        }
    }
}

/// A task just created by [`TaskerClient::create_and_watch`], to wait for.
/// Not waited for, its waiter goes when the task finishes.
pub struct TaskWatch {
    client: TaskerClient,
    created: TaskCreated,
    /// The waiter registered before the task was made; None when the
    /// request matched an earlier task.
    waiter: Option<oneshot::Receiver<TaskState>>,
}

impl TaskWatch {
    pub fn created(&self) -> &TaskCreated {
        &self.created
    }

    /// Wait until the task is complete or in error and return that state.
    pub async fn wait(self, timeout: Duration) -> Result<TaskState, ClientError> {
        let task = self.created.task_uuid;
        match self.waiter {
            Some(waiter) => self.client.await_waiter(task, waiter, timeout).await,
            None => self.client.wait_for_completion(task, timeout).await,
        }
    }
}

fn parse_finalized(payload: &str) -> Option<(Uuid, TaskState)> {
    let (task, state) = payload.split_once(':')?;
    let state = match state {
        "complete" => TaskState::Complete,
        "error" => TaskState::Error,
        _ => return None,
    };
    Some((task.parse().ok()?, state))
}
