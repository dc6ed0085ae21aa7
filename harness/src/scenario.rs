//! Scenarios as data: `scenarios/tiers.toml` lists every scenario with its
//! tier, template, context and how to run it. The harness runs any subset
//! by tier or by name.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tasker_engine::template::StepType;
use tasker_engine::{TaskRequest, TaskTemplate};

/// The scenario file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    #[serde(rename = "scenario")]
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub tier: u8,
    /// Template name in scenarios/templates (e.g. `linear_workflow`).
    pub template: String,
    /// The task context (TOML table, becomes JSON).
    #[serde(default = "empty_table")]
    pub context: toml::Value,
    /// The step whose result is checked on every task, and its value.
    pub expect: Option<Expectation>,
    /// Items one task processes (the batch tier's CSV rows): runs then
    /// also report rows/s.
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default)]
    pub latency: Option<LatencyPlan>,
    #[serde(default)]
    pub throughput: Option<ThroughputPlan>,
    /// Seconds a task may take before the run fails.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// How the engine runs: `embedded` (one process), `cluster`
    /// (separate orchestrator and worker processes), `ffi` (one
    /// orchestrator and one worker whose handlers are in another language,
    /// run interleaved with the Rust worker on the same template), or
    /// `floor`: no engine at all, the harness's minimal model of a durable
    /// queue-based chain (`run::floor`) running the template's DAG.
    #[serde(default)]
    pub topology: Topology,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub step: String,
    pub result: toml::Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyPlan {
    pub samples: u64,
    pub warmup: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputPlan {
    /// Arrival rates, tasks per second.
    pub rates: Vec<f64>,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Topology {
    #[default]
    Embedded,
    Cluster {
        orchestrators: u8,
        workers: u8,
    },
    Ffi {
        language: Language,
    },
    /// The template's DAG on the harness's minimal model (`run::floor`):
    /// plain tokio-postgres, no handlers, no engine code. What the engine's
    /// latency is compared with.
    Floor,
}

/// A language whose step handlers run through the worker core's native
/// extension (`workers/<language>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Ruby,
    Typescript,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Ruby => "ruby",
            Self::Typescript => "typescript",
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn empty_table() -> toml::Value {
    toml::Value::Table(Default::default())
}

fn default_timeout() -> u64 {
    60
}

/// The default scenario file.
pub fn default_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/tiers.toml")
}

/// Read and check a scenario file; errors name the file and the field.
pub fn load(path: &Path) -> anyhow::Result<Vec<Scenario>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read scenario file {}", path.display()))?;
    let file: ScenarioFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e))?;
    let templates = tasker_scenarios::templates()
        .map_err(|e| anyhow::anyhow!("loading scenario templates: {e}"))?;
    let mut seen = std::collections::BTreeSet::new();
    for scenario in &file.scenarios {
        let at = format!("{}: scenario '{}'", path.display(), scenario.name);
        if !seen.insert(scenario.name.as_str()) {
            bail!("{at}: the name is used twice");
        }
        if !(1..=5).contains(&scenario.tier) {
            bail!("{at}: tier must be 1 to 5, is {}", scenario.tier);
        }
        let Some(template) = templates.iter().find(|t| t.name == scenario.template) else {
            bail!(
                "{at}: template '{}' is not in scenarios/templates",
                scenario.template
            );
        };
        if scenario.topology == Topology::Floor {
            check_floor(template).map_err(|why| anyhow::anyhow!("{at}: {why}"))?;
            if scenario.expect.is_some() {
                bail!("{at}: expect: a floor scenario runs no handlers, so it has no results to check; remove expect");
            }
        }
        if let Some(expect) = &scenario.expect {
            if template.step(&expect.step).is_none() {
                bail!(
                    "{at}: expect.step '{}' is not a step of {}",
                    expect.step,
                    scenario.template
                );
            }
        }
        if !scenario.context.is_table() {
            bail!("{at}: context must be a table");
        }
        if scenario.rows == Some(0) {
            bail!("{at}: rows must be at least 1");
        }
        if let Some(plan) = &scenario.latency {
            if plan.samples < 1 {
                bail!("{at}: latency.samples must be at least 1");
            }
        }
        if let Some(plan) = &scenario.throughput {
            if plan.rates.is_empty() || plan.rates.iter().any(|r| r.is_nan() || *r <= 0.0) {
                bail!("{at}: throughput.rates must be positive numbers");
            }
            if plan.duration_s.is_nan() || plan.duration_s <= 0.0 {
                bail!("{at}: throughput.duration_s must be positive");
            }
        }
        if scenario.latency.is_none() && scenario.throughput.is_none() {
            bail!("{at}: give latency, throughput, or both");
        }
    }
    Ok(file.scenarios)
}

/// A floor scenario's template: a DAG of standard steps (the floor runs
/// no handlers, so it cannot decide between branches or cut batches).
fn check_floor(template: &TaskTemplate) -> Result<(), String> {
    let special: Vec<&str> = template
        .steps
        .iter()
        .filter(|s| s.step_type != StepType::Standard || s.batch_config.is_some())
        .map(|s| s.name.as_str())
        .collect();
    if special.is_empty() {
        return Ok(());
    }
    Err(format!(
        "topology floor: template {} has steps the floor cannot model (decision or batch steps: {}); \
         the floor runs DAGs of standard steps",
        template.name,
        special.join(", ")
    ))
}

/// The scenarios picked by tier and/or name (none given: tier 1).
pub fn select(all: Vec<Scenario>, tiers: &[u8], names: &[String]) -> anyhow::Result<Vec<Scenario>> {
    for name in names {
        if !all.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            bail!("no scenario named '{name}' (known: {})", known.join(", "));
        }
    }
    let tiers: Vec<u8> = if tiers.is_empty() && names.is_empty() {
        vec![1]
    } else {
        tiers.to_vec()
    };
    Ok(all
        .into_iter()
        .filter(|s| tiers.contains(&s.tier) || names.contains(&s.name))
        .collect())
}

impl Scenario {
    pub fn context_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.context).expect("TOML converts to JSON")
    }

    /// The scenario's template, from the scenarios crate.
    pub fn load_template(&self) -> anyhow::Result<TaskTemplate> {
        tasker_scenarios::template(&self.template)
            .with_context(|| format!("template {} not found", self.template))
    }

    /// The request every task of the scenario is made from (each then
    /// gets its own idempotency key).
    pub fn request(&self, template: &TaskTemplate) -> TaskRequest {
        TaskRequest::new(
            &template.namespace_name,
            &template.name,
            &template.version,
            self.context_json(),
        )
    }
}
