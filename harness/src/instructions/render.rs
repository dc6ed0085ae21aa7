//! A comparison as markdown: a headline and a table of the verdicts.

use super::summarize::{any_failure, InstructionCounts, Status, Verdict};

/// A headline and a table of the verdicts.
pub fn render_markdown(
    baseline: &InstructionCounts,
    current: &InstructionCounts,
    verdicts: &[Verdict],
    tolerance_pct: f64,
) -> String {
    let headline = match baseline.incomparable(current) {
        Some(reason) => format!(
            "**Instruction counts: informative only** ({reason}): changes are shown, none fails."
        ),
        None if any_failure(verdicts) => {
            let regressed: Vec<&str> = verdicts
                .iter()
                .filter(|v| v.is_failure())
                .map(|v| v.workload.as_str())
                .collect();
            format!(
                "**Instruction counts: regressed** ({}; tolerance ±{tolerance_pct}%).",
                regressed.join(", ")
            )
        }
        None => format!("**Instruction counts: passed** (tolerance ±{tolerance_pct}%)."),
    };
    let mut lines = vec![
        headline,
        String::new(),
        format!(
            "Instructions per iteration (callgrind). Baseline: {}, profile `{}`, n = {}. Current: {}, profile `{}`, n = {}.",
            baseline.rustc,
            baseline.profile,
            baseline.iterations,
            current.rustc,
            current.profile,
            current.iterations
        ),
        String::new(),
        "| workload | baseline | current | change | verdict |".to_string(),
        "|---|---:|---:|---:|---|".to_string(),
    ];
    for v in verdicts {
        let count = |c: Option<u64>| c.map_or("—".to_string(), group_thousands);
        let change = v
            .change_pct
            .map_or("—".to_string(), |c| format!("{c:+.2}%"));
        let verdict = match (&v.informative, v.status) {
            (Some(_), Status::Regressed | Status::Improved) => {
                format!("{} (informative)", v.status.label())
            }
            _ => v.status.label().to_string(),
        };
        lines.push(format!(
            "| {} | {} | {} | {change} | {verdict} |",
            v.workload,
            count(v.baseline),
            count(v.current)
        ));
    }
    lines.join("\n")
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
