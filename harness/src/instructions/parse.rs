//! Reading the tools' output: callgrind's instruction total, and the bench executable in cargo's JSON messages.

use std::path::PathBuf;

use anyhow::Context;

/// The total `Ir` (instructions executed) of a callgrind output file: its
/// `totals:` line, or the `summary:` line when there is no `totals:`.
/// The event's position comes from the `events:` line.
pub fn parse_callgrind_total(text: &str) -> anyhow::Result<u64> {
    let mut events: Option<Vec<&str>> = None;
    let mut summary: Option<&str> = None;
    let mut totals: Option<&str> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("events:") {
            events = Some(rest.split_whitespace().collect());
        } else if let Some(rest) = line.strip_prefix("summary:") {
            summary = Some(rest);
        } else if let Some(rest) = line.strip_prefix("totals:") {
            totals = Some(rest);
        }
    }
    let events = events.context("no `events:` line: not a callgrind output file")?;
    let index = events
        .iter()
        .position(|e| *e == "Ir")
        .with_context(|| format!("callgrind counted {events:?}, not Ir"))?;
    let line = totals
        .or(summary)
        .context("no `totals:` or `summary:` line (did the program finish?)")?;
    let value = line
        .split_whitespace()
        .nth(index)
        .with_context(|| format!("`{}` has no Ir column", line.trim()))?;
    value
        .parse()
        .with_context(|| format!("Ir total {value:?} is not a number"))
}

/// The `instructions` bench executable in cargo's JSON messages.
pub fn bench_executable(cargo_json: &str) -> anyhow::Result<PathBuf> {
    cargo_json
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "instructions")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no executable for the `instructions` bench")
}
