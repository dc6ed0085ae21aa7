//! Where a language worker's CPU goes (`profile --target worker-python`,
//! `worker-ruby`, `worker-typescript`): each sampled stack is put in one
//! part, by the frames on it.
//!
//! - **boundary**: a step crossing between the engine and the language:
//!   the binding (PyO3, magnus, napi), the bridge's channel and its JSON
//!   encoding of the step (`tasker_worker_core::bridge`, flume);
//! - **native core**: the engine's worker itself (claims, results, the
//!   database client, its tokio runtime);
//! - **language runtime**: the interpreter or VM running the handler and
//!   the host's loop around it (its JSON decoding of the step included);
//! - **other**: the kernel, libc and threads of none of these.
//!
//! A stack with a boundary frame anywhere is boundary, so the JSON
//! encoding the bridge calls counts there and not as the core's; then a
//! core frame makes it core; then a runtime frame makes it runtime.

use std::fmt::Write;

use super::folded::FoldedProfile;
use crate::scenario::Language;

/// CPU per part, in the profile's weights (ns of CPU for samply and perf).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    pub boundary: u64,
    pub core: u64,
    pub runtime: u64,
    pub other: u64,
}

/// Frames of the binding and the bridge (Rust paths and the extension's
/// own symbols).
const BOUNDARY: [&str; 9] = [
    "pyo3::",
    "magnus::",
    "rb_sys::",
    "napi::",
    "tasker_worker_python::",
    "tasker_worker_ruby::",
    "tasker_worker_node::",
    "tasker_worker_core::bridge::",
    "flume::",
];

/// The engine's worker and what it runs on.
const CORE: [&str; 5] = [
    "tasker_engine::",
    "tasker_worker_core::",
    "sqlx",
    "tokio::",
    "pgmq::",
];

/// Symbols of each language's interpreter or VM.
fn runtime_prefixes(language: Language) -> &'static [&'static str] {
    match language {
        Language::Python => &[
            "_PyEval",
            "_Py",
            "Py",
            "_PyObject",
            "method_vectorcall",
            "libpython",
        ],
        Language::Ruby => &["rb_", "vm_", "ruby_", "libruby"],
        Language::Typescript => &["v8::", "node::", "Builtins_", "uv_", "Builtin:"],
    }
}

/// Strips the `<` of a trait method's frame (`<pyo3::… as …>::call`).
fn symbol(frame: &str) -> &str {
    frame.trim_start_matches('<')
}

pub fn split(profile: &FoldedProfile, language: Language) -> Split {
    let runtime = runtime_prefixes(language);
    let any = |frames: &[String], prefixes: &[&str]| {
        frames
            .iter()
            .any(|f| prefixes.iter().any(|p| symbol(f).starts_with(p)))
    };
    let mut split = Split::default();
    for (frames, count) in profile.stacks() {
        let part = if any(frames, &BOUNDARY) {
            &mut split.boundary
        } else if any(frames, &CORE) {
            &mut split.core
        } else if any(frames, runtime) {
            &mut split.runtime
        } else {
            &mut split.other
        };
        *part += count;
    }
    split
}

impl Split {
    pub fn total(&self) -> u64 {
        self.boundary + self.core + self.runtime + self.other
    }

    /// The parts as a markdown table: CPU, share, and µs a step over
    /// `steps` (0 steps: no per-step values).
    pub fn markdown(&self, language: Language, steps: u64) -> String {
        let total = self.total().max(1) as f64;
        let mut md = format!(
            "Where the {language} worker's CPU goes\n\n\
             | part | ns of CPU | share | µs a step |\n|---|---:|---:|---:|\n"
        );
        let parts = [
            (
                "boundary (binding, bridge, step JSON encoding)",
                self.boundary,
            ),
            (
                "native core (the engine's worker, database client)",
                self.core,
            ),
            (
                "language runtime (handler, host loop, JSON decoding)",
                self.runtime,
            ),
            ("other (kernel, libc)", self.other),
        ];
        for (name, ns) in parts {
            let per_step = match steps {
                0 => "—".to_string(),
                n => format!("{:.1}", ns as f64 / 1000.0 / n as f64),
            };
            let share = 100.0 * ns as f64 / total;
            let _ = writeln!(md, "| {name} | {ns} | {share:.1} % | {per_step} |");
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stacks as samply folds a Python worker's threads (stored sample).
    const PYTHON_WORKER: &str = "\
python;_PyEval_EvalFrameDefault;<pyo3::impl_::trampoline::trampoline>;tasker_worker_python::NativeWorker::poll;flume::Receiver<T>::recv_timeout;syscall 40
python;_PyEval_EvalFrameDefault;PyNumber_Multiply 25
python;_PyEval_EvalFrameDefault;_json.cpython;scanstring_unicode 10
tokio-runtime-w;tokio::runtime::scheduler::multi_thread::worker::run;<tasker_worker_core::bridge::HostHandler as tasker_engine::worker::handler::StepHandler>::call;serde_json::ser::to_string 15
tokio-runtime-w;tokio::runtime::scheduler::multi_thread::worker::run;tasker_engine::worker::claim::claim_batch;sqlx_postgres::connection::PgConnection::run 30
tokio-runtime-w;epoll_wait 5
";

    #[test]
    fn a_stack_goes_to_boundary_then_core_then_runtime_then_other() {
        let profile = FoldedProfile::parse(PYTHON_WORKER).unwrap();
        let split = split(&profile, Language::Python);
        assert_eq!(
            split,
            Split {
                boundary: 40 + 15,
                core: 30,
                runtime: 25 + 10,
                other: 5
            }
        );
        assert_eq!(split.total(), profile.total_samples());
    }

    #[test]
    fn runtime_frames_are_the_language_s_own() {
        let profile = FoldedProfile::parse("ruby;vm_exec_core;rb_funcallv 7\n").unwrap();
        assert_eq!(split(&profile, Language::Ruby).runtime, 7);
        assert_eq!(split(&profile, Language::Python).other, 7);
    }

    #[test]
    fn the_table_gives_each_part_a_share_and_its_time_a_step() {
        let split = Split {
            boundary: 10_000_000,
            core: 20_000_000,
            runtime: 30_000_000,
            other: 40_000_000,
        };
        // 10 ms of CPU over 100 steps is 100 µs a step.
        let md = split.markdown(Language::Python, 100);
        let boundary =
            "| boundary (binding, bridge, step JSON encoding) | 10000000 | 10.0 % | 100.0 |";
        assert!(md.contains(boundary), "{md}");
        assert!(
            md.contains("| other (kernel, libc) | 40000000 | 40.0 % | 400.0 |"),
            "{md}"
        );
    }
}
