//! A recording's events folded into per-task summaries: polls, busy and idle time and wakes, by task name.

use std::collections::HashMap;
use std::time::Duration;

use super::parse::{field, task_name, Event, Field, WakeOp};
use super::{ConsoleSummary, TaskSummary};

impl TaskSummary {
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

/// The state of a recording being read.
#[derive(Default)]
pub(super) struct Recording {
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
    pub(super) fn apply(&mut self, event: Event) {
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

    pub(super) fn finish(mut self) -> ConsoleSummary {
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
