//! tasker-worker: a worker process serving the scenario handlers.
//!
//! A Rust worker is compiled together with its handlers, so this binary
//! lives beside them; it is also the model for writing your own: build a
//! `HandlerRegistry`, then `Worker::start`.

use anyhow::Context;
use clap::Parser;
use tasker_engine::database::{self, PoolSettings};
use tasker_engine::service;
use tasker_engine::worker::Worker;

#[derive(Parser)]
#[command(version, about = "Tasker worker running the scenario step handlers")]
struct Args {
    #[command(flatten)]
    config: service::ConfigArgs,
    /// Worker id recorded in transitions (overrides worker.worker_id).
    #[arg(long)]
    worker_id: Option<String>,
}

#[tokio::main]
async fn main() {
    service::main(run(Args::parse())).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = args.config.load()?;
    if args.worker_id.is_some() {
        config.worker.worker_id = args.worker_id;
    }
    let url = service::database_url(&config)?;
    let templates = service::load_templates(&config)?;
    let pool = database::connect(&url, &PoolSettings::from(&config.database)).await?;
    // Migrations are idempotent and locked, so worker and server may start
    // in either order.
    database::migrate(&pool).await?;
    let worker = Worker::start_for_templates(
        &url,
        pool.clone(),
        tasker_scenarios::registry(),
        &config,
        &templates,
    )
    .await
    .context("starting the worker")?;
    println!("tasker-worker {} running", worker.worker_id());
    service::shutdown_signal().await;
    worker.shutdown().await;
    pool.close().await;
    Ok(())
}
