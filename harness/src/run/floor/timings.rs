//! The server's round trip and commit latency, measured once a run on a
//! fresh database of its own: what a statement and a synchronous commit
//! cost on this server, through the same kind of connection the floor
//! uses. A scenario's per-step costs times these give the critical-path
//! floor it implies (`ServerTimings::implied_floor_us`).

use std::time::Instant;

use anyhow::Context;
use sqlx::{Connection as _, PgConnection};

use super::connection::connect;
use crate::result::ServerTimings;
use crate::run::fresh_database;

/// Statements of each kind timed (after as many again unmeasured).
pub const SAMPLES: u32 = 200;
const WARMUP: u32 = 20;

pub async fn measure(admin_url: &str) -> anyhow::Result<ServerTimings> {
    let url = fresh_database(admin_url, "server_timings").await?;
    let timings = measure_on(&url).await;
    // The probe's database is not kept (nothing reads it); best effort.
    let name = url::Url::parse(&url)?
        .path()
        .trim_start_matches('/')
        .to_string();
    if let Ok(mut admin) = PgConnection::connect(admin_url).await {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::query(&drop).execute(&mut admin).await;
        let _ = admin.close().await;
    }
    timings
}

async fn measure_on(url: &str) -> anyhow::Result<ServerTimings> {
    let connection = connect(url, "server-timings").await?;
    let client = &connection.client;
    client
        .batch_execute(
            "SET synchronous_commit = on;
             CREATE TABLE commit_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .context("preparing the commit probe")?;
    let select = client.prepare("SELECT 1").await?;
    let insert = client
        .prepare("INSERT INTO commit_probe DEFAULT VALUES")
        .await?;
    let (mut round_trips, mut commits) = (Vec::new(), Vec::new());
    // Alternating, so both kinds see the same moments of the machine.
    for i in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        client.query_one(&select, &[]).await?;
        let round_trip = started.elapsed();
        let started = Instant::now();
        client.execute(&insert, &[]).await?;
        let commit = started.elapsed();
        if i >= WARMUP {
            round_trips.push(round_trip.as_secs_f64() * 1e6);
            commits.push(commit.as_secs_f64() * 1e6);
        }
    }
    let round_trip_us = median(&mut round_trips);
    Ok(ServerTimings {
        round_trip_us,
        commit_us: (median(&mut commits) - round_trip_us).max(0.0),
        samples: SAMPLES,
    })
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() % 2 {
        0 => (values[mid - 1] + values[mid]) / 2.0,
        _ => values[mid],
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
