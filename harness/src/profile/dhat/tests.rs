//! Tests of parsing, summarizing and rendering heap profiles, on a real profile in `testdata/`.

use super::render::{shorten, strip_generics, thousands, MAX_NAME};
use super::summarize::is_internal;
use super::*;

/// A real profile of a small program (built with dhat 0.3.3, release
/// with line tables) that grows a `Vec<u64>` to 100,000 elements, formats
/// 2,000 strings, boxes 500 `[u8; 64]` and fills a `HashMap` of 1,000
/// entries, which it leaks.
const SAMPLE: &str = include_str!("../testdata/dhat-heap.json");

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
    let long = "tasker_engine::some::deeply::nested::module::path::that::goes::on::Type::method";
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
