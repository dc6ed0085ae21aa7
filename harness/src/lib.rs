//! The Tasker benchmark harness: provisions PostgreSQL, runs tiered
//! end-to-end scenarios against the engine, measures latency, throughput
//! and per-step cost, keeps baselines, gates regressions, writes reports.

pub mod build;
pub mod chaos;
pub mod compare;
pub mod instructions;
pub mod profile;
pub mod provision;
pub mod report;
pub mod result;
pub mod run;
pub mod scenario;
pub mod summary;
