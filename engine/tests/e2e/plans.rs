//! A step costs the same whatever the size of the tables. The hot path's
//! statements, and the foreign-key checks PostgreSQL runs for them, are
//! planned once a session, and on a fresh database that is while the
//! tables are nearly empty. A plan that walks a table instead of looking
//! its rows up by key costs nothing then, and more with every task the
//! database holds afterwards, until statistics catch up (if they do).
//! Counted here with PostgreSQL's own per-transaction statistics: the
//! rows one task's whole life reads from the engine's tables and queues,
//! on one connection whose plans were made while the tables held a task
//! or two, before and after thousands of other steps were added.

use serde_json::json;
use sqlx::{Connection, PgConnection};
use tasker_engine::database::{connect_options, HOT_PATH_SESSION};
use tasker_engine::orchestration::{self, create_task, register_templates, Completed};
use tasker_engine::testing::test_database;
use tasker_engine::worker::{submit_and_complete_results, submit_results};
use tasker_engine::TaskRequest;
use uuid::Uuid;

use crate::scenario;

/// Steps of other tasks added between the two measurements (diamonds of
/// four steps, in their own namespace and queue).
const FILLER_TASKS: usize = 500;

/// Who completes a step's result: orchestration (the result processor's
/// statements), or the worker in its submit's transaction
/// (`worker.complete_results`).
#[derive(Clone, Copy)]
enum Completer {
    Orchestration,
    Worker,
}

/// Runs one linear task to completion through the hot path's functions
/// (create, then claim, submit and complete each step) in one transaction
/// on `conn`, and returns the rows it read from the engine's tables and
/// queues, in all and by table.
async fn rows_read_by_one_task(
    conn: &mut PgConnection,
    n: i64,
    completer: Completer,
) -> (i64, String) {
    let mut tx = conn.begin().await.unwrap();
    let before = rows_read(&mut tx).await;
    let task = create_chain_task(&mut tx, "linear", "linear_workflow", n).await;
    for _ in 0..4 {
        match completer {
            Completer::Orchestration => {
                claim_and_submit_one(&mut tx, "linear").await;
                process_results(&mut tx).await;
            }
            Completer::Worker => {
                let results = claim(&mut tx, "linear", 1).await;
                submit_and_complete_results(&mut tx, "worker_linear_queue", &results)
                    .await
                    .unwrap();
            }
        }
    }
    assert_complete(&mut tx, task).await;
    let read = rows_read(&mut tx).await;
    tx.commit().await.unwrap();
    let read: Vec<(String, i64)> = read
        .into_iter()
        .zip(before)
        .map(|((table, after), (_, before))| (table, after - before))
        .filter(|(_, rows)| *rows > 0)
        .collect();
    let total = read.iter().map(|(_, rows)| rows).sum();
    let tables = read
        .iter()
        .map(|(table, rows)| format!("{table} {rows}"))
        .collect::<Vec<_>>()
        .join(", ");
    (total, tables)
}

/// Creates a task of `template` (in `namespace`) whose steps run one after
/// another; `n` makes its context, and so the task, new.
pub(crate) async fn create_chain_task(
    tx: &mut PgConnection,
    namespace: &str,
    template: &str,
    n: i64,
) -> Uuid {
    sqlx::query_scalar("SELECT task_uuid FROM tasker.create_task($1, $2, '1.0.0', $3, NULL)")
        .bind(namespace)
        .bind(template)
        .bind(json!({"even_number": 2, "n": n}))
        .fetch_one(tx)
        .await
        .unwrap()
}

/// As a worker of `namespace`: claims the one step on its queue and
/// submits its success.
pub(crate) async fn claim_and_submit_one(tx: &mut PgConnection, namespace: &str) {
    claim_and_submit(tx, namespace, 1).await;
}

/// As a worker of `namespace`: claims the `steps` steps on its queue and
/// submits their successes in one call.
pub(crate) async fn claim_and_submit(tx: &mut PgConnection, namespace: &str, steps: usize) {
    let results = claim(tx, namespace, steps).await;
    // as the worker submits them (its plain statement)
    let queue = format!("worker_{namespace}_queue");
    let refused = submit_results(tx, &queue, &results).await.unwrap();
    assert_eq!(refused, Vec::<Uuid>::new());
}

/// As a worker of `namespace`: claims the `steps` steps on its queue;
/// returns their successes as the submitter sends them.
async fn claim(tx: &mut PgConnection, namespace: &str, steps: usize) -> serde_json::Value {
    let claimed: Vec<(i64, Uuid, Uuid)> = sqlx::query_as(&format!(
        r#"SELECT msg_id, workflow_step_uuid, claim_token
             FROM tasker."claim_worker_{namespace}_queue"(30, 10, 'w')"#
    ))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(claimed.len(), steps, "steps waiting on the queue");
    let results: Vec<_> = claimed
        .iter()
        .map(|(msg, step, token)| {
            json!({
                "step_uuid": step, "msg_id": msg, "claim_token": token, "success": true,
                "result": 1, "error": null, "execution_time_us": 10, "worker_id": "w",
            })
        })
        .collect();
    serde_json::Value::from(results)
}

/// As orchestration: processes the results waiting, as the result
/// processor does.
pub(crate) async fn process_results(tx: &mut PgConnection) {
    process_results_by(tx, 10).await;
}

/// As [`process_results`], at most `batch` messages of each kind; returns
/// what the plain statement did.
pub(crate) async fn process_results_by(tx: &mut PgConnection, batch: i32) -> Completed {
    orchestration::process_results(tx, batch)
        .await
        .unwrap()
        .completed
}

pub(crate) async fn assert_complete(tx: &mut PgConnection, task: Uuid) {
    let state: String =
        sqlx::query_scalar("SELECT state::text FROM tasker.tasks WHERE task_uuid = $1")
            .bind(task)
            .fetch_one(tx)
            .await
            .unwrap();
    assert_eq!(state, "complete");
}

/// Rows read so far from each of the engine's tables, by this backend:
/// what its transactions did since it last reported to the statistics
/// collector (never inside a transaction), so only differences within
/// one transaction count.
pub(crate) async fn rows_read(tx: &mut PgConnection) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT relname::text, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
           FROM pg_stat_xact_user_tables WHERE schemaname IN ('tasker', 'pgmq')
          ORDER BY relname",
    )
    .fetch_all(tx)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_task_reads_as_many_steps_in_a_full_database_as_in_an_empty_one() {
    rows_read_as_the_tables_grow(Completer::Orchestration).await;
}

/// The same with the worker completing its results: its variant of the
/// completion picks its messages and locks its tasks by key too.
#[tokio::test]
async fn a_task_its_worker_completes_reads_as_many_steps_in_a_full_database() {
    rows_read_as_the_tables_grow(Completer::Worker).await;
}

async fn rows_read_as_the_tables_grow(completer: Completer) {
    let database = test_database().await.unwrap();
    let setup = tasker_engine::database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    tasker_engine::database::migrate(&setup).await.unwrap();
    let diamond = scenario("diamond_workflow");
    register_templates(&setup, &[scenario("linear_workflow"), diamond.clone()])
        .await
        .unwrap();

    // The hot path's connection: its plans are made here, on tiny tables.
    let mut hot = PgConnection::connect_with(&connect_options(&database.url).unwrap())
        .await
        .unwrap();
    // with the result processor's settings, which its plain statement
    // takes from the session
    sqlx::query(HOT_PATH_SESSION)
        .execute(&mut hot)
        .await
        .unwrap();
    // A fresh database is analyzed early (autovacuum, after its first
    // changes): the statistics then say the
    // tables are tiny, and plans are made with them until the next ANALYZE.
    rows_read_by_one_task(&mut hot, 0, completer).await;
    sqlx::query("ANALYZE").execute(&setup).await.unwrap();
    let mut empty = (0, String::new());
    for n in 1..3 {
        empty = rows_read_by_one_task(&mut hot, n, completer).await;
    }

    for n in 0..FILLER_TASKS {
        let request = TaskRequest::new(
            &diamond.namespace_name,
            &diamond.name,
            &diamond.version,
            json!({"even_number": 2, "n": n}),
        );
        create_task(&setup, &request).await.unwrap();
    }
    let steps: i64 = sqlx::query_scalar("SELECT count(*) FROM tasker.workflow_steps")
        .fetch_one(&setup)
        .await
        .unwrap();
    let full = rows_read_by_one_task(&mut hot, 3, completer).await;
    assert!(
        full.0 <= empty.0 * 3 / 2,
        "one linear task read {} rows when the tables held a few tasks ({}) and {} when they \
         held {steps} steps ({}): a plan walks a table",
        empty.0,
        empty.1,
        full.0,
        full.1
    );
}
