//! The fault campaign (`tasker-harness chaos`): the cluster topology (two
//! orchestrators, two workers, as processes) on its own PostgreSQL, under
//! load of random scenario shapes with injected handler failures, while
//! faults chosen from a seed are injected one after another: processes
//! killed and restarted, paused past their leases and resumed, PostgreSQL
//! restarted, the engine's sessions terminated, connection slots
//! exhausted. Then every submitted task is checked from the database, and
//! every handler run from the run records (see `check`).
//!
//! The same seed gives the same tasks and the same sequence of fault kinds
//! and targets; when each fault lands relative to the work in flight is up
//! to the machine.
//!
//! The campaign's plan, its driver (load, faults, then the check) and its
//! report are in `campaign.rs`; the [`Rig`] it runs on (the engine's
//! processes on their own PostgreSQL, also what `tests/faults.rs` drives)
//! in `rig.rs`.

pub mod check;
pub mod containers;
pub mod faults;
pub mod fleet;
pub mod templates;

mod campaign;
mod rig;

use std::path::Path;

use anyhow::Context;

pub use campaign::{render, run, submit, Injected, Plan, Report};
pub use rig::{Postgres, Rig, RigOptions};

/// A directory every process may write, whatever user it runs as (the
/// containers' is not this one).
fn create_shared_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("opening {} to every user", dir.display()))
}
