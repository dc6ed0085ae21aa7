//! The host side played by a plain thread: it polls, runs the scenario
//! arithmetic on the step's JSON, and completes, against a real engine.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use tasker_engine::config::TaskerConfig;
use tasker_engine::orchestration::{register_templates, Orchestrator};
use tasker_engine::state::{StepState, TaskState};
use tasker_engine::testing::test_database;
use tasker_engine::{Embedded, TaskRequest, TaskTemplate, TaskerClient};
use uuid::Uuid;

use super::*;

const TASK_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

fn linear() -> TaskTemplate {
    tasker_scenarios::template("linear_workflow").expect("the linear scenario")
}

fn config() -> TaskerConfig {
    let mut config = TaskerConfig::default();
    config.database.pool_size = 4;
    config.worker.concurrency = 4;
    config
}

/// linear.square on the host's side: the parent's result, or the task's
/// even_number for the first step, squared.
fn square(step: &HostStep) -> HostOutcome {
    let payload: Value = serde_json::from_str(&step.payload).expect("the payload is JSON");
    let parents = payload["dependency_results"]
        .as_object()
        .expect("an object");
    let input = match parents.values().next() {
        Some(parent) => parent.as_u64(),
        None => payload["task_context"]["even_number"].as_u64(),
    };
    let input = input.expect("an integer input");
    HostOutcome::Success((input * input).to_string())
}

/// Serves `bridge` on a thread until it stops, answering with `handler`;
/// returns the refused completions' errors.
fn serve(
    bridge: Arc<Bridge>,
    handler: impl Fn(&HostStep) -> Option<HostOutcome> + Send + 'static,
) -> thread::JoinHandle<Vec<CompleteError>> {
    thread::spawn(move || {
        let mut refused = Vec::new();
        loop {
            match bridge.poll(POLL) {
                Polled::Step(step) => {
                    if let Some(outcome) = handler(&step) {
                        if let Err(e) = bridge.complete(step.id, outcome) {
                            refused.push(e);
                        }
                    }
                }
                Polled::Idle => {}
                Polled::Stopped => return refused,
            }
        }
    })
}

async fn linear_task(client: &TaskerClient, template: &TaskTemplate) -> Uuid {
    let request = TaskRequest::new(
        &template.namespace_name,
        &template.name,
        &template.version,
        json!({"even_number": 2}),
    );
    client
        .create_task(&request)
        .await
        .expect("task created")
        .task_uuid
}

async fn step_results(
    client: &TaskerClient,
    task: Uuid,
) -> Vec<(String, StepState, Option<Value>)> {
    let mut steps: Vec<_> = client
        .list_steps(task)
        .await
        .expect("steps")
        .into_iter()
        .map(|s| (s.name, s.state, s.results.or(s.last_error)))
        .collect();
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    steps
}

/// Creates a linear task and waits until it ends.
async fn run_linear(engine: &Embedded, template: &TaskTemplate) -> (Uuid, TaskState) {
    let task = linear_task(&engine.client, template).await;
    let state = engine
        .client
        .wait_for_completion(task, TASK_TIMEOUT)
        .await
        .unwrap();
    (task, state)
}

/// The linear task's steps hold N^2, N^4, N^8, N^16 for N = 2.
async fn assert_linear_results(client: &TaskerClient, task: Uuid) {
    let results: Vec<Option<Value>> = step_results(client, task)
        .await
        .into_iter()
        .map(|(_, _, r)| r)
        .collect();
    assert_eq!(
        results,
        [4, 16, 256, 65536].map(|n| Some(json!(n))).to_vec()
    );
}

/// Shuts the engine down, then closes the bridge: the host's poll says
/// Stopped once the worker has dropped its handlers.
async fn stop(engine: Embedded, bridge: &Bridge) {
    engine.shutdown().await;
    bridge.close();
}

async fn start_engine(template: &TaskTemplate, bridge: &Arc<Bridge>) -> Embedded {
    let database = test_database().await.expect("test database");
    let registry = host_registry(bridge, template.callables());
    Embedded::start(
        &database.url,
        config(),
        std::slice::from_ref(template),
        registry,
    )
    .await
    .expect("engine starts")
}

/// The whole HostWorker (its own runtime, configuration, migration) with
/// orchestration beside it: the linear task ends with 2^16.
#[test]
fn a_host_worker_runs_the_linear_scenario() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let template = linear();
    let (url, client, orchestrator) = runtime.block_on(async {
        let database = test_database().await.expect("test database");
        let pool = database::connect(&database.url, &PoolSettings::default())
            .await
            .unwrap();
        database::migrate(&pool).await.unwrap();
        register_templates(&pool, std::slice::from_ref(&template))
            .await
            .unwrap();
        let orchestrator = Orchestrator::start(pool.clone(), config().orchestration)
            .await
            .unwrap();
        let client = TaskerClient::new(pool, Default::default()).await.unwrap();
        (database.url, client, orchestrator)
    });
    let mut config = config();
    config.database.url = Some(url);
    let worker = Arc::new(
        HostWorker::start_with(
            config,
            std::slice::from_ref(&template),
            &["linear.square".into()],
        )
        .expect("host worker starts"),
    );
    let serving = {
        let worker = worker.clone();
        thread::spawn(move || loop {
            match worker.poll(POLL) {
                Polled::Step(step) => worker.complete(step.id, square(&step)).unwrap(),
                Polled::Idle => {}
                Polled::Stopped => return,
            }
        })
    };
    let state = runtime.block_on(async {
        let task = linear_task(&client, &template).await;
        client
            .wait_for_completion(task, TASK_TIMEOUT)
            .await
            .unwrap()
    });
    assert_eq!(state, TaskState::Complete);
    worker.stop();
    serving
        .join()
        .expect("the host thread ends when the worker stops");
    runtime.block_on(orchestrator.shutdown());
}

/// The final step's result is what the host computed, and every step's
/// result went through the boundary as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_cross_the_boundary_as_json() {
    let template = linear();
    let bridge = Bridge::new(4);
    let engine = start_engine(&template, &bridge).await;
    let host = serve(bridge.clone(), |step| Some(square(step)));
    let (task, state) = run_linear(&engine, &template).await;
    assert_eq!(state, TaskState::Complete);
    assert_linear_results(&engine.client, task).await;
    stop(engine, &bridge).await;
    assert!(host.join().unwrap().is_empty());
}

/// A host handler that raises becomes a permanent failure carrying the
/// exception's type and message; a result that is not JSON is refused
/// with InvalidResult.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_host_handler_fails_the_step_with_its_error_type() {
    let template = linear();
    let bridge = Bridge::new(4);
    let engine = start_engine(&template, &bridge).await;
    let host = serve(bridge.clone(), |step| {
        Some(match step.step_name.as_str() {
            "linear_step_1" => square(step),
            _ => HostOutcome::Failure(HandlerError::permanent(
                "ZeroDivisionError",
                "division by zero\nTraceback: handlers.py line 3",
            )),
        })
    });
    let (task, state) = run_linear(&engine, &template).await;
    assert_eq!(state, TaskState::Error);
    let steps = step_results(&engine.client, task).await;
    assert_eq!(steps[0].1, StepState::Complete);
    assert_eq!(steps[1].1, StepState::Error);
    let error = steps[1].2.as_ref().expect("the step's error");
    assert_eq!(error["error_type"], "ZeroDivisionError", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("division by zero"),
        "{error}"
    );
    stop(engine, &bridge).await;
    host.join().unwrap();

    let bridge = Bridge::new(4);
    let engine = start_engine(&template, &bridge).await;
    let host = serve(bridge.clone(), |_| {
        Some(HostOutcome::Success("not json".into()))
    });
    let (task, state) = run_linear(&engine, &template).await;
    assert_eq!(state, TaskState::Error);
    let steps = step_results(&engine.client, task).await;
    let error = steps[0].2.as_ref().expect("the step's error");
    assert_eq!(error["error_type"], "InvalidResult", "{error}");
    stop(engine, &bridge).await;
    host.join().unwrap();
}

/// A host handler that outlives the step's timeout: the attempt fails with
/// HandlerTimeout and is retried, and the late completion is refused
/// (the retry's result is the one recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_handler_past_its_timeout_is_retried_and_its_late_result_refused() {
    let mut template = linear();
    for step in &mut template.steps {
        step.timeout_seconds = 1;
    }
    let bridge = Bridge::new(4);
    let engine = start_engine(&template, &bridge).await;
    let held = Arc::new(Mutex::new(None::<HostStep>));
    let host = {
        let held = held.clone();
        let bridge = bridge.clone();
        serve(bridge.clone(), move |step| {
            let first_attempt = step.step_name == "linear_step_1"
                && serde_json::from_str::<Value>(&step.payload).unwrap()["attempt"] == 1;
            if first_attempt {
                // Hold it: the engine times it out and claims it again.
                *held.lock().unwrap() = Some(step.clone());
                return None;
            }
            // The first retry arrives: now answer the held attempt, late.
            if let Some(late) = held.lock().unwrap().take() {
                let refused = bridge.complete(late.id, HostOutcome::Success("999".into()));
                assert_eq!(refused, Err(CompleteError::NotWaiting { id: late.id }));
            }
            Some(square(step))
        })
    };
    let (task, state) = run_linear(&engine, &template).await;
    assert_eq!(state, TaskState::Complete);
    let first = engine
        .client
        .list_steps(task)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "linear_step_1")
        .unwrap();
    assert_eq!(first.attempts, 2, "{first:?}");
    assert_eq!(first.results, Some(json!(4)));
    assert!(
        held.lock().unwrap().is_none(),
        "the late completion was tried"
    );
    stop(engine, &bridge).await;
    host.join().unwrap();
    assert_eq!(bridge.in_flight(), 0);
}

/// poll_async waits without a thread: Idle while a handler could still
/// send, Stopped once the bridge is closed and the last handler dropped.
#[tokio::test]
async fn poll_async_is_idle_until_the_last_handler_is_gone() {
    let bridge = Bridge::new(3);
    assert_eq!(bridge.capacity(), 3);
    let handler = bridge.handler("linear.square").expect("open bridge");
    assert_eq!(
        bridge.poll_async(Duration::from_millis(20)).await,
        Polled::Idle
    );
    bridge.close();
    assert!(bridge.handler("linear.square").is_none());
    assert_eq!(
        bridge.poll_async(Duration::from_millis(20)).await,
        Polled::Idle
    );
    drop(handler);
    assert_eq!(
        bridge.poll_async(Duration::from_secs(5)).await,
        Polled::Stopped
    );
}

/// A host on an event loop: polls awaited with a timeout far shorter than
/// a step (so many time out and are abandoned), each step completed from
/// its own task. No step is lost and the results are the host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_host_serves_the_linear_scenario() {
    let template = linear();
    let bridge = Bridge::new(4);
    let engine = start_engine(&template, &bridge).await;
    let host = {
        let bridge = bridge.clone();
        tokio::spawn(async move {
            let mut idle = 0;
            loop {
                match bridge.poll_async(Duration::from_millis(2)).await {
                    Polled::Step(step) => {
                        let bridge = bridge.clone();
                        tokio::spawn(async move {
                            bridge.complete(step.id, square(&step)).unwrap();
                        });
                    }
                    Polled::Idle => idle += 1,
                    Polled::Stopped => return idle,
                }
            }
        })
    };
    let (task, state) = run_linear(&engine, &template).await;
    assert_eq!(state, TaskState::Complete);
    assert_linear_results(&engine.client, task).await;
    stop(engine, &bridge).await;
    let idle = host
        .await
        .expect("the host loop ends when the worker stops");
    assert!(idle > 0, "polls timed out while the host waited");
    assert_eq!(bridge.in_flight(), 0);
}
