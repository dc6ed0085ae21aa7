//! Summaries of tokio-console's headless recordings: the JSON-lines file
//! console-subscriber (0.5) writes to `TOKIO_CONSOLE_RECORD_PATH`. A live
//! console needs a person watching a terminal while the run happens; the
//! recording lets a run be profiled unattended and turned afterwards into a
//! per-task table of polls, busy and idle time and wakes, which shows which
//! tasks hog the runtime and which mostly wait.
//!
//! The format, as console-subscriber writes it: a header line `{"v":1}`,
//! then one externally tagged event per line, each with an `at` wall-clock
//! stamp (`{"secs_since_epoch":..,"nanos_since_epoch":..}`):
//!
//! - `Spawn {id, at, fields}`: a task span is created. `fields` carries
//!   `kind`, `task.name` (empty when unnamed), `task.id`, `size.bytes` and,
//!   for blocking tasks, `fn`. The spawn location is not recorded.
//! - `Enter`/`Exit {id, at}`: a span is entered or left. Task spans, but
//!   also resource and async-op spans (timers, channels), whose ids never
//!   appear in a `Spawn`; those are ignored here.
//! - `Close {id, at}`: any span closes, task or not.
//! - `Waker {id, op, at}`: a waker op on a task, `op` being `"Clone"`,
//!   `"Drop"`, `{"Wake":{"self_wake":b}}` or `{"WakeByRef":{"self_wake":b}}`.
//!
//! `id` is the tracing span id, not tokio's task id (that is the
//! `task.id` field); the span registry may reuse an id once its span has
//! closed, so a task lives from its `Spawn` to its `Close`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

/// The recording format version this reader understands.
const FORMAT_VERSION: u64 = 1;

/// All tasks spawned under one name (and kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    /// `task.name`, or `unnamed` (`unnamed fn <closure type>` for blocking
    /// tasks): the recording has no spawn location to tell unnamed tasks
    /// apart.
    pub name: String,
    /// `task`, `local`, `blocking` or `block_on`.
    pub kind: String,
    /// Tasks spawned under this name.
    pub tasks: u64,
    /// Outermost enters of the tasks' spans. Like tokio-console, this also
    /// counts the enter tracing makes to drop a task's future.
    pub polls: u64,
    /// Time spent inside polls.
    pub busy: Duration,
    /// Lifetime (spawn to close, or to the end of the recording for a task
    /// still alive then) minus busy.
    pub idle: Duration,
    /// `Wake` and `WakeByRef` ops; clones and drops of wakers are not wakes.
    pub wakes: u64,
    /// Wakes made from inside the task's own poll.
    pub self_wakes: u64,
    /// The longest single poll.
    pub max_poll: Duration,
}

/// A whole recording, summarized per task name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSummary {
    /// From the earliest to the latest event of any kind.
    pub duration: Duration,
    /// Sorted by busy time, busiest first.
    pub tasks: Vec<TaskSummary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    v: u64,
}

#[derive(Deserialize)]
enum Event {
    Spawn {
        id: u64,
        at: Stamp,
        fields: Vec<Field>,
    },
    Enter {
        id: u64,
        at: Stamp,
    },
    Exit {
        id: u64,
        at: Stamp,
    },
    Close {
        id: u64,
        at: Stamp,
    },
    Waker {
        id: u64,
        op: WakeOp,
        at: Stamp,
    },
}

/// `std::time::SystemTime` as serde writes it.
#[derive(Deserialize, Clone, Copy)]
struct Stamp {
    secs_since_epoch: u64,
    nanos_since_epoch: u32,
}

#[derive(Deserialize)]
struct Field {
    name: String,
    value: serde_json::Value,
}

#[derive(Deserialize)]
enum WakeOp {
    Wake { self_wake: bool },
    WakeByRef { self_wake: bool },
    Clone,
    Drop,
}

impl Stamp {
    fn since_epoch(self) -> Duration {
        Duration::new(self.secs_since_epoch, self.nanos_since_epoch)
    }
}

impl Event {
    fn at(&self) -> Duration {
        match self {
            Event::Spawn { at, .. }
            | Event::Enter { at, .. }
            | Event::Exit { at, .. }
            | Event::Close { at, .. }
            | Event::Waker { at, .. } => at.since_epoch(),
        }
    }
}

impl ConsoleSummary {
    /// Parses a recording. Errors name the line and what is wrong with it.
    /// A last line cut short (no newline, not valid JSON) is ignored: that
    /// is what a process killed while the recorder was writing leaves.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text.lines().enumerate();
        let (_, header) = lines
            .next()
            .ok_or_else(|| anyhow!("empty recording: no {{\"v\":{FORMAT_VERSION}}} header"))?;
        check_header(header)?;
        let cut_short = !text.ends_with('\n');
        let last_index = text.lines().count() - 1;
        let mut recording = Recording::default();
        for (index, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Event>(line) {
                Ok(event) => recording.apply(event),
                Err(_) if cut_short && index == last_index => break,
                Err(e) => bail!("line {}: not a console recording event: {e}", index + 1),
            }
        }
        Ok(recording.finish())
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading console recording {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in console recording {}", path.display()))
    }

    /// A markdown table of the `top` busiest task names.
    pub fn markdown(&self, top: usize) -> String {
        let spawned: u64 = self.tasks.iter().map(|t| t.tasks).sum();
        let mut out = format!(
            "{spawned} tasks under {} names, recorded over {}.\n\n",
            self.tasks.len(),
            human(self.duration)
        );
        out.push_str(
            "| task | kind | spawned | polls | busy | idle | busy % | wakes | longest poll |\n",
        );
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for task in self.tasks.iter().take(top) {
            out.push_str(&task.markdown_row());
        }
        if self.tasks.len() > top {
            let _ = writeln!(out, "\n…and {} more.", self.tasks.len() - top);
        }
        out
    }
}

impl TaskSummary {
    fn markdown_row(&self) -> String {
        let wakes = if self.self_wakes > 0 {
            format!("{} ({} self)", self.wakes, self.self_wakes)
        } else {
            self.wakes.to_string()
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            self.name.replace('|', "\\|"),
            self.kind,
            self.tasks,
            self.polls,
            human(self.busy),
            human(self.idle),
            self.busy_percent(),
            wakes,
            human(self.max_poll),
        )
    }

    /// Busy time as a share of the tasks' lifetime.
    fn busy_percent(&self) -> String {
        let lifetime = self.busy + self.idle;
        if lifetime.is_zero() {
            return "-".to_string();
        }
        format!(
            "{:.1}%",
            100.0 * self.busy.as_secs_f64() / lifetime.as_secs_f64()
        )
    }

    /// Folds another task of the same name into this one.
    fn absorb(&mut self, other: TaskSummary) {
        self.tasks += other.tasks;
        self.polls += other.polls;
        self.busy += other.busy;
        self.idle += other.idle;
        self.wakes += other.wakes;
        self.self_wakes += other.self_wakes;
        self.max_poll = self.max_poll.max(other.max_poll);
    }
}

fn check_header(line: &str) -> anyhow::Result<()> {
    let header: Header = serde_json::from_str(line).map_err(|e| {
        anyhow!("line 1: not a console recording header {{\"v\":{FORMAT_VERSION}}}: {e}")
    })?;
    if header.v != FORMAT_VERSION {
        bail!(
            "console recording format version {} is not supported (only version {FORMAT_VERSION})",
            header.v
        );
    }
    Ok(())
}

/// The state of a recording being read.
#[derive(Default)]
struct Recording {
    /// Tasks spawned and not yet closed, by span id.
    live: HashMap<u64, LiveTask>,
    /// Finished tasks, by name and kind.
    groups: HashMap<(String, String), TaskSummary>,
    first: Option<Duration>,
    last: Option<Duration>,
}

/// One task from its spawn on.
struct LiveTask {
    summary: TaskSummary,
    spawned: Duration,
    /// How many enters of its span are not exited yet: a span can be
    /// entered again while already entered, and only the outermost
    /// enter/exit pair is a poll.
    depth: u32,
    poll_started: Duration,
}

impl Recording {
    fn apply(&mut self, event: Event) {
        let at = event.at();
        // Events from different threads may be written slightly out of
        // order, so track the extremes rather than the first and last line.
        self.first = Some(self.first.map_or(at, |t| t.min(at)));
        self.last = Some(self.last.map_or(at, |t| t.max(at)));
        match event {
            Event::Spawn { id, fields, .. } => {
                // A task's span id is only reused after its Close; should a
                // Close be missing, the old task still counts.
                if let Some(old) = self.live.insert(id, LiveTask::new(&fields, at)) {
                    self.retire(old, at);
                }
            }
            Event::Close { id, .. } => {
                if let Some(task) = self.live.remove(&id) {
                    self.retire(task, at);
                }
            }
            // Ids not live are resource and async-op spans: not tasks.
            Event::Enter { id, .. } => self.with(id, |task| task.enter(at)),
            Event::Exit { id, .. } => self.with(id, |task| task.exit(at)),
            Event::Waker { id, op, .. } => self.with(id, |task| task.wake(op)),
        }
    }

    fn with(&mut self, id: u64, f: impl FnOnce(&mut LiveTask)) {
        if let Some(task) = self.live.get_mut(&id) {
            f(task);
        }
    }

    fn retire(&mut self, task: LiveTask, at: Duration) {
        let summary = task.finish(at);
        let key = (summary.name.clone(), summary.kind.clone());
        match self.groups.get_mut(&key) {
            Some(group) => group.absorb(summary),
            None => {
                self.groups.insert(key, summary);
            }
        }
    }

    fn finish(mut self) -> ConsoleSummary {
        let end = self.last.unwrap_or_default();
        let still_alive: Vec<LiveTask> = self.live.drain().map(|(_, task)| task).collect();
        for task in still_alive {
            self.retire(task, end);
        }
        let mut tasks: Vec<TaskSummary> = self.groups.into_values().collect();
        tasks.sort_by(|a, b| (b.busy, &a.name, &a.kind).cmp(&(a.busy, &b.name, &b.kind)));
        ConsoleSummary {
            duration: end.saturating_sub(self.first.unwrap_or_default()),
            tasks,
        }
    }
}

impl LiveTask {
    fn new(fields: &[Field], at: Duration) -> Self {
        let kind = field(fields, "kind").unwrap_or_else(|| "task".to_string());
        LiveTask {
            summary: TaskSummary {
                name: task_name(fields),
                kind,
                tasks: 1,
                polls: 0,
                busy: Duration::ZERO,
                idle: Duration::ZERO,
                wakes: 0,
                self_wakes: 0,
                max_poll: Duration::ZERO,
            },
            spawned: at,
            depth: 0,
            poll_started: at,
        }
    }

    fn enter(&mut self, at: Duration) {
        if self.depth == 0 {
            self.summary.polls += 1;
            self.poll_started = at;
        }
        self.depth += 1;
    }

    fn exit(&mut self, at: Duration) {
        match self.depth {
            // An exit without its enter has no poll to end.
            0 => {}
            1 => {
                self.depth = 0;
                self.end_poll(at);
            }
            _ => self.depth -= 1,
        }
    }

    fn end_poll(&mut self, at: Duration) {
        let poll = at.saturating_sub(self.poll_started);
        self.summary.busy += poll;
        self.summary.max_poll = self.summary.max_poll.max(poll);
    }

    fn wake(&mut self, op: WakeOp) {
        let self_wake = match op {
            WakeOp::Wake { self_wake } | WakeOp::WakeByRef { self_wake } => self_wake,
            WakeOp::Clone | WakeOp::Drop => return,
        };
        self.summary.wakes += 1;
        self.summary.self_wakes += u64::from(self_wake);
    }

    /// The task's summary once it closed (or the recording ended) at `at`;
    /// a poll still open then counts as busy up to `at`.
    fn finish(mut self, at: Duration) -> TaskSummary {
        if self.depth > 0 {
            self.end_poll(at);
        }
        let lifetime = at.saturating_sub(self.spawned);
        self.summary.idle = lifetime.saturating_sub(self.summary.busy);
        self.summary
    }
}

fn task_name(fields: &[Field]) -> String {
    match field(fields, "task.name") {
        Some(name) if !name.is_empty() => name,
        // Blocking tasks at least say which closure they run.
        _ => match field(fields, "fn") {
            Some(function) => format!("unnamed fn {function}"),
            None => "unnamed".to_string(),
        },
    }
}

/// A spawn field's value as text (strings without their JSON quotes).
fn field(fields: &[Field], name: &str) -> Option<String> {
    let value = &fields.iter().find(|f| f.name == name)?.value;
    Some(match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A duration to three or so significant digits.
fn human(d: Duration) -> String {
    let nanos = d.as_nanos();
    match nanos {
        0..=999 => format!("{nanos} ns"),
        1_000..=999_999 => format!("{:.1} µs", nanos as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} ms", nanos as f64 / 1e6),
        _ => format!("{:.2} s", d.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real, untrimmed recording of a throwaway program (tokio 1.54,
    /// console-subscriber 0.5, two worker threads) that spawned named
    /// tasks (a producer and a consumer on an mpsc channel, two yielding
    /// workers, a 100 ms ticker dropped at shutdown, a self-waker waking
    /// itself three times), one unnamed task and one unnamed
    /// spawn_blocking.
    const SAMPLE: &str = include_str!("testdata/console.recording.jsonl");

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
}
