//! A scenario and its floor measured together: both started on their own
//! fresh databases, warmed up, then their latency tasks interleaved task
//! by task (A B, B A, A B, ...) as the A/B runner does, so both see the
//! same moments of the machine. On these machines absolute timings drift
//! by 2-3x within an hour, and in bursts: run one after the other, the two
//! latency runs met different machines and their ratio moved by ±10% from
//! run to run; alternating blocks of 25 tasks still let a slow burst fall
//! on one side (linear over its floor 1.64x, 2.35x, 1.94x in three runs of
//! an hour when task by task gave 1.71x, 1.71x, 1.88x). Each side's
//! costs, phases and checks are its own database's; the throughput rates
//! run afterwards, one system at a time, as unpaired scenarios do.

use anyhow::Context;
use tasker_engine::TaskTemplate;

use super::engine::EngineUnderTest;
use super::floor::FloorSession;
use super::latency::Requests;
use super::{bar, empty_result, fresh_database, measure_throughput, EngineLatency, RunPlan};
use crate::result::ScenarioResult;
use crate::scenario::{Scenario, Topology};

/// For each scenario, the index of the floor scenario it is paired with:
/// an embedded scenario with a latency run and a floor of its template
/// (`floor_<name>` first, as the reports choose) that no earlier scenario
/// took. The others run alone.
pub fn pairs(scenarios: &[Scenario]) -> Vec<Option<usize>> {
    let mut taken = vec![false; scenarios.len()];
    let mut pairs = vec![None; scenarios.len()];
    for (i, scenario) in scenarios.iter().enumerate() {
        if scenario.topology != Topology::Embedded || scenario.latency.is_none() {
            continue;
        }
        let floors = || {
            scenarios.iter().enumerate().filter(|(j, f)| {
                f.topology == Topology::Floor
                    && f.latency.is_some()
                    && f.template == scenario.template
                    && !taken[*j]
            })
        };
        let named = format!("floor_{}", scenario.name);
        let floor = floors()
            .find(|(_, f)| f.name == named)
            .or_else(|| floors().next())
            .map(|(j, _)| j);
        if let Some(j) = floor {
            taken[j] = true;
            pairs[i] = Some(j);
        }
    }
    pairs
}

/// Runs `scenario` and its floor `floor_scenario` with their latency tasks
/// interleaved; their results, in that order.
pub async fn run_pair(
    plan: &RunPlan,
    scenario: &Scenario,
    floor_scenario: &Scenario,
) -> anyhow::Result<(ScenarioResult, ScenarioResult)> {
    let template = scenario.load_template()?;
    let engine_url = fresh_database(&plan.admin_url, &scenario.name).await?;
    let floor_url = fresh_database(&plan.admin_url, &floor_scenario.name).await?;
    let engine = EngineUnderTest::start(
        scenario.topology,
        &engine_url,
        &template,
        &plan.engine_config,
    )
    .await?;
    let mut floor = match FloorSession::start(floor_scenario, &floor_url).await {
        Ok(floor) => floor,
        Err(error) => {
            engine.stop().await;
            return Err(error.context(format!("scenario '{}'", floor_scenario.name)));
        }
    };
    let mut result = empty_result(scenario, &template);
    let outcome = measure(
        plan,
        (scenario, &template, &engine, &mut result),
        (floor_scenario, &mut floor),
    )
    .await;
    engine.stop().await;
    let floor_result = floor.stop().await;
    outcome?;
    Ok((result, floor_result?))
}

async fn measure(
    plan: &RunPlan,
    (scenario, template, engine, result): (
        &Scenario,
        &TaskTemplate,
        &EngineUnderTest,
        &mut ScenarioResult,
    ),
    (floor_scenario, floor): (&Scenario, &mut FloorSession),
) -> anyhow::Result<()> {
    let at = |s: &Scenario| format!("scenario '{}'", s.name);
    let mut requests = Requests::new(scenario.request(template), &scenario.name);
    let engine_latency = EngineLatency::begin(plan, scenario, engine, &mut requests)
        .await
        .with_context(|| at(scenario))?;
    let floor_latency = floor
        .begin_latency(plan, floor_scenario)
        .await
        .with_context(|| at(floor_scenario))?;
    if let (Some(mut engine_latency), Some(mut floor_latency)) = (engine_latency, floor_latency) {
        // Pairs while both sides have samples to take; then the rest of
        // the longer side's (the scenario file may give them other counts).
        let (engine_n, floor_n) = (engine_latency.run.count, floor_latency.count);
        let progress = bar(
            engine_n + floor_n,
            &format!("{} + {} latency", scenario.name, floor_scenario.name),
        );
        for i in 0..engine_n.max(floor_n) {
            for engine_side in order(i) {
                if engine_side && i < engine_n {
                    engine_latency
                        .sample(&mut requests)
                        .await
                        .with_context(|| at(scenario))?;
                } else if !engine_side && i < floor_n {
                    floor
                        .sample(&mut floor_latency)
                        .await
                        .with_context(|| at(floor_scenario))?;
                } else {
                    continue;
                }
                progress.inc(1);
            }
        }
        progress.finish_and_clear();
        engine_latency
            .finish(scenario, template, result)
            .await
            .with_context(|| at(scenario))?;
        floor
            .finish_latency(floor_latency)
            .await
            .with_context(|| at(floor_scenario))?;
    }
    measure_throughput(plan, scenario, engine, &mut requests, result)
        .await
        .with_context(|| at(scenario))?;
    floor
        .throughput(plan, floor_scenario)
        .await
        .with_context(|| at(floor_scenario))
}

/// Which side runs first in the `i`th pair (true: the engine): A B, B A,
/// A B, ... so neither side always follows the other.
fn order(i: u64) -> [bool; 2] {
    if i.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scenario_is_paired_with_the_floor_of_its_template() {
        let all = crate::scenario::load(&crate::scenario::default_path()).unwrap();
        let pick = |names: &[&str]| -> Vec<Scenario> {
            names
                .iter()
                .map(|n| all.iter().find(|s| s.name == *n).unwrap().clone())
                .collect()
        };
        let run = pick(&["linear", "diamond", "floor_linear", "floor_diamond"]);
        assert_eq!(pairs(&run), vec![Some(2), Some(3), None, None]);
        // a floor already taken is not paired twice; without a floor of
        // its template a scenario runs alone
        let run = pick(&["linear", "floor_linear", "linear", "diamond"]);
        assert_eq!(pairs(&run), vec![Some(1), None, None, None]);
    }

    #[test]
    fn the_sides_alternate_which_goes_first() {
        assert_eq!(order(0), [true, false]);
        assert_eq!(order(1), [false, true]);
        assert_eq!(order(2), [true, false]);
    }
}
