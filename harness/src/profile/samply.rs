//! CPU profiles with samply: record a running engine process, then fold
//! its stacks into a [`FoldedProfile`] so the top tables and flamegraphs
//! are the same as for `perf` (see `perf.rs`, which this mirrors).
//!
//! Why samply next to perf: it unwinds each sample while recording (with
//! the binaries' unwind tables), so no `perf.data` of copied stacks grows
//! on disk, and its profile also opens in the Firefox Profiler for a
//! timeline per thread.
//!
//! samply saves a Firefox Profiler "processed" profile whose frames are
//! library-relative addresses; `--unstable-presymbolicate` writes the
//! symbols of those addresses to a `.syms.json` sidecar, which is what
//! [`fold`] reads to name frames — no samply server, no debug files needed
//! at fold time.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::process::Command;

use super::attached::Recording;
use super::FoldedProfile;

/// Samples per second: the same as perf's, so the two compare.
const FREQUENCY: u32 = 499;

const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

/// samply is installed (installing it with cargo if it is not) and may
/// record another process; otherwise an error that says exactly what to do.
pub fn check() -> anyhow::Result<()> {
    ready().map(|_| ())
}

/// [`check`], returning the samply to run.
fn ready() -> anyhow::Result<PathBuf> {
    let samply = match check_program("samply") {
        Ok(samply) => samply,
        Err(missing) => install().context(missing)?,
    };
    let level = std::fs::read_to_string(PARANOID)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    match paranoia(level, nix::unistd::geteuid().is_root()) {
        Paranoia::Allowed => {}
        Paranoia::Lower => lower_paranoia(),
        Paranoia::Refused(message) => bail!(message),
    }
    Ok(samply)
}

/// Where `program` runs from: the PATH, else cargo's bin directory (where
/// `cargo install` puts it, often not on the PATH of a service or sudo).
fn check_program(program: &str) -> anyhow::Result<PathBuf> {
    let candidates =
        std::iter::once(PathBuf::from(program)).chain(cargo_bin().map(|bin| bin.join(program)));
    for candidate in candidates {
        let version = std::process::Command::new(&candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if version.is_ok_and(|s| s.success()) {
            return Ok(candidate);
        }
    }
    bail!("{program} not found on the PATH nor in ~/.cargo/bin: install it with `cargo install --locked samply`")
}

fn cargo_bin() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    Some(home.join("bin"))
}

fn install() -> anyhow::Result<PathBuf> {
    eprintln!("samply not found: installing it with `cargo install --locked samply` (takes a few minutes)");
    let status = std::process::Command::new("cargo")
        .args(["install", "--locked", "samply"])
        .status()
        .context("running `cargo install --locked samply`")?;
    if !status.success() {
        bail!("`cargo install --locked samply` failed ({status}); install samply by hand");
    }
    check_program("samply").context("samply still not found after `cargo install`")
}

/// What to do about `kernel.perf_event_paranoid` before recording.
#[derive(Debug, PartialEq)]
enum Paranoia {
    Allowed,
    /// Too strict, but we are root and may set it to 1.
    Lower,
    /// Too strict and not ours to change: what to run.
    Refused(String),
}

/// Recording another process needs a level of 1 or less. An unreadable
/// level is left for samply itself to report.
fn paranoia(level: Option<i32>, root: bool) -> Paranoia {
    match level {
        Some(level) if level > 1 && root => Paranoia::Lower,
        Some(level) if level > 1 => Paranoia::Refused(format!(
            "kernel.perf_event_paranoid is {level}: samply needs 1 or less to profile another \
             process; run `sudo sysctl -w kernel.perf_event_paranoid=1` (or run the harness as root)"
        )),
        _ => Paranoia::Allowed,
    }
}

/// Sets the level to 1. Root needs it too: samply 0.13 takes any failed
/// `perf_event_open` for EPERM (it reads the errno from the -1 returned),
/// so where there is no hardware cycles counter (VMs) it quits with its
/// paranoid advice instead of falling back to cpu-clock. A failure to set
/// it only warns: samply's own error comes out of [`Recording::stop`].
fn lower_paranoia() {
    eprintln!("setting kernel.perf_event_paranoid to 1 so samply may record another process");
    if let Err(error) = std::fs::write(PARANOID, "1\n") {
        eprintln!("could not write {PARANOID} ({error}); recording anyway");
    }
}

/// The samply command line (after the program) that records `pid` into
/// `output` and its symbols into the sidecar.
fn record_args(pid: u32, output: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["record", "--save-only", "--unstable-presymbolicate"]
        .into_iter()
        .map(Into::into)
        .collect();
    args.extend(["--rate".into(), FREQUENCY.to_string().into()]);
    args.extend(["-o".into(), output.into()]);
    args.extend(["-p".into(), pid.to_string().into()]);
    args
}

/// The symbols sidecar samply writes next to `profile`: it replaces the
/// last extension, so `p.json` gets `p.syms.json` and `p.json.gz` gets
/// `p.json.syms.json`.
pub fn syms_path(profile: &Path) -> PathBuf {
    profile.with_extension("syms.json")
}

/// Starts `samply record` on process `pid`, writing `output` (`.json`,
/// or `.json.gz` for a gzipped profile) and [`syms_path`]`(output)`.
pub fn record(pid: u32, output: &Path) -> anyhow::Result<Recording> {
    let samply = ready()?;
    let mut command = Command::new(samply);
    command.args(record_args(pid, output));
    Recording::spawn(
        command,
        "samply record",
        vec![output.to_path_buf(), syms_path(output)],
    )
}

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
struct Profile {
    libs: Vec<Lib>,
    threads: Vec<Thread>,
    /// Newer profile versions share one string array across threads.
    #[serde(default)]
    shared: Option<Shared>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shared {
    string_array: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lib {
    debug_name: String,
    breakpad_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Thread {
    name: String,
    samples: Samples,
    stack_table: StackTable,
    frame_table: FrameTable,
    func_table: FuncTable,
    resource_table: ResourceTable,
    #[serde(default)]
    string_array: Vec<String>,
}

#[derive(Deserialize)]
struct Samples {
    stack: Vec<Option<usize>>,
    #[serde(default)]
    weight: Option<Vec<Option<i64>>>,
    /// Microseconds on the CPU since the thread's previous sample.
    #[serde(rename = "threadCPUDelta", default)]
    thread_cpu_delta: Option<Vec<Option<u64>>>,
}

/// Stacks as a tree: each is a frame plus the stack it was called from.
#[derive(Deserialize)]
struct StackTable {
    prefix: Vec<Option<usize>>,
    frame: Vec<usize>,
}

#[derive(Deserialize)]
struct FrameTable {
    /// Relative to the function's library; -1 when there is no library.
    address: Vec<i64>,
    func: Vec<usize>,
}

#[derive(Deserialize)]
struct FuncTable {
    /// Into the string array: a symbol samply knew (kernel), a label, or a
    /// `0x…` placeholder for an address it left to symbolicate later.
    name: Vec<usize>,
    resource: Vec<Option<i64>>,
}

#[derive(Deserialize)]
struct ResourceTable {
    /// Into the profile's `libs`.
    lib: Vec<Option<usize>>,
}

/// The `.syms.json` sidecar (samply's `symbol_precog.rs`).
#[derive(Deserialize)]
struct Syms {
    string_table: Vec<String>,
    data: Vec<LibSyms>,
}

#[derive(Deserialize)]
struct LibSyms {
    debug_name: String,
    /// `DebugId` text: `{uuid}` or `{uuid}-{age:x}`.
    debug_id: String,
    symbol_table: Vec<Symbol>,
}

#[derive(Deserialize)]
struct Symbol {
    rva: u32,
    size: Option<u32>,
    /// Into the string table; already demangled by samply (Rust names
    /// without the hash).
    symbol: usize,
}

/// One library's symbols, sorted by address.
struct SymbolMap<'a> {
    symbols: Vec<&'a Symbol>,
    names: &'a [String],
}

impl SymbolMap<'_> {
    /// The symbol with the greatest start at or below `address`, if
    /// `address` is within its size (when the size is known).
    fn lookup(&self, address: u32) -> Option<&str> {
        let index = self.symbols.partition_point(|s| s.rva <= address);
        let symbol = self.symbols.get(index.checked_sub(1)?)?;
        let inside = symbol.size.is_none_or(|size| address - symbol.rva < size);
        inside.then(|| self.names.get(symbol.symbol).map(String::as_str))?
    }
}

/// `DebugId` text (`6dbf1d1b-…-8f4c` or with `-{age}`) as the profile's
/// breakpad id (upper-case hex, age appended).
fn breakpad_id(debug_id: &str) -> String {
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
fn fold_profile(profile: &Profile, syms: &Syms) -> anyhow::Result<FoldedProfile> {
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
fn tidy(name: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `testdata/burn.rs` recorded by samply 0.13.1 with this module's
    /// command line; the numbers below were summed independently with
    /// Python over the JSON (threadCPUDelta per thread, and per function
    /// after looking each frame's address up in the sidecar by hand).
    const PROFILE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/profile/testdata/burn.samply.json"
    );
    const TOTAL_NS: u64 = 1_429_436_000; // 714 samples, all on the CPU
    const ALPHA_NS: u64 = 710_045_000; // main thread "burn"
    const BETA_NS: u64 = 638_945_000; // thread "burn-beta"
    const SLEEPER_NS: u64 = 80_446_000; // thread "sleeper"
    const GAMMA_NS: u64 = 75_038_000; // its work, the rest is sleep() and the clock

    fn cost(profile: &FoldedProfile, name: &str) -> (u64, u64) {
        let functions = profile.functions();
        let cost = functions.iter().find(|c| c.name == name);
        let cost = cost.unwrap_or_else(|| panic!("no {name} in {:#?}", profile.lines()));
        (cost.self_samples, cost.total_samples)
    }

    #[test]
    fn a_missing_samply_says_how_to_install_it() {
        let error = check_program("samply-not-installed-here")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("samply-not-installed-here not found"),
            "{error}"
        );
        assert!(error.contains("`cargo install --locked samply`"), "{error}");
    }

    #[test]
    fn a_strict_paranoid_level_is_refused_with_the_command_to_run() {
        let Paranoia::Refused(message) = paranoia(Some(2), false) else {
            panic!("a non-root user may not record at level 2");
        };
        assert!(
            message.contains("kernel.perf_event_paranoid is 2"),
            "{message}"
        );
        assert!(
            message.contains("`sudo sysctl -w kernel.perf_event_paranoid=1`"),
            "{message}"
        );
        assert!(matches!(paranoia(Some(4), false), Paranoia::Refused(_)));
    }

    #[test]
    fn root_lowers_a_strict_level_and_a_lax_one_is_left_alone() {
        assert_eq!(paranoia(Some(2), true), Paranoia::Lower);
        assert_eq!(paranoia(Some(1), false), Paranoia::Allowed);
        assert_eq!(paranoia(Some(-1), false), Paranoia::Allowed);
        assert_eq!(paranoia(Some(1), true), Paranoia::Allowed);
        // unreadable: samply reports its own error
        assert_eq!(paranoia(None, false), Paranoia::Allowed);
    }

    #[test]
    fn the_command_line_saves_presymbolicated_at_perfs_rate() {
        let args = record_args(4242, Path::new("out/engine.json"));
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args.join(" "),
            "record --save-only --unstable-presymbolicate --rate 499 -o out/engine.json -p 4242"
        );
    }

    #[test]
    fn the_sidecar_is_named_as_samply_names_it() {
        assert_eq!(syms_path(Path::new("a/p.json")), Path::new("a/p.syms.json"));
        assert_eq!(
            syms_path(Path::new("p.json.gz")),
            Path::new("p.json.syms.json")
        );
    }

    #[test]
    fn debug_ids_read_as_the_profiles_breakpad_ids() {
        assert_eq!(
            breakpad_id("143e7a3f-48e2-1ae9-55e1-54e04ee15026"),
            "143E7A3F48E21AE955E154E04EE150260"
        );
        assert_eq!(
            breakpad_id("143e7a3f-48e2-1ae9-55e1-54e04ee15026-1a"),
            "143E7A3F48E21AE955E154E04EE150261A"
        );
    }

    #[test]
    fn an_address_resolves_to_the_symbol_it_falls_in() {
        let symbols = [
            Symbol {
                rva: 0x100,
                size: Some(0x10),
                symbol: 0,
            },
            Symbol {
                rva: 0x200,
                size: None,
                symbol: 1,
            },
        ];
        let names = ["first".to_string(), "second".to_string()];
        let map = SymbolMap {
            symbols: symbols.iter().collect(),
            names: &names,
        };
        assert_eq!(map.lookup(0xff), None);
        assert_eq!(map.lookup(0x100), Some("first"));
        assert_eq!(map.lookup(0x10f), Some("first"));
        assert_eq!(map.lookup(0x110), None, "past its size");
        assert_eq!(
            map.lookup(0x5000),
            Some("second"),
            "no size: up to the next"
        );
    }

    #[test]
    fn names_are_tidied_like_inferno_tidies_perfs() {
        assert_eq!(
            tidy("core::array::<impl [u8; 4]>::map"),
            "core::array::<impl [u8: 4]>::map"
        );
        assert_eq!(
            tidy("std::vector<int>::push_back(int const&)"),
            "std::vector<int>::push_back"
        );
        assert_eq!(
            tidy("(anonymous namespace)::f(int)"),
            "(anonymous namespace)::f"
        );
        assert_eq!(
            tidy("<(A, B) as T>::f::{{closure}}"),
            "<(A, B) as T>::f::{{closure}}"
        );
    }

    #[test]
    fn a_recorded_profile_folds_into_cpu_time_per_stack() {
        let profile = fold(Path::new(PROFILE)).unwrap();
        assert_eq!(profile.total_samples(), TOTAL_NS);
        assert_eq!(cost(&profile, "burn::spin_alpha"), (ALPHA_NS, ALPHA_NS));
        assert_eq!(cost(&profile, "burn::spin_beta"), (BETA_NS, BETA_NS));
        assert_eq!(cost(&profile, "burn::spin_gamma"), (GAMMA_NS, GAMMA_NS));
        // roots are thread names, as inferno roots perf's stacks in `comm`
        assert_eq!(cost(&profile, "burn"), (0, ALPHA_NS));
        assert_eq!(cost(&profile, "burn-beta"), (0, BETA_NS));
        assert_eq!(cost(&profile, "sleeper"), (0, SLEEPER_NS));
        let main = "burn;start;_libc_start_main_alias_2;_libc_start_call_main;main;\
                    std::rt::lang_start_internal;std::rt::lang_start::{{closure}};\
                    std::sys::backtrace::__rust_begin_short_backtrace;burn::main;burn::spin_alpha";
        assert!(
            profile.lines().contains(&format!("{main} {ALPHA_NS}")),
            "{:#?}",
            profile.lines()
        );
    }

    #[test]
    fn every_frame_of_the_recording_is_symbolicated() {
        let profile = fold(Path::new(PROFILE)).unwrap();
        let unresolved: Vec<String> = profile
            .functions()
            .into_iter()
            .map(|c| c.name)
            .filter(|name| name.contains("+0x") || name.starts_with("0x"))
            .collect();
        assert!(unresolved.is_empty(), "{unresolved:?}");
    }

    #[test]
    fn frames_without_symbols_fall_back_to_library_and_address() {
        let profile: Profile = serde_json::from_slice(&std::fs::read(PROFILE).unwrap()).unwrap();
        let no_symbols = Syms {
            string_table: vec![],
            data: vec![],
        };
        let folded = fold_profile(&profile, &no_symbols).unwrap();
        assert_eq!(folded.total_samples(), TOTAL_NS);
        let leaf = |line: &String| {
            line.rsplit_once(' ')
                .unwrap()
                .0
                .rsplit(';')
                .next()
                .unwrap()
                .to_string()
        };
        let leaves: Vec<String> = folded.lines().iter().map(leaf).collect();
        let libs = ["burn", "libc.so.6", "[vdso]"];
        let in_a_lib = |leaf: &String| {
            let (lib, hex) = leaf.split_once("+0x").unwrap_or(("", ""));
            libs.contains(&lib) && u32::from_str_radix(hex, 16).is_ok()
        };
        assert!(leaves.iter().all(in_a_lib), "{leaves:?}");
        assert!(
            leaves.iter().any(|l| l.starts_with("[vdso]+0x")),
            "{leaves:?}"
        );
    }

    #[test]
    fn a_missing_sidecar_is_an_error_that_says_how_to_record_one() {
        let dir = tempfile::tempdir().unwrap();
        let alone = dir.path().join("alone.json");
        std::fs::copy(PROFILE, &alone).unwrap();
        let error = format!("{:#}", fold(&alone).unwrap_err());
        assert!(error.contains("alone.syms.json"), "{error}");
        assert!(error.contains("--unstable-presymbolicate"), "{error}");
    }

    #[test]
    fn a_gzipped_profile_folds_the_same() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("burn.json.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&std::fs::read(PROFILE).unwrap()).unwrap();
        encoder.finish().unwrap();
        std::fs::copy(syms_path(Path::new(PROFILE)), syms_path(&gz)).unwrap();
        let profile = fold(&gz).unwrap();
        assert_eq!(profile.total_samples(), TOTAL_NS);
        assert_eq!(cost(&profile, "burn::spin_beta"), (BETA_NS, BETA_NS));
    }

    /// Records a busy shell loop for real. Needs samply, and as root it
    /// sets kernel.perf_event_paranoid to 1 (see `check`), hence ignored.
    #[tokio::test]
    #[ignore = "records for real: installs samply if missing and may lower kernel.perf_event_paranoid"]
    async fn records_a_busy_process() {
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let recording = record(busy.id(), &dir.path().join("busy.json")).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let saved = recording.stop().await;
        busy.kill().unwrap();
        busy.wait().unwrap();
        let profile = fold(&saved.unwrap()).unwrap();
        // ~1 s of one busy thread, in nanoseconds
        assert!(
            profile.total_samples() > 300_000_000,
            "{:#?}",
            profile.lines()
        );
        assert!(
            profile.lines().iter().all(|l| l.starts_with("sh;")),
            "{:#?}",
            profile.lines()
        );
    }
}
