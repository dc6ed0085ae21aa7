//! Tier 4: a scenario whose handlers are in another language. Its
//! template is tier 1's, served by that language's worker (through the
//! worker core's native extension) on one engine, and by the Rust
//! `tasker-worker` on another; tasks alternate between the two (the A/B
//! runner), so the difference a pair shows is what the language adds, on
//! the same machine at the same moments.

use anyhow::Context;

use super::ab::{run_ab, AbSamples};
use super::languages::{Prepared, PreparedWorkers};
use super::{RunPlan, Side};
use crate::build::EngineBuild;
use crate::compare::{paired, CompareConfig};
use crate::result::{FfiComparison, LatencyResult, ScenarioResult, Summary};
use crate::scenario::{Language, Scenario};

/// Runs `scenario` with `language`'s handlers against the Rust worker;
/// `None`, with a line saying what to install, when the language's
/// toolchain is missing.
pub async fn run_scenario(
    plan: &RunPlan,
    scenario: &Scenario,
    language: Language,
    workers: &mut PreparedWorkers,
) -> anyhow::Result<Option<ScenarioResult>> {
    let build = EngineBuild::this()?;
    // Optimised like this harness and the engine binaries beside it.
    let release = !cfg!(debug_assertions);
    let worker = match workers.get(language, &build.source_dir, release)? {
        Prepared::Ready(worker) => worker,
        Prepared::Skipped(why) => {
            eprintln!("{}: {why}", scenario.name);
            return Ok(None);
        }
    };
    let template = scenario.load_template()?;
    let latency = scenario.latency.as_ref().with_context(|| {
        format!(
            "scenario '{}': a tier-4 scenario needs a latency plan (its pairs)",
            scenario.name
        )
    })?;
    let pairs = plan.samples.unwrap_or(latency.samples);
    let rust = Side::new(build.clone(), Vec::new());
    let host = Side::new(build, Vec::new()).with_worker(worker.serving(&template.namespace_name));
    let samples = run_ab(plan, scenario, pairs, &rust, &host).await?;
    let shape = Shape {
        steps: template.steps.len(),
        critical_path: template.critical_path_len() as u32,
    };
    let template = template.key().to_string();
    Ok(Some(result(
        scenario,
        language,
        latency.warmup,
        template,
        shape,
        samples,
    )))
}

/// The template's steps and the longest chain of them.
struct Shape {
    steps: usize,
    critical_path: u32,
}

/// The language side's latency, costs and phases, with the comparison.
fn result(
    scenario: &Scenario,
    language: Language,
    warmup: u64,
    template: String,
    shape: Shape,
    samples: AbSamples,
) -> ScenarioResult {
    let steps = shape.steps.max(1);
    let ffi = paired::median_difference(
        &samples.baseline_us,
        &samples.candidate_us,
        &CompareConfig::default(),
    )
    .map(|(median, low, high)| FfiComparison {
        language,
        rust: Summary::of(&samples.baseline_us),
        pairs: samples.baseline_us.len() as u64,
        overhead_per_step_us: median / steps as f64,
        overhead_ci_low_us: low / steps as f64,
        overhead_ci_high_us: high / steps as f64,
        rust_costs: samples.baseline_costs,
    });
    // The language side's own time: its tasks ran one at a time, between
    // the Rust side's.
    let wall_seconds = samples.candidate_us.iter().sum::<u64>() as f64 / 1e6;
    let count = samples.candidate_us.len() as f64;
    ScenarioResult {
        name: scenario.name.clone(),
        tier: scenario.tier,
        template,
        rows: scenario.rows,
        steps_per_task: steps as u32,
        critical_path_steps: Some(shape.critical_path),
        latency: Some(LatencyResult {
            warmup,
            summary: Summary::of(&samples.candidate_us),
            tasks_per_second: count / wall_seconds.max(f64::MIN_POSITIVE),
            wall_seconds,
            samples_us: samples.candidate_us,
        }),
        throughput: Vec::new(),
        phases: samples.candidate_phases,
        costs: samples.candidate_costs,
        ffi,
        floor: false,
    }
}
