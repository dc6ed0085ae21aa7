//! What a profile says beyond its totals: allocations per unit of work, and which frames are the program's own.

use super::{AllocationSite, Frame, HeapSummary};

/// Frames kept per site from its caller on: enough to tell call paths apart.
const FRAMES_KEPT: usize = 5;
/// Crates whose frames sit between the program and the allocator: the
/// standard library, hashbrown (behind std's `HashMap`), dhat itself.
const INTERNAL_CRATES: [&str; 6] = ["alloc", "core", "std", "hashbrown", "dhat", "backtrace"];

impl HeapSummary {
    /// Bytes and blocks allocated per unit of work (task, step). Zero
    /// units give zeros rather than infinities.
    pub fn per_unit(&self, units: u64) -> (f64, f64) {
        if units == 0 {
            return (0.0, 0.0);
        }
        let units = units as f64;
        (
            self.total_bytes as f64 / units,
            self.total_blocks as f64 / units,
        )
    }
}

/// The frames from the first one outside the allocator, std and dhat on.
/// A stack that is internal throughout is kept from its top, so every
/// site still has a name.
pub(super) fn caller_frames(all: &[Frame]) -> Vec<Frame> {
    let first = all
        .iter()
        .position(|f| !is_internal(&f.function))
        .unwrap_or(0);
    all.iter().skip(first).take(FRAMES_KEPT).cloned().collect()
}

impl Frame {
    /// A frame of this workspace's code (`tasker_engine`, `tasker_scenarios`,
    /// also as the type of a trait method).
    fn is_workspace(&self) -> bool {
        let path = self.function.trim_start_matches('<');
        path.starts_with("tasker_engine::") || path.starts_with("tasker_scenarios::")
    }
}

impl AllocationSite {
    /// The innermost frame of the workspace's code below the first frame.
    pub fn workspace_caller(&self) -> Option<&Frame> {
        let first = self.frames.first()?;
        if first.is_workspace() {
            return None;
        }
        self.all_frames.iter().find(|f| f.is_workspace())
    }
}

/// Whether a function belongs to the allocator, the standard library or
/// dhat. For a trait method (`<Type as Trait>::method`) the implementing
/// type decides; for a blanket impl on a bare type parameter (`<T as
/// alloc::string::ToString>::to_string`) the trait does.
pub(super) fn is_internal(function: &str) -> bool {
    // The global allocator's shims, unknown symbols, and dhat's root.
    let shims = ["__rust_", "__rg_", "__rdl_"];
    if shims.iter().any(|s| function.starts_with(s)) || matches!(function, "???" | "[root]") {
        return true;
    }
    let krate = match function.strip_prefix('<') {
        None => crate_of(function),
        Some(qualified) => {
            let (self_type, trait_path) = qualified.split_once(" as ").unwrap_or((qualified, ""));
            let self_type = self_type
                .trim_start_matches(['&', '*', '[', '(', ' '])
                .trim_start_matches("mut ")
                .trim_start_matches("const ")
                .trim_start_matches("dyn ");
            crate_of(self_type).or_else(|| crate_of(trait_path))
        }
    };
    krate.is_some_and(|k| INTERNAL_CRATES.contains(&k))
}

/// The crate a path starts with; `None` for a bare name such as `T`.
fn crate_of(path: &str) -> Option<&str> {
    let (first, _) = path.split_once("::")?;
    let is_ident = !first.is_empty() && first.chars().all(|c| c.is_alphanumeric() || c == '_');
    is_ident.then_some(first)
}
