//! A tiny real run (a few tasks on a throwaway cluster) produces a valid
//! result file.

mod common;

use tasker_harness::result::RunResult;
use tasker_harness::run::{self, RunPlan};

#[tokio::test]
async fn a_tiny_run_writes_a_result_that_reads_back() {
    let cluster = pg_local::shared().expect("local PostgreSQL");
    let scenarios = common::scenarios(&["linear", "conditional"]);
    let plan = common::plan(scenarios, cluster.admin_url(), Some(5), true);
    let result = run::run(&plan).await.expect("run succeeds");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    result.save(&path).unwrap();
    let back = RunResult::load(&path).unwrap();
    assert_eq!(back, result);

    let linear = back.scenario("linear").unwrap();
    // Counted in the database, the template's count for templates without
    // batches: the conditional workflow's skipped steps are steps too.
    assert_eq!(linear.steps_per_task, 4);
    assert_eq!(back.scenario("conditional").unwrap().steps_per_task, 7);
    // One after another; the gate judges its transactions at ±10%.
    assert_eq!(linear.critical_path_steps, Some(4));
    assert_eq!(linear.sharing_spread(), 1.0);
    assert_eq!(linear.rows, None);
    let latency = linear.latency.as_ref().unwrap();
    assert_eq!(latency.samples_us.len(), 5);
    assert_eq!(latency.summary.count, 5);
    assert!(latency.summary.p50_us > 0 && latency.summary.p50_us <= latency.summary.max_us);
    let phases = linear.phases.as_ref().unwrap();
    assert_eq!(phases.steps.len(), 4);
    assert_eq!(phases.steps[0].step, "linear_step_1");
    assert!(phases.per_task.queue_wait_us > 0.0);
    assert!(linear.throughput.is_empty());
    // Only the steps that ran have phases: amount 3000 takes the manager
    // path, so 4 of the conditional workflow's 7 steps.
    let conditional = back
        .scenario("conditional")
        .unwrap()
        .phases
        .as_ref()
        .unwrap();
    let ran: Vec<&str> = conditional.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        ran,
        [
            "validate_request",
            "routing_decision",
            "manager_approval",
            "finalize_approval"
        ]
    );
    assert!(back.postgres.settings.contains_key("fsync"));
    assert_eq!(back.postgres.backend, "local");
}

#[tokio::test]
async fn a_tiny_batch_run_counts_its_batches_as_steps_and_groups_their_phases() {
    let cluster = pg_local::shared().expect("local PostgreSQL");
    let mut scenarios = common::scenarios(&["batch_1000_rows"]);
    scenarios[0].latency.as_mut().unwrap().warmup = 2;
    let plan = common::plan(scenarios, cluster.admin_url(), Some(3), true);
    let result = run::run(&plan).await.expect("run succeeds");
    let batch = result.scenario("batch_1000_rows").unwrap();
    // analyze_csv, 5 batches, aggregate_totals.
    assert_eq!(batch.steps_per_task, 7);
    assert_eq!(batch.rows, Some(1000));
    let phases = batch.phases.as_ref().unwrap();
    let names: Vec<&str> = phases.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        names,
        ["analyze_csv", "process_csv_batch", "aggregate_totals"]
    );
    // The task's sum adds all 5 batches' handler time.
    let handler = |i: usize| phases.steps[i].handler_us;
    let sum = handler(0) + 5.0 * handler(1) + handler(2);
    assert!(
        (phases.per_task.handler_us - sum).abs() < 1e-6 * sum.max(1.0),
        "{} vs {sum}",
        phases.per_task.handler_us
    );
    assert!(batch.rows_per_second_at_p50().unwrap() > 0.0);
}

#[tokio::test]
async fn a_tiny_run_on_the_container_backend() {
    use tasker_harness::provision::{self, Backend, ProvisionOptions};
    let options = ProvisionOptions {
        settings: vec![(
            "shared_preload_libraries".into(),
            "pg_stat_statements".into(),
        )],
        ..ProvisionOptions::default()
    };
    let server = provision::provision(Backend::Container, &options)
        .await
        .expect(
            "the container backend (Docker is on this machine; scripts/pg-image builds the image)",
        );
    let plan = RunPlan {
        backend: server.backend.to_string(),
        reason: server.reason.clone(),
        ..common::plan(
            common::scenarios(&["diamond"]),
            server.admin_url.clone(),
            Some(3),
            true,
        )
    };
    let result = run::run(&plan)
        .await
        .expect("run on the container succeeds");
    assert_eq!(result.postgres.backend, "container");
    let diamond = result.scenario("diamond").unwrap();
    assert_eq!(diamond.latency.as_ref().unwrap().samples_us.len(), 3);
    // pg_stat_statements is loaded there, so the per-step costs exist: three
    // hot-path statements per step, fewer when results are batched.
    let costs = diamond.costs.expect("per-step costs");
    assert!(costs.statements_per_step >= 2.0, "{costs:?}");
    assert!(costs.rows_written_per_step > 0.0 && costs.wal_bytes_per_step > 0.0);
}
