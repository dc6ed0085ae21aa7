//! State changes: the Rust and SQL rules agree, illegal transitions and lost
//! compare-and-swaps are refused without touching the history, and
//! creating the same task twice returns the same task.

use serde_json::json;
use sqlx::PgPool;
use tasker_engine::orchestration::create_task;
use tasker_engine::state::{transition_step, transition_task, StateError};
use tasker_engine::{StepState, TaskRequest, TaskState};
use uuid::Uuid;

use crate::scenario;

async fn idle_task() -> (PgPool, Uuid) {
    let (_, pool, task) = crate::idle_linear_task().await;
    (pool, task)
}

async fn first_step(pool: &PgPool, task: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1 AND name = 'linear_step_1'")
        .bind(task)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The step's history, each row with whether it is the current one: the
/// latest (numbered by the step's transition count) and the step's state.
async fn step_history(pool: &PgPool, step: Uuid) -> Vec<(String, bool)> {
    sqlx::query_as(
        "SELECT t.to_state::text, t.sort_key = s.transitions AND t.to_state = s.state
           FROM tasker.workflow_step_transitions t
           JOIN tasker.workflow_steps s USING (workflow_step_uuid)
          WHERE t.workflow_step_uuid = $1 ORDER BY t.sort_key",
    )
    .bind(step)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn rust_and_sql_transition_rules_agree() {
    let (pool, _) = idle_task().await;
    let task_rules: Vec<(TaskState, TaskState)> =
        sqlx::query_as("SELECT from_state, to_state FROM tasker.task_state_rules")
            .fetch_all(&pool)
            .await
            .unwrap();
    for from in TaskState::ALL {
        for to in TaskState::ALL {
            assert_eq!(
                from.can_transition_to(to),
                task_rules.contains(&(from, to)),
                "task {from} -> {to}"
            );
        }
    }
    let step_rules: Vec<(StepState, StepState)> =
        sqlx::query_as("SELECT from_state, to_state FROM tasker.step_state_rules")
            .fetch_all(&pool)
            .await
            .unwrap();
    for from in StepState::ALL {
        for to in StepState::ALL {
            assert_eq!(
                from.can_transition_to(to),
                step_rules.contains(&(from, to)),
                "step {from} -> {to}"
            );
        }
    }
}

#[tokio::test]
async fn illegal_transitions_are_refused_and_history_is_untouched() {
    let (pool, task) = idle_task().await;
    let step = first_step(&pool, task).await;
    let before = step_history(&pool, step).await;
    assert_eq!(
        before,
        [("pending".into(), false), ("enqueued".into(), true)]
    );

    let refused = transition_step(
        &pool,
        step,
        StepState::Enqueued,
        StepState::Complete,
        json!({}),
    )
    .await;
    assert!(
        matches!(refused, Err(StateError::IllegalTransition(ref m)) if m.contains("enqueued -> complete")),
        "{refused:?}"
    );
    let refused = transition_task(
        &pool,
        task,
        TaskState::StepsInProcess,
        TaskState::Complete,
        json!({}),
    )
    .await;
    assert!(
        matches!(refused, Err(StateError::IllegalTransition(_))),
        "{refused:?}"
    );
    // Legal pair, wrong current state: the CAS fails and names the real state.
    let refused = transition_step(
        &pool,
        step,
        StepState::Pending,
        StepState::Enqueued,
        json!({}),
    )
    .await;
    assert!(
        matches!(refused, Err(StateError::Mismatch(ref m)) if m.contains("is in state enqueued")),
        "{refused:?}"
    );
    assert_eq!(step_history(&pool, step).await, before);

    transition_step(
        &pool,
        step,
        StepState::Enqueued,
        StepState::InProgress,
        json!({"by": "test"}),
    )
    .await
    .unwrap();
    let after = step_history(&pool, step).await;
    assert_eq!(after.last(), Some(&("in_progress".to_string(), true)));
    assert_eq!(after.iter().filter(|(_, current)| *current).count(), 1);
}

#[tokio::test]
async fn concurrent_transitions_from_one_state_let_exactly_one_win() {
    let (pool, task) = idle_task().await;
    let step = first_step(&pool, task).await;
    let attempts = (0..8).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            transition_step(
                &pool,
                step,
                StepState::Enqueued,
                StepState::InProgress,
                json!({}),
            )
            .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(StateError::Mismatch(_)))))
        .count();
    assert_eq!((won, lost), (1, 7));
    assert_eq!(step_history(&pool, step).await.len(), 3);
}

#[tokio::test]
async fn creating_the_same_task_twice_returns_the_same_task() {
    let (pool, first) = idle_task().await;
    // Same template, same context, no idempotency key: same identity.
    let again = TaskRequest::new(
        "linear",
        "linear_workflow",
        "1.0.0",
        json!({"even_number": 2}),
    );
    let second = create_task(&pool, &again).await.unwrap();
    assert_eq!(
        (second.task_uuid, second.created, second.enqueued_steps),
        (first, false, 0)
    );

    let keyed = again.clone().with_idempotency_key("order-17");
    let third = create_task(&pool, &keyed).await.unwrap();
    assert!(third.created);
    assert_ne!(third.task_uuid, first);
    let fourth = create_task(&pool, &keyed).await.unwrap();
    assert_eq!((fourth.task_uuid, fourth.created), (third.task_uuid, false));

    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasker.tasks")
        .fetch_one(&pool)
        .await
        .unwrap();
    let steps: i64 = sqlx::query_scalar("SELECT count(*) FROM tasker.workflow_steps")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((tasks, steps), (2, 8));
}

#[tokio::test]
async fn creating_a_task_of_an_unknown_template_names_it() {
    let (pool, _) = idle_task().await;
    let request = TaskRequest::new("linear", "no_such_workflow", "9.9.9", json!({}));
    let error = create_task(&pool, &request).await.unwrap_err().to_string();
    assert!(error.contains("linear/no_such_workflow@9.9.9"), "{error}");
}

/// run_task waits for its task before creating it (under a uuid it
/// chooses): a request matching an earlier task waits for that task
/// instead, finished already or not, and a refused one (an unknown
/// template, a context its input_schema refuses) leaves nothing behind.
#[tokio::test]
async fn running_a_known_request_again_returns_the_first_task() {
    let engine = crate::start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    let request = TaskRequest::new(
        "linear",
        "linear_workflow",
        "1.0.0",
        json!({"even_number": 2}),
    )
    .with_idempotency_key("run-twice");
    let (first, state) = engine
        .client
        .run_task(&request, crate::TASK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(state, TaskState::Complete);
    let (again, state) = engine
        .client
        .run_task(&request, crate::TASK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!((again, state), (first, TaskState::Complete));
    let unknown = TaskRequest::new("linear", "no_such_workflow", "9.9.9", json!({}));
    let error = engine
        .client
        .run_task(&unknown, crate::TASK_TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("linear/no_such_workflow@9.9.9"), "{error}");
    let refused = TaskRequest::new(
        "linear",
        "linear_workflow",
        "1.0.0",
        json!({"even_number": "two"}),
    );
    let error = engine
        .client
        .run_task(&refused, crate::TASK_TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("even_number"), "{error}");
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasker.tasks")
        .fetch_one(&engine.pool)
        .await
        .unwrap();
    assert_eq!(tasks, 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn maintenance_vacuums_queues_and_leaves_the_engine_tables_alone() {
    let template = scenario("linear_workflow");
    let mut config = crate::test_config();
    config.orchestration.maintenance_interval_ms = 0; // only the pass below
    let engine = crate::start_with(config.clone(), &[template], tasker_scenarios::registry()).await;
    for i in 0..5 {
        let request = TaskRequest::new(
            "linear",
            "linear_workflow",
            "1.0.0",
            json!({"even_number": 2}),
        )
        .with_idempotency_key(format!("maintenance-{i}"));
        engine
            .client
            .run_task(&request, crate::TASK_TIMEOUT)
            .await
            .unwrap();
    }
    // Table statistics reach pg_stat_user_tables when each backend flushes
    // them (up to ten seconds after it goes idle): wait until they are in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let dead: i64 = sqlx::query_scalar(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = 'pgmq' AND relname = 'q_worker_linear_queue'",
        )
        .fetch_one(&engine.pool)
        .await
        .unwrap();
        if dead > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "table statistics never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut thresholds = config.orchestration.clone();
    thresholds.vacuum_min_dead_rows = 1;
    let report = tasker_engine::orchestration::maintenance::run_once(&engine.pool, &thresholds)
        .await
        .unwrap();
    assert!(
        report
            .vacuumed
            .contains(&"pgmq.q_worker_linear_queue".to_string()),
        "{report:?}"
    );
    // Only queue tables: an ANALYZE or VACUUM of the engine's tables would
    // make every backend plan its hot-path statements again.
    assert!(
        report.vacuumed.iter().all(|t| t.starts_with("pgmq.q_")),
        "{report:?}"
    );
    let vacuumed: i64 = sqlx::query_scalar(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'pgmq' AND relname = 'q_worker_linear_queue'",
    )
    .fetch_one(&engine.pool)
    .await
    .unwrap();
    assert!(vacuumed >= 1);
    engine.shutdown().await;
}

/// Rows of `task` in every table that holds a task's data. The steps are
/// the task's as they were read before (`steps_of`): rows that name a
/// deleted step are still counted, whatever is left of the step.
async fn rows_of_task(pool: &PgPool, task: Uuid, steps: &[Uuid]) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT 'tasks', count(*) FROM tasker.tasks WHERE task_uuid = $1
         UNION ALL SELECT 'task_transitions', count(*) FROM tasker.task_transitions WHERE task_uuid = $1
         UNION ALL SELECT 'workflow_steps', count(*) FROM tasker.workflow_steps
                    WHERE task_uuid = $1 OR workflow_step_uuid = ANY ($2)
         UNION ALL SELECT 'workflow_step_edges', count(*) FROM tasker.workflow_step_edges
                    WHERE from_step_uuid = ANY ($2) OR to_step_uuid = ANY ($2)
         UNION ALL SELECT 'workflow_step_transitions', count(*) FROM tasker.workflow_step_transitions
                    WHERE workflow_step_uuid = ANY ($2)
         UNION ALL SELECT 'workflow_step_result_audit', count(*) FROM tasker.workflow_step_result_audit
                    WHERE task_uuid = $1 OR workflow_step_uuid = ANY ($2)
         UNION ALL SELECT 'workflow_step_checkpoints', count(*) FROM tasker.workflow_step_checkpoints
                    WHERE workflow_step_uuid = ANY ($2)",
    )
    .bind(task)
    .bind(steps)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn steps_of(pool: &PgPool, task: Uuid) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = $1")
        .bind(task)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn deleting_finished_tasks_takes_their_history_and_leaves_running_ones() {
    let database = tasker_engine::testing::test_database().await.unwrap();
    let engine = crate::start_on(
        &database.url,
        crate::test_config(),
        &scenario("linear_workflow"),
        tasker_scenarios::registry(),
    )
    .await;
    let request = |key: &str| {
        TaskRequest::new(
            "linear",
            "linear_workflow",
            "1.0.0",
            json!({"even_number": 2}),
        )
        .with_idempotency_key(key.to_string())
    };
    let mut finished = Vec::new();
    for key in ["delete-1", "delete-2"] {
        let (task, state) = engine
            .client
            .run_task(&request(key), crate::TASK_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(state, TaskState::Complete);
        finished.push(task);
    }
    engine.shutdown().await;
    let pool = tasker_engine::database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    // No worker now: this one stays in process.
    let running = create_task(&pool, &request("delete-3"))
        .await
        .unwrap()
        .task_uuid;
    let running_steps = steps_of(&pool, running).await;
    let before = rows_of_task(&pool, running, &running_steps).await;
    // Every table a task's rows live in holds some of each finished task:
    // a checkpoint too, as a batch worker saves.
    let mut finished_steps = Vec::new();
    for &task in &finished {
        let steps = steps_of(&pool, task).await;
        sqlx::query(
            "INSERT INTO tasker.workflow_step_checkpoints (workflow_step_uuid, sequence, attempt, cursor, partial)
             VALUES ($1, 1, 1, '0', '{}')",
        )
        .bind(steps[0])
        .execute(&pool)
        .await
        .unwrap();
        for (table, rows) in rows_of_task(&pool, task, &steps).await {
            assert!(rows > 0, "{table} holds no rows of finished task {task}");
        }
        finished_steps.push(steps);
    }

    let mut all = finished.clone();
    all.push(running);
    let mut deleted: Vec<Uuid> = sqlx::query_scalar("SELECT * FROM tasker.delete_tasks($1)")
        .bind(&all)
        .fetch_all(&pool)
        .await
        .unwrap();
    deleted.sort();
    let mut expected = finished.clone();
    expected.sort();
    assert_eq!(deleted, expected);
    for (task, steps) in finished.iter().zip(&finished_steps) {
        for (table, rows) in rows_of_task(&pool, *task, steps).await {
            assert_eq!(rows, 0, "{table} still holds rows of deleted task {task}");
        }
    }
    assert_eq!(rows_of_task(&pool, running, &running_steps).await, before);
    assert_eq!(before[2], ("workflow_steps".to_string(), 4), "{before:?}");
}

/// A step's retry policy is checked where it is written (domains on the
/// columns, not CHECK constraints evaluated on every UPDATE of the row):
/// a value the template validation would refuse is refused by the table
/// too, and the row keeps its own.
#[tokio::test]
async fn a_step_row_refuses_a_retry_policy_out_of_range() {
    let (pool, task) = idle_task().await;
    let step = first_step(&pool, task).await;
    let insert = "INSERT INTO tasker.workflow_steps (task_uuid, name, handler_callable,
                      max_attempts, retryable, backoff, backoff_base_ms, max_backoff_ms,
                      timeout_seconds)
                  VALUES ($1, 'extra', 'test.count', 0, true, 'fixed', 10, 10, 5)";
    let refused = [
        (
            "UPDATE tasker.workflow_steps SET max_attempts = 0 WHERE workflow_step_uuid = $1",
            step,
        ),
        (
            "UPDATE tasker.workflow_steps SET backoff = 'sometimes' WHERE workflow_step_uuid = $1",
            step,
        ),
        (insert, task),
    ];
    for (statement, key) in refused {
        let error = sqlx::query(statement)
            .bind(key)
            .execute(&pool)
            .await
            .expect_err(statement);
        let code = error.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("23514"), "{statement}: {error}");
    }
    let kept: (i32, String) = sqlx::query_as(
        "SELECT max_attempts, backoff FROM tasker.workflow_steps WHERE workflow_step_uuid = $1",
    )
    .bind(step)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        kept.0 >= 1 && ["exponential", "linear", "fixed"].contains(&kept.1.as_str()),
        "{kept:?}"
    );
}

/// A client newer than the database's functions (their engine is an
/// earlier version, as the A side of an A/B run is): `tasker.create_task`
/// takes no uuid, and run_task creates the task and then waits for it.
#[tokio::test]
async fn running_a_task_on_functions_without_the_task_uuid_still_waits_for_it() {
    let engine = crate::start(&[scenario("linear_workflow")], tasker_scenarios::registry()).await;
    sqlx::raw_sql(
        "ALTER FUNCTION tasker.create_task(text, text, text, jsonb, text, integer, uuid, text,
                                           text, text, jsonb, uuid)
             RENAME TO create_task_with_uuid;
         CREATE FUNCTION tasker.create_task(
             p_namespace text, p_name text, p_version text, p_context jsonb,
             p_idempotency_key text, p_priority integer DEFAULT 0,
             p_correlation_id uuid DEFAULT NULL, p_initiator text DEFAULT NULL,
             p_source_system text DEFAULT NULL, p_reason text DEFAULT NULL,
             p_tags jsonb DEFAULT '{}'
         ) RETURNS TABLE (task_uuid uuid, created boolean, enqueued_steps integer)
         LANGUAGE sql AS $$
             SELECT * FROM tasker.create_task_with_uuid(p_namespace, p_name, p_version,
                 p_context, p_idempotency_key, p_priority, p_correlation_id, p_initiator,
                 p_source_system, p_reason, p_tags, NULL)
         $$;",
    )
    .execute(&engine.pool)
    .await
    .unwrap();
    for n in 0..2 {
        let request = TaskRequest::new(
            "linear",
            "linear_workflow",
            "1.0.0",
            json!({"even_number": 2}),
        )
        .with_idempotency_key(format!("older-functions-{n}"));
        let (task, state) = engine
            .client
            .run_task(&request, crate::TASK_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(state, TaskState::Complete, "task {n}");
        assert_eq!(
            engine.client.task_state(task).await.unwrap(),
            TaskState::Complete
        );
    }
    engine.shutdown().await;
}
