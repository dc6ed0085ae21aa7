//! The local backend: the engine's throwaway cluster (`initdb` + `postgres`
//! from the system packages, unix socket in a temporary directory).
//!
//! It needs neither Docker nor a running server, so it is what `auto` falls
//! back to. The cluster runs with `fsync=on` (benchmarks measure durable
//! commits) plus the requested settings, and lives as long as the
//! [`LocalCluster`] the caller keeps.

use anyhow::Context as _;
use pg_local::{ClusterOptions, LocalCluster};

use super::ProvisionOptions;

/// Starts a throwaway cluster with `options.settings`.
///
/// `initdb` and the server start block for a second or two, so they run on
/// the blocking pool.
pub(crate) async fn start(options: &ProvisionOptions) -> anyhow::Result<LocalCluster> {
    let cluster_options = ClusterOptions {
        fsync: true,
        settings: options.settings.clone(),
    };
    tokio::task::spawn_blocking(move || LocalCluster::start(&cluster_options))
        .await
        .context("the task starting the local PostgreSQL cluster panicked")?
        .context(
            "starting a throwaway local PostgreSQL cluster (initdb + postgres from the system \
             packages) failed; install PostgreSQL's server package (scripts/setup does), or use \
             --postgres container or --postgres url with DATABASE_URL",
        )
}
