//! Query plans from auto_explain, read back from the server's log.
//!
//! pg_stat_statements says which statements take the time; it cannot say
//! where inside a statement the time goes. auto_explain logs each
//! (sampled) statement's executed plan with actual times and buffers, and
//! with `log_nested_statements = on` the statements the `tasker` PL/pgSQL
//! functions run get their own plans. The profiling run sets, per
//! database: `session_preload_libraries = 'auto_explain'`,
//! `log_min_duration = 0`, `log_analyze`, `log_buffers`, `log_timing`,
//! `log_nested_statements`, `log_format = json` and a `sample_rate`.
//!
//! auto_explain writes only to the server log, so the caller notes the log
//! file's length before the measured tasks and reads from there after
//! ([`read_from`]). In the stderr format (`log_line_prefix = '%m [%p] '`)
//! an entry is a line ending in `duration: <ms> ms  plan:` and the JSON
//! object on the lines after it, each continuation line indented with a
//! tab. A nested statement's "Query Text" is its text as written in the
//! function (PL/pgSQL variables by name, an `INTO` clause left out) and
//! its entry is followed by a `CONTEXT:` line naming the function, which
//! is not used here. Entries in the text format are not JSON and are
//! skipped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::one_line;

/// One auto_explain entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The statement's execution time, ms, as logged.
    pub duration_ms: f64,
    /// "Query Text": the whole string the client sent for a top-level
    /// statement, the function's statement for a nested one.
    pub query: String,
    /// The whole JSON object auto_explain logged ("Query Text", "Plan").
    pub plan: Value,
}

/// The end of an entry's first line; what precedes it is the duration.
const PLAN_HEADER_END: &str = " ms  plan:";
/// Where the duration starts, after the line prefix and the severity.
const DURATION: &str = "duration: ";

/// The auto_explain entries in a server log's text; other lines (and
/// entries whose JSON does not parse) are skipped, so a log holding
/// everything else the server says can be given as is.
pub fn parse(log: &str) -> Vec<Plan> {
    let mut plans = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(duration_ms) = header_duration(line) else {
            continue;
        };
        let mut json = String::new();
        while let Some(body) = lines.next_if(|l| l.starts_with('\t')) {
            json.push_str(&body[1..]);
            json.push('\n');
        }
        plans.extend(entry(duration_ms, &json));
    }
    plans
}

/// The duration of an entry's first line, `None` for any other line (a
/// `duration: … ms  statement:` line from log_min_duration_statement
/// included).
fn header_duration(line: &str) -> Option<f64> {
    let head = line.strip_suffix(PLAN_HEADER_END)?;
    let start = head.rfind(DURATION)? + DURATION.len();
    head[start..]
        .parse::<f64>()
        .ok()
        .filter(|ms| ms.is_finite())
}

/// An entry from its JSON text, `None` when it does not parse or has no
/// "Query Text" to group it by (a truncated or garbled entry).
fn entry(duration_ms: f64, json: &str) -> Option<Plan> {
    let plan: Value = serde_json::from_str(json).ok()?;
    let query = plan.get("Query Text")?.as_str()?.to_owned();
    Some(Plan {
        duration_ms,
        query,
        plan,
    })
}

/// The log's text from byte `offset` on (what the server wrote since the
/// caller noted the file's length), lossily decoded: the log holds
/// whatever bytes clients sent, so an invalid one should not lose the
/// rest.
pub fn read_from(path: &Path, offset: u64) -> anyhow::Result<String> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read()
        .with_context(|| format!("reading server log {} from byte {offset}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Plans grouped by statement (query text on one line, whitespace
/// collapsed), the most total time first: a sample's worth of plans per
/// statement, its typical and worst cost, and the worst plan to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// The statement's text on one line.
    pub query: String,
    /// Plans logged for it.
    pub plans: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
    /// Summed over the statement's plans, from the top plan node's
    /// "Shared Hit Blocks" (the node's count includes its children's).
    pub shared_hit: i64,
    /// Summed like `shared_hit`, from "Shared Read Blocks".
    pub shared_read: i64,
    /// The slowest plan's top "Node Type" (e.g. "Result", "Function
    /// Scan", "ModifyTable (Update)" with its "Operation").
    pub top_node: String,
    /// The slowest plan's whole JSON object.
    pub slowest: Value,
}

/// Groups `plans` by statement, the most total time first (ties by text,
/// so the order does not depend on hashing).
pub fn summarize(plans: &[Plan]) -> Vec<PlanSummary> {
    let mut groups: HashMap<String, Vec<&Plan>> = HashMap::new();
    for plan in plans {
        groups.entry(collapse(&plan.query)).or_default().push(plan);
    }
    let mut totals: Vec<(f64, PlanSummary)> = groups
        .into_iter()
        .filter_map(|(query, plans)| summary(query, &plans))
        .collect();
    totals.sort_by(|(x, a), (y, b)| y.total_cmp(x).then_with(|| a.query.cmp(&b.query)));
    totals.into_iter().map(|(_, s)| s).collect()
}

/// A statement's text with its whitespace collapsed: the grouping key.
fn collapse(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One statement's total ms and summary, `None` for no plans.
fn summary(query: String, plans: &[&Plan]) -> Option<(f64, PlanSummary)> {
    let slowest = plans
        .iter()
        .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))?;
    let total: f64 = plans.iter().map(|p| p.duration_ms).sum();
    let summary = PlanSummary {
        query,
        plans: plans.len() as u64,
        mean_ms: total / plans.len() as f64,
        max_ms: slowest.duration_ms,
        shared_hit: plans
            .iter()
            .map(|p| top_blocks(p, "Shared Hit Blocks"))
            .sum(),
        shared_read: plans
            .iter()
            .map(|p| top_blocks(p, "Shared Read Blocks"))
            .sum(),
        top_node: top_node(&slowest.plan),
        slowest: slowest.plan.clone(),
    };
    Some((total, summary))
}

/// A block count of the plan's top node, 0 when not logged (buffers off).
fn top_blocks(plan: &Plan, key: &str) -> i64 {
    plan.plan["Plan"][key].as_i64().unwrap_or(0)
}

/// The top node's type, with its "Operation" when it has one (a
/// ModifyTable's Insert, Update or Delete), "?" when missing.
fn top_node(plan: &Value) -> String {
    let node = &plan["Plan"];
    let node_type = node["Node Type"].as_str().unwrap_or("?");
    match node["Operation"].as_str() {
        Some(operation) => format!("{node_type} ({operation})"),
        None => node_type.to_owned(),
    }
}

/// Shared blocks hit and read a plan, for the table and the headings.
fn blocks_a_plan(s: &PlanSummary) -> (f64, f64) {
    let plans = s.plans.max(1) as f64;
    (s.shared_hit as f64 / plans, s.shared_read as f64 / plans)
}

/// Markdown table of the `top` summaries: statement (cut to 70
/// characters, `|` escaped), plans logged, mean ms, max ms, slowest
/// plan's top node, shared blocks hit / read a plan.
pub fn markdown(summaries: &[PlanSummary], top: usize) -> String {
    let mut md = String::from(
        "| statement | plans | mean ms | max ms | top node | shared blocks hit / read a plan |\n\
         |---|---:|---:|---:|---|---:|\n",
    );
    for s in summaries.iter().take(top) {
        let (hit, read) = blocks_a_plan(s);
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.3} | {:.3} | {} | {:.1} / {:.1} |",
            one_line(&s.query, 70).replace('|', "\\|"),
            s.plans,
            s.mean_ms,
            s.max_ms,
            s.top_node,
            hit,
            read,
        );
    }
    md
}

/// A JSON value serialized with a plan's keys in reading order, as
/// EXPLAIN prints them: "Query Text", "Node Type" and "Operation" first,
/// the "Plan" and its child "Plans" last, the rest alphabetically between
/// (serde_json's objects here are sorted by key, so "Plans" would
/// otherwise land amid a node's figures).
struct ReadingOrder<'a>(&'a Value);

impl Serialize for ReadingOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by_key(|(key, _)| key_rank(key));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &ReadingOrder(value))?;
                }
                out.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(ReadingOrder)),
            other => other.serialize(serializer),
        }
    }
}

/// Where a key goes in [`ReadingOrder`] (a stable sort keeps the rest in
/// the map's order).
fn key_rank(key: &str) -> u8 {
    match key {
        "Query Text" | "Node Type" => 0,
        "Operation" => 1,
        "Plan" | "Plans" => 3,
        _ => 2,
    }
}

/// A markdown file with, per statement (most total time first), a heading
/// line with its one-line text and figures, then its slowest plan as
/// pretty-printed JSON in a ```json block: the plans to read after the
/// table. Returns nothing; errors name the path.
pub fn write(summaries: &[PlanSummary], title: &str, path: &Path) -> anyhow::Result<()> {
    let mut md = format!("# {title}\n");
    for s in summaries {
        let json = serde_json::to_string_pretty(&ReadingOrder(&s.slowest))
            .with_context(|| format!("plan of `{}` for {}", s.query, path.display()))?;
        let (hit, read) = blocks_a_plan(s);
        let _ = write!(
            md,
            "\n## `{}`: {} plans, mean {:.3} ms, max {:.3} ms, {}, \
             shared blocks {:.1} hit / {:.1} read a plan\n\n```json\n{json}\n```\n",
            s.query, s.plans, s.mean_ms, s.max_ms, s.top_node, hit, read,
        );
    }
    std::fs::write(path, md).with_context(|| format!("writing plans to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real PostgreSQL 15.18 log: startup lines, then auto_explain (json,
    /// analyze, buffers, nested, sample rate 1) for two calls of a
    /// PL/pgSQL claim function (a nested UPDATE … RETURNING and INSERT
    /// each) and a plain SELECT, then a checkpoint's lines.
    const SAMPLE: &str = include_str!("../testdata/auto_explain.log");

    const UPDATE: &str = "UPDATE tasker.steps SET state = 'claimed', claimed_by = p_worker\n     \
                          WHERE id = p_step AND state = 'pending'\n    RETURNING id";
    const INSERT: &str =
        "INSERT INTO tasker.transitions (step_id, to_state) VALUES (v_id, 'claimed')";

    #[test]
    fn every_plan_entry_is_parsed_and_other_lines_skipped() {
        let plans = parse(SAMPLE);
        assert_eq!(SAMPLE.matches("  plan:\n").count(), 7);
        assert!(SAMPLE.contains("database system is ready"));
        assert!(SAMPLE.contains("checkpoint complete"));
        let durations: Vec<f64> = plans.iter().map(|p| p.duration_ms).collect();
        assert_eq!(durations, [0.035, 0.118, 1.013, 0.026, 0.005, 0.208, 0.014]);
        assert_eq!(plans[2].plan["Plan"]["Shared Hit Blocks"], 167);
    }

    #[test]
    fn nested_statements_have_their_own_text() {
        let plans = parse(SAMPLE);
        let queries: Vec<&str> = plans.iter().map(|p| p.query.as_str()).collect();
        assert_eq!(
            queries,
            [
                UPDATE,
                INSERT,
                "SELECT tasker.claim_step('worker-1', 1);",
                UPDATE,
                INSERT,
                "SELECT tasker.claim_step('worker-2', 2);",
                "SELECT state, claimed_by FROM tasker.steps WHERE id = 2;",
            ]
        );
        assert_eq!(plans[0].plan["Plan"]["Operation"], "Update");
        assert_eq!(plans[0].plan["Query Text"], UPDATE);
    }

    #[test]
    fn statements_are_grouped_most_total_time_first() {
        let summaries = summarize(&parse(SAMPLE));
        let order: Vec<(&str, u64)> = summaries
            .iter()
            .map(|s| (s.query.as_str(), s.plans))
            .collect();
        assert_eq!(
            order,
            [
                ("SELECT tasker.claim_step('worker-1', 1);", 1),
                ("SELECT tasker.claim_step('worker-2', 2);", 1),
                (INSERT, 2),
                (
                    "UPDATE tasker.steps SET state = 'claimed', claimed_by = p_worker \
                     WHERE id = p_step AND state = 'pending' RETURNING id",
                    2
                ),
                (
                    "SELECT state, claimed_by FROM tasker.steps WHERE id = 2;",
                    1
                ),
            ]
        );
        let update = &summaries[3];
        assert!((update.mean_ms - 0.0305).abs() < 1e-9, "{}", update.mean_ms);
        assert_eq!(
            (update.max_ms, update.shared_hit, update.shared_read),
            (0.035, 8, 0)
        );
        assert_eq!(update.top_node, "ModifyTable (Update)");
        // The slowest of the two: the first call's, 0.032 ms in the node.
        assert_eq!(update.slowest["Plan"]["Actual Total Time"], 0.032);
        assert_eq!(summaries[0].top_node, "Result");
        assert_eq!(summaries[4].top_node, "Index Scan");
    }

    #[test]
    fn the_table_has_a_row_a_statement() {
        let summaries = summarize(&parse(SAMPLE));
        let md = markdown(&summaries, 10);
        let row = |needle: &str| md.lines().find(|l| l.contains(needle)).map(str::to_owned);
        assert_eq!(
            row("UPDATE").as_deref(),
            Some(
                "| `UPDATE tasker.steps SET state = 'claimed', claimed_by = p_worker WHERE…` \
                 | 2 | 0.030 | 0.035 | ModifyTable (Update) | 4.0 / 0.0 |"
            )
        );
        assert_eq!(
            row("worker-1").as_deref(),
            Some("| `SELECT tasker.claim_step('worker-1', 1);` | 1 | 1.013 | 1.013 | Result | 167.0 / 2.0 |")
        );
        assert_eq!(md.lines().count(), 2 + 5);
        assert_eq!(markdown(&summaries, 2).lines().count(), 2 + 2);
    }

    #[test]
    fn a_pipe_in_a_statement_does_not_split_the_row() {
        let plan = Plan {
            duration_ms: 1.0,
            query: "SELECT 'a' || 'b'".into(),
            plan: serde_json::json!({"Plan": {"Node Type": "Result"}}),
        };
        let md = markdown(&summarize(&[plan]), 1);
        assert!(
            md.contains("| `SELECT 'a' \\|\\| 'b'` | 1 | 1.000 | 1.000 | Result | 0.0 / 0.0 |"),
            "{md}"
        );
    }

    #[test]
    fn the_file_has_each_statement_and_its_slowest_plan() {
        let summaries = summarize(&parse(SAMPLE));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.md");
        write(&summaries, "claim plans", &path).unwrap();
        let md = std::fs::read_to_string(&path).unwrap();
        assert!(md.starts_with("# claim plans\n"), "{md}");
        assert_eq!(md.matches("\n## `").count(), 5);
        assert_eq!(md.matches("```json\n").count(), 5);
        assert!(md.contains(
            "\n## `SELECT tasker.claim_step('worker-1', 1);`: 1 plans, mean 1.013 ms, \
             max 1.013 ms, Result, shared blocks 167.0 hit / 2.0 read a plan\n\n```json\n{\n  \
             \"Query Text\": \"SELECT tasker.claim_step('worker-1', 1);\",\n  \
             \"Plan\": {\n    \"Node Type\": \"Result\",\n    \"Actual Loops\": 1,\n"
        ));
        // A node's children come after its own figures.
        let update = md.split("\n## `UPDATE").nth(1).unwrap();
        let (figures, children) = update.split_once("\"Plans\": [").unwrap();
        assert!(figures.contains("\"Operation\": \"Update\""), "{update}");
        assert!(figures.contains("\"Shared Hit Blocks\": 4,"), "{update}");
        assert!(
            children.contains("\"Node Type\": \"Index Scan\""),
            "{update}"
        );
        // The first block is the slowest plan of the first statement.
        let block = md
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .unwrap();
        let plan: Value = serde_json::from_str(block).unwrap();
        assert_eq!(plan, summaries[0].slowest);

        let missing = dir.path().join("no/such/dir/plans.md");
        let err = write(&summaries, "x", &missing).unwrap_err();
        assert!(
            format!("{err:#}").contains("no/such/dir/plans.md"),
            "{err:#}"
        );
    }

    #[test]
    fn a_cut_entry_is_skipped_and_the_next_is_kept() {
        // The INSERT entry (0.118 ms) cut after 10 of its JSON lines.
        let mut lines: Vec<&str> = SAMPLE.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.ends_with("duration: 0.118 ms  plan:"))
            .unwrap();
        let body_end = (header + 1..lines.len())
            .find(|&i| !lines[i].starts_with('\t'))
            .unwrap();
        lines.drain(header + 11..body_end);
        let cut = lines.join("\n");
        let durations: Vec<f64> = parse(&cut).iter().map(|p| p.duration_ms).collect();
        assert_eq!(durations, [0.035, 1.013, 0.026, 0.005, 0.208, 0.014]);

        // A garbled line inside the first entry's object.
        let garbled = SAMPLE.replacen("\t  \"Plan\": {\n", "\t  \"Plan\": {{\n", 1);
        assert_eq!(parse(&garbled).len(), 6);
        assert_eq!(parse(&garbled)[0].duration_ms, 0.118);
    }

    #[test]
    fn only_plan_lines_start_an_entry() {
        let log =
            "2026-12-04 15:22:00.884 UTC [3297] LOG:  duration: 0.500 ms  statement: SELECT 1\n\
                   2026-12-04 15:22:00.884 UTC [3297] LOG:  duration: x ms  plan:\n\
                   \t{\"Query Text\": \"SELECT 1\", \"Plan\": {}}\n\
                   2026-12-04 15:22:00.885 UTC [3297] LOG:  duration: 0.250 ms  plan:\n\
                   \t{\"Plan\": {}}\n\
                   2026-12-04 15:22:00.886 UTC [3297] LOG:  duration: 0.125 ms  plan:\n\
                   \t{\"Query Text\": \"SELECT 2\", \"Plan\": {}}\n";
        let plans = parse(log);
        assert_eq!(plans.len(), 1, "{plans:?}");
        assert_eq!(
            (plans[0].duration_ms, plans[0].query.as_str()),
            (0.125, "SELECT 2")
        );
    }

    #[test]
    fn reading_from_an_offset_gives_only_the_later_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        std::fs::write(&path, SAMPLE).unwrap();
        // Noted before the second call.
        let offset = SAMPLE
            .find("2026-12-04 15:22:00.885 UTC [3297] LOG:  duration: 0.026")
            .unwrap();
        let later = read_from(&path, offset as u64).unwrap();
        assert_eq!(later, SAMPLE[offset..]);
        let durations: Vec<f64> = parse(&later).iter().map(|p| p.duration_ms).collect();
        assert_eq!(durations, [0.026, 0.005, 0.208, 0.014]);
        assert_eq!(read_from(&path, 0).unwrap(), SAMPLE);
        assert_eq!(read_from(&path, SAMPLE.len() as u64 + 10).unwrap(), "");

        std::fs::write(&path, b"bad \xff byte\n").unwrap();
        assert_eq!(read_from(&path, 0).unwrap(), "bad \u{fffd} byte\n");
        let err = read_from(&dir.path().join("gone.log"), 0).unwrap_err();
        assert!(format!("{err:#}").contains("gone.log"), "{err:#}");
    }
}
