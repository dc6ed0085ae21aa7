//! Profiles of the engine turned into something a person reads at a
//! glance: top-N tables per function and per module, flamegraphs, and
//! differential flamegraphs against a baseline's profile.

pub mod folded;
pub mod perf;

pub use folded::{top_table, write_diff_flamegraph, Cost, FoldedProfile};
