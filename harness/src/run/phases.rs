//! Where a task's time goes, from the transitions the engine recorded:
//! per step, time waiting in the queue, in the handler (claim to result),
//! from result to complete, and from complete to the next step's enqueue.
//!
//! A batch task's batches are steps of their own (`process_csv_batch_000`,
//! `_001`, ...), made at run time. They are shown as one row under their
//! template step (`process_csv_batch`): the mean of one batch. The
//! per-task sums still add every batch a task ran.

use sqlx::PgPool;
use tasker_engine::TaskTemplate;
use uuid::Uuid;

use crate::result::{PhaseBreakdown, StepPhases};

/// One step name's mean phases (µs) over the measured tasks that ran it.
#[derive(Debug, Clone, PartialEq)]
struct StepRow {
    name: String,
    step_type: String,
    /// How many steps of that name ran (one per task that ran it).
    runs: i64,
    phases: [f64; 4],
}

/// Mean phases over `tasks` (microseconds), steps in template order.
pub async fn breakdown(
    pool: &PgPool,
    tasks: &[Uuid],
    template: &TaskTemplate,
) -> anyhow::Result<PhaseBreakdown> {
    let rows: Vec<(String, String, i64, f64, f64, f64, f64)> = sqlx::query_as(
        "WITH s AS (
            SELECT ws.task_uuid, ws.name, ws.step_type, ws.created_at,
                   max(t.created_at) FILTER (WHERE t.to_state = 'enqueued') AS enqueued,
                   max(t.created_at) FILTER (WHERE t.to_state = 'in_progress') AS claimed,
                   max(t.created_at) FILTER (WHERE t.to_state = 'enqueued_for_orchestration') AS reported,
                   max(t.created_at) FILTER (WHERE t.to_state = 'complete') AS completed
              FROM tasker.workflow_steps ws
              JOIN tasker.workflow_step_transitions t USING (workflow_step_uuid)
             WHERE ws.task_uuid = ANY($1)
             GROUP BY ws.task_uuid, ws.name, ws.step_type, ws.created_at),
         n AS (
            SELECT s.*, (SELECT min(o.enqueued) FROM s o
                          WHERE o.task_uuid = s.task_uuid AND o.enqueued >= s.completed) AS next_enqueued
              FROM s)
         SELECT name, step_type, count(*),
                coalesce(avg(extract(epoch FROM claimed - enqueued)) * 1e6, 0)::float8,
                coalesce(avg(extract(epoch FROM reported - claimed)) * 1e6, 0)::float8,
                coalesce(avg(extract(epoch FROM completed - reported)) * 1e6, 0)::float8,
                coalesce(avg(extract(epoch FROM next_enqueued - completed)) * 1e6, 0)::float8
           FROM n WHERE enqueued IS NOT NULL
          GROUP BY name, step_type ORDER BY min(created_at), name",
    )
    .bind(tasks)
    .fetch_all(pool)
    .await?;
    let rows = rows
        .into_iter()
        .map(|(name, step_type, runs, a, b, c, d)| StepRow {
            name,
            step_type,
            runs,
            phases: [a, b, c, d],
        })
        .collect();
    let order: Vec<&str> = template.steps.iter().map(|s| s.name.as_str()).collect();
    Ok(group(rows, tasks.len(), &order))
}

/// The template step a step was made from: a batch worker's name without
/// its batch number (`process_csv_batch_007` → `process_csv_batch`); any
/// other step is its own.
fn template_step<'a>(name: &'a str, step_type: &str) -> &'a str {
    if step_type != "batch_worker" {
        return name;
    }
    match name.rsplit_once('_') {
        Some((worker, index))
            if !worker.is_empty()
                && !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit()) =>
        {
            worker
        }
        _ => name,
    }
}

/// One row per template step (a batch worker's batches merged into their
/// mean, weighted by how many ran), in the template's order (`order`;
/// steps not in it keep the query's order, after those that are), and
/// the per-task sums: each step's mean times how many of it a task ran
/// (every batch counts), so they stay sums over one task.
fn group(rows: Vec<StepRow>, tasks: usize, order: &[&str]) -> PhaseBreakdown {
    let mut groups: Vec<(String, Vec<StepRow>)> = Vec::new();
    for row in rows {
        let name = template_step(&row.name, &row.step_type).to_string();
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, members)) => members.push(row),
            None => groups.push((name, vec![row])),
        }
    }
    let position = |name: &str| order.iter().position(|o| *o == name).unwrap_or(order.len());
    groups.sort_by_key(|(name, _)| position(name));
    let mut per_task = [0.0; 4];
    let steps = groups
        .into_iter()
        .map(|(name, members)| {
            let runs: i64 = members.iter().map(|m| m.runs).sum();
            let mean = match members.as_slice() {
                [one] => one.phases,
                _ => std::array::from_fn(|i| {
                    let weighted: f64 = members.iter().map(|m| m.phases[i] * m.runs as f64).sum();
                    weighted / runs.max(1) as f64
                }),
            };
            // How many of this step one task ran: 1 for a plain step that
            // every task ran, the batch count for a batch worker.
            let per_task_runs = runs as f64 / tasks.max(1) as f64;
            for (sum, phase) in per_task.iter_mut().zip(mean) {
                *sum += phase * per_task_runs;
            }
            phases(name, mean)
        })
        .collect();
    PhaseBreakdown {
        steps,
        per_task: phases("task".into(), per_task),
    }
}

fn phases(
    step: String,
    [queue_wait_us, handler_us, result_to_complete_us, complete_to_next_us]: [f64; 4],
) -> StepPhases {
    StepPhases {
        step,
        queue_wait_us,
        handler_us,
        result_to_complete_us,
        complete_to_next_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, step_type: &str, runs: i64, phases: [f64; 4]) -> StepRow {
        StepRow {
            name: name.into(),
            step_type: step_type.into(),
            runs,
            phases,
        }
    }

    #[test]
    fn batch_workers_are_named_after_their_template_step() {
        assert_eq!(
            template_step("process_csv_batch_007", "batch_worker"),
            "process_csv_batch"
        );
        assert_eq!(template_step("work_1234", "batch_worker"), "work");
        // Only batch workers lose a number; a plain step keeps its name.
        assert_eq!(template_step("linear_step_4", "standard"), "linear_step_4");
        assert_eq!(template_step("odd_", "batch_worker"), "odd_");
        assert_eq!(template_step("_000", "batch_worker"), "_000");
        assert_eq!(template_step("batch_x1", "batch_worker"), "batch_x1");
    }

    #[test]
    fn batches_are_one_row_and_the_task_sum_adds_every_batch() {
        // 10 tasks of analyze_csv → 5 batches → aggregate_totals, in the
        // query's order: creation time, so the batches come last.
        let mut rows = vec![
            row("analyze_csv", "batchable", 10, [100.0, 1000.0, 50.0, 20.0]),
            row(
                "aggregate_totals",
                "deferred_convergence",
                10,
                [80.0, 300.0, 40.0, 0.0],
            ),
        ];
        for (i, handler) in [400.0, 500.0, 600.0, 700.0, 800.0].into_iter().enumerate() {
            rows.push(row(
                &format!("process_csv_batch_{i:03}"),
                "batch_worker",
                10,
                [200.0, handler, 60.0, 30.0],
            ));
        }
        let order = ["analyze_csv", "process_csv_batch", "aggregate_totals"];
        let b = group(rows, 10, &order);
        let names: Vec<&str> = b.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(names, order, "one row per template step, in template order");
        let batch = &b.steps[1];
        assert_eq!(batch.handler_us, 600.0, "the mean of one batch");
        assert_eq!(batch.queue_wait_us, 200.0);
        // Per task: analyze + 5 batches + aggregate.
        assert_eq!(b.per_task.step, "task");
        assert_eq!(b.per_task.handler_us, 1000.0 + 5.0 * 600.0 + 300.0);
        assert_eq!(b.per_task.queue_wait_us, 100.0 + 5.0 * 200.0 + 80.0);
        assert_eq!(b.per_task.complete_to_next_us, 20.0 + 5.0 * 30.0);
    }

    #[test]
    fn batches_of_different_counts_weigh_by_how_many_ran() {
        // 4 tasks: every one ran batch 000, only one ran batch 001.
        let rows = vec![
            row("w_000", "batch_worker", 4, [0.0, 100.0, 0.0, 0.0]),
            row("w_001", "batch_worker", 1, [0.0, 600.0, 0.0, 0.0]),
        ];
        let b = group(rows, 4, &["w"]);
        assert_eq!(b.steps.len(), 1);
        assert_eq!(b.steps[0].handler_us, 200.0, "(4×100 + 600) / 5 batches");
        assert_eq!(b.per_task.handler_us, 250.0, "1.25 batches a task × 200");
    }

    #[test]
    fn plain_steps_are_unchanged() {
        let rows = vec![
            row("linear_step_1", "standard", 200, [1.5, 2.25, 3.0, 4.0]),
            row("linear_step_2", "standard", 200, [1.0, 2.0, 3.0, 0.0]),
        ];
        let b = group(rows.clone(), 200, &["linear_step_1", "linear_step_2"]);
        for (step, row) in b.steps.iter().zip(&rows) {
            assert_eq!(step.step, row.name);
            assert_eq!(
                [
                    step.queue_wait_us,
                    step.handler_us,
                    step.result_to_complete_us,
                    step.complete_to_next_us
                ],
                row.phases
            );
        }
        assert_eq!(b.per_task.queue_wait_us, 2.5);
        assert_eq!(b.per_task.handler_us, 4.25);
        assert_eq!(b.per_task.result_to_complete_us, 6.0);
        assert_eq!(b.per_task.complete_to_next_us, 4.0);
    }
}
