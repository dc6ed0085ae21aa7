//! The CPU-only workloads, shared by `hot_path` (criterion, wall time) and
//! `instructions` (one workload under callgrind, exact instruction counts),
//! so both measure the same code on the same inputs.
//!
//! Not a bench target of its own: cargo only discovers `benches/*.rs` and
//! `benches/*/main.rs`.
#![allow(dead_code)] // each bench binary uses part of it

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tasker_engine::worker::result_json;
pub use tasker_engine::worker::Completion;
use tasker_engine::{HandlerError, TaskTemplate};
use uuid::Uuid;

/// The scenario templates parsed by `template_parse`: the smallest real
/// one and the largest DAG.
pub const TEMPLATES: [&str; 2] = ["linear", "complex_dag"];

/// Completions in the batch `result_serialize` builds and serializes: the
/// worker's claim batch size (`worker.claim_batch_size` in
/// config/tasker.toml), i.e. what one submit carries when a full claim
/// finishes together.
pub const RESULT_BATCH: usize = 16;

pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
        .join("templates")
}

/// `(label, YAML text)` of the templates of [`TEMPLATES`], compiled in:
/// reading them at run time would allocate their absolute path, and the
/// allocator's state, so the instruction count, would then depend on
/// where the checkout is.
pub const TEMPLATE_TEXTS: [(&str, &str); 2] = [
    (
        "scenarios/templates/linear.yaml",
        include_str!("../../../scenarios/templates/linear.yaml"),
    ),
    (
        "scenarios/templates/complex_dag.yaml",
        include_str!("../../../scenarios/templates/complex_dag.yaml"),
    ),
];

/// `(label, YAML text)` of a scenario template.
pub fn template_text(name: &str) -> (String, String) {
    let (label, text) = TEMPLATE_TEXTS
        .iter()
        .find(|(label, _)| label.ends_with(&format!("/{name}.yaml")))
        .unwrap_or_else(|| panic!("{name} is not one of {TEMPLATES:?}"));
    (label.to_string(), text.to_string())
}

/// Parse and validate one template, as `TaskTemplate::load_file` does
/// after reading the file.
pub fn parse_template(label: &str, text: &str) -> TaskTemplate {
    TaskTemplate::from_yaml_str(text, label).expect("scenario template is valid")
}

/// One iteration of the `template_parse` workload: every text of `texts`.
pub fn parse_all(texts: &[(String, String)]) {
    for (label, text) in texts {
        black_box(parse_template(black_box(label), black_box(text)));
    }
}

/// The submitted batch: a JSON array of `result_json`, as the submitter
/// builds it for one queue.
pub fn result_batch_json(completions: &[Completion]) -> Value {
    Value::Array(completions.iter().map(result_json).collect())
}

/// What sqlx does with the bound `Value` (sqlx-postgres `Json::encode_by_ref`:
/// the jsonb version byte, then `serde_json::to_writer` into the buffer).
pub fn encode_jsonb(value: &Value) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    buf.push(1);
    serde_json::to_writer(&mut buf, value).expect("a JSON value serializes");
    buf
}

/// One iteration of the `result_serialize` workload: build the batch's
/// JSON from the completions and encode it for the wire.
pub fn serialize_results(completions: &[Completion]) -> Vec<u8> {
    encode_jsonb(&result_batch_json(completions))
}

/// A deterministic batch of `n` completions with the scenarios' result
/// shapes: mostly integers (square/multiply/sum of linear, diamond,
/// complex_dag, tree), the conditional scenario's objects (a decision with
/// `next_steps`, an approval), and one retryable failure in every 16.
pub fn completions(n: usize) -> Vec<Completion> {
    let worker_id: Arc<str> = Arc::from("worker-48213");
    let queue: Arc<str> = Arc::from("worker_linear_queue");
    (0..n)
        .map(|i| {
            let outcome = match i % 16 {
                15 => Err(HandlerError::retryable(
                    "Timeout",
                    "handler did not finish within 30 s",
                )),
                7 => Ok(json!({"next_steps": ["manager_approval"], "amount": 2500})),
                11 => Ok(json!({"approved_amount": 2500, "approver": "manager"})),
                k => Ok(json!(2u64.pow(1 << (k % 5)) * (i as u64 % 3 + 1))),
            };
            Completion {
                queue: queue.clone(),
                msg_id: 100_000 + i as i64,
                step_uuid: Uuid::from_u128(0x0192_f3a4_5b6c_7d8e_9fa0_b1c2_d3e4_f506 + i as u128),
                attempt: 1,
                claim_token: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + i as u128),
                outcome,
                execution_time: Duration::from_micros(37 + 11 * i as u64),
                worker_id: worker_id.clone(),
            }
        })
        .collect()
}
