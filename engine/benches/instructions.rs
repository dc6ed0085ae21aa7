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
//! Memory comes from an arena that never frees ([`arena`]), not from
//! glibc's malloc. malloc's instruction count depends on the order blocks
//! were freed in, and template validation frees in an order that changes
//! from process to process: `jsonschema`'s check of a template's
//! `input_schema` keeps hash sets seeded at random per process (`ahash`),
//! and drops their contents in hash order. With malloc, `template_parse`
//! measured 2,234,089 to 2,265,370 instructions an iteration in six
//! processes (the gate's tolerance is ±1%); without the `input_schema`
//! check, the same count every time. With the arena, an allocation costs
//! the same whatever came before it, so the count is exact again.
//!
//! `cargo bench` runs every bench target with `--bench`; given no workload,
//! this one runs each workload once (a smoke check) and says how to use it.

use std::hint::black_box;
use std::process::ExitCode;

mod common;

#[global_allocator]
static ARENA: arena::Arena = arena::Arena::new();

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

/// A global allocator that hands out memory in address order from large
/// chunks and never gives it back: what an allocation costs depends on its
/// size and alignment only. The longest run (400 iterations of
/// `template_parse`) takes under 100 MB.
#[allow(unsafe_code)] // GlobalAlloc is an unsafe trait
mod arena {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::Mutex;

    /// Each chunk taken from the system allocator (more for a larger block).
    const CHUNK: usize = 64 << 20;

    pub struct Arena {
        /// The free part of the current chunk: `(next, end)` addresses.
        free: Mutex<(usize, usize)>,
    }

    impl Arena {
        pub const fn new() -> Self {
            Self {
                free: Mutex::new((0, 0)),
            }
        }
    }

    // SAFETY: every block returned is `layout.size()` bytes at an address
    // aligned to `layout.align()`, inside a chunk that is never freed or
    // handed out twice (the mutex serializes the bump).
    unsafe impl GlobalAlloc for Arena {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let Ok(mut free) = self.free.lock() else {
                return std::ptr::null_mut();
            };
            let align = layout.align();
            let start = (free.0 + align - 1) & !(align - 1);
            if free.0 != 0 && start + layout.size() <= free.1 {
                free.0 = start + layout.size();
                return start as *mut u8;
            }
            let size = CHUNK.max(layout.size() + align);
            let Ok(chunk_layout) = Layout::from_size_align(size, align.max(4096)) else {
                return std::ptr::null_mut();
            };
            // SAFETY: chunk_layout has a non-zero size.
            let chunk = unsafe { System.alloc(chunk_layout) };
            if chunk.is_null() {
                return chunk;
            }
            let chunk = chunk as usize;
            *free = (chunk + layout.size(), chunk + size);
            chunk as *mut u8
        }

        unsafe fn dealloc(&self, _block: *mut u8, _layout: Layout) {}
    }
}
