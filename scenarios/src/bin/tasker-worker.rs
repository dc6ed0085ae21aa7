//! tasker-worker: a worker process serving the scenario handlers.
//!
//! A Rust worker is compiled together with its handlers, so this binary
//! lives beside them; it is also the model for writing your own: build a
//! `HandlerRegistry`, then `Worker::start`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tasker_engine::config::TaskerConfig;
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::worker::Worker;
use tasker_engine::{service, telemetry};

#[derive(Parser)]
#[command(version, about = "Tasker worker running the scenario step handlers")]
struct Args {
    /// Directory with tasker.toml and environments/<env>.toml.
    #[arg(long, default_value_os_t = service::default_config_dir())]
    config_dir: PathBuf,
    #[arg(long, env = "TASKER_ENV")]
    env: Option<String>,
    /// Worker id recorded in transitions (overrides worker.worker_id).
    #[arg(long)]
    worker_id: Option<String>,
}

#[tokio::main]
async fn main() {
    telemetry::init();
    if let Err(error) = run(Args::parse()).await {
        eprintln!("Error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = TaskerConfig::load(&args.config_dir, args.env.as_deref())?;
    if args.worker_id.is_some() {
        config.worker.worker_id = args.worker_id;
    }
    let url = service::database_url(&config)?;
    let registry = tasker_scenarios::registry();
    let templates = service::load_templates(&config)?;
    for template in &templates {
        registry.check(template)?;
    }
    let mut namespaces = config.worker.namespaces.clone();
    if namespaces.is_empty() {
        namespaces = templates.iter().map(|t| t.namespace_name.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
    }
    let settings = PoolSettings {
        max_connections: config.database.pool_size,
        ..PoolSettings::default()
    };
    let pool = database::connect(&url, &settings).await?;
    // Migrations are idempotent and locked, so worker and server may start
    // in either order.
    database::migrate(&pool).await?;
    let claim_pool = database::connect(
        &url,
        &PoolSettings {
            max_connections: config.worker.claim_pool_size.max(1),
            asynchronous_commit: true,
            ..settings
        },
    )
    .await?;
    let worker = Worker::start(pool.clone(), claim_pool, registry, config.worker.clone(), namespaces)
        .await
        .context("starting the worker")?;
    println!("tasker-worker {} running", worker.worker_id());
    service::shutdown_signal().await;
    worker.shutdown().await;
    pool.close().await;
    Ok(())
}
