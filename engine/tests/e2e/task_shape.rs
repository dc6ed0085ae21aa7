//! A step costs the same whatever the size of its task. Orchestration
//! decides a task after a step completes from that step's children (their
//! readiness, their parents), not from every step of the task: counted
//! here as the rows orchestration's processing of each completion reads
//! from the engine's tables and queues, for every middle step of a
//! 16-step chain and of the 4-step linear chain.

use sqlx::{Connection, PgConnection};
use tasker_engine::database::{connect_options, HOT_PATH_SESSION};
use tasker_engine::orchestration::register_templates;
use tasker_engine::testing::test_database;

use crate::plans::{
    assert_complete, claim_and_submit_one, create_chain_task, process_results, rows_read,
};
use crate::scenario;

/// Runs one task of `template` (namespace `namespace`, a chain: one step
/// ready at a time) through the hot path's functions in one transaction,
/// and returns for each step the rows that processing its result read.
async fn rows_read_processing_each_step(
    conn: &mut PgConnection,
    namespace: &str,
    template: &str,
    steps: usize,
    n: i64,
) -> Vec<i64> {
    let mut tx = conn.begin().await.unwrap();
    let task = create_chain_task(&mut tx, namespace, template, n).await;
    let mut reads = Vec::new();
    for _ in 0..steps {
        claim_and_submit_one(&mut tx, namespace).await;
        let before = rows_read(&mut tx).await;
        process_results(&mut tx).await;
        let after = rows_read(&mut tx).await;
        reads.push(
            after
                .iter()
                .zip(&before)
                .map(|((_, after), (_, before))| after - before)
                .sum(),
        );
    }
    assert_complete(&mut tx, task).await;
    tx.commit().await.unwrap();
    reads
}

#[tokio::test]
async fn a_middle_step_of_a_long_chain_reads_as_much_as_one_of_a_short_chain() {
    let database = test_database().await.unwrap();
    let setup = tasker_engine::database::connect(&database.url, &Default::default())
        .await
        .unwrap();
    tasker_engine::database::migrate(&setup).await.unwrap();
    register_templates(
        &setup,
        &[scenario("linear_workflow"), scenario("chain_workflow")],
    )
    .await
    .unwrap();
    let mut conn = PgConnection::connect_with(&connect_options(&database.url).unwrap())
        .await
        .unwrap();
    // the result processor's session settings (its plain statement's)
    sqlx::query(HOT_PATH_SESSION)
        .execute(&mut conn)
        .await
        .unwrap();
    // A first task of each, so that both are measured on warm plans.
    rows_read_processing_each_step(&mut conn, "linear", "linear_workflow", 4, 1).await;
    rows_read_processing_each_step(&mut conn, "chain", "chain_workflow", 16, 1).await;

    let linear = rows_read_processing_each_step(&mut conn, "linear", "linear_workflow", 4, 2).await;
    let chain = rows_read_processing_each_step(&mut conn, "chain", "chain_workflow", 16, 2).await;
    // The middle steps: each completion enqueues the next step.
    let short = &linear[1..3];
    let long = &chain[1..15];
    assert!(
        long.iter().chain(short).all(|rows| *rows == short[0]),
        "rows read processing each middle step: linear {short:?}, chain of 16 {long:?}"
    );
}
