//! Tests of parsing, summarizing and rendering console recordings, on a real recording in `testdata/`.

use super::*;

/// A real, untrimmed recording of a throwaway program (tokio 1.54,
/// console-subscriber 0.5, two worker threads) that spawned named
/// tasks (a producer and a consumer on an mpsc channel, two yielding
/// workers, a 100 ms ticker dropped at shutdown, a self-waker waking
/// itself three times), one unnamed task and one unnamed
/// spawn_blocking.
const SAMPLE: &str = include_str!("../testdata/console.recording.jsonl");

fn sample() -> ConsoleSummary {
    ConsoleSummary::parse(SAMPLE).unwrap()
}

fn task<'a>(summary: &'a ConsoleSummary, name: &str) -> &'a TaskSummary {
    summary
        .tasks
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no task {name} in {:?}", summary.tasks))
}

fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

/// Expected numbers come from an independent Python pass over the file
/// (outermost Enter..Exit per Spawn..Close span id).
#[test]
fn totals_match_an_independent_count() {
    let summary = sample();
    assert_eq!(summary.duration, ns(627_429_745));
    #[rustfmt::skip]
    let expected = [
        // name, kind, tasks, polls, busy, idle, wakes, self wakes, longest poll
        ("unnamed fn console_sample::main::{{closure}}::{{closure}}", "blocking",
            1, 2, 30_175_151, 1_397_362, 0, 0, 30_169_663),
        ("producer", "task", 1, 10, 4_040_446, 171_068_179, 8, 0, 1_630_778),
        ("ticker", "task", 1, 9, 2_029_133, 624_999_538, 7, 0, 315_396),
        ("worker", "task", 2, 12, 1_764_762, 6_072_527, 8, 0, 284_822),
        ("consumer", "task", 1, 10, 191_183, 174_842_421, 8, 0, 42_914),
        ("unnamed", "task", 1, 3, 155_640, 53_396_946, 1, 0, 87_850),
        ("self-waker", "task", 1, 5, 65_488, 2_300_618, 3, 3, 34_511),
    ];
    let got: Vec<_> = summary
        .tasks
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.kind.as_str(),
                t.tasks,
                t.polls,
                t.busy.as_nanos() as u64,
                t.idle.as_nanos() as u64,
                t.wakes,
                t.self_wakes,
                t.max_poll.as_nanos() as u64,
            )
        })
        .collect();
    // Also checks the order: busiest first.
    assert_eq!(got, expected);
}

#[test]
fn nested_enters_count_one_poll_and_unclosed_tasks_idle_to_the_end() {
    // Span 7 is a task entered twice over (one poll, 100..400 ns);
    // span 99 is a resource span: entered and closed, never spawned.
    let text = r#"{"v":1}
{"Spawn":{"id":7,"at":{"secs_since_epoch":10,"nanos_since_epoch":0},"fields":[{"name":"kind","value":"task"},{"name":"task.name","value":"a|b"}]}}
{"Enter":{"id":7,"at":{"secs_since_epoch":10,"nanos_since_epoch":100}}}
{"Enter":{"id":7,"at":{"secs_since_epoch":10,"nanos_since_epoch":200}}}
{"Enter":{"id":99,"at":{"secs_since_epoch":10,"nanos_since_epoch":250}}}
{"Exit":{"id":7,"at":{"secs_since_epoch":10,"nanos_since_epoch":300}}}
{"Exit":{"id":7,"at":{"secs_since_epoch":10,"nanos_since_epoch":400}}}
{"Waker":{"id":7,"op":"Clone","at":{"secs_since_epoch":10,"nanos_since_epoch":500}}}
{"Waker":{"id":7,"op":{"Wake":{"self_wake":false}},"at":{"secs_since_epoch":10,"nanos_since_epoch":600}}}
{"Close":{"id":99,"at":{"secs_since_epoch":11,"nanos_since_epoch":0}}}
"#;
    let summary = ConsoleSummary::parse(text).unwrap();
    assert_eq!(summary.duration, Duration::from_secs(1));
    let a = task(&summary, "a|b");
    assert_eq!((a.tasks, a.polls, a.wakes, a.self_wakes), (1, 1, 1, 0));
    assert_eq!(a.busy, ns(300));
    assert_eq!(a.max_poll, ns(300));
    // Never closed: alive until the last event, one second after spawn.
    assert_eq!(a.idle, Duration::from_secs(1) - ns(300));
    assert!(summary
        .markdown(5)
        .contains("| a\\|b | task | 1 | 1 | 300 ns |"));
}

#[test]
fn a_bad_line_is_named() {
    let mut lines: Vec<&str> = SAMPLE.lines().collect();
    lines[4] = "{\"Enter\":{\"id\":\"two\"}}";
    let err = ConsoleSummary::parse(&(lines.join("\n") + "\n")).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("line 5: not a console recording event"),
        "{message}"
    );
}

#[test]
fn a_last_line_cut_short_is_ignored() {
    let cut = &SAMPLE[..SAMPLE.len() - 20];
    let summary = ConsoleSummary::parse(cut).unwrap();
    // The cut line was the ticker's Close; the rest still counts.
    assert_eq!(summary.tasks.len(), sample().tasks.len());
    assert_eq!(task(&summary, "producer"), task(&sample(), "producer"));
}

#[test]
fn an_unknown_version_or_a_missing_header_errors_clearly() {
    let newer = SAMPLE.replacen("{\"v\":1}", "{\"v\":2}", 1);
    let message = ConsoleSummary::parse(&newer).unwrap_err().to_string();
    assert!(
        message.contains("format version 2 is not supported"),
        "{message}"
    );

    let headless = SAMPLE.split_once('\n').unwrap().1;
    let message = ConsoleSummary::parse(headless).unwrap_err().to_string();
    assert!(
        message.starts_with("line 1: not a console recording header"),
        "{message}"
    );

    let message = ConsoleSummary::parse("").unwrap_err().to_string();
    assert!(message.starts_with("empty recording"), "{message}");
}

#[test]
fn markdown_lists_the_busiest_tasks() {
    let table = sample().markdown(3);
    assert!(
        table.starts_with("8 tasks under 7 names, recorded over 627.4 ms."),
        "{table}"
    );
    assert!(table.contains(
        "| task | kind | spawned | polls | busy | idle | busy % | wakes | longest poll |"
    ));
    assert!(
        table.contains("| producer | task | 1 | 10 | 4.0 ms | 171.1 ms | 2.3% | 8 | 1.6 ms |"),
        "{table}"
    );
    assert!(table.contains("| ticker |"));
    assert!(!table.contains("| worker |"), "only the top 3: {table}");
    assert!(table.contains("…and 4 more."));
    assert!(sample()
        .markdown(10)
        .contains("| self-waker | task | 1 | 5 | 65.5 µs | 2.3 ms | 2.8% | 3 (3 self) |"));
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.jsonl");
    std::fs::write(&path, SAMPLE).unwrap();
    assert_eq!(ConsoleSummary::load(&path).unwrap(), sample());

    std::fs::write(&path, "{\"v\":1}\nnot json\n").unwrap();
    let message = format!("{:#}", ConsoleSummary::load(&path).unwrap_err());
    assert!(
        message.contains("console.jsonl") && message.contains("line 2"),
        "{message}"
    );
    let missing = dir.path().join("missing.jsonl");
    let message = format!("{:#}", ConsoleSummary::load(&missing).unwrap_err());
    assert!(message.contains("missing.jsonl"), "{message}");
}
