//! Running the engine as a long-lived process: what the binaries share.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::TaskerConfig;
use crate::template::{self, TaskTemplate};

/// Resolve when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Load and validate every template under the configured directories.
pub fn load_templates(config: &TaskerConfig) -> anyhow::Result<Vec<TaskTemplate>> {
    let mut templates = Vec::new();
    for dir in &config.templates.paths {
        let loaded = template::load_dir(dir).with_context(|| {
            format!("loading templates from {} (templates.paths)", dir.display())
        })?;
        templates.extend(loaded);
    }
    Ok(templates)
}

/// The configured database URL, or an error saying how to set one.
pub fn database_url(config: &TaskerConfig) -> anyhow::Result<String> {
    config.database.url.clone().context(
        "no database configured: set DATABASE_URL (or database.url in config/tasker.toml), \
         or pass --local-postgres to start a throwaway cluster",
    )
}

/// The configuration options every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Directory with tasker.toml and `environments/<env>.toml`.
    #[arg(long, default_value_os_t = default_config_dir())]
    pub config_dir: PathBuf,
    /// Environment whose overrides to apply.
    #[arg(long, env = "TASKER_ENV")]
    pub env: Option<String>,
}

impl ConfigArgs {
    pub fn load(&self) -> anyhow::Result<TaskerConfig> {
        Ok(TaskerConfig::load(&self.config_dir, self.env.as_deref())?)
    }
}

/// Run a binary's `main`: logging, then `run`, printing `Error: …` and
/// exiting 1 if it fails.
pub async fn main<F: std::future::Future<Output = anyhow::Result<()>>>(run: F) {
    let _profiling = crate::telemetry::init();
    if let Err(error) = run.await {
        eprintln!("Error: {error:#}");
        std::process::exit(1);
    }
}

/// `--config-dir` default: `TASKER_CONFIG_DIR` or `config`.
pub fn default_config_dir() -> PathBuf {
    std::env::var_os("TASKER_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config"))
}
