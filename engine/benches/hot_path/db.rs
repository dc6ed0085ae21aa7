//! What the database groups (`state_cas`, `readiness`) share: [`BenchDb`],
//! a fresh database that tasks are created in and run through by the
//! engine's own SQL functions, the current-thread runtime the benchmarks
//! block on, and the timing of sequential round trips.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::orchestration::register_templates;
use tasker_engine::queue::{queue_function, worker_queue};
use tasker_engine::TaskTemplate;
use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::common;

/// Claim/submit/process chunk while building the readiness database
/// (process_step_results' task de-duplication is linear in the batch).
pub(crate) const CHUNK: i32 = 1_000;

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The time of `iters` runs of `op`'s futures, one after another.
pub(crate) fn time_sequential<F, Fut>(rt: &Runtime, iters: u64, mut op: F) -> Duration
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

/// A fresh migrated database with the linear template registered, and a
/// one-connection pool (the statements run one at a time anyway).
pub(crate) struct BenchDb {
    name: String,
    url: String,
    pub(crate) pool: PgPool,
    template: TaskTemplate,
    queue: String,
}

impl BenchDb {
    pub(crate) async fn new() -> Self {
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

    pub(crate) async fn drop_database(self) {
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
    pub(crate) async fn create_tasks(&self, first: i32, count: i32) -> Vec<Uuid> {
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
    pub(crate) async fn claim(&self, qty: i32) -> Vec<(i64, Uuid, Uuid)> {
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
    pub(crate) async fn submit(&self, claimed: &[(i64, Uuid, Uuid)]) {
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

    pub(crate) async fn process(&self, qty: i32) -> Vec<sqlx::postgres::PgRow> {
        sqlx::query("SELECT * FROM tasker.process_step_results($1)")
            .bind(qty)
            .fetch_all(&self.pool)
            .await
            .expect("process_step_results")
    }

    /// Run every enqueued step to completion (claim, submit, process), as
    /// workers and orchestration would.
    pub(crate) async fn run_to_completion(&self) {
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
