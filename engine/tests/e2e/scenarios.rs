//! Every scenario completes with the arithmetically right result, and every
//! step carries its full transition history.

use serde_json::{json, Value};
use tasker_engine::{StepState, TaskRequest, TaskState};
use uuid::Uuid;

use crate::{scenario, start, TASK_TIMEOUT};

async fn run_scenario(template: &str, context: Value) -> (tasker_engine::Embedded, Uuid) {
    let template = scenario(template);
    let engine = start(
        std::slice::from_ref(&template),
        tasker_scenarios::registry(),
    )
    .await;
    let request = TaskRequest::new(
        &template.namespace_name,
        &template.name,
        &template.version,
        context,
    );
    let (task, state) = engine
        .client
        .run_task(&request, TASK_TIMEOUT)
        .await
        .expect("task runs");
    assert_eq!(state, TaskState::Complete, "task {task} should complete");
    (engine, task)
}

async fn result_of(engine: &tasker_engine::Embedded, task: Uuid, step: &str) -> Value {
    let steps = engine.client.list_steps(task).await.unwrap();
    let step = steps
        .iter()
        .find(|s| s.name == step)
        .unwrap_or_else(|| panic!("step {step}"));
    step.results.clone().unwrap_or(Value::Null)
}

const COMPLETED_STEP_HISTORY: [&str; 5] = [
    "pending",
    "enqueued",
    "in_progress",
    "enqueued_for_orchestration",
    "complete",
];

/// Each completed step went pending → enqueued → in_progress →
/// enqueued_for_orchestration → complete, nothing else.
async fn assert_full_history(engine: &tasker_engine::Embedded, task: Uuid) {
    for step in engine.client.list_steps(task).await.unwrap() {
        if step.state != StepState::Complete {
            continue;
        }
        let history: Vec<String> = engine
            .client
            .step_transitions(step.workflow_step_uuid)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.to_state)
            .collect();
        assert_eq!(
            history, COMPLETED_STEP_HISTORY,
            "history of step {}",
            step.name
        );
    }
    let task_history = crate::task_history(engine, task).await;
    assert_eq!(
        task_history.first().map(String::as_str),
        Some("pending"),
        "task history {task_history:?}"
    );
    assert_eq!(
        task_history[task_history.len() - 2..],
        ["evaluating_results", "complete"],
        "task history {task_history:?}"
    );
}

#[tokio::test]
async fn linear_computes_n_to_the_16th() {
    let (engine, task) = run_scenario("linear_workflow", json!({"even_number": 2})).await;
    assert_eq!(
        result_of(&engine, task, "linear_step_4").await,
        json!(65536)
    );
    assert_eq!(result_of(&engine, task, "linear_step_1").await, json!(4));
    assert_full_history(&engine, task).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn diamond_multiplies_both_branches() {
    let (engine, task) = run_scenario("diamond_workflow", json!({"even_number": 3})).await;
    assert_eq!(
        result_of(&engine, task, "diamond_end").await,
        json!(3u64.pow(8))
    );
    assert_full_history(&engine, task).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn complex_dag_sums_three_branches() {
    let (engine, task) = run_scenario("complex_dag_workflow", json!({"even_number": 2})).await;
    assert_eq!(
        result_of(&engine, task, "dag_finalize").await,
        json!(3 * 2u64.pow(8))
    );
    assert_full_history(&engine, task).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn hierarchical_tree_converges_four_leaves() {
    let (engine, task) =
        run_scenario("hierarchical_tree_workflow", json!({"even_number": 2})).await;
    assert_eq!(
        result_of(&engine, task, "tree_final_convergence").await,
        json!(2u64.pow(32))
    );
    assert_full_history(&engine, task).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn chain_of_sixteen_increments_in_order() {
    let (engine, task) = run_scenario("chain_workflow", json!({"even_number": 2})).await;
    assert_eq!(result_of(&engine, task, "chain_step_16").await, json!(18));
    assert_eq!(result_of(&engine, task, "chain_step_08").await, json!(10));
    assert_full_history(&engine, task).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn fanout_joins_sixty_four_branches() {
    let (engine, task) = run_scenario("fanout_workflow", json!({"even_number": 2})).await;
    assert_eq!(
        result_of(&engine, task, "fanout_join").await,
        json!(64 * 2u64.pow(4))
    );
    assert_eq!(
        result_of(&engine, task, "fanout_branch_64").await,
        json!(16)
    );
    assert_full_history(&engine, task).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn conditional_takes_only_the_chosen_path() {
    for (amount, approver, ran, skipped) in [
        (
            500,
            "auto",
            vec!["auto_approve"],
            vec!["manager_approval", "finance_review", "executive_approval"],
        ),
        (
            3000,
            "manager",
            vec!["manager_approval"],
            vec!["auto_approve", "finance_review", "executive_approval"],
        ),
        (
            10000,
            "executive",
            vec!["finance_review", "executive_approval"],
            vec!["auto_approve", "manager_approval"],
        ),
    ] {
        let (engine, task) = run_scenario("conditional_approval", json!({"amount": amount})).await;
        assert_eq!(
            result_of(&engine, task, "finalize_approval").await,
            json!({"approved_amount": amount, "approver": approver})
        );
        let steps = engine.client.list_steps(task).await.unwrap();
        for step in &steps {
            let expected = if skipped.contains(&step.name.as_str()) {
                StepState::Cancelled
            } else {
                StepState::Complete
            };
            assert_eq!(step.state, expected, "amount {amount}: step {}", step.name);
        }
        assert!(ran
            .iter()
            .all(|r| steps.iter().any(|s| &s.name == r && s.attempts == 1)));
        // The task finished from its steps' count: the skipped ones named
        // as skipped, not as completed.
        let finished = engine.client.task_transitions(task).await.unwrap();
        assert_eq!(
            finished.last().map(|t| &t.metadata),
            Some(&json!({
                "completed_steps": steps.len() - skipped.len(),
                "skipped_steps": skipped.len()
            })),
            "amount {amount}"
        );
        assert_full_history(&engine, task).await;
        engine.shutdown().await;
    }
}

#[tokio::test]
async fn many_tasks_at_once_all_complete() {
    let template = scenario("diamond_workflow");
    let engine = start(
        std::slice::from_ref(&template),
        tasker_scenarios::registry(),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let request = TaskRequest::new(
            "diamond",
            "diamond_workflow",
            "1.0.0",
            json!({"even_number": 2}),
        )
        .with_idempotency_key(format!("concurrent-{i}"));
        tasks.push(engine.client.create_task(&request).await.unwrap().task_uuid);
    }
    for task in tasks {
        let state = engine
            .client
            .wait_for_completion(task, TASK_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(state, TaskState::Complete);
        assert_eq!(result_of(&engine, task, "diamond_end").await, json!(256));
    }
    engine.shutdown().await;
}

/// Revenue (cents) and quantity per category of a products CSV, summed
/// here with plain string splitting: independent of the scenario's
/// handlers and of the csv crate.
fn products_totals(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut categories = serde_json::Map::new();
    let (mut revenue, mut quantity, mut rows) = (0i64, 0i64, 0i64);
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (units, cents) = fields[2].split_once('.').unwrap();
        let price: i64 = units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
        let count: i64 = fields[3].parse().unwrap();
        let entry = categories
            .entry(fields[1].to_string())
            .or_insert(json!({"revenue_cents": 0, "quantity": 0}));
        entry["revenue_cents"] = json!(entry["revenue_cents"].as_i64().unwrap() + price * count);
        entry["quantity"] = json!(entry["quantity"].as_i64().unwrap() + count);
        revenue += price * count;
        quantity += count;
        rows += 1;
    }
    json!({"rows": rows, "revenue_cents": revenue, "quantity": quantity, "categories": categories})
}

#[tokio::test]
async fn batch_1000_rows_totals_match_the_file() {
    let (engine, task) = run_scenario("batch_1000_rows", json!({"dataset": "products_1000"})).await;
    let mut totals = result_of(&engine, task, "aggregate_totals").await;
    assert_eq!(totals["batches"], json!(5));
    totals.as_object_mut().unwrap().remove("batches");
    let path = tasker_scenarios::data::dataset_path("products_1000");
    assert_eq!(totals, products_totals(&path));
    let steps = engine.client.list_steps(task).await.unwrap();
    let workers: Vec<&str> = steps
        .iter()
        .filter(|s| s.name.starts_with("process_csv_batch_"))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(workers.len(), 5, "{workers:?}");
    assert_full_history(&engine, task).await;
}

#[tokio::test]
async fn a_batch_failing_mid_range_resumes_from_its_checkpoint() {
    // Row 650 is in batch 3 ([600, 800)): its first attempt checkpoints
    // there and fails; the second reads only rows 650..800.
    let (engine, task) = run_scenario(
        "batch_1000_rows",
        json!({"dataset": "products_1000", "fail_once_at_row": 650}),
    )
    .await;
    let batch = result_of(&engine, task, "process_csv_batch_003").await;
    assert_eq!(batch["start_row"], json!(650));
    assert_eq!(
        batch["rows_read"],
        json!(150),
        "rows re-read after the checkpoint"
    );
    assert_eq!(batch["rows"], json!(200));
    let steps = engine.client.list_steps(task).await.unwrap();
    let worker = steps
        .iter()
        .find(|s| s.name == "process_csv_batch_003")
        .unwrap();
    assert_eq!(worker.attempts, 2);
    assert_eq!(worker.checkpoints[0]["cursor"]["row"], json!(650));
    let mut totals = result_of(&engine, task, "aggregate_totals").await;
    totals.as_object_mut().unwrap().remove("batches");
    let path = tasker_scenarios::data::dataset_path("products_1000");
    assert_eq!(
        totals,
        products_totals(&path),
        "no row lost or counted twice"
    );
}
