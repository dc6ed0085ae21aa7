//! Task templates: the YAML description of a workflow (a DAG of steps).
//!
//! Field names follow Tasker's task templates:
//!
//! ```yaml
//! name: linear_workflow            # required, [a-z0-9_]+
//! namespace_name: linear           # required, [a-z0-9_]+, at most 30 characters
//! version: "1.0.0"                 # required, major.minor.patch (digits)
//! description: "..."               # optional
//! steps:                           # required, non-empty
//!   - name: step_1                 # required, unique, [a-z0-9_]+
//!     description: ...             # optional
//!     type: standard               # standard | decision | batchable | batch_worker | deferred_convergence
//!     handler:
//!       callable: linear.square    # required, non-empty
//!       initialization: {}         # optional JSON object
//!     dependencies: [step_0]       # optional
//!     retry:                       # optional
//!       retryable: true
//!       max_attempts: 3
//!       backoff: exponential       # exponential | linear | fixed
//!       backoff_base_ms: 1000
//!       max_backoff_ms: 30000
//!     timeout_seconds: 30
//! ```
//!
//! Unknown fields are refused, so typos are caught at load time. Missing
//! required fields are reported by [`TaskTemplate::validate`] (together with
//! every other problem of the template) rather than by the YAML parser, so one
//! load reports all that is wrong with a template.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

mod batch;
pub use batch::{worker_step_name, BatchConfig, MAX_BATCHES};

/// Longest accepted `namespace_name`. The namespace becomes the queue name
/// `worker_<namespace>_queue` (13 more characters), and pgmq refuses queue
/// names longer than 47 characters.
pub const MAX_NAMESPACE_LEN: usize = 30;

/// Why a template could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Reading a file or a directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML, or does not have the template's shape (unknown
    /// field, wrong type...). `message` includes the line and column.
    #[error("{file}: cannot parse template: {message}")]
    Parse { file: String, message: String },
    /// The template parsed but is not a valid workflow; lists every problem.
    #[error("{file}: invalid template:{}", format_problems(.problems))]
    Invalid { file: String, problems: Vec<String> },
    /// Two files of one directory define the same namespace/name@version.
    #[error("template {key} is defined twice: in {first} and in {second}")]
    Duplicate {
        key: TemplateKey,
        first: String,
        second: String,
    },
}

fn format_problems(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// Identity of a template: `namespace/name@version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateKey {
    pub namespace: String,
    pub name: String,
    pub version: String,
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.version)
    }
}

/// A workflow definition: named, versioned DAG of steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTemplate {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace_name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema the task context must satisfy; a context that fails it
    /// is refused when the task is requested (HTTP 422 naming the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub steps: Vec<StepTemplate>,
}

/// One step of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type", default)]
    pub step_type: StepType,
    #[serde(default)]
    pub handler: HandlerSpec,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u32,
    /// For a batchable step: how its work is cut and run (see [`batch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_config: Option<BatchConfig>,
}

fn default_timeout_seconds() -> u32 {
    30
}

/// What runs a step: a registered callable and its static configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    #[serde(default)]
    pub callable: String,
    /// A JSON object (`{}` when absent or null).
    #[serde(default = "empty_object", deserialize_with = "null_as_empty_object")]
    pub initialization: serde_json::Value,
}

impl Default for HandlerSpec {
    fn default() -> Self {
        HandlerSpec {
            callable: String::new(),
            initialization: empty_object(),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn null_as_empty_object<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(if value.is_null() {
        empty_object()
    } else {
        value
    })
}

/// Kind of step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    #[default]
    Standard,
    /// Chooses at run time which of its dependent steps run; the others are
    /// skipped.
    Decision,
    /// Decides at run time how its work is cut into batches.
    Batchable,
    /// The template of one batch's step: created once per batch.
    BatchWorker,
    /// Runs once, after every batch worker is complete.
    DeferredConvergence,
}

impl StepType {
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Standard => "standard",
            StepType::Decision => "decision",
            StepType::Batchable => "batchable",
            StepType::BatchWorker => "batch_worker",
            StepType::DeferredConvergence => "deferred_convergence",
        }
    }
}

impl fmt::Display for StepType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the delay between attempts grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    #[default]
    Exponential,
    Linear,
    Fixed,
}

/// Retry settings of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub retryable: bool,
    /// Total attempts allowed, the first one included (>= 1).
    pub max_attempts: u32,
    pub backoff: BackoffKind,
    pub backoff_base_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retryable: true,
            max_attempts: 3,
            backoff: BackoffKind::Exponential,
            backoff_base_ms: 1000,
            max_backoff_ms: 30000,
        }
    }
}

impl RetryPolicy {
    /// Delay before the next attempt, after `attempt` attempts were made
    /// (1-based; 0 is treated as 1). Exponential: `base * 2^(attempt-1)`,
    /// linear: `base * attempt`, fixed: `base`; always capped at
    /// `max_backoff_ms`, and saturating rather than overflowing.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let attempt = attempt.max(1);
        let base = self.backoff_base_ms;
        let raw = match self.backoff {
            BackoffKind::Exponential => {
                let factor = 1u64.checked_shl(attempt - 1).unwrap_or(u64::MAX);
                base.saturating_mul(factor)
            }
            BackoffKind::Linear => base.saturating_mul(u64::from(attempt)),
            BackoffKind::Fixed => base,
        };
        raw.min(self.max_backoff_ms)
    }
}

impl TaskTemplate {
    /// Parses and validates a template. `source` (a path or a label) is used
    /// in error messages.
    pub fn from_yaml_str(text: &str, source: &str) -> Result<TaskTemplate, TemplateError> {
        let template: TaskTemplate =
            serde_yaml_ng::from_str(text).map_err(|e| TemplateError::Parse {
                file: source.to_string(),
                message: parse_message(&e),
            })?;
        template.validate(source)?;
        Ok(template)
    }

    /// Reads, parses and validates one template file.
    pub fn load_file(path: &Path) -> Result<TaskTemplate, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        TaskTemplate::from_yaml_str(&text, &path.display().to_string())
    }

    /// `namespace/name@version`.
    pub fn key(&self) -> TemplateKey {
        TemplateKey {
            namespace: self.namespace_name.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }

    /// The step named `name` (the first one, should names repeat).
    pub fn step(&self, name: &str) -> Option<&StepTemplate> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Steps that list `name` among their dependencies, in declaration order.
    pub fn dependents(&self, name: &str) -> Vec<&StepTemplate> {
        self.steps
            .iter()
            .filter(|s| s.dependencies.iter().any(|d| d == name))
            .collect()
    }

    /// Steps without dependencies, in declaration order.
    pub fn root_steps(&self) -> Vec<&StepTemplate> {
        self.steps
            .iter()
            .filter(|s| s.dependencies.is_empty())
            .collect()
    }

    /// The distinct handler callables the template uses.
    pub fn callables(&self) -> BTreeSet<&str> {
        self.steps
            .iter()
            .map(|s| s.handler.callable.as_str())
            .collect()
    }

    /// Steps in dependency order (Kahn's algorithm; among steps ready at the
    /// same time, the one declared first comes first). For a valid template
    /// this is every step; for a template with a cycle, the steps on or
    /// behind the cycle are left out. Unknown dependencies are ignored.
    pub fn topological_order(&self) -> Vec<&StepTemplate> {
        let graph = Graph::new(self);
        let n = self.steps.len();
        let mut indegree: Vec<usize> = graph.deps.iter().map(|d| d.len()).collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(&self.steps[i]);
            for &j in &graph.dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(Reverse(j));
                }
            }
        }
        order
    }

    /// Checks the template; run by the loaders. Reports every problem found,
    /// not only the first.
    pub fn validate(&self, source: &str) -> Result<(), TemplateError> {
        let mut problems = Vec::new();
        self.check_header(&mut problems);
        self.check_steps(&mut problems);
        self.check_batches(&mut problems);
        self.check_cycles(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::Invalid {
                file: source.to_string(),
                problems,
            })
        }
    }

    fn check_header(&self, problems: &mut Vec<String>) {
        check_name("name", &self.name, problems);
        check_name("namespace_name", &self.namespace_name, problems);
        if self.namespace_name.len() > MAX_NAMESPACE_LEN {
            problems.push(format!(
                "namespace_name '{}': longer than {MAX_NAMESPACE_LEN} characters",
                self.namespace_name
            ));
        }
        if self.version.is_empty() {
            problems.push("version: missing (required, e.g. \"1.0.0\")".to_string());
        } else if !is_valid_version(&self.version) {
            problems.push(format!(
                "version '{}': must be major.minor.patch with digits only, e.g. \"1.0.0\"",
                self.version
            ));
        }
        if self.steps.is_empty() {
            problems.push("steps: at least one step is required".to_string());
        }
        if let Some(schema) = &self.input_schema {
            // Checked against the meta-schema (a validator built once per
            // process), not compiled: compiling hashes with a random seed,
            // which made the instruction count of template parsing vary
            // by 1% from run to run.
            if let Err(error) = jsonschema::meta::validate(schema) {
                problems.push(format!("input_schema: not a valid JSON Schema: {error}"));
            }
        }
    }

    fn check_steps(&self, problems: &mut Vec<String>) {
        // Positions (1-based) of each step name, to report duplicates once.
        let mut positions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            if !step.name.is_empty() {
                positions.entry(&step.name).or_default().push(i + 1);
            }
        }
        let mut reported_duplicates = BTreeSet::new();

        for (i, step) in self.steps.iter().enumerate() {
            let label = step_label(i, step);
            if step.name.is_empty() {
                problems.push(format!("{label}: name: missing (required)"));
            } else if !is_valid_name(&step.name) {
                problems.push(format!(
                    "{label}: name: must match [a-z0-9_]+ (lowercase letters, digits, underscores)"
                ));
            }
            if let Some(at) = positions.get(step.name.as_str()) {
                if at.len() > 1 && reported_duplicates.insert(step.name.as_str()) {
                    let at: Vec<String> = at.iter().map(|p| format!("#{p}")).collect();
                    problems.push(format!(
                        "{label}: duplicate step name (steps {})",
                        at.join(", ")
                    ));
                }
            }
            if step.handler.callable.trim().is_empty() {
                problems.push(format!("{label}: handler.callable is missing or empty"));
            }
            if !step.handler.initialization.is_object() {
                problems.push(format!(
                    "{label}: handler.initialization must be a mapping (JSON object)"
                ));
            }
            let mut seen = BTreeSet::new();
            for dep in &step.dependencies {
                if !seen.insert(dep.as_str()) {
                    problems.push(format!("{label}: dependency '{dep}' is listed twice"));
                } else if *dep == step.name {
                    problems.push(format!("{label}: depends on itself"));
                } else if !positions.contains_key(dep.as_str()) {
                    problems.push(format!("{label}: depends on unknown step '{dep}'"));
                }
            }
            if step.retry.max_attempts == 0 {
                problems.push(format!("{label}: retry.max_attempts must be at least 1"));
            }
            if step.retry.max_backoff_ms < step.retry.backoff_base_ms {
                problems.push(format!(
                    "{label}: retry.max_backoff_ms ({}) must be >= retry.backoff_base_ms ({})",
                    step.retry.max_backoff_ms, step.retry.backoff_base_ms
                ));
            }
            if step.timeout_seconds == 0 {
                problems.push(format!("{label}: timeout_seconds must be at least 1"));
            }
            if step.step_type == StepType::Decision
                && !step.name.is_empty()
                && self.dependents(&step.name).is_empty()
            {
                problems.push(format!(
                    "{label}: decision step has no dependent steps to choose from"
                ));
            }
        }
    }

    /// Reports one cycle per strongly connected group of steps, naming the
    /// steps in dependency order, starting from the first declared one.
    /// Self-dependencies are reported by `check_steps`.
    fn check_cycles(&self, problems: &mut Vec<String>) {
        let graph = Graph::new(self);
        let n = self.steps.len();
        // Kahn's algorithm leaves exactly the steps on or behind a cycle.
        let mut remaining = vec![true; n];
        let mut indegree: Vec<usize> = graph.deps.iter().map(|d| d.len()).collect();
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        while let Some(i) = queue.pop_front() {
            remaining[i] = false;
            for &j in &graph.dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    queue.push_back(j);
                }
            }
        }

        let mut done = vec![false; n];
        for start in 0..n {
            if !remaining[start] || done[start] {
                continue;
            }
            // Shortest path start -> ... -> start along dependency edges.
            let forward = bfs(start, &graph.dependents, &remaining);
            let Some(last) = forward.closing else {
                done[start] = true;
                continue;
            };
            let mut cycle = vec![start];
            let mut at = last;
            while at != start {
                cycle.push(at);
                at = forward.parent[at].expect("reached node has a parent");
            }
            cycle[1..].reverse();
            cycle.push(start);
            // Mark the whole group (reachable both ways) as reported.
            let backward = bfs(start, &graph.deps, &remaining);
            for (i, done) in done.iter_mut().enumerate() {
                if forward.reached[i] && backward.reached[i] {
                    *done = true;
                }
            }
            done[start] = true;
            let names: Vec<&str> = cycle.iter().map(|&i| self.steps[i].name.as_str()).collect();
            problems.push(format!(
                "dependency cycle: {} (each step depends on the one before it)",
                names.join(" -> ")
            ));
        }
    }
}

/// Dependency graph over step indices. Names resolve to their first
/// declaration; unknown dependencies are dropped; self-dependencies are kept
/// as edges (so such a step is never ready) but skipped by the cycle search.
struct Graph {
    /// `deps[i]`: distinct steps step `i` depends on.
    deps: Vec<Vec<usize>>,
    /// `dependents[i]`: steps depending on step `i`.
    dependents: Vec<Vec<usize>>,
}

impl Graph {
    fn new(template: &TaskTemplate) -> Graph {
        let n = template.steps.len();
        // Ordered, not hashed: a HashMap's per-process random seed made
        // parsing's instruction count vary between runs (callgrind).
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, step) in template.steps.iter().enumerate() {
            index.entry(step.name.as_str()).or_insert(i);
        }
        let mut deps = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        for (i, step) in template.steps.iter().enumerate() {
            let distinct: BTreeSet<usize> = step
                .dependencies
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect();
            for j in distinct {
                deps[i].push(j);
                dependents[j].push(i);
            }
        }
        Graph { deps, dependents }
    }
}

struct Bfs {
    reached: Vec<bool>,
    parent: Vec<Option<usize>>,
    /// A reached node with an edge back to the start (not the start itself).
    closing: Option<usize>,
}

fn bfs(start: usize, edges: &[Vec<usize>], allowed: &[bool]) -> Bfs {
    let n = edges.len();
    let mut reached = vec![false; n];
    let mut parent = vec![None; n];
    let mut closing = None;
    let mut queue = VecDeque::from([start]);
    reached[start] = true;
    while let Some(u) = queue.pop_front() {
        for &v in &edges[u] {
            if v == start {
                if u != start && closing.is_none() {
                    closing = Some(u);
                }
            } else if allowed[v] && !reached[v] {
                reached[v] = true;
                parent[v] = Some(u);
                queue.push_back(v);
            }
        }
    }
    Bfs {
        reached,
        parent,
        closing,
    }
}

/// Loads every `*.yaml` / `*.yml` file of `dir` (not recursive), in file name
/// order. Fails on the first file that does not load, and when two files
/// define the same namespace/name@version.
pub fn load_dir(dir: &Path) -> Result<Vec<TaskTemplate>, TemplateError> {
    let io_error = |source| TemplateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut seen: HashMap<TemplateKey, PathBuf> = HashMap::new();
    let mut templates = Vec::with_capacity(paths.len());
    for path in paths {
        let template = TaskTemplate::load_file(&path)?;
        let key = template.key();
        if let Some(first) = seen.get(&key) {
            return Err(TemplateError::Duplicate {
                key,
                first: first.display().to_string(),
                second: path.display().to_string(),
            });
        }
        seen.insert(key, path);
        templates.push(template);
    }
    Ok(templates)
}

fn parse_message(e: &serde_yaml_ng::Error) -> String {
    let message = e.to_string();
    match e.location() {
        Some(loc) if !message.contains("line") => {
            format!("{message} at line {} column {}", loc.line(), loc.column())
        }
        _ => message,
    }
}

fn step_label(index: usize, step: &StepTemplate) -> String {
    if step.name.is_empty() {
        format!("step #{}", index + 1)
    } else {
        format!("step '{}'", step.name)
    }
}

fn check_name(field: &str, value: &str, problems: &mut Vec<String>) {
    if value.is_empty() {
        problems.push(format!("{field}: missing (required)"));
    } else if !is_valid_name(value) {
        problems.push(format!(
            "{field} '{value}': must match [a-z0-9_]+ (lowercase letters, digits, underscores)"
        ));
    }
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_valid_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/templates");
    const BAD: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/testdata/bad_templates"
    );

    fn scenario(file: &str) -> TaskTemplate {
        let path = Path::new(TEMPLATES).join(file);
        TaskTemplate::load_file(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names<'a>(steps: &[&'a StepTemplate]) -> Vec<&'a str> {
        steps.iter().map(|s| s.name.as_str()).collect()
    }

    fn bad(file: &str) -> String {
        let err = TaskTemplate::load_file(&Path::new(BAD).join(file))
            .expect_err("bad fixture must be refused");
        let message = err.to_string();
        assert!(
            message.contains(file),
            "message must name the file: {message}"
        );
        message
    }

    fn assert_mentions(message: &str, words: &[&str]) {
        for w in words {
            assert!(message.contains(w), "expected {w:?} in: {message}");
        }
    }

    /// A one-step template with `steps` replacing the step list.
    fn yaml_with_steps(steps: &str) -> String {
        format!("name: t\nnamespace_name: ns\nversion: \"1.0.0\"\nsteps:\n{steps}")
    }

    #[test]
    fn scenario_templates_load_with_expected_shape() {
        let cases = [
            (
                "linear.yaml",
                "linear",
                "linear_workflow",
                4,
                "linear_step_1",
            ),
            (
                "diamond.yaml",
                "diamond",
                "diamond_workflow",
                4,
                "diamond_start",
            ),
            (
                "complex_dag.yaml",
                "complex_dag",
                "complex_dag_workflow",
                7,
                "dag_init",
            ),
            (
                "hierarchical_tree.yaml",
                "tree",
                "hierarchical_tree_workflow",
                8,
                "tree_root",
            ),
            (
                "conditional.yaml",
                "conditional",
                "conditional_approval",
                7,
                "validate_request",
            ),
        ];
        for (file, namespace, name, count, root) in cases {
            let t = scenario(file);
            assert_eq!(t.namespace_name, namespace, "{file}");
            assert_eq!(t.name, name, "{file}");
            assert_eq!(t.steps.len(), count, "{file}");
            assert_eq!(names(&t.root_steps()), [root], "{file}");
            let order = t.topological_order();
            assert_eq!(order.len(), count, "{file}: every step ordered");
            assert_eq!(order[0].name, root, "{file}");
            // Every step comes after all its dependencies.
            let pos: HashMap<&str, usize> = order
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.as_str(), i))
                .collect();
            for s in &t.steps {
                for d in &s.dependencies {
                    assert!(
                        pos[d.as_str()] < pos[s.name.as_str()],
                        "{file}: {d} before {}",
                        s.name
                    );
                }
            }
        }
        let all = load_dir(Path::new(TEMPLATES)).unwrap();
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn scenario_orders_and_callables() {
        let linear = scenario("linear.yaml");
        assert_eq!(
            names(&linear.topological_order()),
            [
                "linear_step_1",
                "linear_step_2",
                "linear_step_3",
                "linear_step_4"
            ]
        );
        assert_eq!(linear.callables(), BTreeSet::from(["linear.square"]));

        let dag = scenario("complex_dag.yaml");
        assert_eq!(
            names(&dag.topological_order()),
            [
                "dag_init",
                "dag_process_left",
                "dag_process_right",
                "dag_validate",
                "dag_transform",
                "dag_analyze",
                "dag_finalize"
            ]
        );

        let cond = scenario("conditional.yaml");
        let decision = cond.step("routing_decision").unwrap();
        assert_eq!(decision.step_type, StepType::Decision);
        assert_eq!(
            names(&cond.dependents("routing_decision")),
            ["auto_approve", "manager_approval", "finance_review"]
        );
        assert_eq!(decision.handler.initialization["small_max"], 1000);

        let linear_key = linear.key();
        assert_eq!(linear_key.to_string(), "linear/linear_workflow@1.0.0");
    }

    #[test]
    fn cycle_fixture_names_the_cycle_in_order() {
        let m = bad("cycle.yaml");
        assert_mentions(&m, &["cycle_a -> cycle_b -> cycle_c -> cycle_a"]);
    }

    #[test]
    fn unknown_dependency_fixture_names_step_and_dependency() {
        let m = bad("unknown_dependency.yaml");
        assert_mentions(&m, &["'step_2'", "'step_zero'"]);
    }

    #[test]
    fn duplicate_step_fixture_names_the_step() {
        let m = bad("duplicate_step.yaml");
        assert_mentions(&m, &["'fetch_data'", "duplicate"]);
    }

    #[test]
    fn missing_handler_fixture_names_each_step() {
        let m = bad("missing_handler.yaml");
        assert_mentions(
            &m,
            &["'no_handler'", "'empty_callable'", "handler.callable"],
        );
        assert!(!m.contains("'has_handler'"), "{m}");
    }

    #[test]
    fn unknown_field_fixture_names_the_field() {
        let m = bad("unknown_field.yaml");
        assert_mentions(&m, &["dependancies", "line"]);
    }

    #[test]
    fn not_yaml_fixture_is_a_parse_error_with_position() {
        let err = TaskTemplate::load_file(&Path::new(BAD).join("not_yaml.yaml")).unwrap_err();
        assert!(matches!(err, TemplateError::Parse { .. }), "{err}");
        assert_mentions(&err.to_string(), &["not_yaml.yaml", "line"]);
    }

    #[test]
    fn load_dir_of_bad_fixtures_fails() {
        assert!(load_dir(Path::new(BAD)).is_err());
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = TaskTemplate::load_file(Path::new("/nonexistent/x.yaml")).unwrap_err();
        assert!(matches!(err, TemplateError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/x.yaml"));
    }

    #[test]
    fn all_problems_are_reported() {
        let text = yaml_with_steps(
            "  - name: a\n    handler: {callable: x.y}\n    dependencies: [zz]\n  - name: b\n    handler: {callable: ''}\n    retry: {max_attempts: 0}\n",
        );
        let err = TaskTemplate::from_yaml_str(&text, "two.yaml").unwrap_err();
        let TemplateError::Invalid { file, problems } = &err else {
            panic!("expected Invalid, got {err}");
        };
        assert_eq!(file, "two.yaml");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_mentions(&err.to_string(), &["'a'", "'zz'", "'b'", "max_attempts"]);
    }

    #[test]
    fn header_problems() {
        let text = "name: Bad-Name\nnamespace_name: a_namespace_that_is_far_too_long_for_q\nversion: \"1.0\"\nsteps: []\n";
        let err = TaskTemplate::from_yaml_str(text, "h.yaml").unwrap_err();
        let TemplateError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_mentions(
            &err.to_string(),
            &["Bad-Name", "namespace_name", "'1.0'", "steps"],
        );

        let err = TaskTemplate::from_yaml_str("description: nothing else\n", "m.yaml").unwrap_err();
        assert_mentions(
            &err.to_string(),
            &["name", "namespace_name", "version", "steps"],
        );
    }

    #[test]
    fn defaults_apply() {
        let t = TaskTemplate::from_yaml_str(
            &yaml_with_steps("  - name: only\n    handler:\n      callable: x.y\n"),
            "d.yaml",
        )
        .unwrap();
        let s = &t.steps[0];
        assert_eq!(s.step_type, StepType::Standard);
        assert_eq!(s.retry, RetryPolicy::default());
        assert_eq!(s.timeout_seconds, 30);
        assert_eq!(s.handler.initialization, serde_json::json!({}));
        assert!(s.dependencies.is_empty());
        // Round trip through serialization.
        let text = serde_yaml_ng::to_string(&t).unwrap();
        assert_eq!(TaskTemplate::from_yaml_str(&text, "rt").unwrap(), t);
    }

    #[test]
    fn step_level_checks() {
        let text = yaml_with_steps(concat!(
            "  - name: a\n    handler: {callable: x.y}\n    dependencies: [a]\n",
            "  - name: pick\n    type: decision\n    handler: {callable: x.y}\n",
            "  - name: batch\n    handler: {callable: x.y, initialization: [1]}\n",
            "    retry: {backoff_base_ms: 500, max_backoff_ms: 100}\n    timeout_seconds: 0\n",
        ));
        let err = TaskTemplate::from_yaml_str(&text, "s.yaml").unwrap_err();
        let TemplateError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
        let m = err.to_string();
        assert_mentions(
            &m,
            &[
                "'a': depends on itself",
                "'pick': decision",
                "initialization",
                "max_backoff_ms",
                "timeout_seconds",
            ],
        );
        // A self-dependency is not also reported as a cycle.
        assert!(!m.contains("cycle"), "{m}");
    }

    #[test]
    fn cycles_are_reported_once_each() {
        let text = yaml_with_steps(concat!(
            "  - {name: r, handler: {callable: x}}\n",
            "  - {name: a, handler: {callable: x}, dependencies: [r, b]}\n",
            "  - {name: b, handler: {callable: x}, dependencies: [a]}\n",
            "  - {name: c, handler: {callable: x}, dependencies: [b, d]}\n",
            "  - {name: d, handler: {callable: x}, dependencies: [c]}\n",
            "  - {name: e, handler: {callable: x}, dependencies: [r]}\n",
        ));
        let t: TaskTemplate = serde_yaml_ng::from_str(&text).unwrap();
        let err = t.validate("c.yaml").unwrap_err();
        let TemplateError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("a -> b -> a"), "{problems:?}");
        assert!(problems[1].contains("c -> d -> c"), "{problems:?}");
        // Steps on or behind a cycle are left out of the order.
        assert_eq!(names(&t.topological_order()), ["r", "e"]);
    }

    #[test]
    fn topological_ties_follow_declaration_order() {
        let text = yaml_with_steps(concat!(
            "  - {name: z, handler: {callable: x}, dependencies: [y]}\n",
            "  - {name: y, handler: {callable: x}}\n",
            "  - {name: w, handler: {callable: x}}\n",
            "  - {name: v, handler: {callable: x}, dependencies: [w]}\n",
        ));
        let t = TaskTemplate::from_yaml_str(&text, "o.yaml").unwrap();
        assert_eq!(names(&t.topological_order()), ["y", "z", "w", "v"]);
        assert_eq!(names(&t.root_steps()), ["y", "w"]);
    }

    #[test]
    fn load_dir_refuses_duplicate_keys_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(Path::new(TEMPLATES).join("linear.yaml")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), &text).unwrap();
        std::fs::write(dir.path().join("b.yml"), &text).unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "not a template").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TemplateError::Duplicate { .. }), "{err}");
        assert_mentions(
            &err.to_string(),
            &["a.yaml", "b.yml", "linear/linear_workflow@1.0.0"],
        );

        std::fs::remove_file(dir.path().join("b.yml")).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn delay_ms_by_kind() {
        let policy = |backoff| RetryPolicy {
            retryable: true,
            max_attempts: 5,
            backoff,
            backoff_base_ms: 100,
            max_backoff_ms: 1000,
        };
        let exp = policy(BackoffKind::Exponential);
        let delays: Vec<u64> = (1..=6).map(|a| exp.delay_ms(a)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(exp.delay_ms(0), 100);
        assert_eq!(exp.delay_ms(u32::MAX), 1000);

        let lin = policy(BackoffKind::Linear);
        let delays: Vec<u64> = (1..=4).map(|a| lin.delay_ms(a)).collect();
        assert_eq!(delays, [100, 200, 300, 400]);
        assert_eq!(lin.delay_ms(50), 1000);

        let fixed = policy(BackoffKind::Fixed);
        assert_eq!(fixed.delay_ms(1), 100);
        assert_eq!(fixed.delay_ms(9), 100);

        let huge = RetryPolicy {
            backoff_base_ms: u64::MAX / 2,
            max_backoff_ms: u64::MAX,
            ..exp
        };
        assert_eq!(huge.delay_ms(3), u64::MAX);
        assert_eq!(huge.delay_ms(200), u64::MAX);
    }

    #[test]
    fn unknown_enum_values_are_parse_errors() {
        let text = yaml_with_steps("  - name: a\n    type: parallel\n    handler: {callable: x}\n");
        let err = TaskTemplate::from_yaml_str(&text, "e.yaml").unwrap_err();
        assert!(matches!(err, TemplateError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("parallel"), "{err}");
    }
}
