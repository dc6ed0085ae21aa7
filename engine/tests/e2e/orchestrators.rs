//! Two orchestrators processing results of one task at the same moment.
//! The second waits for the first's lock on the task, and once it holds
//! it, it must see the step the first completed: otherwise a join would
//! never be enqueued (each saw the other parent unfinished) and a task
//! whose last steps ran side by side would never finish. One statement
//! reads one snapshot, taken before it waits for a lock, which is why
//! orchestration's function locks the task in a statement of its own and
//! reads the steps in the next (engine/sql/results.sql), and its plain
//! statement leaves a task whose row changed after its snapshot to the
//! function (engine/sql/statements/complete_steps.sql). Each pairing of
//! the two runs here.

use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Executor, PgConnection, PgPool, Postgres};
use tasker_engine::database::connect_options;
use tasker_engine::orchestration::register_templates;
use tasker_engine::testing::{test_database, TestDatabase};
use tasker_engine::TaskTemplate;
use uuid::Uuid;

use crate::plans::{
    assert_complete, claim_and_submit, claim_and_submit_one, create_chain_task, process_results,
    process_results_by,
};
use crate::scenario;

/// A root and two leaves after it, nothing after them.
fn two_leaves() -> TaskTemplate {
    let step = |name: &str, deps: &str| {
        format!("  - name: {name}\n    handler:\n      callable: leaves.noop\n{deps}")
    };
    let yaml = format!(
        "name: two_leaves\nnamespace_name: leaves\nversion: \"1.0.0\"\nsteps:\n{}{}{}",
        step("root", ""),
        step("leaf_a", "    dependencies: [root]\n"),
        step("leaf_b", "    dependencies: [root]\n"),
    );
    TaskTemplate::from_yaml_str(&yaml, "two_leaves").expect("test template is valid")
}

/// Two orchestrators' connections, made as the engine makes them.
type Orchestrators = (PoolConnection<Postgres>, PoolConnection<Postgres>);

/// A migrated database with `template` registered, whose sessions default
/// to `isolation` when given (as a database's settings may say), its
/// engine pool and two orchestrators' connections from it.
async fn orchestrators(
    template: TaskTemplate,
    isolation: Option<&str>,
) -> (TestDatabase, PgPool, Orchestrators) {
    let database = test_database().await.unwrap();
    if let Some(isolation) = isolation {
        let mut admin = PgConnection::connect_with(&connect_options(&database.url).unwrap())
            .await
            .unwrap();
        let alter = format!(
            "ALTER DATABASE \"{}\" SET default_transaction_isolation = '{isolation}'",
            database.name
        );
        admin.execute(alter.as_str()).await.unwrap();
    }
    let pool = tasker_engine::database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    tasker_engine::database::migrate(&pool).await.unwrap();
    register_templates(&pool, &[template]).await.unwrap();
    let first = pool.acquire().await.unwrap();
    let second = pool.acquire().await.unwrap();
    (database, pool, (first, second))
}

/// A task of `template` whose root has run and whose two next steps have
/// both reported success, their results waiting for orchestration.
async fn two_results_waiting(conn: &mut PgConnection, namespace: &str, template: &str) -> Uuid {
    let task = create_chain_task(conn, namespace, template, 1).await;
    claim_and_submit_one(conn, namespace).await;
    process_results(conn).await;
    claim_and_submit(conn, namespace, 2).await;
    task
}

/// How an orchestrator processes the results, one message at a time.
#[derive(Debug, Clone, Copy)]
enum Processing {
    /// `tasker.process_step_results` alone.
    Function,
    /// As the result processor does: the plain statement (which must
    /// leave a task changed since its snapshot), then the function for
    /// what it left.
    Engine,
}

impl Processing {
    /// Processes one message; returns how many the plain statement took.
    async fn one(self, conn: &mut PgConnection) -> i32 {
        match self {
            Processing::Function => {
                conn.fetch_all("SELECT * FROM tasker.process_step_results(1)")
                    .await
                    .unwrap();
                0
            }
            Processing::Engine => process_results_by(conn, 1).await.taken,
        }
    }
}

/// The first orchestrator processes one result in a transaction it keeps
/// open; the second starts on the other result and waits for the task;
/// then the first commits and the second finishes. Returns how many
/// messages the second's plain statement took.
async fn process_side_by_side(
    pool: &PgPool,
    (mut first, mut second): Orchestrators,
    (first_by, second_by): (Processing, Processing),
) -> i32 {
    (&mut *first).execute("BEGIN").await.unwrap();
    first_by.one(&mut first).await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *second)
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { second_by.one(&mut second).await });
    let started = Instant::now();
    loop {
        let blocked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)",
        )
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap();
        if blocked {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second orchestrator never waited for the task the first holds"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (&mut *first).execute("COMMIT").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the second orchestrator finishes once the first commits")
        .unwrap()
}

/// The join of a diamond whose middle results are processed side by side
/// on a database whose sessions default to `isolation`.
async fn join_processed_side_by_side(isolation: Option<&str>, by: (Processing, Processing)) {
    let (_database, pool, (mut first, second)) =
        orchestrators(scenario("diamond_workflow"), isolation).await;
    let task = two_results_waiting(&mut first, "diamond", "diamond_workflow").await;
    let taken = process_side_by_side(&pool, (first, second), by).await;
    assert_eq!(
        taken, 0,
        "the second's plain statement took a task changed since its snapshot"
    );

    let (state, messages): (String, i64) = sqlx::query_as(
        "SELECT ws.state::text,
                (SELECT count(*) FROM pgmq.q_worker_diamond_queue q
                  WHERE q.message->>'step_uuid' = ws.workflow_step_uuid::text)
           FROM tasker.workflow_steps ws
          WHERE ws.task_uuid = $1 AND ws.name = 'diamond_end'",
    )
    .bind(task)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), messages),
        ("enqueued", 1),
        "the join, once both its parents' results were processed"
    );
    let mut conn = pool.acquire().await.unwrap();
    claim_and_submit_one(&mut conn, "diamond").await;
    process_results(&mut conn).await;
    assert_complete(&mut conn, task).await;
}

#[tokio::test]
async fn a_join_whose_parents_are_processed_side_by_side_is_enqueued_once() {
    join_processed_side_by_side(None, (Processing::Function, Processing::Function)).await;
}

#[tokio::test]
async fn a_join_whose_parents_the_plain_statement_processes_side_by_side_is_enqueued_once() {
    join_processed_side_by_side(None, (Processing::Engine, Processing::Engine)).await;
}

#[tokio::test]
async fn a_join_whose_parents_the_function_and_the_plain_statement_process_is_enqueued_once() {
    join_processed_side_by_side(None, (Processing::Function, Processing::Engine)).await;
    join_processed_side_by_side(None, (Processing::Engine, Processing::Function)).await;
}

#[tokio::test]
async fn a_database_defaulting_to_repeatable_read_does_not_strand_a_join() {
    join_processed_side_by_side(
        Some("repeatable read"),
        (Processing::Function, Processing::Function),
    )
    .await;
    join_processed_side_by_side(
        Some("repeatable read"),
        (Processing::Engine, Processing::Engine),
    )
    .await;
}

#[tokio::test]
async fn a_task_whose_last_steps_are_processed_side_by_side_finishes() {
    for by in [
        (Processing::Function, Processing::Function),
        (Processing::Engine, Processing::Engine),
    ] {
        let (_database, pool, (mut first, second)) = orchestrators(two_leaves(), None).await;
        let task = two_results_waiting(&mut first, "leaves", "two_leaves").await;
        let taken = process_side_by_side(&pool, (first, second), by).await;
        assert_eq!(
            taken, 0,
            "{by:?}: the second's plain statement took a changed task"
        );
        assert_complete(&mut pool.acquire().await.unwrap(), task).await;
    }
}
