//! `ab` (and `gate --against`): interleaved A/B runs of two engines, paired statistics.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tasker_harness::build::EngineBuild;
use tasker_harness::compare::{self, CompareConfig};
use tasker_harness::result::sharing_spread;
use tasker_harness::run::{self, RunPlan, Side};
use tasker_harness::scenario::Topology;

use super::compare::verdict_exit;
use super::run::{prepare, RunArgs};

#[derive(Args)]
pub(super) struct AbArgs {
    #[command(flatten)]
    sides: AbSides,
    /// The scenario (one; default: linear) and where PostgreSQL comes from.
    #[command(flatten)]
    plan: RunArgs,
}

/// The two engines of an A/B run.
#[derive(Args)]
pub(super) struct AbSides {
    /// A/B mode: build this git ref (under target/against/) and run it as A,
    /// interleaved with this build as B, instead of a stored baseline.
    #[arg(long)]
    pub(super) against: Option<String>,
    /// NAME=VALUE set on B's processes, e.g.
    /// TASKER__WORKER__INJECTED_DELAY_US=250 (the gate's self-test).
    #[arg(long = "candidate-env", value_parser = parse_env_pair)]
    candidate_env: Vec<(String, String)>,
}

impl AbSides {
    /// A: the ref's build (built now if needed) or this build; B: this
    /// build with the candidate environment.
    async fn resolve(&self) -> anyhow::Result<(Side, Side)> {
        let this = EngineBuild::this()?;
        let reference = match &self.against {
            Some(git_ref) => {
                let git_ref = git_ref.clone();
                tokio::task::spawn_blocking(move || EngineBuild::of_ref(&git_ref)).await??
            }
            None => this.clone(),
        };
        Ok((
            Side::new(reference, Vec::new()),
            Side::new(this, self.candidate_env.clone()),
        ))
    }
}

fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))
}

pub(super) async fn ab(mut args: AbArgs) -> anyhow::Result<ExitCode> {
    args.plan.default_to_scenario("linear");
    ab_gate(&args.sides, &args.plan).await
}

/// Builds the sides, provisions PostgreSQL, runs the A/B gate; its exit code.
pub(super) async fn ab_gate(sides: &AbSides, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let (reference, candidate) = sides.resolve().await?;
    let (_server, plan) = prepare(args).await?;
    let comparison = gate_ab(&plan, &reference, &candidate).await?;
    Ok(verdict_exit(&comparison))
}

/// A/B run of every planned scenario: paired latency and each side's
/// per-step costs; a latency regression is confirmed by a second A/B run
/// of that scenario. Prints the comparison.
async fn gate_ab(
    plan: &RunPlan,
    reference: &Side,
    candidate: &Side,
) -> anyhow::Result<compare::Comparison> {
    let config = CompareConfig::default();
    eprintln!("A/B: A = {}, B = {}", reference.label(), candidate.label());
    let mut scenarios = Vec::new();
    for scenario in &plan.scenarios {
        if scenario.topology == Topology::Floor {
            // Both sides would run the same harness code: nothing to compare.
            eprintln!(
                "A/B: skipping {}: a floor scenario runs the harness's own model, not an engine \
                 build, so A and B would be the same code",
                scenario.name
            );
            continue;
        }
        let pairs = plan
            .samples
            .or(scenario.latency.as_ref().map(|l| l.samples))
            .unwrap_or(200);
        // From the template's steps (a batch's batches, made at run time,
        // are not counted here).
        let template = scenario.load_template()?;
        let spread = sharing_spread(
            template.steps.len() as u32,
            template.critical_path_len() as u32,
        );
        let run = || async {
            let samples = run::ab::run_ab(plan, scenario, pairs, reference, candidate)
                .await
                .with_context(|| format!("A/B run of scenario '{}'", scenario.name))?;
            let paired =
                compare::compare_interleaved(&samples.baseline_us, &samples.candidate_us, &config)?;
            anyhow::Ok((samples, paired))
        };
        let (samples, paired) = run().await?;
        let mut comparison = compare::compare_ab_scenario(
            &scenario.name,
            paired,
            samples.baseline_costs.as_ref(),
            samples.candidate_costs.as_ref(),
            &config,
            spread,
        );
        let pending = comparison
            .paired
            .as_ref()
            .is_some_and(|p| p.needs_confirmation());
        if pending && comparison.cost_verdict() != compare::Verdict::Regressed {
            eprintln!(
                "gate: latency of {} regressed; a second A/B run to confirm",
                scenario.name
            );
            let (_, again) = run().await?;
            if let Some(outcome) = comparison.paired.as_mut() {
                outcome.rerun = Some(again);
            }
        }
        scenarios.push(comparison);
    }
    let comparison = compare::Comparison {
        baseline_id: reference.label(),
        current_id: candidate.label(),
        config,
        scenarios,
        only_in_baseline: Vec::new(),
        only_in_current: Vec::new(),
    };
    println!("{}", compare::render_markdown(&comparison));
    Ok(comparison)
}
