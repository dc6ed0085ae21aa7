//! Reading a saved samply profile and its `.syms.json` sidecar, as far as folding needs them.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use super::record::syms_path;
use super::summarize::fold_profile;
use crate::profile::FoldedProfile;

/// A saved samply profile and its `.syms.json` sidecar, folded.
///
/// A missing sidecar is an error rather than a profile of bare addresses,
/// which would read as nonsense in a report.
pub fn fold(profile_path: &Path) -> anyhow::Result<FoldedProfile> {
    let profile: Profile = serde_json::from_slice(&read_maybe_gzipped(profile_path)?)
        .with_context(|| format!("parsing samply profile {}", profile_path.display()))?;
    let syms_path = syms_path(profile_path);
    let syms = std::fs::read(&syms_path).with_context(|| {
        format!(
            "reading the symbols of {} from {}: record with `samply record --unstable-presymbolicate`",
            profile_path.display(),
            syms_path.display()
        )
    })?;
    let syms: Syms = serde_json::from_slice(&syms)
        .with_context(|| format!("parsing samply symbols {}", syms_path.display()))?;
    fold_profile(&profile, &syms)
}

/// The file's bytes, gunzipped when they are gzip (samply gzips when the
/// output name ends in `.gz`).
fn read_maybe_gzipped(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut json)
        .with_context(|| format!("gunzipping {}", path.display()))?;
    Ok(json)
}

/// The parts of a Firefox Profiler processed profile that folding needs.
#[derive(Deserialize)]
pub(super) struct Profile {
    pub(super) libs: Vec<Lib>,
    pub(super) threads: Vec<Thread>,
    /// Newer profile versions share one string array across threads.
    #[serde(default)]
    pub(super) shared: Option<Shared>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Shared {
    pub(super) string_array: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Lib {
    pub(super) debug_name: String,
    pub(super) breakpad_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Thread {
    pub(super) name: String,
    pub(super) samples: Samples,
    pub(super) stack_table: StackTable,
    pub(super) frame_table: FrameTable,
    pub(super) func_table: FuncTable,
    pub(super) resource_table: ResourceTable,
    #[serde(default)]
    pub(super) string_array: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct Samples {
    pub(super) stack: Vec<Option<usize>>,
    #[serde(default)]
    pub(super) weight: Option<Vec<Option<i64>>>,
    /// Microseconds on the CPU since the thread's previous sample.
    #[serde(rename = "threadCPUDelta", default)]
    pub(super) thread_cpu_delta: Option<Vec<Option<u64>>>,
}

/// Stacks as a tree: each is a frame plus the stack it was called from.
#[derive(Deserialize)]
pub(super) struct StackTable {
    pub(super) prefix: Vec<Option<usize>>,
    pub(super) frame: Vec<usize>,
}

#[derive(Deserialize)]
pub(super) struct FrameTable {
    /// Relative to the function's library; -1 when there is no library.
    pub(super) address: Vec<i64>,
    pub(super) func: Vec<usize>,
}

#[derive(Deserialize)]
pub(super) struct FuncTable {
    /// Into the string array: a symbol samply knew (kernel), a label, or a
    /// `0x…` placeholder for an address it left to symbolicate later.
    pub(super) name: Vec<usize>,
    pub(super) resource: Vec<Option<i64>>,
}

#[derive(Deserialize)]
pub(super) struct ResourceTable {
    /// Into the profile's `libs`.
    pub(super) lib: Vec<Option<usize>>,
}

/// The `.syms.json` sidecar (samply's `symbol_precog.rs`).
#[derive(Deserialize)]
pub(super) struct Syms {
    pub(super) string_table: Vec<String>,
    pub(super) data: Vec<LibSyms>,
}

#[derive(Deserialize)]
pub(super) struct LibSyms {
    pub(super) debug_name: String,
    /// `DebugId` text: `{uuid}` or `{uuid}-{age:x}`.
    pub(super) debug_id: String,
    pub(super) symbol_table: Vec<Symbol>,
}

#[derive(Deserialize)]
pub(super) struct Symbol {
    pub(super) rva: u32,
    pub(super) size: Option<u32>,
    /// Into the string table; already demangled by samply (Rust names
    /// without the hash).
    pub(super) symbol: usize,
}
