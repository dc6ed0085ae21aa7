//! tasker-harness: run the tiered benchmarks, keep baselines, compare, gate
//! on regressions, write reports. Every cargo-make task is a thin call of
//! one of these commands.

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::execute(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
