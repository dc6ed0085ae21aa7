//! The SQL functions of engine/sql/, applied after the migrations: a
//! migrated database has exactly the files' functions; migrating again
//! rewrites nothing; changed files are applied, and rewrite the functions
//! of queues that existed before; a file that fails changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use sqlx::PgPool;
use tasker_engine::database::functions::{self, Applied, SqlFile, FILES};
use tasker_engine::database::{self, DatabaseError};
use tasker_engine::orchestration::register_templates;
use tasker_engine::{TaskRequest, TaskState};

use crate::{scenario, start_on, test_config, TASK_TIMEOUT};

/// The linear template's queue and the functions made for it.
const QUEUE: &str = "worker_linear_queue";

/// A fresh migrated database with the linear template registered, so its
/// queue's claim and submit functions and its send branch exist.
async fn database_with_a_queue() -> (String, PgPool) {
    let database = tasker_engine::testing::test_database().await.unwrap();
    let pool = database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    database::migrate(&pool).await.unwrap();
    register_templates(&pool, &[scenario("linear_workflow")])
        .await
        .unwrap();
    (database.url, pool)
}

/// Every function of the tasker schema: signature → (xmin, source). A
/// function written again, even unchanged, has a new xmin.
async fn functions_in(pool: &PgPool) -> BTreeMap<String, (String, String)> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.xmin::text, p.prosrc
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'tasker'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(name, xmin, source)| (name, (xmin, source)))
        .collect()
}

async fn source_of(pool: &PgPool, function: &str) -> String {
    sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE oid = to_regproc($1)")
        .bind(format!("tasker.{function}"))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("tasker.{function}: {e}"))
}

async fn recorded_hashes(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT hash, applied_at::text FROM tasker.sql_functions ORDER BY applied_at, hash",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn current_hash(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT hash FROM tasker.sql_functions ORDER BY applied_at DESC LIMIT 1")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The names the files define at the top level (the per-queue functions
/// they write with format() are `tasker.%3$I` and so on).
fn names_in_files() -> BTreeSet<String> {
    let prefix = "CREATE OR REPLACE FUNCTION tasker.";
    FILES
        .iter()
        .flat_map(|file| file.text.lines())
        .filter_map(|line| line.strip_prefix(prefix))
        .filter(|rest| !rest.starts_with('%'))
        .map(|rest| rest[..rest.find('(').expect("an argument list")].to_string())
        .collect()
}

/// The engine's files with one change to each of the queue generators:
/// a comment inside the claim function and one inside the submit function.
fn changed_files() -> Vec<(String, String)> {
    let mut changed = 0;
    let files: Vec<(String, String)> = FILES
        .iter()
        .map(|file| {
            let mut text = file.text.to_string();
            if file.name == "worker_queues.sql" {
                for (old, new) in [
                    (
                        "-- A duplicate delivery of a step claimed or done: dropped unrun.",
                        "-- A duplicate delivery of a step claimed or done: dropped unrun (changed).",
                    ),
                    (
                        "-- Refused entries (rare): the claim lapsed",
                        "-- Refused entries (changed) (rare): the claim lapsed",
                    ),
                ] {
                    assert!(text.contains(old), "worker_queues.sql has {old:?}");
                    text = text.replace(old, new);
                    changed += 1;
                }
            }
            (file.name.to_string(), text)
        })
        .collect();
    assert_eq!(changed, 2);
    files
}

fn borrowed(files: &[(String, String)]) -> Vec<SqlFile<'_>> {
    files
        .iter()
        .map(|(name, text)| SqlFile { name, text })
        .collect()
}

#[tokio::test]
async fn a_migrated_database_has_exactly_the_functions_of_the_files() {
    let (_url, pool) = database_with_a_queue().await;
    let expected = names_in_files();
    assert!(expected.len() > 40, "{expected:?}");
    let per_queue: BTreeSet<String> = ["claim", "submit"]
        .iter()
        .map(|prefix| format!("{prefix}_{QUEUE}"))
        .collect();
    let in_database: BTreeSet<String> = functions_in(&pool)
        .await
        .into_keys()
        .map(|signature| {
            let name = signature.strip_prefix("tasker.").unwrap();
            name[..name.find('(').unwrap()]
                .trim_matches('"')
                .to_string()
        })
        .collect();
    assert_eq!(
        in_database,
        expected.union(&per_queue).cloned().collect(),
        "the tasker functions are the files' and the linear queue's, no more, no fewer"
    );
    assert_eq!(current_hash(&pool).await, functions::hash(FILES));
}

#[tokio::test]
async fn migrating_again_rewrites_nothing() {
    let (_url, pool) = database_with_a_queue().await;
    let before = functions_in(&pool).await;
    let hashes = recorded_hashes(&pool).await;
    assert_eq!(
        database::migrate_with(&pool, FILES).await.unwrap(),
        Applied::Unchanged
    );
    database::migrate(&pool).await.unwrap();
    assert_eq!(
        functions_in(&pool).await,
        before,
        "no function written again"
    );
    assert_eq!(recorded_hashes(&pool).await, hashes);
}

#[tokio::test]
async fn changed_files_are_applied_and_rewrite_the_queue_functions() {
    let (url, pool) = database_with_a_queue().await;
    let before = functions_in(&pool).await;
    let claim = format!("claim_{QUEUE}");
    let submit = format!("submit_{QUEUE}");
    assert!(!source_of(&pool, &claim).await.contains("(changed)"));

    let changed = changed_files();
    let changed = borrowed(&changed);
    assert_eq!(
        database::migrate_with(&pool, &changed).await.unwrap(),
        Applied::Written
    );
    assert!(
        source_of(&pool, &claim)
            .await
            .contains("dropped unrun (changed)."),
        "the existing queue's claim function is written again from the changed file"
    );
    assert!(
        source_of(&pool, &submit)
            .await
            .contains("Refused entries (changed)"),
        "and its submit function"
    );
    assert_eq!(current_hash(&pool).await, functions::hash(&changed));
    let after = functions_in(&pool).await;
    for (name, (xmin, _)) in &before {
        let (new_xmin, _) = after
            .get(name)
            .unwrap_or_else(|| panic!("{name} is still there"));
        assert_ne!(new_xmin, xmin, "{name} was written again");
    }
    assert_eq!(
        database::migrate_with(&pool, &changed).await.unwrap(),
        Applied::Unchanged,
        "the same files again change nothing"
    );

    // Back to the engine's own files: written again, and the engine runs a
    // task on the queue functions they wrote.
    assert_eq!(
        database::migrate_with(&pool, FILES).await.unwrap(),
        Applied::Written
    );
    assert!(!source_of(&pool, &claim).await.contains("(changed)"));
    assert_eq!(current_hash(&pool).await, functions::hash(FILES));
    let sources = |functions: BTreeMap<String, (String, String)>| {
        functions
            .into_iter()
            .map(|(name, (_, source))| (name, source))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        sources(functions_in(&pool).await),
        sources(before),
        "the same functions as before the change"
    );
    pool.close().await;

    let template = scenario("linear_workflow");
    let engine = start_on(&url, test_config(), &template, tasker_scenarios::registry()).await;
    let request = TaskRequest::new(
        &template.namespace_name,
        &template.name,
        &template.version,
        json!({"even_number": 2}),
    );
    let (_, state) = engine
        .client
        .run_task(&request, TASK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(state, TaskState::Complete);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_file_that_fails_changes_nothing_and_is_named() {
    let (_url, pool) = database_with_a_queue().await;
    let before = functions_in(&pool).await;
    let hashes = recorded_hashes(&pool).await;
    // The changed generators first, then a statement that fails: nothing of
    // it may stay.
    let mut broken = changed_files();
    broken
        .last_mut()
        .unwrap()
        .1
        .push_str("\nSELECT tasker.no_such_function();\n");
    let error = database::migrate_with(&pool, &borrowed(&broken))
        .await
        .unwrap_err();
    match &error {
        DatabaseError::Functions { file, .. } => assert_eq!(file, "worker_queues.sql"),
        other => panic!("expected a Functions error, got {other:?}"),
    }
    assert!(
        error.to_string().contains("engine/sql/worker_queues.sql"),
        "{error}"
    );
    assert_eq!(functions_in(&pool).await, before, "nothing written");
    assert_eq!(recorded_hashes(&pool).await, hashes);
}

/// The send dispatcher is written again with each new queue: every
/// queue's messages land in that queue's own table, and a queue that does
/// not exist is named in the error, with nothing sent anywhere.
#[tokio::test]
async fn the_send_dispatcher_routes_each_queue_to_its_own_table() {
    let (_url, pool) = database_with_a_queue().await;
    register_templates(&pool, &[scenario("diamond_workflow")])
        .await
        .unwrap();
    let message = |step: &str| json!({"task_uuid": uuid::Uuid::nil(), "step_uuid": step});
    for (queue, step) in [
        (QUEUE, "00000000-0000-0000-0000-000000000001"),
        (
            "worker_diamond_queue",
            "00000000-0000-0000-0000-000000000002",
        ),
    ] {
        sqlx::query("SELECT tasker.send_to_worker_queue($1, ARRAY[$2::jsonb])")
            .bind(queue)
            .bind(message(step))
            .execute(&pool)
            .await
            .unwrap();
    }
    let in_queue = |queue: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!(
                "SELECT message->>'step_uuid' FROM pgmq.q_{queue} ORDER BY msg_id"
            ))
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        in_queue(QUEUE).await,
        ["00000000-0000-0000-0000-000000000001"]
    );
    assert_eq!(
        in_queue("worker_diamond_queue").await,
        ["00000000-0000-0000-0000-000000000002"]
    );

    let error = sqlx::query(
        "SELECT tasker.send_to_worker_queue('worker_nowhere_queue', ARRAY['{}'::jsonb])",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no worker queue worker_nowhere_queue"),
        "{error}"
    );
    assert_eq!(in_queue(QUEUE).await.len(), 1);
    assert_eq!(in_queue("worker_diamond_queue").await.len(), 1);
}

/// Messages carry uuids as text from outside: `tasker.as_uuid` takes the
/// 8-4-4-4-12 hex form in either case and gives NULL for anything else
/// (a cast would raise and fail the whole batch), including forms the
/// uuid cast itself accepts.
#[tokio::test]
async fn as_uuid_takes_the_canonical_form_and_nothing_else() {
    let (_url, pool) = database_with_a_queue().await;
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let cases = [
        (uuid.to_string(), Some(uuid)),
        (uuid.to_uppercase(), Some(uuid)),
        (uuid[..35].to_string(), None),
        (format!("{uuid}0"), None),
        (format!("{{{uuid}}}"), None),
        (uuid.replace('-', ""), None),
        (uuid.replacen('0', "g", 1), None),
        (uuid.replacen('-', "0", 1).replacen('8', "-", 1), None),
        (String::new(), None),
    ];
    for (text, expected) in cases {
        let got: Option<String> = sqlx::query_scalar("SELECT tasker.as_uuid($1)::text")
            .bind(&text)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(got.as_deref(), expected, "as_uuid({text:?})");
    }
    let null: Option<String> = sqlx::query_scalar("SELECT tasker.as_uuid(NULL)::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(null, None);
}

/// JIT is decided by a plan's estimated cost and paid on every execution:
/// with a table's row count known but no column statistics, one task's
/// full evaluation was estimated past 13 million and compiled for 220 ms
/// on every call. The hot-path functions carry `jit = off` (whoever calls
/// them), and so does every connection the engine opens.
#[tokio::test]
async fn the_hot_path_never_jit_compiles() {
    let (_url, pool) = database_with_a_queue().await;
    for function in [
        "create_task",
        "process_step_results",
        "enqueue_steps",
        "claim_worker_linear_queue",
        "submit_worker_linear_queue",
    ] {
        let config: Option<Vec<String>> =
            sqlx::query_scalar("SELECT proconfig FROM pg_proc WHERE oid = to_regproc($1)")
                .bind(format!("tasker.{function}"))
                .fetch_one(&pool)
                .await
                .unwrap();
        let config = config.unwrap_or_default();
        assert!(
            config.iter().any(|setting| setting == "jit=off"),
            "tasker.{function} runs with {config:?}"
        );
    }
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jit, "off", "the engine's connections");
}
