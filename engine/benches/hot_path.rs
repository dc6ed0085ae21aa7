//! Criterion micro-benchmarks of the engine's hot-path pieces:
//!
//! - `template_parse`: `TaskTemplate::from_yaml_str` (parse + validate) of
//!   the linear and complex_dag scenario templates.
//! - `result_serialize`: the JSON a worker submits for a batch of step
//!   results, built as the submitter builds it and encoded as sqlx binds it
//!   (`build_and_encode/<n>`), and the encoding alone (`encode/16`).
//! - `state_cas`: one `state::transition_step` / `state::transition_task`
//!   compare-and-set, a round trip to a real database.
//! - `readiness`: on a database holding 10,000 linear tasks (2,000
//!   complete, 7,700 in flight, 300 with a ready step), the readiness query
//!   of one task (`task_execution_context`) and the statement orchestration
//!   runs per completed step (`process_step_results`: apply the result,
//!   evaluate the task's readiness, enqueue the next step or finish the
//!   task).
//!
//! ```sh
//! cargo bench -p tasker-engine --bench hot_path                  # all groups
//! cargo bench -p tasker-engine --bench hot_path -- template_parse # one group
//! ```
//!
//! The databases come from `tasker_engine::testing::test_database()`: on
//! the server at `DATABASE_URL` if set, else on the process's throwaway
//! local cluster (fsync off: commits cost no disk flush, so the database
//! figures are CPU and round trips, not the disk). They are built only
//! when a database benchmark runs (not when filtered out) and dropped
//! afterwards. The engine has no global "find all ready steps" query:
//! readiness is evaluated per task, under its row lock, inside
//! `process_step_results`, so that is what `readiness` measures, with the
//! other 9,999 tasks in the tables and indexes.
//!
//! The CPU-only groups have exact instruction counts too: see
//! `benches/instructions.rs`.

use std::cell::{Cell, OnceCell};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::orchestration::register_templates;
use tasker_engine::queue::{queue_function, worker_queue};
use tasker_engine::state::{transition_step, transition_task};
use tasker_engine::{StepState, TaskState, TaskTemplate};
use tokio::runtime::Runtime;
use uuid::Uuid;

mod common;

fn template_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("template_parse");
    for name in common::TEMPLATES {
        let (label, text) = common::template_text(name);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| common::parse_template(black_box(&label), black_box(&text)))
        });
    }
    group.finish();
}

fn result_serialize(c: &mut Criterion) {
    let mut group = c.benchmark_group("result_serialize");
    for n in [1, common::RESULT_BATCH] {
        let completions = common::completions(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("build_and_encode", n), |b| {
            b.iter(|| common::serialize_results(black_box(&completions)))
        });
    }
    let batch = common::result_batch_json(&common::completions(common::RESULT_BATCH));
    group.throughput(Throughput::Elements(common::RESULT_BATCH as u64));
    group.bench_function(BenchmarkId::new("encode", common::RESULT_BATCH), |b| {
        b.iter(|| common::encode_jsonb(black_box(&batch)))
    });
    group.finish();
}

fn state_cas(c: &mut Criterion) {
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

/// The time of `iters` runs of `op`'s futures, one after another.
fn time_sequential<F, Fut>(rt: &Runtime, iters: u64, mut op: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            op().await;
        }
        start.elapsed()
    })
}

fn readiness(c: &mut Criterion) {
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
                    let row = sqlx::query("SELECT * FROM tasker.task_execution_context($1)")
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

criterion_group! {
    name = cpu;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = template_parse, result_serialize
}
criterion_group! {
    name = db;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = state_cas, readiness
}
criterion_main!(cpu, db);

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
/// Claim/submit/process chunk while building it (process_step_results'
/// task de-duplication is linear in the batch).
const CHUNK: i32 = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fresh migrated database with the linear template registered, and a
/// one-connection pool (the statements run one at a time anyway).
struct BenchDb {
    name: String,
    url: String,
    pool: PgPool,
    template: TaskTemplate,
    queue: String,
}

impl BenchDb {
    async fn new() -> Self {
        let db = tasker_engine::testing::test_database().await.expect(
            "a test database (DATABASE_URL, or a local cluster: PostgreSQL's server binaries)",
        );
        let settings = PoolSettings {
            max_connections: 1,
            min_connections: 1,
            ..PoolSettings::default()
        };
        let pool = database::connect(&db.url, &settings)
            .await
            .expect("connect");
        let template = TaskTemplate::load_file(&common::templates_dir().join("linear.yaml"))
            .expect("linear template");
        register_templates(&pool, std::slice::from_ref(&template))
            .await
            .expect("register the linear template");
        let queue = worker_queue(&template.namespace_name);
        Self {
            name: db.name,
            url: db.url,
            pool,
            template,
            queue,
        }
    }

    async fn drop_database(self) {
        self.pool.close().await;
        let mut admin_url = url::Url::parse(&self.url).expect("database URL");
        admin_url.set_path("postgres");
        let mut admin = PgConnection::connect(admin_url.as_str())
            .await
            .expect("admin connection");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop the bench database");
        let _ = admin.close().await;
    }

    /// Tasks `first..first + count` (the number is the idempotency key),
    /// created by the engine's `tasker.create_task` in one statement:
    /// each gets its steps, edges and transitions, and its root step
    /// enqueued.
    async fn create_tasks(&self, first: i32, count: i32) -> Vec<Uuid> {
        sqlx::query_scalar(
            "SELECT c.task_uuid FROM generate_series($4::int, $5::int) g \
             CROSS JOIN LATERAL tasker.create_task($1, $2, $3, \
                 jsonb_build_object('even_number', 2), 'bench-' || g) c",
        )
        .bind(&self.template.namespace_name)
        .bind(&self.template.name)
        .bind(&self.template.version)
        .bind(first)
        .bind(first + count - 1)
        .fetch_all(&self.pool)
        .await
        .expect("create tasks")
    }

    /// What a worker claims: `(msg_id, step, claim token)`.
    async fn claim(&self, qty: i32) -> Vec<(i64, Uuid, Uuid)> {
        let sql = format!(
            "SELECT msg_id, workflow_step_uuid, claim_token FROM {}($1, $2, $3)",
            queue_function("claim", &self.queue)
        );
        sqlx::query_as(&sql)
            .bind(5)
            .bind(qty)
            .bind("bench-worker")
            .fetch_all(&self.pool)
            .await
            .expect("claim")
    }

    /// Submit a success for every claimed step, as the worker does.
    async fn submit(&self, claimed: &[(i64, Uuid, Uuid)]) {
        let completions: Vec<common::Completion> = claimed
            .iter()
            .map(|&(msg_id, step_uuid, claim_token)| common::Completion {
                queue: self.queue.as_str().into(),
                msg_id,
                step_uuid,
                attempt: 1,
                claim_token,
                outcome: Ok(json!(4)),
                execution_time: Duration::from_micros(40),
                worker_id: "bench-worker".into(),
            })
            .collect();
        let sql = format!(
            "SELECT accepted FROM {}($1)",
            queue_function("submit", &self.queue)
        );
        let accepted: Vec<bool> = sqlx::query_scalar(&sql)
            .bind(common::result_batch_json(&completions))
            .fetch_all(&self.pool)
            .await
            .expect("submit");
        assert!(
            accepted.len() == claimed.len() && accepted.iter().all(|a| *a),
            "every result accepted"
        );
    }

    async fn process(&self, qty: i32) -> Vec<sqlx::postgres::PgRow> {
        sqlx::query("SELECT * FROM tasker.process_step_results($1)")
            .bind(qty)
            .fetch_all(&self.pool)
            .await
            .expect("process_step_results")
    }

    /// Run every enqueued step to completion (claim, submit, process), as
    /// workers and orchestration would.
    async fn run_to_completion(&self) {
        loop {
            let claimed = self.claim(CHUNK).await;
            if claimed.is_empty() {
                return;
            }
            self.submit(&claimed).await;
            while self
                .process(CHUNK)
                .await
                .first()
                .is_some_and(|r| r.get::<i32, _>("batch_messages") == CHUNK)
            {}
        }
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
            "SELECT count(*) FROM unnest($1::uuid[]) t(id) \
             CROSS JOIN LATERAL tasker.task_execution_context(t.id) c \
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
