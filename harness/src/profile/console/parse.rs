//! Reading a console-subscriber recording: its header, its JSON-lines events and their spawn fields.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

use super::summarize::Recording;
use super::ConsoleSummary;

/// The recording format version this reader understands.
const FORMAT_VERSION: u64 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    v: u64,
}

#[derive(Deserialize)]
pub(super) enum Event {
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
pub(super) struct Stamp {
    secs_since_epoch: u64,
    nanos_since_epoch: u32,
}

#[derive(Deserialize)]
pub(super) struct Field {
    name: String,
    value: serde_json::Value,
}

#[derive(Deserialize)]
pub(super) enum WakeOp {
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
    pub(super) fn at(&self) -> Duration {
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

pub(super) fn task_name(fields: &[Field]) -> String {
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
pub(super) fn field(fields: &[Field], name: &str) -> Option<String> {
    let value = &fields.iter().find(|f| f.name == name)?.value;
    Some(match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}
