//! Task and step states, the legal transitions between them, and the
//! compare-and-swap that moves a task or step from one state to the next.
//!
//! The enums mirror the PostgreSQL enums `tasker.task_state` and
//! `tasker.step_state` one to one, and `TaskState::can_transition_to` /
//! `StepState::can_transition_to` mirror the `tasker.*_state_rules` tables
//! (a test checks every pair against the database). The database is the
//! authority: `transition_task` / `transition_step` call its CAS functions.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// The state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "tasker.task_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Initializing,
    EnqueuingSteps,
    StepsInProcess,
    EvaluatingResults,
    WaitingForDependencies,
    WaitingForRetry,
    BlockedByFailures,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

/// The state of a workflow step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "tasker.step_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Enqueued,
    InProgress,
    EnqueuedForOrchestration,
    EnqueuedAsErrorForOrchestration,
    WaitingForRetry,
    Complete,
    Error,
    Cancelled,
    ResolvedManually,
}

impl TaskState {
    pub const ALL: [TaskState; 12] = [
        Self::Pending,
        Self::Initializing,
        Self::EnqueuingSteps,
        Self::StepsInProcess,
        Self::EvaluatingResults,
        Self::WaitingForDependencies,
        Self::WaitingForRetry,
        Self::BlockedByFailures,
        Self::Complete,
        Self::Error,
        Self::Cancelled,
        Self::ResolvedManually,
    ];

    /// A task in a terminal state never changes again (but `error`, which
    /// an operator may still resolve manually).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Complete | Self::Error | Self::Cancelled | Self::ResolvedManually
        )
    }

    pub fn can_transition_to(self, to: TaskState) -> bool {
        use TaskState::*;
        match self {
            Pending => matches!(to, Initializing | Cancelled),
            Initializing => matches!(to, EnqueuingSteps | Error | Cancelled),
            EnqueuingSteps => matches!(to, StepsInProcess | Error | Cancelled),
            StepsInProcess => matches!(to, EvaluatingResults | Cancelled),
            EvaluatingResults => matches!(
                to,
                EnqueuingSteps
                    | StepsInProcess
                    | WaitingForDependencies
                    | WaitingForRetry
                    | BlockedByFailures
                    | Complete
                    | Error
                    | Cancelled
            ),
            WaitingForDependencies | WaitingForRetry => {
                matches!(to, EvaluatingResults | Cancelled)
            }
            BlockedByFailures => {
                matches!(to, Error | EvaluatingResults | ResolvedManually | Cancelled)
            }
            // -> EvaluatingResults: a dead-lettered task put back.
            Error => matches!(to, ResolvedManually | EvaluatingResults),
            Complete | Cancelled | ResolvedManually => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        use TaskState::*;
        match self {
            Pending => "pending",
            Initializing => "initializing",
            EnqueuingSteps => "enqueuing_steps",
            StepsInProcess => "steps_in_process",
            EvaluatingResults => "evaluating_results",
            WaitingForDependencies => "waiting_for_dependencies",
            WaitingForRetry => "waiting_for_retry",
            BlockedByFailures => "blocked_by_failures",
            Complete => "complete",
            Error => "error",
            Cancelled => "cancelled",
            ResolvedManually => "resolved_manually",
        }
    }
}

impl StepState {
    pub const ALL: [StepState; 10] = [
        Self::Pending,
        Self::Enqueued,
        Self::InProgress,
        Self::EnqueuedForOrchestration,
        Self::EnqueuedAsErrorForOrchestration,
        Self::WaitingForRetry,
        Self::Complete,
        Self::Error,
        Self::Cancelled,
        Self::ResolvedManually,
    ];

    pub fn can_transition_to(self, to: StepState) -> bool {
        use StepState::*;
        match self {
            Pending => matches!(to, Enqueued | Cancelled | ResolvedManually),
            Enqueued => matches!(to, InProgress | Pending | Cancelled | ResolvedManually),
            // -> Enqueued: the claim's lease lapsed (its worker died).
            InProgress => matches!(
                to,
                Enqueued
                    | EnqueuedForOrchestration
                    | EnqueuedAsErrorForOrchestration
                    | Cancelled
                    | ResolvedManually
            ),
            EnqueuedForOrchestration => matches!(to, Complete | Error),
            EnqueuedAsErrorForOrchestration => matches!(to, WaitingForRetry | Error),
            WaitingForRetry => matches!(to, Enqueued | Cancelled | ResolvedManually),
            // -> Pending: a dead-lettered task put back (its failed and
            // dead-lettered steps run again).
            Error => matches!(to, ResolvedManually | Pending),
            Cancelled => matches!(to, Pending),
            Complete | ResolvedManually => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        use StepState::*;
        match self {
            Pending => "pending",
            Enqueued => "enqueued",
            InProgress => "in_progress",
            EnqueuedForOrchestration => "enqueued_for_orchestration",
            EnqueuedAsErrorForOrchestration => "enqueued_as_error_for_orchestration",
            WaitingForRetry => "waiting_for_retry",
            Complete => "complete",
            Error => "error",
            Cancelled => "cancelled",
            ResolvedManually => "resolved_manually",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused state change.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The pair is not a legal transition at all.
    #[error("illegal transition: {0}")]
    IllegalTransition(String),
    /// The task or step was not in the expected state (someone else moved
    /// it first, or it never was there).
    #[error("state mismatch: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for StateError {
    fn from(error: sqlx::Error) -> Self {
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        let message = error
            .as_database_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        match code.as_deref() {
            Some("TK001") => Self::IllegalTransition(message),
            Some("TK002") => Self::Mismatch(message),
            _ => Self::Sql(error),
        }
    }
}

/// Move a task from `from` to `to` (compare-and-swap), recording the
/// transition with `metadata`.
pub async fn transition_task(
    pool: &PgPool,
    task: Uuid,
    from: TaskState,
    to: TaskState,
    metadata: serde_json::Value,
) -> Result<(), StateError> {
    sqlx::query("SELECT tasker.transition_task($1, $2, $3, $4)")
        .bind(task)
        .bind(from)
        .bind(to)
        .bind(metadata)
        .execute(pool)
        .await?;
    Ok(())
}

/// Move a step from `from` to `to` (compare-and-swap).
pub async fn transition_step(
    pool: &PgPool,
    step: Uuid,
    from: StepState,
    to: StepState,
    metadata: serde_json::Value,
) -> Result<(), StateError> {
    sqlx::query("SELECT tasker.transition_step($1, $2, $3, $4)")
        .bind(step)
        .bind(from)
        .bind(to)
        .bind(metadata)
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_task_states_go_nowhere_but_error_to_resolved() {
        for from in [
            TaskState::Complete,
            TaskState::Cancelled,
            TaskState::ResolvedManually,
        ] {
            assert!(TaskState::ALL.iter().all(|to| !from.can_transition_to(*to)));
        }
        assert!(TaskState::Error.can_transition_to(TaskState::ResolvedManually));
        assert!(!TaskState::Error.can_transition_to(TaskState::Pending));
    }

    #[test]
    fn a_step_cannot_skip_the_worker() {
        assert!(!StepState::Pending.can_transition_to(StepState::Complete));
        assert!(!StepState::Enqueued.can_transition_to(StepState::Complete));
        assert!(StepState::EnqueuedForOrchestration.can_transition_to(StepState::Complete));
    }
}
