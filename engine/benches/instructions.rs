//! Instruction counts of the CPU-only hot-path pieces, made to run under
//! `valgrind --tool=callgrind`:
//!
//! ```text
//! instructions <workload> [iterations]     workload: template_parse | result_serialize
//! ```
//!
//! It runs ONE workload `iterations` times (default 1000): no criterion, no
//! threads, no I/O once the inputs are read, no randomness (fixed inputs,
//! fixed UUIDs). The workloads are those of the `hot_path` criterion groups
//! of the same names (`benches/common`):
//!
//! - `template_parse`: `TaskTemplate::from_yaml_str` (parse + validate) of
//!   the linear and complex_dag scenario templates, both per iteration;
//! - `result_serialize`: a batch of 16 step results turned into the JSON
//!   the worker submits and encoded as sqlx binds it (jsonb).
//!
//! Setup (reading the template files, building the inputs) and process
//! start-up and exit are not part of the workload. Rather than callgrind
//! client requests (C macros and `unsafe`, which this workspace denies) or
//! `--toggle-collect` (matching mangled symbol names), the measurement
//! takes the difference of two whole-program runs: a run with 2N
//! iterations minus a run with N costs exactly N iterations, setup and
//! teardown cancel, and the per-iteration count is (total(2N) - total(N)) / N.
//! `tasker_harness::instructions::measure` does that.
//!
//! `cargo bench` runs every bench target with `--bench`; given no workload,
//! this one runs each workload once (a smoke check) and says how to use it.

use std::hint::black_box;
use std::process::ExitCode;

mod common;

const DEFAULT_ITERATIONS: u64 = 1000;
const WORKLOADS: [&str; 2] = ["template_parse", "result_serialize"];

/// The workload and iteration count, read from the environment by the
/// harness: reading the arguments would allocate argv[0], the binary's
/// path, and a longer path measured 1.3% more instructions an iteration
/// (the allocator's state differs). By hand, positional arguments do.
const WORKLOAD_ENV: &str = "TASKER_INSTRUCTIONS_WORKLOAD";
const ITERATIONS_ENV: &str = "TASKER_INSTRUCTIONS_ITERATIONS";

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::var(WORKLOAD_ENV) {
        Ok(workload) => [Some(workload), std::env::var(ITERATIONS_ENV).ok()]
            .into_iter()
            .flatten()
            .collect(),
        // Flags are cargo's (`--bench`) or a test harness's; the workload
        // and the iteration count are the positional arguments.
        Err(_) => std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect(),
    };
    let Some(workload) = args.first() else {
        for workload in WORKLOADS {
            run(workload, 1).expect("known workload");
        }
        println!(
            "instructions: each workload ran once. Count instructions with \
             `valgrind --tool=callgrind <this binary> <{}> <iterations>` \
             (tasker_harness::instructions::measure)",
            WORKLOADS.join("|")
        );
        return ExitCode::SUCCESS;
    };
    let iterations = match args.get(1).map(|n| n.parse::<u64>()) {
        None => DEFAULT_ITERATIONS,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!(
                "instructions: iterations must be a number, not {:?}",
                args[1]
            );
            return ExitCode::from(2);
        }
    };
    match run(workload, iterations) {
        Some(()) => ExitCode::SUCCESS,
        None => {
            eprintln!(
                "instructions: unknown workload {workload:?}; one of: {}",
                WORKLOADS.join(", ")
            );
            ExitCode::from(2)
        }
    }
}

/// Sets up `workload`'s inputs and runs it `iterations` times; `None` for
/// an unknown workload.
fn run(workload: &str, iterations: u64) -> Option<()> {
    match workload {
        "template_parse" => {
            let texts: Vec<(String, String)> = common::TEMPLATES
                .iter()
                .map(|name| common::template_text(name))
                .collect();
            template_parse(&texts, iterations);
        }
        "result_serialize" => {
            let completions = common::completions(common::RESULT_BATCH);
            result_serialize(&completions, iterations);
        }
        _ => return None,
    }
    Some(())
}

#[inline(never)]
fn template_parse(texts: &[(String, String)], iterations: u64) {
    for _ in 0..iterations {
        common::parse_all(black_box(texts));
    }
}

#[inline(never)]
fn result_serialize(completions: &[common::Completion], iterations: u64) {
    for _ in 0..iterations {
        black_box(common::serialize_results(black_box(completions)));
    }
}
