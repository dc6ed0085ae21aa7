//! Folding a parsed profile's samples into CPU time per stack, frames named from the sidecar's symbols.

use std::collections::HashMap;

use anyhow::{bail, Context};

use super::parse::{Lib, Profile, Samples, StackTable, Symbol, Syms, Thread};
use crate::profile::FoldedProfile;

/// One library's symbols, sorted by address.
pub(super) struct SymbolMap<'a> {
    pub(super) symbols: Vec<&'a Symbol>,
    pub(super) names: &'a [String],
}

impl SymbolMap<'_> {
    /// The symbol with the greatest start at or below `address`, if
    /// `address` is within its size (when the size is known).
    pub(super) fn lookup(&self, address: u32) -> Option<&str> {
        let index = self.symbols.partition_point(|s| s.rva <= address);
        let symbol = self.symbols.get(index.checked_sub(1)?)?;
        let inside = symbol.size.is_none_or(|size| address - symbol.rva < size);
        inside.then(|| self.names.get(symbol.symbol).map(String::as_str))?
    }
}

/// `DebugId` text (`6dbf1d1b-…-8f4c` or with `-{age}`) as the profile's
/// breakpad id (upper-case hex, age appended).
pub(super) fn breakpad_id(debug_id: &str) -> String {
    let parts: Vec<&str> = debug_id.split('-').collect();
    let (uuid, age) = match parts.len() {
        6 => (parts[..5].concat(), parts[5]),
        _ => (parts.concat(), "0"),
    };
    format!("{uuid}{age}").to_uppercase()
}

/// Folds every thread's samples into stacks `thread;root;…;leaf`, the
/// shape inferno gives perf's (its root is the thread's name, perf's
/// `comm`), weighted by nanoseconds on the CPU like perf's `cpu-clock`.
pub(super) fn fold_profile(profile: &Profile, syms: &Syms) -> anyhow::Result<FoldedProfile> {
    let maps: HashMap<(&str, String), SymbolMap> = syms
        .data
        .iter()
        .map(|lib| {
            let mut symbols: Vec<&Symbol> = lib.symbol_table.iter().collect();
            symbols.sort_by_key(|s| s.rva);
            let key = (lib.debug_name.as_str(), breakpad_id(&lib.debug_id));
            (
                key,
                SymbolMap {
                    symbols,
                    names: &syms.string_table,
                },
            )
        })
        .collect();
    let libs: Vec<Option<&SymbolMap>> = profile
        .libs
        .iter()
        .map(|lib| maps.get(&(lib.debug_name.as_str(), lib.breakpad_id.to_uppercase())))
        .collect();
    let mut stacks: HashMap<Vec<String>, u64> = HashMap::new();
    for (index, thread) in profile.threads.iter().enumerate() {
        let strings = match &profile.shared {
            Some(shared) => &shared.string_array,
            None => &thread.string_array,
        };
        fold_thread(thread, &profile.libs, &libs, strings, &mut stacks)
            .with_context(|| format!("in thread {index} ({})", thread.name))?;
    }
    let mut lines: Vec<String> = stacks
        .into_iter()
        .map(|(frames, weight)| format!("{} {weight}", frames.join(";")))
        .collect();
    lines.sort();
    FoldedProfile::parse(&lines.join("\n"))
}

fn fold_thread(
    thread: &Thread,
    libs: &[Lib],
    maps: &[Option<&SymbolMap>],
    strings: &[String],
    stacks: &mut HashMap<Vec<String>, u64>,
) -> anyhow::Result<()> {
    let names: Vec<String> = (0..thread.frame_table.func.len())
        .map(|frame| frame_name(thread, frame, libs, maps, strings))
        .collect::<anyhow::Result<_>>()?;
    let root = tidy(&thread.name.replace(' ', "_"));
    for (sample, stack) in thread.samples.stack.iter().enumerate() {
        let weight = sample_weight(&thread.samples, sample);
        // weightless: an off-CPU sample
        let Some(stack) = stack.filter(|_| weight > 0) else {
            continue;
        };
        let frames = stack_frames(&thread.stack_table, stack, &names, &root)?;
        *stacks.entry(frames).or_default() += weight;
    }
    Ok(())
}

/// `root` and the names of the stack's frames, from the outermost caller
/// to the leaf.
fn stack_frames(
    table: &StackTable,
    leaf: usize,
    names: &[String],
    root: &str,
) -> anyhow::Result<Vec<String>> {
    let mut frames = Vec::new();
    let mut next = Some(leaf);
    while let Some(stack) = next {
        let frame = *table.frame.get(stack).context("stack out of range")?;
        frames.push(names.get(frame).context("frame out of range")?.clone());
        next = *table.prefix.get(stack).context("stack out of range")?;
        // Callers come first in the table; this also rules out cycles.
        if next.is_some_and(|prefix| prefix >= stack) {
            bail!("stack {stack}'s caller {next:?} does not come before it");
        }
    }
    frames.push(root.to_string());
    frames.reverse();
    Ok(frames)
}

/// Nanoseconds on the CPU, the unit of perf's folded `cpu-clock` stacks.
/// Off-CPU samples (samply emits them when it sees where a thread went to
/// sleep) have a zero CPU delta and so weigh nothing, as in perf. Profiles
/// without CPU deltas fall back to the sample's weight, a count.
fn sample_weight(samples: &Samples, sample: usize) -> u64 {
    match (&samples.thread_cpu_delta, &samples.weight) {
        (Some(deltas), _) => deltas.get(sample).copied().flatten().unwrap_or(0) * 1000,
        (None, Some(weights)) => weights.get(sample).copied().flatten().unwrap_or(1).max(0) as u64,
        (None, None) => 1,
    }
}

/// A frame's function: the sidecar's symbol for its address, else the
/// name samply gave it (kernel symbols, labels), else `lib+0xaddress`.
fn frame_name(
    thread: &Thread,
    frame: usize,
    libs: &[Lib],
    maps: &[Option<&SymbolMap>],
    strings: &[String],
) -> anyhow::Result<String> {
    let func = thread.frame_table.func[frame];
    let name = thread
        .func_table
        .name
        .get(func)
        .and_then(|&s| strings.get(s))
        .with_context(|| format!("frame {frame}: no function name"))?;
    let address = thread.frame_table.address.get(frame).copied().unwrap_or(-1);
    let lib = thread
        .func_table
        .resource
        .get(func)
        .copied()
        .flatten()
        .and_then(|r| usize::try_from(r).ok())
        .and_then(|r| thread.resource_table.lib.get(r).copied().flatten());
    let (Ok(address), Some(lib)) = (u32::try_from(address), lib) else {
        return Ok(tidy(name));
    };
    if let Some(symbol) = maps
        .get(lib)
        .copied()
        .flatten()
        .and_then(|m| m.lookup(address))
    {
        return Ok(tidy(symbol));
    }
    if *name != format!("0x{address:x}") {
        return Ok(tidy(name));
    }
    let lib = libs.get(lib).map_or("?", |lib| lib.debug_name.as_str());
    Ok(format!("{lib}+0x{address:x}"))
}

/// A name fit for a folded frame, as inferno tidies perf's: no `;` (the
/// frame separator; Rust arrays have them) and no C++ parameter list.
pub(super) fn tidy(name: &str) -> String {
    let name = name.replace(';', ":");
    let mut depth = 0i32;
    for (index, c) in name.char_indices() {
        match c {
            '<' | '{' | '[' => depth += 1,
            '>' | '}' | ']' | ')' => depth -= 1,
            '(' if depth == 0 && index > 0 && !name[index..].starts_with("(anonymous") => {
                return name[..index].to_string();
            }
            '(' => depth += 1,
            _ => {}
        }
    }
    name
}
