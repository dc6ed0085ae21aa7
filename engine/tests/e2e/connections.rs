//! The hot loops keep their own connections. sqlx 0.8 pings every
//! connection that goes back to its pool, a round trip that is not a
//! statement (pg_stat_statements does not see it); counted here from the
//! pools' side: while tasks run, no connection of the orchestrator's or
//! the worker's goes back to its pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tasker_engine::database::{self, connect_options};
use tasker_engine::orchestration::{register_templates, Orchestrator};
use tasker_engine::testing::test_database;
use tasker_engine::worker::Worker;
use tasker_engine::{TaskRequest, TaskState, TaskerClient};
use tokio_util::sync::CancellationToken;

use crate::{scenario, test_config, TASK_TIMEOUT};

/// A pool that counts the connections given back to it.
async fn counting_pool(url: &str, released: Arc<AtomicUsize>, asynchronous: bool) -> PgPool {
    let mut options = connect_options(url).unwrap().application_name("tasker");
    if asynchronous {
        options = options.options([("synchronous_commit", "off")]);
    }
    PgPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .after_release(move |_, _| {
            released.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(true) })
        })
        .connect_with(options)
        .await
        .unwrap()
}

#[tokio::test]
async fn steps_give_no_connection_back_to_a_pool() {
    let database = test_database().await.unwrap();
    let template = scenario("linear_workflow");
    let setup = database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    database::migrate(&setup).await.unwrap();
    register_templates(&setup, std::slice::from_ref(&template))
        .await
        .unwrap();

    let released = Arc::new(AtomicUsize::new(0));
    let pool = counting_pool(&database.url, released.clone(), false).await;
    let claim_pool = counting_pool(&database.url, released.clone(), true).await;
    let mut config = test_config();
    // Only the hot path: the periodic loops would use the pool on a timer.
    config.orchestration.maintenance_interval_ms = 0;
    config.orchestration.staleness_interval_ms = 0;
    let orchestrator = Orchestrator::start(pool.clone(), config.orchestration.clone())
        .await
        .unwrap();
    let worker = Worker::start(
        pool.clone(),
        claim_pool,
        tasker_scenarios::registry(),
        config.worker.clone(),
        vec![template.namespace_name.clone()],
    )
    .await
    .unwrap();
    // The client is the application's, on a pool of its own.
    let client = TaskerClient::new(setup.clone(), CancellationToken::new())
        .await
        .unwrap();
    // Each its own task: an identical request is the same task.
    let request = |n: u64| {
        TaskRequest::new(
            &template.namespace_name,
            &template.name,
            &template.version,
            json!({"even_number": 2}),
        )
        .with_idempotency_key(format!("connections-{n}"))
    };
    // The first task lets every loop take its connection.
    let (_, state) = client.run_task(&request(1), TASK_TIMEOUT).await.unwrap();
    assert_eq!(state, TaskState::Complete);
    let before = released.load(Ordering::SeqCst);
    let mut tasks = std::collections::HashSet::new();
    for n in 2..12 {
        let (task, state) = client.run_task(&request(n), TASK_TIMEOUT).await.unwrap();
        assert_eq!(state, TaskState::Complete);
        tasks.insert(task);
    }
    assert_eq!(tasks.len(), 10, "ten tasks ran");
    let given_back = released.load(Ordering::SeqCst) - before;
    assert_eq!(
        given_back, 0,
        "40 steps gave {given_back} connections back to a pool, each a ping"
    );
    worker.shutdown().await;
    orchestrator.shutdown().await;
}

/// The engine's commits wait for the WAL flush whatever the database's
/// default says, unless it asks for more; only the claim pool's do not.
#[tokio::test]
async fn commits_are_durable_whatever_the_database_default() {
    let database = test_database().await.unwrap();
    let setting = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let engine_pool = |asynchronous_commit| {
        let url = database.url.clone();
        async move {
            database::connect(
                &url,
                &database::PoolSettings {
                    asynchronous_commit,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(&database.url).unwrap())
        .await
        .unwrap();
    for (default, durable) in [
        ("off", "on"),
        ("local", "local"),
        ("remote_apply", "remote_apply"),
    ] {
        sqlx::query(&format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = '{default}'",
            database.name
        ))
        .execute(&admin)
        .await
        .unwrap();
        assert_eq!(
            setting(engine_pool(false).await).await,
            durable,
            "database default {default}"
        );
        assert_eq!(
            setting(engine_pool(true).await).await,
            "off",
            "the claim pool, database default {default}"
        );
    }
}
