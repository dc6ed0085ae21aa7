//! Configuration: TOML with environment overrides.
//!
//! Layers, later wins: built-in defaults; `config/tasker.toml`; the
//! environment's file `config/environments/<TASKER_ENV>.toml`; variables
//! `TASKER__<SECTION>__<KEY>` (e.g. `TASKER__WORKER__CONCURRENCY=16`).
//! Inside the files `${VAR}` and `${VAR:-default}` are replaced from the
//! environment before parsing. `DATABASE_URL` sets `database.url`.
//! Every channel size, pool size, batch size, timeout and poll interval
//! lives here, not in code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config file {path}: ${{{var}}} is not set and has no default (write ${{{var}:-value}})"
    )]
    MissingVariable { path: PathBuf, var: String },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskerConfig {
    pub database: DatabaseConfig,
    pub orchestration: OrchestrationConfig,
    pub worker: WorkerConfig,
    pub api: ApiConfig,
    pub templates: TemplatesConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL URL. None: the embedded mode starts a throwaway cluster.
    pub url: Option<String>,
    pub pool_size: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestrationConfig {
    /// Result messages taken (and committed) together.
    pub result_batch_size: i32,
    /// Safety-net poll when no notification arrives.
    pub fallback_poll_ms: u64,
    /// How often to VACUUM queue tables full of dead rows (see
    /// orchestration/maintenance.rs); 0 turns it off.
    pub maintenance_interval_ms: u64,
    /// VACUUM a queue table once it holds this many dead rows.
    pub vacuum_min_dead_rows: i64,
    /// How often the staleness detector looks for work nobody was told
    /// about (lapsed leases, orphaned retries) and stuck tasks; 0: off.
    pub staleness_interval_ms: u64,
    /// A task with no transition (its own or a step's) for this long is
    /// examined: missing messages are sent again, a claim whose message is
    /// gone counts as a lapsed lease.
    pub task_stale_after_s: u64,
    /// A stale task whose steps wait for a worker that never claims them is
    /// dead-lettered once idle this long (0: never).
    pub dead_letter_after_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Worker id recorded in transitions and the result audit.
    pub worker_id: Option<String>,
    /// Namespaces served; empty: those of the handlers' templates.
    pub namespaces: Vec<String>,
    /// Handlers running at once (the semaphore bound).
    pub concurrency: usize,
    /// Most step messages claimed in one statement.
    pub claim_batch_size: i32,
    /// A claim is a lease on the step's message for the step's
    /// `timeout_seconds` plus this margin: time for the result to reach the
    /// database after the handler's timeout. A worker that dies lets the
    /// lease lapse and the step is claimed again (a new attempt).
    pub claim_lease_margin_s: i32,
    /// Capacity of the completion channel (handler results to the submitter).
    pub completion_channel_capacity: usize,
    /// Most results submitted in one statement.
    pub result_batch_size: usize,
    /// Complete the plain results (a step done that starts nothing of its
    /// own) in the submit's transaction: enqueue the children they made
    /// ready, finish a task whose steps are all done. Orchestration then
    /// sees only the results that need it (failures, retries, decisions,
    /// batches, a task another transaction holds).
    pub complete_results: bool,
    pub fallback_poll_ms: u64,
    /// Added to every handler run: a knob for testing the regression gate
    /// (0 in production).
    pub injected_delay_us: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub bind: String,
    /// Largest request body accepted; a larger one gets 413.
    pub body_limit_bytes: usize,
    /// When set, every /v1 request must carry it (`Authorization: Bearer
    /// <key>` or `X-API-Key: <key>`), or gets 401. /health and /metrics
    /// stay open.
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplatesConfig {
    /// Directories of task template YAML files, loaded at start.
    pub paths: Vec<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 10,
            acquire_timeout_ms: 10_000,
        }
    }
}

impl Default for OrchestrationConfig {
    fn default() -> Self {
        Self {
            result_batch_size: 32,
            fallback_poll_ms: 5_000,
            maintenance_interval_ms: 5_000,
            vacuum_min_dead_rows: 1_000,
            staleness_interval_ms: 1_000,
            task_stale_after_s: 300,
            dead_letter_after_s: 3_600,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: None,
            namespaces: Vec::new(),
            concurrency: 16,
            claim_batch_size: 16,
            claim_lease_margin_s: 5,
            completion_channel_capacity: 256,
            result_batch_size: 32,
            complete_results: true,
            fallback_poll_ms: 5_000,
            injected_delay_us: 0,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_string(),
            body_limit_bytes: 1 << 20,
            api_key: None,
        }
    }
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            paths: vec![PathBuf::from("scenarios/templates")],
        }
    }
}

impl OrchestrationConfig {
    pub fn fallback_poll(&self) -> Duration {
        Duration::from_millis(self.fallback_poll_ms)
    }
}

impl WorkerConfig {
    pub fn fallback_poll(&self) -> Duration {
        Duration::from_millis(self.fallback_poll_ms)
    }
}

impl TaskerConfig {
    /// Load `<dir>/tasker.toml` and `<dir>/environments/<env>.toml` (both
    /// optional), then `TASKER__...` variables and `DATABASE_URL`.
    pub fn load(dir: &Path, env: Option<&str>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::Config::try_from(&TaskerConfig::default())?);
        let mut files = vec![dir.join("tasker.toml")];
        if let Some(env) = env {
            files.push(dir.join("environments").join(format!("{env}.toml")));
        }
        for path in files.into_iter().filter(|p| p.exists()) {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let text = substitute_env(&text, &path, |v| std::env::var(v).ok())?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("TASKER")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("worker.namespaces")
                .with_list_parse_key("templates.paths")
                .try_parsing(true),
        );
        if let Ok(url) = std::env::var("DATABASE_URL") {
            builder = builder.set_override("database.url", url)?;
        }
        Ok(builder.build()?.try_deserialize()?)
    }

    /// Load from `TASKER_CONFIG_DIR` (default `config`) and `TASKER_ENV`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let dir = std::env::var("TASKER_CONFIG_DIR").unwrap_or_else(|_| "config".to_string());
        let env = std::env::var("TASKER_ENV").ok();
        Self::load(Path::new(&dir), env.as_deref())
    }
}

/// Replace `${VAR}` and `${VAR:-default}` in `text`, except on comment
/// lines (so a commented-out example does not demand its variable).
fn substitute_env(
    text: &str,
    path: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(&substitute_line(line, path, &lookup)?);
        }
    }
    Ok(out)
}

fn substitute_line(
    text: &str,
    path: &Path,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &rest[start + 2..start + len];
        let (var, default) = match inner.split_once(":-") {
            Some((var, default)) => (var, Some(default)),
            None => (inner, None),
        };
        match (lookup(var), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(ConfigError::MissingVariable {
                    path: path.to_path_buf(),
                    var: var.to_string(),
                })
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(var: &str) -> Option<String> {
        (var == "SET").then(|| "yes".to_string())
    }

    #[test]
    fn substitution_uses_the_variable_then_the_default() {
        let path = Path::new("x.toml");
        let text =
            "a = \"${SET}\"\nb = \"${UNSET:-fallback}\"\nc = \"${SET:-no}\"\n# d = \"${NOPE}\"";
        let out = substitute_env(text, path, lookup).unwrap();
        assert_eq!(
            out,
            "a = \"yes\"\nb = \"fallback\"\nc = \"yes\"\n# d = \"${NOPE}\""
        );
    }

    #[test]
    fn a_missing_variable_without_default_names_file_and_variable() {
        let err = substitute_env("a = \"${NOPE}\"", Path::new("conf/x.toml"), lookup).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("conf/x.toml") && message.contains("NOPE"),
            "{message}"
        );
    }

    #[test]
    fn the_shipped_config_file_states_the_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut shipped = TaskerConfig::load(&dir, None).unwrap();
        shipped.database.url = None; // DATABASE_URL may be set where tests run
        let defaults = TaskerConfig::default();
        assert_eq!(
            serde_json::to_value(&shipped).unwrap(),
            serde_json::to_value(&defaults).unwrap()
        );
        let test = TaskerConfig::load(&dir, Some("test")).unwrap();
        assert_eq!(test.worker.concurrency, 8);
    }

    #[test]
    fn environment_file_overrides_base_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tasker.toml"),
            "[worker]\nconcurrency = 4\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("environments")).unwrap();
        std::fs::write(
            dir.path().join("environments/test.toml"),
            "[worker]\nclaim_batch_size = 3\n",
        )
        .unwrap();
        let config = TaskerConfig::load(dir.path(), Some("test")).unwrap();
        assert_eq!(config.worker.concurrency, 4);
        assert_eq!(config.worker.claim_batch_size, 3);
        assert_eq!(config.orchestration.result_batch_size, 32);

        std::fs::write(dir.path().join("tasker.toml"), "[worker]\nconcurency = 4\n").unwrap();
        let err = TaskerConfig::load(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurency"), "{err}");
    }
}
