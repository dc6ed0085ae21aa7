//! Profiles of the engine turned into something a person reads at a
//! glance: top-N tables per function and per module, flamegraphs, and
//! differential flamegraphs against a baseline's profile (CPU from samply
//! or perf, span timings from tracing-flame); heap summaries from DHAT;
//! async task summaries from tokio-console recordings. `recipe` says how
//! each profiler's build is made (profiles/*.toml), `analyze` turns a
//! recording into a `record` that the profiling report ranks.

pub mod analyze;
pub mod attached;
pub mod boundary;
pub mod console;
pub mod database;
pub mod dhat;
pub mod folded;
pub mod perf;
pub mod recipe;
pub mod record;
pub mod samply;
pub mod session;

pub use folded::{top_table, write_diff_flamegraph, Cost, FoldedProfile};
