//! Heap profiles from the `dhat` crate (`dhat-heap.json`, written when a
//! `dhat::Profiler` built for heap profiling is dropped), boiled down to
//! what a benchmark report needs: how much was allocated in total, per task
//! and per step, how much was live at the global peak, and which call sites
//! allocated most. The viewer (`dh_view.html`) is for digging in; this is
//! for a table in a report and for comparing runs.
//!
//! The file is DHAT's JSON format, version 2: each program point (`pps`)
//! carries its totals (`tb` bytes, `tbk` blocks), its bytes and blocks at
//! the global peak (`gb`, `gbk`) and at the end (`eb`, `ebk`), and its
//! stack as indices (`fs`) into a table of frame strings (`ftbl`) such as
//! `0x55d…: alloc::vec::Vec<T,A>::push (src/vec/mod.rs:992:22)`.

mod parse;
mod render;
mod summarize;
#[cfg(test)]
mod tests;

use std::time::Duration;

/// One frame of an allocation stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The demangled function, e.g. `tasker_engine::store::Store::insert`.
    pub function: String,
    /// `file:line` when the debug info had it (dhat keeps only the last
    /// three components of the path).
    pub location: Option<String>,
}

/// One program point: every allocation made from the same stack.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationSite {
    /// Innermost first, starting at the code that asked for the memory
    /// (allocator, std and dhat frames skipped); at most a few frames.
    pub frames: Vec<Frame>,
    /// The whole stack as dhat recorded it, innermost first.
    pub all_frames: Vec<Frame>,
    /// Bytes allocated here over the whole run (reallocations included).
    pub bytes: u64,
    /// Allocations made here over the whole run.
    pub blocks: u64,
    /// Bytes from here still live at the global peak (t-gmax).
    pub peak_bytes: u64,
}

/// The totals of a heap profile and its allocation sites.
#[derive(Debug, Clone, PartialEq)]
pub struct HeapSummary {
    pub total_bytes: u64,
    pub total_blocks: u64,
    /// Bytes live at the global peak, the moment the most bytes were live.
    pub peak_bytes: u64,
    pub peak_blocks: u64,
    /// Bytes still live when the profiler stopped (leaked or long-lived).
    pub end_bytes: u64,
    /// From the profiler's start to its end.
    pub duration: Duration,
    /// Most bytes first.
    pub sites: Vec<AllocationSite>,
}
