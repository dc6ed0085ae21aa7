//! Where a task's time goes, from the transitions the engine recorded:
//! per step, time waiting in the queue, in the handler (claim to result),
//! from result to complete, and from complete to the next step's enqueue.

use sqlx::PgPool;
use uuid::Uuid;

use crate::result::{PhaseBreakdown, StepPhases};

/// Mean phases over `tasks` (microseconds), steps in template order.
pub async fn breakdown(pool: &PgPool, tasks: &[Uuid]) -> anyhow::Result<PhaseBreakdown> {
    let rows: Vec<(String, f64, f64, f64, f64)> = sqlx::query_as(
        "WITH s AS (
            SELECT ws.task_uuid, ws.name, ws.created_at,
                   max(t.created_at) FILTER (WHERE t.to_state = 'enqueued') AS enqueued,
                   max(t.created_at) FILTER (WHERE t.to_state = 'in_progress') AS claimed,
                   max(t.created_at) FILTER (WHERE t.to_state = 'enqueued_for_orchestration') AS reported,
                   max(t.created_at) FILTER (WHERE t.to_state = 'complete') AS completed
              FROM tasker.workflow_steps ws
              JOIN tasker.workflow_step_transitions t USING (workflow_step_uuid)
             WHERE ws.task_uuid = ANY($1)
             GROUP BY ws.task_uuid, ws.name, ws.created_at),
         n AS (
            SELECT s.*, (SELECT min(o.enqueued) FROM s o
                          WHERE o.task_uuid = s.task_uuid AND o.enqueued >= s.completed) AS next_enqueued
              FROM s)
         SELECT name,
                coalesce(avg(extract(epoch FROM claimed - enqueued)) * 1e6, 0)::float8,
                coalesce(avg(extract(epoch FROM reported - claimed)) * 1e6, 0)::float8,
                coalesce(avg(extract(epoch FROM completed - reported)) * 1e6, 0)::float8,
                coalesce(avg(extract(epoch FROM next_enqueued - completed)) * 1e6, 0)::float8
           FROM n WHERE enqueued IS NOT NULL GROUP BY name ORDER BY min(created_at), name",
    )
    .bind(tasks)
    .fetch_all(pool)
    .await?;
    let steps: Vec<StepPhases> = rows
        .into_iter()
        .map(
            |(step, queue_wait_us, handler_us, result_to_complete_us, complete_to_next_us)| {
                StepPhases {
                    step,
                    queue_wait_us,
                    handler_us,
                    result_to_complete_us,
                    complete_to_next_us,
                }
            },
        )
        .collect();
    let per_task = StepPhases {
        step: "task".into(),
        queue_wait_us: steps.iter().map(|s| s.queue_wait_us).sum(),
        handler_us: steps.iter().map(|s| s.handler_us).sum(),
        result_to_complete_us: steps.iter().map(|s| s.result_to_complete_us).sum(),
        complete_to_next_us: steps.iter().map(|s| s.complete_to_next_us).sum(),
    };
    Ok(PhaseBreakdown { steps, per_task })
}
