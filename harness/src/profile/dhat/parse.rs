//! Reading `dhat-heap.json` into a [`HeapSummary`]: the header check, the program points and the frame table.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::summarize::caller_frames;
use super::{AllocationSite, Frame, HeapSummary};

/// The only version of the format that dhat 0.3 (and Valgrind's DHAT) write.
const FILE_VERSION: u64 = 2;
/// dhat-rs's heap mode; `rust-ad-hoc` profiles count events, not bytes.
const HEAP_MODE: &str = "rust-heap";

/// The fields read first, to refuse a file of another kind with a clear
/// message rather than a missing-field error.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "dhatFileVersion")]
    version: Option<u64>,
    mode: Option<String>,
}

#[derive(Deserialize)]
struct HeapJson {
    tu: String,
    te: u64,
    pps: Vec<ProgramPoint>,
    ftbl: Vec<String>,
}

#[derive(Deserialize)]
struct ProgramPoint {
    tb: u64,
    tbk: u64,
    gb: u64,
    gbk: u64,
    eb: u64,
    fs: Vec<usize>,
}

impl HeapSummary {
    /// Parses the JSON of a dhat-rs heap profile. Another version of the
    /// format or an ad-hoc profile is refused, saying which it is.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).context("a DHAT profile is JSON, and this is not")?;
        check_header(&value)?;
        let json = HeapJson::deserialize(&value).context("malformed dhat heap profile")?;
        let frames: Vec<Frame> = json.ftbl.iter().map(|s| Frame::parse(s)).collect();
        let mut sites = json
            .pps
            .iter()
            .enumerate()
            .map(|(index, pp)| site(index, pp, &frames))
            .collect::<anyhow::Result<Vec<_>>>()?;
        sites.sort_by_key(|s| std::cmp::Reverse((s.bytes, s.blocks)));
        let sum = |field: fn(&ProgramPoint) -> u64| -> u64 { json.pps.iter().map(field).sum() };
        Ok(Self {
            total_bytes: sum(|pp| pp.tb),
            total_blocks: sum(|pp| pp.tbk),
            peak_bytes: sum(|pp| pp.gb),
            peak_blocks: sum(|pp| pp.gbk),
            end_bytes: sum(|pp| pp.eb),
            duration: duration_in(json.te, &json.tu)?,
            sites,
        })
    }

    /// Reads and parses a profile; an error names the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading heap profile {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in heap profile {}", path.display()))
    }
}

/// Refuses anything but a version-2 dhat-rs heap profile.
fn check_header(value: &serde_json::Value) -> anyhow::Result<()> {
    let header = Header::deserialize(value).context("not a DHAT profile")?;
    match header.version {
        None => bail!("not a DHAT profile: no dhatFileVersion"),
        Some(FILE_VERSION) => {}
        Some(other) => {
            bail!("dhatFileVersion {other} is not supported, only {FILE_VERSION} (dhat 0.3)")
        }
    }
    match header.mode.as_deref() {
        Some(HEAP_MODE) => Ok(()),
        Some(mode) => bail!(
            "mode is `{mode}`, not a heap profile: expected `{HEAP_MODE}` \
             (dhat::Profiler::new_heap with dhat::Alloc as the global allocator)"
        ),
        None => bail!("not a DHAT profile: no mode"),
    }
}

fn site(index: usize, pp: &ProgramPoint, frames: &[Frame]) -> anyhow::Result<AllocationSite> {
    let all_frames = pp
        .fs
        .iter()
        .map(|&f| frames.get(f).cloned())
        .collect::<Option<Vec<Frame>>>()
        .with_context(|| {
            format!(
                "program point {index} refers to a frame beyond the {} in ftbl",
                frames.len()
            )
        })?;
    Ok(AllocationSite {
        frames: caller_frames(&all_frames),
        all_frames,
        bytes: pp.tb,
        blocks: pp.tbk,
        peak_bytes: pp.gb,
    })
}

/// `te` counted in the file's time unit (`µs` for dhat-rs).
fn duration_in(count: u64, unit: &str) -> anyhow::Result<Duration> {
    Ok(match unit {
        "ns" => Duration::from_nanos(count),
        "µs" | "us" => Duration::from_micros(count),
        "ms" => Duration::from_millis(count),
        "s" => Duration::from_secs(count),
        other => bail!("unknown time unit `{other}`"),
    })
}

impl Frame {
    /// Parses an `ftbl` entry: `ADDRESS: FUNCTION (FILE:LINE:COLUMN)`, or
    /// the special `[root]`. Unknown parts (`???`, line 0) become no
    /// location rather than a fake one.
    pub fn parse(text: &str) -> Frame {
        // The address is noise for a report and differs between runs.
        let rest = match text.split_once(": ") {
            Some((address, rest)) if address.starts_with("0x") => rest,
            _ => text,
        };
        // The location is the last parenthesis: function names can hold
        // parentheses of their own (`<fn() as FnOnce<()>>::call_once`).
        match rest.strip_suffix(')').and_then(|r| r.rsplit_once(" (")) {
            Some((function, location)) => Frame {
                function: function.to_string(),
                location: file_and_line(location),
            },
            None => Frame {
                function: rest.to_string(),
                location: None,
            },
        }
    }
}

/// `FILE:LINE` from `FILE:LINE:COLUMN`; `None` when the debug info had
/// neither.
fn file_and_line(location: &str) -> Option<String> {
    // Split from the right: a Windows path has a colon of its own.
    let mut parts = location.rsplitn(3, ':');
    let (_column, line, file) = (parts.next()?, parts.next()?, parts.next()?);
    if file == "???" || line == "0" {
        return None;
    }
    Some(format!("{file}:{line}"))
}
