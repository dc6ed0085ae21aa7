//! Batch steps: a batchable step's decision creates its batches' steps,
//! they run at most `parallelism` at a time, save checkpoints and resume
//! from them, and the convergence step runs once with every result in
//! batch order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tasker_engine::worker::{Batches, CursorRange};
use tasker_engine::{
    Embedded, HandlerError, HandlerRegistry, StepContext, StepHandler, StepState, TaskRequest,
    TaskState, TaskTemplate,
};

use crate::{start, TASK_TIMEOUT};

/// split (batchable) -> rows (batch_worker) -> total (deferred_convergence).
fn template(batch_size: u64, parallelism: u32, max_attempts: u32) -> TaskTemplate {
    let yaml = format!(
        "name: numbers\nnamespace_name: batches\nversion: \"1.0.0\"\nsteps:
  - name: split
    type: batchable
    handler: {{callable: test.split}}
    batch_config: {{batch_size: {batch_size}, parallelism: {parallelism}, cursor_field: n}}
  - name: rows
    type: batch_worker
    dependencies: [split]
    handler: {{callable: test.rows}}
    retry: {{max_attempts: {max_attempts}, backoff: fixed, backoff_base_ms: 20, max_backoff_ms: 20}}
  - name: total
    type: deferred_convergence
    dependencies: [rows]
    handler: {{callable: test.total}}
"
    );
    TaskTemplate::from_yaml_str(&yaml, "numbers.yaml").expect("test template is valid")
}

/// Returns the task context's `batches` as its decision, as it is (so a
/// malformed one reaches the engine).
struct Split;

#[async_trait]
impl StepHandler for Split {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        Ok(json!({"decided_by": step.step_name, "batches": step.task_context["batches"]}))
    }
}

/// Sums the integers of its range one by one (recording each it reads),
/// saving a checkpoint after every `checkpoint_every` of them. The context
/// can make it fail: `fail_at` (fail attempt 1 once it reaches that number,
/// after its checkpoint), `always_fail_batch` (every attempt of that batch).
struct Rows {
    read: Arc<Mutex<Vec<(u32, u32, u64)>>>,
    hold: Duration,
}

#[async_trait]
impl StepHandler for Rows {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        let batch = step.batch()?;
        if step.task_context["always_fail_batch"] == json!(batch.index) {
            return Err(HandlerError::retryable("Test", "this batch always fails"));
        }
        tokio::time::sleep(self.hold).await;
        let (mut at, mut sum) = match step.checkpoint().await? {
            Some(c) => (c.cursor.as_u64().unwrap(), c.partial.as_u64().unwrap()),
            None => (batch.cursor.start_u64()?, 0),
        };
        let end = batch.cursor.end_u64()?;
        let every = step.task_context["checkpoint_every"].as_u64().unwrap_or(0);
        while at < end {
            if step.attempt == 1 && step.task_context["fail_at"] == json!(at) {
                return Err(HandlerError::retryable("Test", format!("failed at {at}")));
            }
            self.read
                .lock()
                .unwrap()
                .push((batch.index, step.attempt, at));
            sum += at;
            at += 1;
            if every > 0 && (at - batch.cursor.start_u64()?) % every == 0 {
                step.save_checkpoint(json!(at), json!(sum)).await?;
            }
        }
        let parent = step.dependency("split")?;
        Ok(json!({"index": batch.index, "sum": sum, "parent": parent}))
    }
}

/// Counts its runs; returns the batches' results in the order it got them.
struct Total {
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl StepHandler for Total {
    async fn call(&self, step: &StepContext) -> Result<Value, HandlerError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let results: Vec<Value> = step.batch_results()?.into_iter().cloned().collect();
        Ok(json!({"results": results, "none": step.no_batches_reason()}))
    }
}

struct Run {
    engine: Embedded,
    task: uuid::Uuid,
    state: TaskState,
    total_runs: usize,
    read: Vec<(u32, u32, u64)>,
}

impl Run {
    async fn step(&self, name: &str) -> tasker_engine::client::StepView {
        let steps = self.engine.client.list_steps(self.task).await.unwrap();
        steps
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no step {name}"))
    }

    async fn step_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (self.engine.client.list_steps(self.task).await.unwrap())
            .into_iter()
            .map(|s| s.name)
            .collect();
        names.sort();
        names
    }
}

async fn run(template: TaskTemplate, context: Value, hold: Duration) -> Run {
    let runs = Arc::new(AtomicUsize::new(0));
    let read = Arc::new(Mutex::new(Vec::new()));
    let mut registry = HandlerRegistry::new();
    registry
        .register("test.split", Split)
        .register(
            "test.rows",
            Rows {
                read: read.clone(),
                hold,
            },
        )
        .register("test.total", Total { runs: runs.clone() });
    let engine = start(std::slice::from_ref(&template), registry).await;
    let request = TaskRequest::new("batches", "numbers", "1.0.0", context);
    let (task, state) = engine
        .client
        .run_task(&request, TASK_TIMEOUT)
        .await
        .expect("the task finishes");
    let read = read.lock().unwrap().clone();
    Run {
        engine,
        task,
        state,
        total_runs: runs.load(Ordering::SeqCst),
        read,
    }
}

#[tokio::test]
async fn batches_run_and_converge_once_with_results_in_batch_order() {
    // 10 numbers in batches of 3: [0,3) [3,6) [6,9) [9,10).
    let run = run(
        template(3, 10, 3),
        json!({"batches": {"total": 10}}),
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.state, TaskState::Complete);
    assert_eq!(run.total_runs, 1, "the convergence step runs exactly once");
    let total = run.step("total").await;
    let sums: Vec<Value> = total.results.unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sum"].clone())
        .collect();
    assert_eq!(sums, vec![json!(3), json!(12), json!(21), json!(9)]);
    assert_eq!(
        total.inputs.unwrap()["batches"]["workers"],
        json!(["rows_000", "rows_001", "rows_002", "rows_003"])
    );
    assert_eq!(
        run.step_names().await,
        ["rows_000", "rows_001", "rows_002", "rows_003", "split", "total"]
    );
    let third = run.step("rows_002").await;
    assert_eq!(third.state, StepState::Complete);
    assert_eq!(
        third.inputs.unwrap()["batch"],
        json!({"index": 2, "count": 4, "batchable_step": "split", "cursor_field": "n",
               "batch_size": 3, "parallelism": 10, "cursor": {"start": 6, "end": 9}})
    );
    // Every number read exactly once.
    let mut numbers: Vec<u64> = run.read.iter().map(|r| r.2).collect();
    numbers.sort();
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn explicit_ranges_reach_their_workers_with_their_extra_fields() {
    let mut second = CursorRange::new(100, 102);
    second.extra.insert("file".into(), json!("b.csv"));
    let batches = Batches::Ranges(vec![CursorRange::new(5, 7), second]);
    let run = run(
        template(1000, 1, 1),
        json!({ "batches": serde_json::to_value(&batches).unwrap() }),
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.state, TaskState::Complete);
    let worker = run.step("rows_001").await;
    assert_eq!(
        worker.inputs.unwrap()["batch"]["cursor"],
        json!({"start": 100, "end": 102, "file": "b.csv"})
    );
    let result = worker.results.unwrap();
    assert_eq!(result["sum"], json!(201));
    // The worker sees its batchable step's result without the decision:
    // its own range is in its inputs, the others' are none of its business.
    assert_eq!(result["parent"], json!({"decided_by": "split"}));
}

#[tokio::test]
async fn no_batches_goes_straight_to_convergence() {
    let run = run(
        template(3, 2, 1),
        json!({"batches": {"none": "nothing new today"}}),
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.state, TaskState::Complete);
    assert_eq!(run.total_runs, 1);
    assert_eq!(
        run.step("total").await.results.unwrap(),
        json!({"results": [], "none": "nothing new today"})
    );
    assert_eq!(run.step_names().await, ["split", "total"]);
    // A total of zero is no batches too.
    let run = run_zero().await;
    assert_eq!(run.state, TaskState::Complete);
    assert_eq!(run.step_names().await, ["split", "total"]);
}

async fn run_zero() -> Run {
    run(
        template(3, 2, 1),
        json!({"batches": {"total": 0}}),
        Duration::ZERO,
    )
    .await
}

/// The intervals each step of `names` spent in_progress, from the
/// transition history.
async fn in_progress_intervals(run: &Run) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let steps = run.engine.client.list_steps(run.task).await.unwrap();
    let mut intervals = Vec::new();
    for step in steps.iter().filter(|s| s.name.starts_with("rows_")) {
        let history = run
            .engine
            .client
            .step_transitions(step.workflow_step_uuid)
            .await
            .unwrap();
        for pair in history.windows(2) {
            if pair[0].to_state == "in_progress" {
                intervals.push((pair[0].created_at, pair[1].created_at));
            }
        }
    }
    intervals
}

#[tokio::test]
async fn parallelism_bounds_the_batches_in_progress() {
    // 8 batches of one number, parallelism 2, each holding its claim 100 ms;
    // the worker could run 8 at once.
    let run = run(
        template(1, 2, 1),
        json!({"batches": {"total": 8}}),
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(run.state, TaskState::Complete);
    let intervals = in_progress_intervals(&run).await;
    assert_eq!(intervals.len(), 8);
    let mut events: Vec<(DateTime<Utc>, i32)> = intervals
        .iter()
        .flat_map(|(from, to)| [(*from, 1), (*to, -1)])
        .collect();
    // An end and a start at the same instant: the end first.
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    assert_eq!(most, 2, "at most 2 batches in progress at once, and 2 used");
}

#[tokio::test]
async fn a_failed_batch_resumes_from_its_last_checkpoint() {
    // Batch 1 is [10, 20); it checkpoints every 4 numbers (after 13 and
    // 17) and its first attempt fails on reaching 18.
    let run = run(
        template(10, 5, 3),
        json!({"batches": {"total": 30}, "checkpoint_every": 4, "fail_at": 18}),
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.state, TaskState::Complete);
    let second_attempt: Vec<u64> = run
        .read
        .iter()
        .filter(|(batch, attempt, _)| *batch == 1 && *attempt == 2)
        .map(|r| r.2)
        .collect();
    assert_eq!(
        second_attempt,
        vec![18, 19],
        "the retry re-reads only what followed the last checkpoint"
    );
    let worker = run.step("rows_001").await;
    assert_eq!(worker.attempts, 2);
    assert_eq!(worker.results.unwrap()["sum"], json!((10..20).sum::<u64>()));
    let history: Vec<(i64, i64, Value)> = worker
        .checkpoints
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["sequence"].as_i64().unwrap(),
                c["attempt"].as_i64().unwrap(),
                c["cursor"].clone(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![(1, 1, json!(14)), (2, 1, json!(18))],
        "the checkpoints of the first attempt, in order"
    );
    // Every number of every batch counted once in the totals.
    let total = run.step("total").await.results.unwrap();
    let sum: u64 = total["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sum"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, (0..30).sum::<u64>());
}

#[tokio::test]
async fn a_batch_out_of_attempts_fails_the_task_naming_its_batch() {
    let run = run(
        template(2, 4, 2),
        json!({"batches": {"total": 8}, "always_fail_batch": 2}),
        Duration::ZERO,
    )
    .await;
    assert_eq!(run.state, TaskState::Error);
    assert_eq!(run.total_runs, 0, "the convergence step never runs");
    let failed = run.step("rows_002").await;
    assert_eq!(failed.state, StepState::Error);
    assert_eq!(failed.attempts, 2);
    let error = failed.last_error.unwrap();
    assert_eq!(error["batch"]["index"], json!(2));
    assert_eq!(error["batch"]["cursor"], json!({"start": 4, "end": 6}));
    // The task's record says which step, and which batch, failed.
    let transitions = run.engine.client.task_transitions(run.task).await.unwrap();
    let blocked = transitions
        .iter()
        .find(|t| t.to_state == "blocked_by_failures")
        .expect("the task was blocked by the failure");
    assert_eq!(blocked.metadata["failed"][0]["step"], json!("rows_002"));
    assert_eq!(
        blocked.metadata["failed"][0]["error"]["batch"]["index"],
        json!(2)
    );
}

#[tokio::test]
async fn a_malformed_batch_decision_fails_the_step_saying_what_is_wrong() {
    let cases = [
        (
            json!({"ranges": [{"start": 0}]}),
            "batches.ranges[0] is not an object with \"start\" and \"end\"",
        ),
        (
            json!({"total": -1}),
            "batches.total must be a non-negative integer",
        ),
        (json!({"total": 100001}), "more than the 10000 allowed"),
        (
            json!({"count": 3}),
            "batches must hold \"total\", \"ranges\" or \"none\"",
        ),
    ];
    for (batches, expected) in cases {
        // template(10, ..): total 100001 makes 10001 batches.
        let run = run(
            template(10, 1, 1),
            json!({"batches": batches}),
            Duration::ZERO,
        )
        .await;
        assert_eq!(run.state, TaskState::Error, "{batches}");
        let split = run.step("split").await;
        assert_eq!(split.state, StepState::Error);
        let error = split.last_error.unwrap();
        assert_eq!(error["error_type"], json!("InvalidBatchOutcome"));
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("batchable step split"), "{message}");
        assert!(message.contains(expected), "{expected:?} in {message}");
        assert_eq!(
            run.step_names().await,
            ["split", "total"],
            "nothing created"
        );
        assert_eq!(run.total_runs, 0);
    }
}

#[tokio::test]
async fn sql_and_rust_agree_on_batch_names_and_limits() {
    let database = tasker_engine::testing::test_database().await.unwrap();
    let pool = tasker_engine::database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    tasker_engine::database::migrate(&pool).await.unwrap();
    for index in [0u32, 7, 999, 1000, 12345] {
        let name: String = sqlx::query_scalar("SELECT tasker.batch_step_name('rows', $1)")
            .bind(index as i32)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            name,
            tasker_engine::template::worker_step_name("rows", index)
        );
    }
    let max: i32 = sqlx::query_scalar("SELECT tasker.max_batches()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(max as u32, tasker_engine::template::MAX_BATCHES);
}
