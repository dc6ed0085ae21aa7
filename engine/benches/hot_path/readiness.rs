//! `readiness`: on a database holding 10,000 linear tasks (2,000
//! complete, 7,700 in flight, 300 with a ready step), the readiness query
//! of one task (`tasks_execution_context` of one) and the statement orchestration
//! runs per completed step (`process_step_results`), with the other
//! 9,999 tasks in the tables and indexes.

use std::cell::{Cell, OnceCell};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use sqlx::Row;
use uuid::Uuid;

use crate::db::{runtime, time_sequential, BenchDb, CHUNK};

pub(crate) fn readiness(c: &mut Criterion) {
    let rt = runtime();
    let fixture: OnceCell<ReadinessFixture> = OnceCell::new();
    let mut group = c.benchmark_group("readiness");
    group.sample_size(30);

    group.bench_function("task_execution_context", |b| {
        let f = fixture.get_or_init(|| rt.block_on(ReadinessFixture::new()));
        b.iter_custom(|iters| {
            time_sequential(&rt, iters, || {
                let i = f.next_ready.get();
                f.next_ready.set(i + 1);
                let task = f.ready_tasks[i % f.ready_tasks.len()];
                async move {
                    let row = sqlx::query(
                        "SELECT * FROM tasker.tasks_execution_context(ARRAY[$1::uuid])",
                    )
                    .bind(task)
                    .fetch_one(&f.db.pool)
                    .await
                    .expect("task_execution_context");
                    black_box(row);
                }
            })
        })
    });

    // Per iteration, untimed: a worker claims one step and submits its
    // result (the worker's own claim_/submit_ functions). Timed: the
    // orchestrator's statement for it, with its configured batch size.
    group.bench_function("process_step_results", |b| {
        let f = fixture.get_or_init(|| rt.block_on(ReadinessFixture::new()));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let claimed = f.claim_one().await;
                    f.db.submit(&claimed).await;
                    let start = Instant::now();
                    let rows = f.db.process(RESULT_BATCH_SIZE).await;
                    timed += start.elapsed();
                    assert_eq!(rows.len(), 1, "one task evaluated");
                    let taken: i32 = rows[0].get("batch_messages");
                    assert_eq!(taken, 1, "one result message processed");
                }
                timed
            })
        })
    });
    group.finish();
    if let Some(f) = fixture.into_inner() {
        rt.block_on(f.db.drop_database());
    }
}

/// `orchestration.result_batch_size` in config/tasker.toml.
const RESULT_BATCH_SIZE: i32 = 32;
/// The readiness database: linear tasks in all, completed ones (run
/// through the engine's claim/submit/process: a few ms a task here, so
/// the history is kept to what builds in seconds), and ones left with a
/// ready step. The rest are in flight (root step enqueued): the
/// per-iteration supply of `process_step_results`.
const TASKS: i32 = 10_000;
const COMPLETE_TASKS: i32 = 2_000;
const READY_TASKS: i32 = 300;

struct ReadinessFixture {
    db: BenchDb,
    /// Tasks whose step 2 is ready (step 1 complete, not yet evaluated).
    ready_tasks: Vec<Uuid>,
    next_ready: Cell<usize>,
    /// Idempotency number of the next task to create when the in-flight
    /// ones run out.
    next_task: Cell<i32>,
}

impl ReadinessFixture {
    async fn new() -> Self {
        let started = Instant::now();
        let db = BenchDb::new().await;

        // The history: tasks that ran to completion.
        for first in (1..=COMPLETE_TASKS).step_by(CHUNK as usize) {
            db.create_tasks(first, CHUNK.min(COMPLETE_TASKS - first + 1))
                .await;
        }
        let created = started.elapsed();
        db.run_to_completion().await;
        let completed = started.elapsed();

        // In flight: root step enqueued.
        db.create_tasks(COMPLETE_TASKS + 1, TASKS - COMPLETE_TASKS)
            .await;

        // Ready: step 1's result applied (tasker.apply_step_result, as
        // process_step_results does) but the task not yet evaluated, so
        // step 2 is ready and not enqueued -- the state the readiness
        // query sees inside process_step_results.
        let claimed = db.claim(READY_TASKS).await;
        assert_eq!(claimed.len(), READY_TASKS as usize);
        db.submit(&claimed).await;
        let steps: Vec<Uuid> = claimed.iter().map(|c| c.1).collect();
        sqlx::query("SELECT tasker.apply_step_result(s) FROM unnest($1::uuid[]) s")
            .bind(&steps)
            .execute(&db.pool)
            .await
            .expect("apply step results");
        let dropped = sqlx::query("DELETE FROM pgmq.q_orchestration_step_results")
            .execute(&db.pool)
            .await
            .expect("drop the applied results' messages")
            .rows_affected();
        assert_eq!(dropped, READY_TASKS as u64);
        let ready_tasks: Vec<Uuid> = claimed.iter().map(|c| c.1).collect();
        let really_ready: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasker.tasks_execution_context($1::uuid[]) c \
             WHERE c.ready_steps = 1 AND c.execution_status = 'has_ready_steps'",
        )
        .bind(&ready_tasks)
        .fetch_one(&db.pool)
        .await
        .expect("check readiness");
        assert_eq!(really_ready, READY_TASKS as i64);

        // Statistics, as the engine's maintenance keeps them.
        sqlx::query("ANALYZE")
            .execute(&db.pool)
            .await
            .expect("analyze");
        let (tasks, complete, steps, transitions): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tasker.tasks), \
                    (SELECT count(*) FROM tasker.tasks WHERE complete), \
                    (SELECT count(*) FROM tasker.workflow_steps), \
                    (SELECT count(*) FROM tasker.workflow_step_transitions)",
        )
        .fetch_one(&db.pool)
        .await
        .expect("counts");
        eprintln!(
            "readiness database: {tasks} tasks ({complete} complete, {READY_TASKS} with a ready step), \
             {steps} steps, {transitions} step transitions; built in {:.1} s \
             (creating the first {COMPLETE_TASKS}: {:.1} s, running them: {:.1} s)",
            started.elapsed().as_secs_f64(),
            created.as_secs_f64(),
            (completed - created).as_secs_f64(),
        );
        Self {
            db,
            ready_tasks,
            next_ready: Cell::new(0),
            next_task: Cell::new(TASKS + 1),
        }
    }

    /// One claimed step; creates more in-flight tasks when none is left.
    async fn claim_one(&self) -> Vec<(i64, Uuid, Uuid)> {
        loop {
            let claimed = self.db.claim(1).await;
            if !claimed.is_empty() {
                return claimed;
            }
            let first = self.next_task.get();
            self.db.create_tasks(first, CHUNK).await;
            self.next_task.set(first + CHUNK);
        }
    }
}
