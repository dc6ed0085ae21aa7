//! A console summary as a markdown table of the busiest task names.

use std::fmt::Write as _;
use std::time::Duration;

use super::{ConsoleSummary, TaskSummary};

impl ConsoleSummary {
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
