//! CPU profiles with samply: record a running engine process, then fold
//! its stacks into a [`FoldedProfile`](super::FoldedProfile) so the top tables and flamegraphs
//! are the same as for `perf` (see `perf.rs`, which this mirrors).
//!
//! Why samply next to perf: it unwinds each sample while recording (with
//! the binaries' unwind tables), so no `perf.data` of copied stacks grows
//! on disk, and its profile also opens in the Firefox Profiler for a
//! timeline per thread.
//!
//! samply saves a Firefox Profiler "processed" profile whose frames are
//! library-relative addresses; `--unstable-presymbolicate` writes the
//! symbols of those addresses to a `.syms.json` sidecar, which is what
//! [`fold`] reads to name frames — no samply server, no debug files needed
//! at fold time.

mod parse;
mod record;
mod summarize;
#[cfg(test)]
mod tests;

pub use parse::fold;
pub use record::{check, record, syms_path};
