//! Criterion micro-benchmarks of the engine's hot-path pieces:
//!
//! - `template_parse`: `TaskTemplate::from_yaml_str` (parse + validate) of
//!   the linear and complex_dag scenario templates.
//! - `result_serialize`: the JSON a worker submits for a batch of step
//!   results, built as the submitter builds it and encoded as sqlx binds it
//!   (`build_and_encode/<n>`), and the encoding alone (`encode/16`).
//! - `state_cas`: one `state::transition_step` / `state::transition_task`
//!   compare-and-set, a round trip to a real database.
//! - `readiness`: on a database holding 10,000 linear tasks (2,000
//!   complete, 7,700 in flight, 300 with a ready step), the readiness query
//!   of one task (`tasks_execution_context` of one) and the statement orchestration
//!   runs per completed step (`process_step_results`: apply the result,
//!   evaluate the task's readiness, enqueue the next step or finish the
//!   task).
//!
//! ```sh
//! cargo bench -p tasker-engine --bench hot_path                  # all groups
//! cargo bench -p tasker-engine --bench hot_path -- template_parse # one group
//! ```
//!
//! The databases come from `tasker_engine::testing::test_database()`: on
//! the server at `DATABASE_URL` if set, else on the process's throwaway
//! local cluster (fsync off: commits cost no disk flush, so the database
//! figures are CPU and round trips, not the disk). They are built only
//! when a database benchmark runs (not when filtered out) and dropped
//! afterwards. The engine has no global "find all ready steps" query:
//! readiness is evaluated per task, under its row lock, inside
//! `process_step_results`, so that is what `readiness` measures, with the
//! other 9,999 tasks in the tables and indexes.
//!
//! The CPU-only groups have exact instruction counts too: see
//! `benches/instructions.rs`.
//!
//! One module per group (`template`, `serialize`, `state_cas`,
//! `readiness`); `db` holds what the two database groups share: the bench
//! database, the runtime and the timing loop.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../common/mod.rs"]
mod common;
mod db;
mod readiness;
mod serialize;
mod state_cas;
mod template;

use readiness::readiness;
use serialize::result_serialize;
use state_cas::state_cas;
use template::template_parse;

criterion_group! {
    name = cpu;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = template_parse, result_serialize
}
criterion_group! {
    name = db;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = state_cas, readiness
}
criterion_main!(cpu, db);
