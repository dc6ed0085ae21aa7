//! `state_cas`: one `state::transition_step` / `state::transition_task`
//! compare-and-set, a round trip to a real database, on 250 linear tasks
//! whose pending steps, and the tasks themselves, are moved back and forth.

use std::cell::{Cell, OnceCell};

use criterion::Criterion;
use serde_json::json;
use tasker_engine::state::{transition_step, transition_task};
use tasker_engine::{StepState, TaskState};
use uuid::Uuid;

use crate::db::{runtime, time_sequential, BenchDb};

pub(crate) fn state_cas(c: &mut Criterion) {
    let rt = runtime();
    let fixture: OnceCell<CasFixture> = OnceCell::new();
    let mut group = c.benchmark_group("state_cas");
    group.sample_size(30);

    // Every step of `steps` moves pending -> enqueued in one round and back
    // in the next, so each stays legal and no step's history grows long.
    group.bench_function("transition_step", |b| {
        let f = fixture.get_or_init(|| rt.block_on(CasFixture::new()));
        b.iter_custom(|iters| {
            time_sequential(&rt, iters, || {
                let (step, forward) = f.next(&f.step_calls, &f.steps);
                let (from, to) = match forward {
                    true => (StepState::Pending, StepState::Enqueued),
                    false => (StepState::Enqueued, StepState::Pending),
                };
                async move {
                    transition_step(&f.db.pool, step, from, to, json!({}))
                        .await
                        .expect("step CAS");
                }
            })
        })
    });
    group.bench_function("transition_task", |b| {
        let f = fixture.get_or_init(|| rt.block_on(CasFixture::new()));
        b.iter_custom(|iters| {
            time_sequential(&rt, iters, || {
                let (task, forward) = f.next(&f.task_calls, &f.tasks);
                let (from, to) = match forward {
                    true => (TaskState::StepsInProcess, TaskState::EvaluatingResults),
                    false => (TaskState::EvaluatingResults, TaskState::StepsInProcess),
                };
                async move {
                    transition_task(&f.db.pool, task, from, to, json!({}))
                        .await
                        .expect("task CAS");
                }
            })
        })
    });
    group.finish();
    if let Some(f) = fixture.into_inner() {
        rt.block_on(f.db.drop_database());
    }
}

struct CasFixture {
    db: BenchDb,
    /// Pending steps (each linear task's steps 2-4).
    steps: Vec<Uuid>,
    /// Tasks in steps_in_process.
    tasks: Vec<Uuid>,
    step_calls: Cell<u64>,
    task_calls: Cell<u64>,
}

impl CasFixture {
    async fn new() -> Self {
        let db = BenchDb::new().await;
        let tasks = db.create_tasks(1, 250).await;
        let steps = sqlx::query_scalar(
            "SELECT s.workflow_step_uuid FROM tasker.workflow_steps s \
             WHERE tasker.step_state_of(s.workflow_step_uuid) = 'pending' \
             ORDER BY s.task_uuid, s.name",
        )
        .fetch_all(&db.pool)
        .await
        .expect("pending steps");
        Self {
            db,
            steps,
            tasks,
            step_calls: Cell::new(0),
            task_calls: Cell::new(0),
        }
    }

    /// The next object to move and whether this round moves it forward.
    fn next(&self, calls: &Cell<u64>, objects: &[Uuid]) -> (Uuid, bool) {
        let k = calls.get();
        calls.set(k + 1);
        let n = objects.len() as u64;
        (objects[(k % n) as usize], (k / n).is_multiple_of(2))
    }
}
