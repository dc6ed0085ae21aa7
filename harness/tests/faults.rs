//! One test per fault the engine must survive, on real processes
//! (tasker-server, tasker-worker) and a real PostgreSQL of each test's own
//! (a restart must not disturb other tests): every task finishes as
//! expected, attempts are honest, and no attempt's handler ran twice
//! (checked from the database and the handlers' run records by the
//! campaign's checker). Steps time out after 2 s and the lease margin is
//! 1 s, so a lease lasts 3 s.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tasker_harness::chaos::check::{Submitted, Verdict};
use tasker_harness::chaos::faults::terminate_backends;
use tasker_harness::chaos::fleet::Role;
use tasker_harness::chaos::{submit, Rig, RigOptions};

const DEADLINE: Duration = Duration::from_secs(90);

async fn rig(dir: &tempfile::TempDir, orchestrators: usize, workers: usize) -> Rig {
    rig_of(dir, orchestrators, workers, false).await
}

async fn rig_of(
    dir: &tempfile::TempDir,
    orchestrators: usize,
    workers: usize,
    containers: bool,
) -> Rig {
    Rig::start(&RigOptions {
        out_dir: dir.path().to_path_buf(),
        orchestrators,
        workers,
        step_timeout_s: 2,
        lease_margin_s: 1,
        max_attempts: 4,
        containers,
    })
    .await
    .unwrap_or_else(|e| panic!("rig starts: {e:#}"))
}

/// `n` linear tasks whose steps each take `delay_ms`.
async fn linear_tasks(rig: &Rig, n: u64, delay_ms: u64) -> Vec<Submitted> {
    let shape = rig.shape("linear_workflow");
    let mut submitted = Vec::new();
    for id in 0..n {
        let request = shape.request(id, json!({ "delay_ms": delay_ms }));
        submitted.push(submit(&rig.client, &request, shape.completes()).await);
    }
    submitted
}

/// Waits until some step is in progress, i.e. a handler is running.
async fn until_a_step_runs(pool: &PgPool) {
    for _ in 0..400 {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasker.workflow_steps s
              WHERE tasker.step_state_of(s.workflow_step_uuid) = 'in_progress'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if running > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no step started within 10 s");
}

fn assert_all_finished(verdict: &Verdict) {
    assert!(verdict.passed(), "{verdict:#?}");
    assert_eq!(verdict.completed, verdict.tasks, "{verdict:#?}");
}

/// Audit rows of lapsed claims.
async fn claims_expired(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM tasker.workflow_step_result_audit WHERE error_type = 'ClaimExpired'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_step_has_its_steps_run_again_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = rig(&dir, 1, 1).await;
    let tasks = linear_tasks(&rig, 4, 1500).await;
    until_a_step_runs(&rig.pool).await;
    let doomed = rig.fleet.of(Role::Worker)[0];
    rig.fleet.kill(doomed).await;
    rig.fleet.add(Role::Worker).await.unwrap();

    let verdict = rig.finish(&tasks, DEADLINE).await.unwrap();
    assert_all_finished(&verdict);
    assert!(verdict.lapsed_leases >= 1, "{verdict:#?}");
    assert_eq!(claims_expired(&rig.pool).await, verdict.lapsed_leases);
    // Taken over within the staleness interval (0.5 s), well inside the
    // issue's bound of lease + 5 s.
    assert!(verdict.longest_lease_recovery_ms < 5000.0, "{verdict:#?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_paused_past_its_lease_cannot_overwrite_the_newer_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = rig(&dir, 1, 1).await;
    let tasks = linear_tasks(&rig, 3, 1000).await;
    until_a_step_runs(&rig.pool).await;
    let paused = rig.fleet.of(Role::Worker)[0];
    rig.fleet.pause(paused);
    rig.fleet.add(Role::Worker).await.unwrap();
    // The other worker takes the steps over when the leases lapse and
    // finishes the tasks while the first one sleeps.
    let verdict = rig.finish(&tasks, DEADLINE).await.unwrap();
    assert_all_finished(&verdict);
    let results_before: Vec<serde_json::Value> = step_results(&rig.pool).await;
    // Woken, the paused worker finishes its handlers and reports attempts
    // that were taken over: refused, nothing changes.
    rig.fleet.resume(paused);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(step_results(&rig.pool).await, results_before);
    let verdict = rig.finish(&tasks, DEADLINE).await.unwrap();
    assert_all_finished(&verdict);
    assert!(verdict.lapsed_leases >= 1, "{verdict:#?}");
    let late_results: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasker.workflow_step_result_audit a
          WHERE a.success AND EXISTS (SELECT 1 FROM tasker.workflow_step_result_audit b
                                       WHERE b.workflow_step_uuid = a.workflow_step_uuid
                                         AND b.attempt = a.attempt AND NOT b.success)",
    )
    .fetch_one(&rig.pool)
    .await
    .unwrap();
    assert_eq!(late_results, 0, "one outcome per attempt");
    rig.stop().await;
}

async fn step_results(pool: &PgPool) -> Vec<serde_json::Value> {
    sqlx::query_scalar(
        "SELECT jsonb_build_object('step', workflow_step_uuid, 'results', results,
                                   'attempts', attempts, 'error', last_error)
           FROM tasker.workflow_steps ORDER BY workflow_step_uuid",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orchestrator_killed_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = rig(&dir, 2, 1).await;
    let tasks = linear_tasks(&rig, 30, 50).await;
    until_a_step_runs(&rig.pool).await;
    let orchestrators = rig.fleet.of(Role::Orchestrator);
    for at in orchestrators {
        rig.fleet.kill(at).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rig.fleet.start(at).await.unwrap();
    }
    let verdict = rig.finish(&tasks, DEADLINE).await.unwrap();
    assert_all_finished(&verdict);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_restart_while_tasks_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(&dir, 1, 1).await;
    let tasks = linear_tasks(&rig, 10, 300).await;
    until_a_step_runs(&rig.pool).await;
    rig.postgres.restart(Duration::from_secs(2)).await.unwrap();
    // Tasks created after the restart are woken for by notification: the
    // processes LISTEN again once they reconnect.
    let shape = rig.shape("linear_workflow");
    let mut all = tasks;
    for id in 100..105 {
        let request = shape.request(id, json!({"delay_ms": 10}));
        all.push(submit(&rig.client, &request, shape.completes()).await);
    }
    let verdict = rig.finish(&all, DEADLINE).await.unwrap();
    assert_all_finished(&verdict);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_database_sessions_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(&dir, 1, 1).await;
    let tasks = linear_tasks(&rig, 10, 200).await;
    until_a_step_runs(&rig.pool).await;
    for _ in 0..3 {
        let terminated = terminate_backends(&rig.postgres, rig.database)
            .await
            .unwrap();
        assert!(terminated > 0);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let verdict = rig.finish(&tasks, DEADLINE).await.unwrap();
    assert_all_finished(&verdict);
    rig.stop().await;
}

/// In containers (Docker, images built locally): a worker cut off the
/// network mid-step, and an orchestrator frozen by `docker pause`.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_the_network_mid_step_and_a_paused_orchestrator_lose_nothing() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut rig = rig_of(&dir, 1, 1, true).await;
    let tasks = linear_tasks(&rig, 4, 1500).await;
    until_a_step_runs(&rig.pool).await;
    let cut = rig.fleet.of(Role::Worker)[0];
    rig.fleet.disconnect(cut).unwrap();
    rig.fleet.add(Role::Worker).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    rig.fleet.reconnect(cut).unwrap();
    let orchestrator = rig.fleet.of(Role::Orchestrator)[0];
    rig.fleet.pause(orchestrator);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.fleet.resume(orchestrator);
    let verdict = rig.finish(&tasks, DEADLINE).await.unwrap();
    assert_all_finished(&verdict);
    assert!(verdict.lapsed_leases >= 1, "{verdict:#?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checker_reports_an_unfinished_task_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = rig(&dir, 1, 1).await;
    // No worker: the task stays where it is.
    for at in rig.fleet.of(Role::Worker) {
        rig.fleet.kill(at).await;
    }
    let tasks = linear_tasks(&rig, 1, 10).await;
    let verdict = rig.finish(&tasks, Duration::from_secs(2)).await.unwrap();
    assert!(!verdict.passed());
    assert_eq!(verdict.lost.len(), 1);
    assert_eq!(verdict.lost[0].task_uuid, tasks[0].task_uuid);
    assert!(
        verdict.lost[0].problem.contains("steps_in_process"),
        "{:?}",
        verdict.lost[0]
    );
    // And an attempt recorded twice is reported as duplicated.
    let step: uuid::Uuid =
        sqlx::query_scalar("SELECT workflow_step_uuid FROM tasker.workflow_steps LIMIT 1")
            .fetch_one(&rig.pool)
            .await
            .unwrap();
    std::fs::write(
        rig.runs_dir.join("runs-1.log"),
        format!("{step} 1 1\n{step} 1 2\n"),
    )
    .unwrap();
    let verdict = rig.finish(&tasks, Duration::from_secs(1)).await.unwrap();
    assert_eq!(verdict.duplicated.len(), 1);
    assert_eq!(verdict.duplicated[0].runs, 2);
    rig.stop().await;
}
