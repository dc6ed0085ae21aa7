//! What the run tests share: scenarios picked by name from the committed
//! scenario file, and a plan for them on a local server.

use tasker_engine::config::TaskerConfig;
use tasker_harness::run::RunPlan;
use tasker_harness::scenario::{self, Scenario};

/// The named scenarios of scenarios/scenarios.toml, in its order.
pub fn scenarios(names: &[&str]) -> Vec<Scenario> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    scenario::select(
        scenario::load(&scenario::default_path()).unwrap(),
        &[],
        &names,
    )
    .unwrap()
}

/// A plan of `scenarios` on the local server at `admin_url`, `samples`
/// latency tasks each (None: as the scenario file says), with the engine's
/// default configuration.
pub fn plan(
    scenarios: Vec<Scenario>,
    admin_url: String,
    samples: Option<u64>,
    latency_only: bool,
) -> RunPlan {
    RunPlan {
        scenarios,
        engine_config: TaskerConfig::default(),
        admin_url,
        backend: "local".into(),
        reason: "test".into(),
        samples,
        latency_only,
    }
}
