//! Tests of recording, reading and folding samply profiles, on a real recording in `testdata/`.

use std::path::Path;

use super::parse::{Profile, Symbol, Syms};
use super::record::{check_program, paranoia, record_args, Paranoia};
use super::summarize::{breakpad_id, fold_profile, tidy, SymbolMap};
use super::{fold, record, syms_path};
use crate::profile::FoldedProfile;

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
