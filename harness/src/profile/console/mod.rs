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

mod parse;
mod render;
mod summarize;
#[cfg(test)]
mod tests;

use std::time::Duration;

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
