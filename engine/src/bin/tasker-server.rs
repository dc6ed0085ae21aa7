//! tasker-server: orchestration and the REST API.

use anyhow::Context;
use clap::Parser;
use pg_local::{ClusterOptions, LocalCluster};
use tasker_engine::api::{app, ApiState};
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::orchestration::{register_templates, Orchestrator};
use tasker_engine::{service, TaskerClient};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "Tasker orchestration server and REST API")]
struct Args {
    #[command(flatten)]
    config: service::ConfigArgs,
    /// Address to listen on (overrides api.bind).
    #[arg(long)]
    bind: Option<String>,
    /// Start a throwaway PostgreSQL cluster instead of using database.url;
    /// its URL is printed so workers can connect.
    #[arg(long)]
    local_postgres: bool,
}

#[tokio::main]
async fn main() {
    service::main(run(Args::parse())).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = args.config.load()?;
    if let Some(bind) = args.bind {
        config.api.bind = bind;
    }
    let _cluster = if args.local_postgres {
        let cluster =
            tokio::task::spawn_blocking(|| LocalCluster::start(&ClusterOptions::default()))
                .await??;
        config.database.url = Some(cluster.url("postgres"));
        println!("PostgreSQL: {}", cluster.url("postgres"));
        Some(cluster)
    } else {
        None
    };
    let url = service::database_url(&config)?;
    let templates = service::load_templates(&config)?;
    let pool = database::connect(&url, &PoolSettings::from(&config.database)).await?;
    database::migrate(&pool).await?;
    register_templates(&pool, &templates)
        .await
        .context("registering templates")?;
    tracing::info!(templates = templates.len(), "templates registered");

    let orchestrator = Orchestrator::start(pool.clone(), config.orchestration.clone()).await?;
    let shutdown = CancellationToken::new();
    let client = TaskerClient::new(pool.clone(), shutdown.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&config.api.bind)
        .await
        .with_context(|| format!("cannot listen on {} (api.bind / --bind)", config.api.bind))?;
    println!(
        "tasker-server listening on http://{}",
        listener.local_addr()?
    );
    let api = ApiState::with_config(client, config.api.clone());
    axum::serve(listener, app(api))
        .with_graceful_shutdown(service::shutdown_signal())
        .await
        .context("serving the API")?;
    orchestrator.shutdown().await;
    shutdown.cancel();
    pool.close().await;
    Ok(())
}
