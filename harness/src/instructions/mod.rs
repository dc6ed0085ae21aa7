//! Exact instruction counts of the engine's CPU-only hot-path pieces,
//! for CI to compare run to run without timing noise.
//!
//! The workloads live in the engine's `instructions` bench target
//! (`engine/benches/instructions.rs`): `instructions <workload> <n>` runs
//! one workload `n` times, single-threaded, with fixed inputs. This module
//! builds that binary ([`build_bench`]), runs it under
//! `valgrind --tool=callgrind` and reads the total instruction count
//! (`Ir`) from callgrind's output file ([`measure`]).
//!
//! Setup is taken out by difference, not by callgrind client requests
//! (C macros and `unsafe`) or `--toggle-collect` (symbol patterns): the
//! binary runs once with `n` and once with `2n` iterations; start-up,
//! reading the inputs and exit are the same in both runs, so
//! `(total(2n) - total(n)) / n` is the count of one iteration. The result
//! is the mean of iterations `n+1..=2n`, rounded to a whole instruction.
//!
//! How exact (measured with valgrind 3.19): `result_serialize` repeats to
//! the instruction, run after run; `template_parse` within a few dozen
//! instructions in 2.8 million (hash probes). Hashed maps with random
//! seeds in a workload move the count: they change the order in which
//! blocks are freed, and glibc malloc's cost depends on that order.
//! Template validation indexed steps in a std `HashMap` (a `BTreeMap` now),
//! and `jsonschema`'s check of a template's `input_schema` keeps hash sets
//! seeded at random per process (`ahash`, not ours to change), which made
//! `template_parse` vary by 1.4% from process to process, past the gate's
//! tolerance about one run in six. So the workload binary allocates from
//! an arena that never frees (`engine/benches/instructions.rs`), where an
//! allocation costs the same whatever was freed before. Iterations are not
//! all alike, so the mean moves with `n`: counts are comparable at the same
//! `n` only, and stored counts say which `n` they used.
//!
//! Nor may they depend on where the checkout is: the workload binary has
//! its inputs compiled in and takes the workload from the environment
//! (see `engine/benches/instructions.rs`), because an allocation sized by a
//! path (`argv[0]` was one) changes the allocator's state and the count.
//!
//! Counts depend on the compiler and the build profile, so stored counts
//! ([`InstructionCounts`]) carry both, and [`compare`] against a baseline
//! from another rustc, profile or iteration count reports the changes as
//! informative only.

mod parse;
mod render;
mod run;
mod summarize;
#[cfg(test)]
mod tests;

pub use parse::{bench_executable, parse_callgrind_total};
pub use render::render_markdown;
pub use run::{
    build_bench, check_valgrind, measure, measure_all, measure_with, rustc_version, Measurement,
};
pub use summarize::{any_failure, compare, InstructionCounts, Status, Verdict};

/// The workloads the `instructions` bench binary knows.
pub const WORKLOADS: [&str; 2] = ["template_parse", "result_serialize"];

/// Iterations of the shorter run (the longer runs twice as many). Under
/// callgrind one iteration of either workload takes a few milliseconds at
/// most, so a measurement (both runs) takes seconds.
pub const DEFAULT_ITERATIONS: u64 = 200;

/// Cargo profile `cargo bench` builds with.
pub const BENCH_PROFILE: &str = "bench";

/// A suggested tolerance for [`compare`]: counts are exact, so anything
/// above this is a real change in the code that runs (ours or a
/// dependency's), not noise.
pub const DEFAULT_TOLERANCE_PCT: f64 = 1.0;

const VALGRIND: &str = "valgrind";
