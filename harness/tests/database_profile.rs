//! The database profile's readings on a real server: statements run inside
//! a PL/pgSQL function show up as nested statements, and the function's
//! own time, between two snapshots; a backend blocked on a lock is sampled
//! as waiting on it; synchronous commits are counted and timed as WAL
//! flushes. And one real `profile --with postgres` run of the linear
//! scenario, from the probes to the record the report ranks.

mod common;

use std::time::Duration;

use pg_local::{ClusterOptions, LocalCluster};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use tasker_harness::profile::database::functions::FunctionSnapshot;
use tasker_harness::profile::database::statements::{toplevel_ms, Snapshot};
use tasker_harness::profile::database::waits::{self, Category};
use tasker_harness::profile::database::wal::WalStats;
use tokio_util::sync::CancellationToken;

fn cluster() -> LocalCluster {
    let mut options = ClusterOptions::for_tests();
    options.settings.push((
        "shared_preload_libraries".into(),
        "pg_stat_statements".into(),
    ));
    LocalCluster::start(&options).expect("a local PostgreSQL with pg_stat_statements")
}

/// Runs `statement` with 0..count as its parameter, then has the backend
/// publish its statistics (functions, WAL), which it does once idle.
async fn run_and_publish(work: &mut PgConnection, statement: &str, count: i32) {
    for n in 0..count {
        sqlx::query(statement)
            .bind(n)
            .execute(&mut *work)
            .await
            .unwrap();
    }
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *work)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn database(cluster: &LocalCluster, name: &str) -> String {
    let mut admin = PgConnection::connect(&cluster.admin_url()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    cluster.url(name)
}

#[tokio::test]
async fn nested_statements_and_function_times_are_read_between_two_snapshots() {
    let cluster = cluster();
    let url = database(&cluster, "profiled").await;
    // The workload's session tracks nested statements and functions (both
    // settings are a superuser's to set per session).
    let mut work = PgConnection::connect(&url).await.unwrap();
    for statement in [
        "CREATE EXTENSION pg_stat_statements",
        "SET pg_stat_statements.track = 'all'",
        "SET track_functions = 'all'",
        "CREATE TABLE t (x int)",
        "CREATE FUNCTION bump(n int) RETURNS void LANGUAGE plpgsql AS \
         $$ BEGIN INSERT INTO t VALUES (n); END $$",
    ] {
        sqlx::query(statement).execute(&mut work).await.unwrap();
    }
    let reader = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let (statements_before, functions_before) = (
        Snapshot::read(&reader, "profiled").await.unwrap(),
        FunctionSnapshot::read(&reader).await.unwrap(),
    );
    run_and_publish(&mut work, "SELECT bump($1)", 5).await;
    let statements = statements_before.since(&Snapshot::read(&reader, "profiled").await.unwrap());
    let functions = functions_before.since(&FunctionSnapshot::read(&reader).await.unwrap());

    let find = |text: &str, toplevel: bool| {
        statements
            .iter()
            .find(|s| s.query.contains(text) && s.toplevel == toplevel)
            .unwrap_or_else(|| panic!("no {text} (toplevel {toplevel}) in {statements:#?}"))
    };
    let call = find("bump", true);
    let insert = find("INSERT INTO t", false);
    assert_eq!((call.calls, insert.calls), (5, 5));
    assert_eq!(insert.rows, 5);
    assert!(insert.wal_bytes > 0, "the inserts wrote WAL");
    assert!(
        insert.total_exec_time <= call.total_exec_time,
        "the nested insert's time is inside the call's"
    );
    assert!(toplevel_ms(&statements) >= call.total_exec_time);
    let bump = functions
        .iter()
        .find(|f| f.name == "public.bump")
        .unwrap_or_else(|| panic!("public.bump not in {functions:?}"));
    assert_eq!(bump.calls, 5);
    assert!(bump.self_time > 0.0 && bump.self_time <= bump.total_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_blocked_on_a_lock_is_sampled_waiting_on_it() {
    let cluster = cluster();
    let url = database(&cluster, "waits").await;
    let mut holder = PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&mut holder)
        .await
        .unwrap();
    // The holder keeps the table locked, idle in its transaction, while
    // the other backend waits for the lock for about half a second.
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE t")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut blocked = PgConnection::connect(&url).await.unwrap();
    let waiting = tokio::spawn(async move {
        sqlx::query("SELECT count(*) FROM t")
            .execute(&mut blocked)
            .await
            .unwrap();
    });
    let sampler_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let sampler = tokio::spawn({
        let stop = stop.clone();
        async move { waits::sample(&sampler_pool, "waits", Duration::from_millis(5), stop).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let profile = sampler.await.unwrap().unwrap();
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    waiting.await.unwrap();

    assert!(profile.rounds >= 20, "sampled every 5 ms: {profile:?}");
    let locks = profile
        .categories
        .get(&Category::Lock)
        .copied()
        .unwrap_or(0);
    let client = profile
        .categories
        .get(&Category::Client)
        .copied()
        .unwrap_or(0);
    assert!(
        locks * 10 >= profile.rounds * 9,
        "the blocked backend waits on the lock: {profile:?}"
    );
    assert!(
        client * 10 >= profile.rounds * 9,
        "the holder is idle in its transaction: {profile:?}"
    );
    assert!(profile.events.contains_key("Lock:relation"), "{profile:?}");
}

#[tokio::test]
async fn each_synchronous_commit_is_a_timed_wal_flush() {
    // Durable (fsync on), with WAL I/O timed.
    let mut options = ClusterOptions::default();
    options
        .settings
        .push(("track_wal_io_timing".into(), "on".into()));
    let cluster = LocalCluster::start(&options).expect("a local PostgreSQL");
    let url = database(&cluster, "commits").await;
    let reader = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mut work = PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&mut work)
        .await
        .unwrap();
    let before = WalStats::read(&reader).await.unwrap();
    run_and_publish(&mut work, "INSERT INTO t VALUES ($1)", 20).await;
    let grown = before.since(&WalStats::read(&reader).await.unwrap());
    assert!(grown.wal_sync >= 20, "one flush per commit: {grown:?}");
    assert!(grown.wal_sync_time > 0.0, "timed: {grown:?}");
    assert!(grown.wal_records >= 20 && grown.wal_bytes > 0, "{grown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profiled_run_of_linear_reads_every_probe_into_a_ranked_record() {
    use tasker_harness::build::EngineBuild;
    use tasker_harness::profile::analyze::{analyze, Analysis};
    use tasker_harness::profile::recipe::Recipe;
    use tasker_harness::profile::session::{run_profiled, ProfileSpec, Target};

    // Durable commits (fsync on: flushes are counted) and
    // pg_stat_statements, as `profile` provisions them.
    let mut options = ClusterOptions::default();
    options.settings.push((
        "shared_preload_libraries".into(),
        "pg_stat_statements".into(),
    ));
    let cluster = LocalCluster::start(&options).expect("a local PostgreSQL");
    let plan = common::plan(
        common::scenarios(&["linear"]),
        cluster.admin_url(),
        None,
        true,
    );
    let mut recipe = Recipe::load("postgres").unwrap();
    // Every statement's plan, so that some are surely logged.
    recipe.database.explain_sample_rate = 1.0;
    let out = tempfile::tempdir().unwrap();
    let spec = ProfileSpec {
        recipe: &recipe,
        // The test's own build of the engine (cargo build --workspace --bins).
        build: EngineBuild::this().unwrap(),
        target: Target::Database,
        tasks: 10,
        out_dir: out.path(),
        live: false,
        server_log: Some(cluster.log_path()),
    };
    let profiled = run_profiled(&plan, &plan.scenarios[0], &spec)
        .await
        .expect("the profiled run");
    assert_eq!((profiled.tasks, profiled.steps), (10, 40));
    let db = profiled.database.as_ref().expect("a database profile");
    assert_eq!(db.steps, 40);

    // Statements: the hot path's functions, and what they run inside.
    assert!(
        db.statements
            .iter()
            .any(|s| s.toplevel && s.query.contains("tasker.")),
        "{:#?}",
        db.statements
    );
    assert!(
        db.statements.iter().any(|s| !s.toplevel),
        "nested statements are tracked: {:#?}",
        db.statements
    );
    assert!(
        db.functions.iter().any(|f| f.name.starts_with("tasker.")),
        "{:?}",
        db.functions
    );
    // Commits: at least one synchronous flush a step, timed.
    assert!(db.wal_timed);
    assert!(db.wal.wal_sync >= 40, "{:?}", db.wal);
    assert!(db.waits.rounds > 0 && db.waits.interval_us == 5000);
    // Plans from the server's log, with the file of the slowest ones.
    assert!(
        !db.plans.is_empty(),
        "auto_explain logged plans: {:?}",
        db.notes
    );
    assert!(db.plans_file.as_ref().unwrap().exists());
    let path = db.critical_path;
    assert!(path.wall_us > 0.0 && path.server_us > 0.0 && path.commit_flush_us > 0.0);
    assert!(
        path.round_trips >= 1.0 && path.round_trip_us > 0.0,
        "{path:?}"
    );
    assert!(path.explained_us() > 0.0);
    // The recording is the profile as JSON.
    assert!(profiled
        .recording
        .to_string_lossy()
        .ends_with(".postgres.json"));

    let flamegraphs = tempfile::tempdir().unwrap();
    let record = analyze(&Analysis {
        recipe: &recipe,
        target: Target::Database,
        scenario: "linear",
        profiled: &profiled,
        baseline: None,
        flamegraphs: flamegraphs.path(),
        out_dir: out.path(),
        top: 10,
    })
    .unwrap();
    assert_eq!(record.critical_path, Some(path));
    assert!(record.tables.starts_with("#### Critical path of a step"));
    assert!(record
        .findings
        .iter()
        .any(|f| f.what.starts_with("database statement `")));
    assert!(record
        .findings
        .iter()
        .any(|f| f.what.starts_with("commit flush")));
    // perf is optional: either the backends' flamegraph or a note why not.
    match &db.perf_data {
        Some(_) => assert!(record.flamegraph.is_some()),
        None => assert!(db.notes.iter().any(|n| n.contains("no CPU profile"))),
    }
}
