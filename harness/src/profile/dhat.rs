//! Heap profiles from the `dhat` crate (`dhat-heap.json`, written when a
//! `dhat::Profiler` built for heap profiling is dropped), boiled down to
//! what a benchmark report needs: how much was allocated in total, per task
//! and per step, how much was live at the global peak, and which call sites
//! allocated most. The viewer (`dh_view.html`) is for digging in; this is
//! for a table in a report and for comparing runs.
//!
//! The file is DHAT's JSON format, version 2: each program point (`pps`)
//! carries its totals (`tb` bytes, `tbk` blocks), its bytes and blocks at
//! the global peak (`gb`, `gbk`) and at the end (`eb`, `ebk`), and its
//! stack as indices (`fs`) into a table of frame strings (`ftbl`) such as
//! `0x55d…: alloc::vec::Vec<T,A>::push (src/vec/mod.rs:992:22)`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The only version of the format that dhat 0.3 (and Valgrind's DHAT) write.
const FILE_VERSION: u64 = 2;
/// dhat-rs's heap mode; `rust-ad-hoc` profiles count events, not bytes.
const HEAP_MODE: &str = "rust-heap";
/// Frames kept per site from its caller on: enough to tell call paths apart.
const FRAMES_KEPT: usize = 5;
/// Longest function name shown in the markdown table before it is cut.
const MAX_NAME: usize = 70;
/// Crates whose frames sit between the program and the allocator: the
/// standard library, hashbrown (behind std's `HashMap`), dhat itself.
const INTERNAL_CRATES: [&str; 6] = ["alloc", "core", "std", "hashbrown", "dhat", "backtrace"];

/// One frame of an allocation stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The demangled function, e.g. `tasker_engine::store::Store::insert`.
    pub function: String,
    /// `file:line` when the debug info had it (dhat keeps only the last
    /// three components of the path).
    pub location: Option<String>,
}

/// One program point: every allocation made from the same stack.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationSite {
    /// Innermost first, starting at the code that asked for the memory
    /// (allocator, std and dhat frames skipped); at most a few frames.
    pub frames: Vec<Frame>,
    /// The whole stack as dhat recorded it, innermost first.
    pub all_frames: Vec<Frame>,
    /// Bytes allocated here over the whole run (reallocations included).
    pub bytes: u64,
    /// Allocations made here over the whole run.
    pub blocks: u64,
    /// Bytes from here still live at the global peak (t-gmax).
    pub peak_bytes: u64,
}

/// The totals of a heap profile and its allocation sites.
#[derive(Debug, Clone, PartialEq)]
pub struct HeapSummary {
    pub total_bytes: u64,
    pub total_blocks: u64,
    /// Bytes live at the global peak, the moment the most bytes were live.
    pub peak_bytes: u64,
    pub peak_blocks: u64,
    /// Bytes still live when the profiler stopped (leaked or long-lived).
    pub end_bytes: u64,
    /// From the profiler's start to its end.
    pub duration: Duration,
    /// Most bytes first.
    pub sites: Vec<AllocationSite>,
}

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

    /// Totals (per task and per step when those are non-zero), then the
    /// `top` sites by bytes as a markdown table.
    pub fn markdown(&self, top: usize, tasks: u64, steps: u64) -> String {
        let mut lines = self.totals_lines();
        for (units, what) in [(tasks, "task"), (steps, "step")] {
            if units > 0 {
                let (bytes, blocks) = self.per_unit(units);
                lines.push(format!(
                    "- per {what} ({} {what}s): {bytes:.1} bytes in {blocks:.2} blocks",
                    thousands(units)
                ));
            }
        }
        lines.push(String::new());
        lines.extend(self.sites_table(top));
        lines.join("\n")
    }

    fn totals_lines(&self) -> Vec<String> {
        vec![
            format!(
                "- allocated: {} bytes in {} blocks over {:?}",
                thousands(self.total_bytes),
                thousands(self.total_blocks),
                self.duration
            ),
            format!(
                "- live at the global peak: {} bytes in {} blocks",
                thousands(self.peak_bytes),
                thousands(self.peak_blocks)
            ),
            format!("- live at the end: {} bytes", thousands(self.end_bytes)),
        ]
    }

    fn sites_table(&self, top: usize) -> Vec<String> {
        let mut lines = vec![
            "| rank | bytes | blocks | peak bytes | site |".to_string(),
            "|---:|---:|---:|---:|---|".to_string(),
        ];
        let share = |bytes: u64| 100.0 * bytes as f64 / self.total_bytes.max(1) as f64;
        for (rank, site) in self.sites.iter().take(top).enumerate() {
            lines.push(format!(
                "| {} | {} ({:.1}%) | {} | {} | {} |",
                rank + 1,
                thousands(site.bytes),
                share(site.bytes),
                thousands(site.blocks),
                thousands(site.peak_bytes),
                site.markdown_name()
            ));
        }
        let rest = &self.sites[top.min(self.sites.len())..];
        if !rest.is_empty() {
            let bytes: u64 = rest.iter().map(|s| s.bytes).sum();
            lines.push(String::new());
            lines.push(format!(
                "{} more sites: {} bytes ({:.1}%)",
                rest.len(),
                thousands(bytes),
                share(bytes)
            ));
        }
        lines
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

/// The frames from the first one outside the allocator, std and dhat on.
/// A stack that is internal throughout is kept from its top, so every
/// site still has a name.
fn caller_frames(all: &[Frame]) -> Vec<Frame> {
    let first = all
        .iter()
        .position(|f| !is_internal(&f.function))
        .unwrap_or(0);
    all.iter().skip(first).take(FRAMES_KEPT).cloned().collect()
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

    /// The function without generic arguments, cut to a readable length.
    pub fn short_function(&self) -> String {
        shorten(&strip_generics(&self.function))
    }
}

impl Frame {
    fn label(&self) -> String {
        match &self.location {
            Some(location) => format!("{} ({location})", self.short_function()),
            None => self.short_function(),
        }
    }

    /// A frame of this workspace's code (`tasker_engine`, `tasker_scenarios`,
    /// also as the type of a trait method).
    fn is_workspace(&self) -> bool {
        let path = self.function.trim_start_matches('<');
        path.starts_with("tasker_engine::") || path.starts_with("tasker_scenarios::")
    }
}

impl AllocationSite {
    /// The first frame, shortened, with its `file:line` when known, and
    /// the workspace's code that led to it when that is further down (a
    /// site in tokio's or sqlx's code says which of our calls it serves).
    pub fn name(&self) -> String {
        let Some(frame) = self.frames.first() else {
            return "(no stack)".to_string();
        };
        match self.workspace_caller() {
            Some(caller) => format!("{} ← {}", frame.label(), caller.label()),
            None => frame.label(),
        }
    }

    /// The innermost frame of the workspace's code below the first frame.
    pub fn workspace_caller(&self) -> Option<&Frame> {
        let first = self.frames.first()?;
        if first.is_workspace() {
            return None;
        }
        self.all_frames.iter().find(|f| f.is_workspace())
    }

    /// The name for a markdown table cell: the function as code, so its
    /// `<…>` is not taken for HTML, and pipes escaped.
    fn markdown_name(&self) -> String {
        let Some(frame) = self.frames.first() else {
            return "(no stack)".to_string();
        };
        let code = |frame: &Frame| {
            let function = format!("`{}`", frame.short_function().replace('`', "'"));
            match &frame.location {
                Some(location) => format!("{function} ({location})"),
                None => function,
            }
        };
        let cell = match self.workspace_caller() {
            Some(caller) => format!("{} ← {}", code(frame), code(caller)),
            None => code(frame),
        };
        cell.replace('|', "\\|")
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

/// Whether a function belongs to the allocator, the standard library or
/// dhat. For a trait method (`<Type as Trait>::method`) the implementing
/// type decides; for a blanket impl on a bare type parameter (`<T as
/// alloc::string::ToString>::to_string`) the trait does.
fn is_internal(function: &str) -> bool {
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

/// `alloc::vec::Vec<T,A>::push` → `alloc::vec::Vec::push`. A `<` right
/// after a name (or a turbofish `::<`) opens generic arguments; a leading
/// `<` opens a qualified path (`<Type as Trait>`) and stays.
fn strip_generics(function: &str) -> String {
    let mut out = String::with_capacity(function.len());
    let mut depth = 0usize;
    for c in function.chars() {
        if depth > 0 {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            continue;
        }
        let after_name = out.ends_with(|p: char| p.is_alphanumeric() || p == '_' || p == ':');
        if c == '<' && after_name {
            if out.ends_with("::") {
                out.truncate(out.len() - 2);
            }
            depth = 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// Keeps the innermost path segments that fit in [`MAX_NAME`]
/// characters: the function and its type say more than the crate.
fn shorten(function: &str) -> String {
    if function.chars().count() <= MAX_NAME {
        return function.to_string();
    }
    // Cut only at `::` outside `<…>`, so a qualified path stays whole.
    let mut depth = 0usize;
    let mut cuts = Vec::new();
    for (i, c) in function.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ':' if depth == 0 && function[i..].starts_with("::") => cuts.push(i + 2),
            _ => {}
        }
    }
    let fits = |&&cut: &&usize| function[cut..].chars().count() < MAX_NAME;
    match cuts.iter().find(fits) {
        Some(&cut) => format!("…{}", &function[cut..]),
        None => function.chars().take(MAX_NAME - 1).chain(['…']).collect(),
    }
}

/// `1234567` → `1,234,567`: byte counts are read by eye.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real profile of a small program (built with dhat 0.3.3, release
    /// with line tables) that grows a `Vec<u64>` to 100,000 elements, formats
    /// 2,000 strings, boxes 500 `[u8; 64]` and fills a `HashMap` of 1,000
    /// entries, which it leaks.
    const SAMPLE: &str = include_str!("testdata/dhat-heap.json");

    fn sample() -> HeapSummary {
        HeapSummary::parse(SAMPLE).unwrap()
    }

    /// The profile with one top-level field replaced.
    fn sample_with(field: &str, value: serde_json::Value) -> String {
        let mut json: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        json[field] = value;
        json.to_string()
    }

    #[test]
    fn totals_are_the_sums_over_program_points() {
        // Summed independently over `pps` (tb, tbk, gb, gbk, eb); they also
        // match what dhat printed when the profile was written.
        let summary = sample();
        assert_eq!(summary.total_bytes, 2_230_108);
        assert_eq!(summary.total_blocks, 4_527);
        assert_eq!(summary.peak_bytes, 1_112_256);
        assert_eq!(summary.peak_blocks, 504);
        assert_eq!(summary.end_bytes, 18_448);
        assert_eq!(summary.duration, Duration::from_micros(6_352));
        assert_eq!(summary.sites.len(), 5);
    }

    #[test]
    fn sites_are_named_by_the_caller_and_ranked_by_bytes() {
        let summary = sample();
        let top = &summary.sites[0];
        assert_eq!(top.frames[0].function, "dhat_sample::grow_vec");
        assert_eq!(
            top.frames[0].location.as_deref(),
            Some("dhat-sample/src/main.rs:11")
        );
        assert_eq!(
            (top.bytes, top.blocks, top.peak_bytes),
            (2_097_120, 16, 1_048_576)
        );
        assert_eq!(
            top.all_frames[0].function,
            "<alloc::alloc::Global as core::alloc::Allocator>::allocate"
        );
        assert_eq!(top.frames[1].function, "dhat_sample::main");

        let callers: Vec<&str> = summary
            .sites
            .iter()
            .map(|s| s.frames[0].function.as_str())
            .collect();
        // format! (alloc::fmt), HashMap (std over hashbrown), Box::new and
        // Vec::with_capacity are all looked through to the caller.
        assert_eq!(
            callers,
            [
                "dhat_sample::grow_vec",
                "dhat_sample::format_strings",
                "dhat_sample::fill_map",
                "dhat_sample::box_loop",
                "dhat_sample::box_loop",
            ]
        );
        assert!(summary.sites.windows(2).all(|w| w[0].bytes >= w[1].bytes));
        assert_eq!(
            top.name(),
            "dhat_sample::grow_vec (dhat-sample/src/main.rs:11)"
        );
    }

    #[test]
    fn per_unit_divides_the_totals() {
        let summary = sample();
        assert_eq!(summary.per_unit(1_000), (2_230.108, 4.527));
        assert_eq!(summary.per_unit(1), (2_230_108.0, 4_527.0));
        assert_eq!(summary.per_unit(0), (0.0, 0.0));
    }

    #[test]
    fn other_versions_and_modes_are_refused_clearly() {
        let error = |text: &str| format!("{:#}", HeapSummary::parse(text).unwrap_err());
        let v1 = error(&sample_with("dhatFileVersion", 1.into()));
        assert!(v1.contains("dhatFileVersion 1 is not supported"), "{v1}");
        let ad_hoc = error(&sample_with("mode", "rust-ad-hoc".into()));
        assert!(
            ad_hoc.contains("`rust-ad-hoc`, not a heap profile"),
            "{ad_hoc}"
        );
        assert!(error("{}").contains("no dhatFileVersion"));
        assert!(error("not json").contains("is JSON"));
        let dangling = error(&sample_with("ftbl", serde_json::json!(["[root]"])));
        assert!(dangling.contains("beyond the 1 in ftbl"), "{dangling}");
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dhat-heap.json");
        std::fs::write(&path, SAMPLE).unwrap();
        assert_eq!(HeapSummary::load(&path).unwrap(), sample());

        std::fs::write(&path, sample_with("mode", "rust-ad-hoc".into())).unwrap();
        let message = format!("{:#}", HeapSummary::load(&path).unwrap_err());
        assert!(message.contains(&path.display().to_string()), "{message}");
        let missing = dir.path().join("missing.json");
        let message = format!("{:#}", HeapSummary::load(&missing).unwrap_err());
        assert!(message.contains("missing.json"), "{message}");
    }

    #[test]
    fn markdown_has_totals_per_unit_lines_and_the_top_sites() {
        let text = sample().markdown(2, 1_000, 0);
        assert!(text.contains("- allocated: 2,230,108 bytes in 4,527 blocks over 6.352ms"));
        assert!(text.contains("- live at the global peak: 1,112,256 bytes in 504 blocks"));
        assert!(text.contains("- per task (1,000 tasks): 2230.1 bytes in 4.53 blocks"));
        assert!(
            !text.contains("per step"),
            "zero steps get no line:\n{text}"
        );
        assert!(text.contains("| rank | bytes | blocks | peak bytes | site |"));
        assert!(text.contains(
            "| 1 | 2,097,120 (94.0%) | 16 | 1,048,576 | \
             `dhat_sample::grow_vec` (dhat-sample/src/main.rs:11) |"
        ));
        assert!(text.contains("| 2 | 60,000 (2.7%) | 4,000 | 0 |"));
        assert!(!text.contains("| 3 |"), "only the top 2:\n{text}");
        assert!(text.contains("3 more sites: 72,988 bytes (3.3%)"));
    }

    #[test]
    fn frames_are_parsed_into_function_and_location() {
        let frame = Frame::parse("0x55d0: alloc::vec::Vec<T,A>::push (src/vec/mod.rs:992:22)");
        assert_eq!(frame.function, "alloc::vec::Vec<T,A>::push");
        assert_eq!(frame.location.as_deref(), Some("src/vec/mod.rs:992"));
        assert_eq!(frame.short_function(), "alloc::vec::Vec::push");

        let closure = Frame::parse("0x1: <fn() as core::ops::FnOnce<()>>::call_once (???:0:0)");
        assert_eq!(
            closure.function,
            "<fn() as core::ops::FnOnce<()>>::call_once"
        );
        assert_eq!(closure.location, None);
        assert_eq!(Frame::parse("[root]").function, "[root]");
    }

    #[test]
    fn internal_frames_are_the_allocator_std_and_dhat() {
        for internal in [
            "__rust_alloc",
            "__rg_realloc",
            "<dhat::Alloc as core::alloc::global::GlobalAlloc>::alloc",
            "<alloc::raw_vec::RawVecInner>::try_allocate_in",
            "<T as alloc::string::ToString>::to_string",
            "<[T] as alloc::slice::hack::ConvertVec>::to_vec",
            "hashbrown::raw::RawTable<T,A>::reserve",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
        ] {
            assert!(is_internal(internal), "{internal}");
        }
        for caller in [
            "tasker_engine::store::Store::insert",
            "<tasker_engine::Task as core::fmt::Display>::fmt",
            "main",
        ] {
            assert!(!is_internal(caller), "{caller}");
        }
    }

    #[test]
    fn long_names_keep_their_innermost_segments() {
        let long =
            "tasker_engine::some::deeply::nested::module::path::that::goes::on::Type::method";
        let short = shorten(long);
        assert!(
            short.starts_with('…') && short.ends_with("Type::method"),
            "{short}"
        );
        assert!(short.chars().count() <= MAX_NAME);
        assert_eq!(
            strip_generics("a::f::<u8>::{{closure}}"),
            "a::f::{{closure}}"
        );
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
