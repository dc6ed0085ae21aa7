//! Folded stacks: one line per distinct stack, `root;caller;callee count`,
//! the format inferno and Brendan Gregg's flamegraph tools share. Every CPU
//! profile (samply, perf) and the tracing-flame span timings end up here,
//! and from here come the top-N tables, the flamegraphs and the
//! differential flamegraphs against a baseline's profile.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A parsed folded-stack profile.
#[derive(Debug, Clone, Default)]
pub struct FoldedProfile {
    /// Frames from the root to the leaf, and the samples (or weight) of
    /// that exact stack.
    stacks: Vec<(Vec<String>, u64)>,
}

/// Samples attributed to one function or module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub name: String,
    /// Samples where it is the leaf: time spent in its own code.
    pub self_samples: u64,
    /// Samples where it is anywhere on the stack (counted once per stack
    /// even when it recurses): time spent in it and what it calls.
    pub total_samples: u64,
}

impl FoldedProfile {
    /// Parses folded lines; blank lines are skipped. An error names the
    /// line and what is wrong with it.
    /// Identical stacks are merged (tracing-flame writes one line per
    /// span event).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut stacks: Vec<(Vec<String>, u64)> = Vec::new();
        let mut seen: HashMap<Vec<String>, usize> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let Some((stack, count)) = line.rsplit_once(' ') else {
                bail!("line {}: no sample count after the stack", index + 1);
            };
            let count: u64 = count.parse().with_context(|| {
                format!(
                    "line {}: sample count '{count}' is not a whole number",
                    index + 1
                )
            })?;
            // tracing-flame separates frames with "; ".
            let frames: Vec<String> = stack.split(';').map(|f| f.trim().to_string()).collect();
            if frames.iter().any(String::is_empty) {
                bail!("line {}: empty frame in '{stack}'", index + 1);
            }
            match seen.get(&frames) {
                Some(&i) => stacks[i].1 += count,
                None => {
                    seen.insert(frames.clone(), stacks.len());
                    stacks.push((frames, count));
                }
            }
        }
        Ok(Self { stacks })
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading folded stacks {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Each distinct stack (root to leaf) with its samples.
    pub fn stacks(&self) -> impl Iterator<Item = (&[String], u64)> {
        self.stacks
            .iter()
            .map(|(frames, count)| (frames.as_slice(), *count))
    }

    pub fn total_samples(&self) -> u64 {
        self.stacks.iter().map(|(_, count)| count).sum()
    }

    /// The profile as folded lines (for inferno).
    pub fn lines(&self) -> Vec<String> {
        let line = |(frames, count): &(Vec<String>, u64)| format!("{} {count}", frames.join(";"));
        self.stacks.iter().map(line).collect()
    }

    /// Self and total samples per function, most total first.
    pub fn functions(&self) -> Vec<Cost> {
        self.costs_by(|frame| frame.to_string())
    }

    /// Self and total samples per module: the workspace's crates by module
    /// path (`tasker_engine::worker::claim`), other Rust crates by crate
    /// name, native frames as `(native)`.
    pub fn modules(&self) -> Vec<Cost> {
        self.costs_by(module_of)
    }

    fn costs_by(&self, key: impl Fn(&str) -> String) -> Vec<Cost> {
        let mut costs: HashMap<String, (u64, u64)> = HashMap::new();
        for (frames, count) in &self.stacks {
            let keys: Vec<String> = frames.iter().map(|frame| key(frame)).collect();
            let mut seen: Vec<&String> = Vec::with_capacity(keys.len());
            for name in &keys {
                if !seen.contains(&name) {
                    seen.push(name);
                    costs.entry(name.clone()).or_default().1 += count;
                }
            }
            if let Some(leaf) = keys.last() {
                costs.entry(leaf.clone()).or_default().0 += count;
            }
        }
        let mut costs: Vec<Cost> = costs
            .into_iter()
            .map(|(name, (self_samples, total_samples))| Cost {
                name,
                self_samples,
                total_samples,
            })
            .collect();
        costs.sort_by(|a, b| {
            (b.total_samples, b.self_samples, &a.name).cmp(&(
                a.total_samples,
                a.self_samples,
                &b.name,
            ))
        });
        costs
    }

    /// The profile with native leaf frames (libc, the kernel, the
    /// allocator) folded into the Rust function that called them, whose
    /// self time then includes the system calls and allocations it made:
    /// that is where an optimization would act. A stack of native frames
    /// only is kept as it is.
    pub fn native_into_callers(&self) -> FoldedProfile {
        let mut merged: HashMap<Vec<String>, u64> = HashMap::new();
        for (frames, count) in &self.stacks {
            let rust = frames
                .iter()
                .rposition(|frame| module_of(frame) != NATIVE)
                .map_or(frames.len(), |last| last + 1);
            *merged.entry(frames[..rust].to_vec()).or_default() += count;
        }
        let mut stacks: Vec<(Vec<String>, u64)> = merged.into_iter().collect();
        stacks.sort();
        FoldedProfile { stacks }
    }

    /// Writes an SVG flamegraph of this profile.
    pub fn write_flamegraph(&self, title: &str, path: &Path) -> anyhow::Result<()> {
        write_svg(&self.lines(), title, false, path)
    }
}

/// The top `n` entries by self samples, as a markdown table with shares of
/// `total` samples.
pub fn top_table(costs: &[Cost], total: u64, n: usize, what: &str) -> String {
    let mut by_self: Vec<&Cost> = costs.iter().collect();
    by_self.sort_by(|a, b| (b.self_samples, &a.name).cmp(&(a.self_samples, &b.name)));
    let share = |samples: u64| 100.0 * samples as f64 / total.max(1) as f64;
    let mut lines = vec![
        format!("| {what} | self | total |"),
        "|---|---|---|".to_string(),
    ];
    for cost in by_self.into_iter().take(n) {
        lines.push(format!(
            "| `{}` | {:.1}% | {:.1}% |",
            cost.name.replace('|', "\\|"),
            share(cost.self_samples),
            share(cost.total_samples)
        ));
    }
    lines.join("\n")
}

/// A differential flamegraph: the widths are `after`'s, red where a stack
/// got more samples than in `before` and blue where it got fewer (counts
/// normalized, so profiles of different lengths compare).
pub fn write_diff_flamegraph(
    before: &FoldedProfile,
    after: &FoldedProfile,
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let (before, after) = (before.lines().join("\n"), after.lines().join("\n"));
    let mut diff = Vec::new();
    let options = inferno::differential::Options {
        normalize: true,
        ..Default::default()
    };
    inferno::differential::from_readers(options, before.as_bytes(), after.as_bytes(), &mut diff)
        .context("diffing folded stacks")?;
    let lines: Vec<String> = String::from_utf8(diff)?
        .lines()
        .map(str::to_string)
        .collect();
    write_svg(&lines, title, true, path)
}

fn write_svg(lines: &[String], title: &str, differential: bool, path: &Path) -> anyhow::Result<()> {
    if lines.is_empty() {
        bail!("no samples to draw for {}", path.display());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    if differential {
        options.subtitle = Some("red: more samples than the baseline, blue: fewer".to_string());
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    inferno::flamegraph::from_lines(
        &mut options,
        lines.iter().map(String::as_str),
        std::io::BufWriter::new(file),
    )
    .with_context(|| format!("writing flamegraph {}", path.display()))
}

/// The workspace's crates, reported by module rather than as a whole.
const WORKSPACE_CRATES: [&str; 3] = ["tasker_engine", "tasker_scenarios", "tasker_harness"];

/// The module of frames that are not Rust paths.
const NATIVE: &str = "(native)";

/// The module a frame's function belongs to (see [`FoldedProfile::modules`]).
pub fn module_of(frame: &str) -> String {
    let path = rust_path(frame);
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    if segments.len() < 2 {
        return NATIVE.to_string();
    }
    if !WORKSPACE_CRATES.contains(&segments[0]) {
        return segments[0].to_string();
    }
    // Drop the function, closures, and a type the function is a method of.
    let mut module: Vec<&str> = segments
        .iter()
        .copied()
        .filter(|s| !s.starts_with('{'))
        .collect();
    module.pop();
    while module.len() > 1
        && module
            .last()
            .is_some_and(|s| s.starts_with(char::is_uppercase))
    {
        module.pop();
    }
    module.join("::")
}

/// The path of a Rust symbol without generic arguments; for a trait
/// method (`<Type as Trait>::method`) the implementing type's path.
fn rust_path(frame: &str) -> String {
    let frame = match frame.strip_prefix('<') {
        Some(rest) => rest.split(" as ").next().unwrap_or(rest),
        None => frame,
    };
    let frame = frame.trim_start_matches('&').trim_start_matches("mut ");
    let mut depth = 0usize;
    let mut path = String::with_capacity(frame.len());
    for c in frame.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => path.push(c),
            _ => {}
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("testdata/orchestration.folded");

    #[test]
    fn totals_self_and_total_time() {
        let profile = FoldedProfile::parse(SAMPLE).unwrap();
        assert_eq!(profile.total_samples(), 100);
        let functions = profile.functions();
        let get = |name: &str| functions.iter().find(|c| c.name == name).unwrap().clone();
        let main = get("main");
        assert_eq!((main.self_samples, main.total_samples), (0, 100));
        let claim = get("tasker_engine::worker::claim::Claimer::claim::{{closure}}");
        assert_eq!((claim.self_samples, claim.total_samples), (10, 40));
        // recursion counts once per stack in total, every time as self
        let eval = get("tasker_engine::orchestration::results::evaluate");
        assert_eq!((eval.self_samples, eval.total_samples), (15, 25));
        assert_eq!(functions[0].name, "main");
    }

    #[test]
    fn native_leaves_count_for_their_rust_caller() {
        let profile = FoldedProfile::parse(
            "main;tokio::rt::turn;epoll_wait 5\n\
             main;tokio::rt::turn 2\n\
             main;sqlx::conn::send;__libc_send;entry_SYSCALL 3\n\
             _start;__clone 1\n",
        )
        .unwrap();
        let folded = profile.native_into_callers();
        assert_eq!(folded.total_samples(), 11);
        let functions = folded.functions();
        let get = |name: &str| functions.iter().find(|c| c.name == name).unwrap().clone();
        assert_eq!(get("tokio::rt::turn").self_samples, 7);
        assert_eq!(get("sqlx::conn::send").self_samples, 3);
        assert!(functions.iter().all(|c| c.name != "epoll_wait"));
        // a stack with no Rust frame stays as it was
        assert_eq!(get("__clone").self_samples, 1);
    }

    #[test]
    fn modules_group_workspace_code_by_module_and_others_by_crate() {
        let profile = FoldedProfile::parse(SAMPLE).unwrap();
        let modules = profile.modules();
        let get = |name: &str| modules.iter().find(|c| c.name == name).unwrap().clone();
        assert_eq!(get("tasker_engine::worker::claim").total_samples, 40);
        assert_eq!(get("tasker_engine::worker::claim").self_samples, 10);
        assert_eq!(get("sqlx_postgres").self_samples, 30);
        assert_eq!(get("tokio").total_samples, 85);
        assert_eq!(get("(native)").self_samples, 20);
        assert_eq!(
            get("tasker_engine::orchestration::results").self_samples,
            15
        );
        assert_eq!(
            module_of("<tasker_engine::queue::Wakeups as core::clone::Clone>::clone"),
            "tasker_engine::queue"
        );
        assert_eq!(module_of("alloc::vec::Vec<T,A>::push"), "alloc");
        assert_eq!(
            module_of("<&std::os::unix::net::stream::UnixStream as std::io::Read>::read"),
            "std"
        );
        assert_eq!(module_of("__memcpy_avx_unaligned_erms"), "(native)");
    }

    #[test]
    fn top_table_ranks_by_self_time() {
        let profile = FoldedProfile::parse(SAMPLE).unwrap();
        let table = top_table(&profile.functions(), profile.total_samples(), 2, "function");
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), 2);
        assert!(
            rows[0].contains("sqlx_postgres") && rows[0].contains("30.0%"),
            "{table}"
        );
        assert!(
            rows[1].contains("__memcpy") && rows[1].contains("20.0%"),
            "{table}"
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let error = FoldedProfile::parse("a;b 3\na;b three\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
        let error = FoldedProfile::parse("a;;b 3\n").unwrap_err();
        assert!(format!("{error:#}").contains("empty frame"), "{error:#}");
        let error = FoldedProfile::parse("lonely\n").unwrap_err();
        assert!(
            format!("{error:#}").contains("no sample count"),
            "{error:#}"
        );
    }

    #[test]
    fn flamegraphs_and_differential_flamegraphs_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let before = FoldedProfile::parse(SAMPLE).unwrap();
        let after = FoldedProfile::parse(&SAMPLE.replace(" 30", " 60")).unwrap();
        let plain = dir.path().join("plain.svg");
        before.write_flamegraph("orchestration", &plain).unwrap();
        let svg = std::fs::read_to_string(&plain).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("tasker_engine"),
            "not a flamegraph"
        );
        let diff = dir.path().join("diff.svg");
        write_diff_flamegraph(&before, &after, "orchestration vs baseline", &diff).unwrap();
        let svg = std::fs::read_to_string(&diff).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("sqlx_postgres"),
            "not a flamegraph"
        );
        let empty = FoldedProfile::default();
        assert!(empty
            .write_flamegraph("empty", &dir.path().join("e.svg"))
            .is_err());
    }
}
