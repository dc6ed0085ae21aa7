//! The campaign: its [`Plan`], the driver ([`run`]: a [`Rig`], a load of
//! random tasks with injected handler failures, faults chosen from the
//! seed one after another, then every task checked) and its [`Report`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tasker_engine::{TaskRequest, TaskerClient};

use super::check::{self, Expect, Submitted, Verdict};
use super::faults::{self, FaultKind, Targets};
use super::rig::{Rig, RigOptions};
use super::templates::Shape;

/// What a campaign does.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub tasks: u64,
    pub seed: u64,
    /// How long tasks are submitted and faults injected.
    pub duration: Duration,
    pub orchestrators: usize,
    pub workers: usize,
    /// Every step's timeout_seconds (its lease is this plus the margin).
    pub step_timeout_s: u32,
    pub lease_margin_s: i32,
    pub max_attempts: u32,
    /// Seconds between faults: uniform in this range.
    pub fault_gap_s: (f64, f64),
    pub kinds: Vec<FaultKind>,
    /// PostgreSQL and the engine in containers (adds network cuts).
    pub containers: bool,
    /// Where templates, run records, process logs and the result go.
    pub out_dir: PathBuf,
}

impl Plan {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.step_timeout_s as u64 + self.lease_margin_s.max(0) as u64)
    }
}

/// One fault as injected.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub kind: FaultKind,
    /// Seconds from the campaign's start.
    pub at_s: f64,
    pub took_s: f64,
    pub what: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub plan: Plan,
    pub faults: Vec<Injected>,
    pub faults_by_kind: BTreeMap<FaultKind, usize>,
    /// From the last fault's end until every task had finished, s.
    pub drain_s: f64,
    pub verdict: Verdict,
}

/// Runs the campaign and returns its report (also written to
/// `<out_dir>/chaos.json`).
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let mut rig = Rig::start(&RigOptions {
        out_dir: plan.out_dir.clone(),
        orchestrators: plan.orchestrators,
        workers: plan.workers,
        step_timeout_s: plan.step_timeout_s,
        lease_margin_s: plan.lease_margin_s,
        max_attempts: plan.max_attempts,
        containers: plan.containers,
    })
    .await?;
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let load = tokio::spawn(submit_load(
        rig.client.clone(),
        rig.shapes.clone(),
        plan.tasks,
        plan.duration,
        ChaCha8Rng::seed_from_u64(plan.seed ^ 0x5eed),
    ));

    let mut injected = Vec::new();
    let mut targets = Targets {
        fleet: &mut rig.fleet,
        postgres: &rig.postgres,
        database: rig.database,
        lease: plan.lease(),
    };
    loop {
        let gap = rng.random_range(plan.fault_gap_s.0..=plan.fault_gap_s.1);
        if started.elapsed() + Duration::from_secs_f64(gap) >= plan.duration {
            break;
        }
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        let kind = plan.kinds[rng.random_range(0..plan.kinds.len())];
        let at = started.elapsed();
        let what = faults::inject(kind, &mut targets, &mut rng).await?;
        let took = started.elapsed() - at;
        eprintln!("chaos: {:>6.1} s  {what}", at.as_secs_f64());
        injected.push(Injected {
            kind,
            at_s: at.as_secs_f64(),
            took_s: took.as_secs_f64(),
            what,
        });
    }
    let submitted = load.await.context("the load generator panicked")??;
    let last_fault = Instant::now();
    let verdict = rig
        .finish(&submitted, plan.lease() * 2 + Duration::from_secs(120))
        .await?;
    let drain = last_fault.elapsed();
    rig.stop().await;

    let mut faults_by_kind = BTreeMap::new();
    for fault in &injected {
        *faults_by_kind.entry(fault.kind).or_insert(0) += 1;
    }
    let report = Report {
        plan: plan.clone(),
        faults: injected,
        faults_by_kind,
        drain_s: drain.as_secs_f64(),
        verdict,
    };
    let path = plan.out_dir.join("chaos.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

/// Submits `tasks` tasks evenly over `duration`: a random shape each, a
/// handler delay, and in some of them injected failures (retryable ones
/// the task survives, or a fatal one it must end in error with). A
/// submission that fails (the database is down) is retried: creating a
/// task is idempotent.
async fn submit_load(
    client: TaskerClient,
    shapes: Vec<Shape>,
    tasks: u64,
    duration: Duration,
    mut rng: ChaCha8Rng,
) -> anyhow::Result<Vec<Submitted>> {
    let started = tokio::time::Instant::now();
    let mut submitted = Vec::with_capacity(tasks as usize);
    for id in 0..tasks {
        tokio::time::sleep_until(started + duration.mul_f64(id as f64 / tasks as f64)).await;
        let shape = &shapes[rng.random_range(0..shapes.len())];
        let (chaos, expect) = random_faults(shape, &mut rng);
        let request = shape.request(id, chaos);
        submitted.push(submit(&client, &request, expect).await);
    }
    Ok(submitted)
}

/// Creates a task, retrying while the database does not answer (creating
/// a task is idempotent: its identity includes its context).
pub async fn submit(client: &TaskerClient, request: &TaskRequest, expect: Expect) -> Submitted {
    let mut delay = Duration::from_millis(100);
    loop {
        match client.create_task(request).await {
            Ok(created) => {
                return Submitted {
                    task_uuid: created.task_uuid,
                    expect,
                }
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn random_faults(shape: &Shape, rng: &mut impl Rng) -> (Value, Expect) {
    let steps = &shape.template.steps;
    let step = |rng: &mut dyn rand::RngCore| steps[rng.random_range(0..steps.len())].name.clone();
    let delay_ms: u64 = rng.random_range(20..400);
    let roll: f64 = rng.random();
    if roll < 0.05 {
        let fatal = step(rng);
        (
            json!({"delay_ms": delay_ms, "fatal": fatal}),
            Expect::Error { step: fatal },
        )
    } else {
        let mut chaos = json!({"delay_ms": delay_ms});
        if roll < 0.25 {
            chaos["fail"] = json!({ step(rng): rng.random_range(1..=2u64) });
        }
        (chaos, shape.completes())
    }
}

/// The campaign's verdict as the command prints it.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "Chaos campaign: seed {}, {} tasks over {:?}, {} orchestrators + {} workers, lease {:?}\n\nFaults injected: {}\n",
        report.plan.seed,
        report.plan.tasks,
        report.plan.duration,
        report.plan.orchestrators,
        report.plan.workers,
        report.plan.lease(),
        report.faults.len()
    );
    for (kind, n) in &report.faults_by_kind {
        out.push_str(&format!("  {:<50} {n:>10}\n", format!("{kind:?}")));
    }
    out.push_str(&format!(
        "\nAfter the last fault every task had finished within {:.1} s.\n\n",
        report.drain_s
    ));
    out.push_str(&check::render(&report.verdict));
    out.push_str(if report.verdict.passed() {
        "\nPASSED: no task lost, no attempt run twice.\n"
    } else {
        "\nFAILED: tasks lost or attempts run twice (see above).\n"
    });
    out
}
