//! The floor scenarios on a real server: every task completes, every step
//! is recorded complete with its message claimed exactly once (the floor's
//! own tables say so, also under an open-loop load), and a step costs what
//! the model says, counted by pg_stat_statements like any scenario.

mod common;

use pg_local::{ClusterOptions, LocalCluster};
use sqlx::{Connection, PgConnection};
use tasker_harness::result::ScenarioResult;
use tasker_harness::run;
use tasker_harness::scenario::{ThroughputPlan, Topology};

fn cluster() -> LocalCluster {
    let mut options = ClusterOptions::for_tests();
    options.settings.push((
        "shared_preload_libraries".into(),
        "pg_stat_statements".into(),
    ));
    LocalCluster::start(&options).expect("a local PostgreSQL with pg_stat_statements")
}

/// What the floor's tables hold in the scenario's database.
#[derive(Debug, PartialEq, Eq)]
struct Tables {
    tasks: i64,
    complete: i64,
    steps: i64,
    claimed_once: i64,
    queue: i64,
    results: i64,
}

async fn tables(cluster: &LocalCluster, scenario: &str) -> Tables {
    let mut admin = PgConnection::connect(&cluster.admin_url()).await.unwrap();
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("bench_{scenario}_%"))
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let [database] = databases.as_slice() else {
        panic!("one database for {scenario}: {databases:?}");
    };
    let mut db = PgConnection::connect(&cluster.url(database)).await.unwrap();
    let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM floor.tasks),
                (SELECT count(*) FROM floor.tasks WHERE completed_at IS NOT NULL),
                (SELECT count(*) FROM floor.steps),
                (SELECT count(*) FROM floor.steps WHERE claims = 1),
                (SELECT count(*) FROM floor.queue),
                (SELECT count(*) FROM floor.results)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    Tables {
        tasks: row.0,
        complete: row.1,
        steps: row.2,
        claimed_once: row.3,
        queue: row.4,
        results: row.5,
    }
}

#[tokio::test]
async fn the_floor_runs_every_task_once_at_the_cost_its_model_says() {
    let cluster = cluster();
    let mut scenarios = common::scenarios(&["floor_linear", "floor_diamond"]);
    assert_eq!(scenarios.len(), 2);
    for s in &mut scenarios {
        assert_eq!(s.topology, Topology::Floor);
        s.latency.as_mut().unwrap().warmup = 3;
        // A short open-loop load: many tasks at once.
        s.throughput = Some(ThroughputPlan {
            rates: vec![200.0],
            duration_s: 0.5,
        });
    }
    let plan = common::plan(scenarios, cluster.admin_url(), Some(6), false);
    let run = run::run(&plan).await.expect("the floor runs");

    let timings = run.server_timings.expect("server timings are measured");
    assert!(timings.round_trip_us > 0.0 && timings.commit_us >= 0.0);
    assert_eq!(timings.samples, 200);

    // (scenario, statements = commits a task, rows written a task).
    // Statements, each its own transaction: the creation, then per step a
    // claim, a submission and an orchestration statement; the diamond's
    // two middle steps are claimed, submitted and processed together.
    // Rows: the task and its root's message, then per step its claim, the
    // message deleted and the result stored, the result consumed and the
    // step recorded, and one more: the message of the step it makes ready
    // (the diamond's first makes two, its middle two one) or, for the last,
    // the task completed.
    let expected: [(&str, f64, f64); 2] = [
        ("floor_linear", 1.0 + 3.0 * 4.0, 2.0 + 6.0 * 4.0),
        ("floor_diamond", 1.0 + 3.0 * 3.0, 2.0 + 6.0 * 4.0),
    ];
    for (name, per_task, rows_per_task) in expected {
        let s: &ScenarioResult = run.scenario(name).unwrap();
        assert!(s.floor, "{name} is marked as a floor");
        assert!(run.floor_of(s).is_none(), "a floor has no floor");
        assert_eq!(s.steps_per_task, 4);
        assert!(s.phases.is_none());
        let latency = s.latency.as_ref().unwrap();
        assert_eq!(latency.samples_us.len(), 6);
        let costs = s.costs.expect("pg_stat_statements is loaded");
        assert_eq!(
            costs.statements_per_step,
            per_task / 4.0,
            "{name}: {costs:?}"
        );
        assert_eq!(costs.commits_per_step, per_task / 4.0, "{name}: {costs:?}");
        assert_eq!(
            costs.rows_written_per_step,
            rows_per_task / 4.0,
            "{name}: {costs:?}"
        );
        let implied = timings.implied_floor_us(s).unwrap();
        let by_hand = per_task * timings.commit_us + per_task * timings.round_trip_us;
        assert!((implied - by_hand).abs() < 1e-6, "{implied} vs {by_hand}");

        let [point] = s.throughput.as_slice() else {
            panic!("one rate")
        };
        assert_eq!(
            (point.submitted, point.completed, point.timed_out),
            (100, 100, 0)
        );

        let tasks = 3 + 6 + 100;
        assert_eq!(
            tables(&cluster, name).await,
            Tables {
                tasks,
                complete: tasks,
                steps: 4 * tasks,
                claimed_once: 4 * tasks,
                queue: 0,
                results: 0,
            },
            "{name}: every task complete, every step claimed exactly once, nothing left"
        );
    }
}

/// The first and last creation times of the tasks in a scenario's database.
async fn task_span(cluster: &LocalCluster, scenario: &str, table: &str) -> (f64, f64) {
    let mut admin = PgConnection::connect(&cluster.admin_url()).await.unwrap();
    let database: String =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("bench_{scenario}_%"))
            .fetch_one(&mut admin)
            .await
            .unwrap();
    let mut db = PgConnection::connect(&cluster.url(&database))
        .await
        .unwrap();
    sqlx::query_as(&format!(
        "SELECT extract(epoch FROM min(created_at))::float8, extract(epoch FROM max(created_at))::float8 FROM {table}"
    ))
    .fetch_one(&mut db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_scenario_and_its_floor_interleave_their_latency_tasks() {
    let cluster = cluster();
    let mut scenarios = common::scenarios(&["linear", "floor_linear"]);
    for s in &mut scenarios {
        s.latency.as_mut().unwrap().warmup = 3;
    }
    let plan = common::plan(scenarios, cluster.admin_url(), Some(30), true);
    let run = run::run(&plan).await.expect("the pair runs");

    let names: Vec<&str> = run.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["linear", "floor_linear"],
        "results in the plan's order"
    );
    let linear = run.scenario("linear").unwrap();
    let floor = run.scenario("floor_linear").unwrap();
    assert_eq!(
        run.floor_of(linear).map(|f| f.name.as_str()),
        Some("floor_linear")
    );
    for s in [linear, floor] {
        let latency = s.latency.as_ref().unwrap();
        assert_eq!(latency.samples_us.len(), 30, "{}", s.name);
        let own: u64 = latency.samples_us.iter().sum();
        assert!(
            (latency.wall_seconds - own as f64 / 1e6).abs() < 1e-6,
            "{}: the wall time is the tasks' own",
            s.name
        );
        assert!(s.costs.is_some(), "{}: costs from its own database", s.name);
    }
    assert_eq!(linear.phases.as_ref().unwrap().steps.len(), 4);
    assert_eq!(floor.costs.unwrap().commits_per_step, 13.0 / 4.0);

    // Interleaved: each side created tasks while the other was running.
    let engine = task_span(&cluster, "linear", "tasker.tasks").await;
    let model = task_span(&cluster, "floor_linear", "floor.tasks").await;
    assert!(
        engine.1 > model.0 && model.1 > engine.0,
        "the engine's tasks ({engine:?}) and the floor's ({model:?}) overlap in time"
    );
}
