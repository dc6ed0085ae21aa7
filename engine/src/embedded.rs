//! Embedded mode: orchestration, a worker and the client in one process,
//! on a database given by URL or on a throwaway local cluster. Tests and
//! the benchmark harness run the engine this way.

use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, TaskerClient};
use crate::config::TaskerConfig;
use crate::database::{self, DatabaseError, PoolSettings};
use crate::orchestration::{self, OrchestrationError, Orchestrator};
use crate::template::TaskTemplate;
use crate::worker::{HandlerRegistry, Worker, WorkerError};
use pg_local::{ClusterOptions, LocalCluster, PostgresError};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    Orchestration(#[from] OrchestrationError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("registering templates failed: {0}")]
    Templates(sqlx::Error),
    #[error("creating the database on the local cluster failed: {0}")]
    CreateDatabase(sqlx::Error),
}

/// The whole engine in one process.
pub struct Embedded {
    pub client: TaskerClient,
    pub pool: PgPool,
    orchestrator: Orchestrator,
    worker: Worker,
    shutdown: CancellationToken,
    // Declared last: dropped after everything that uses it.
    cluster: Option<LocalCluster>,
}

impl Embedded {
    /// Start a throwaway local PostgreSQL cluster and the engine on it.
    pub async fn start_local(
        cluster_options: &ClusterOptions,
        config: TaskerConfig,
        templates: &[TaskTemplate],
        registry: HandlerRegistry,
    ) -> Result<Self, EmbeddedError> {
        let cluster = {
            let options = cluster_options.clone();
            tokio::task::spawn_blocking(move || LocalCluster::start(&options))
                .await
                .expect("cluster start does not panic")?
        };
        let mut admin = PgConnection::connect(&cluster.admin_url())
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
        sqlx::query("CREATE DATABASE tasker")
            .execute(&mut admin)
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
        admin.close().await.map_err(EmbeddedError::CreateDatabase)?;
        let url = cluster.url("tasker");
        let mut embedded = Self::start(&url, config, templates, registry).await?;
        embedded.cluster = Some(cluster);
        Ok(embedded)
    }

    /// Start the engine on the database at `url`: migrate it, register the
    /// templates, start orchestration and a worker for their namespaces.
    pub async fn start(
        url: &str,
        config: TaskerConfig,
        templates: &[TaskTemplate],
        registry: HandlerRegistry,
    ) -> Result<Self, EmbeddedError> {
        let pool = database::connect(url, &PoolSettings::from(&config.database)).await?;
        database::migrate(&pool).await?;
        orchestration::register_templates(&pool, templates)
            .await
            .map_err(EmbeddedError::Templates)?;
        let shutdown = CancellationToken::new();
        let orchestrator = Orchestrator::start(pool.clone(), config.orchestration.clone()).await?;
        let worker =
            Worker::start_for_templates(url, pool.clone(), registry, &config, templates).await?;
        let client = TaskerClient::new(pool.clone(), shutdown.clone()).await?;
        Ok(Self {
            client,
            pool,
            orchestrator,
            worker,
            shutdown,
            cluster: None,
        })
    }

    /// The local cluster this instance started, if any.
    pub fn cluster(&self) -> Option<&LocalCluster> {
        self.cluster.as_ref()
    }

    /// Stop the worker (its running handlers finish and report), then
    /// orchestration, then the cluster if this instance started one.
    pub async fn shutdown(self) {
        self.worker.shutdown().await;
        self.orchestrator.shutdown().await;
        self.shutdown.cancel();
        self.pool.close().await;
        drop(self.cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starting an engine can be spawned on a multi-threaded runtime: its
    /// future is `Send` (a sqlx call that is not, for every lifetime, once
    /// made every caller's future unspawnable). Checked when this compiles.
    #[test]
    fn starting_an_engine_is_a_send_future() {
        fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
        spawnable(async {
            let _ = Embedded::start(
                "postgres://unused",
                TaskerConfig::default(),
                &[],
                HandlerRegistry::new(),
            )
            .await;
        });
    }
}
