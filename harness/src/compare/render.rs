//! The comparison as markdown tables, for the report and the terminal.

use super::{
    CompareConfig, Comparison, CostChange, LatencyComparison, PairedOutcome, ScenarioComparison,
    ThroughputChange, Verdict,
};

/// The gate's outcome, then latency, per-step cost and throughput tables,
/// then what could not be compared.
pub fn render_markdown(comparison: &Comparison) -> String {
    let mut lines = vec![headline(comparison), String::new()];
    lines.extend(latency_section(comparison));
    lines.extend(paired_section(comparison));
    lines.extend(cost_section(comparison));
    lines.extend(throughput_section(comparison));
    lines.extend(not_compared_section(comparison));
    lines.join("\n")
}

fn headline(comparison: &Comparison) -> String {
    let outcome = if comparison.passed() {
        "passed"
    } else {
        "failed"
    };
    let regressed: Vec<&str> = comparison
        .scenarios
        .iter()
        .filter(|s| s.verdict() == Verdict::Regressed)
        .map(|s| s.name.as_str())
        .collect();
    let detail = match regressed.is_empty() {
        true => format!("overall {}", comparison.overall().label()),
        false => format!("regressed: {}", regressed.join(", ")),
    };
    format!(
        "**Regression gate: {outcome}** ({detail}): `{}` against baseline `{}`, {} scenarios compared.",
        comparison.current_id,
        comparison.baseline_id,
        comparison.scenarios.len()
    )
}

fn latency_section(comparison: &Comparison) -> Vec<String> {
    let config = &comparison.config;
    let rows: Vec<String> = comparison
        .scenarios
        .iter()
        .filter_map(|s| latency_row(s, config))
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        "### Latency, tasks one at a time".to_string(),
        String::new(),
        format!(
            "| scenario | baseline P50 | current P50 | change | {:.0}% CI | p | verdict |",
            config.confidence_level * 100.0
        ),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    lines.extend(rows);
    lines.push(String::new());
    lines.push(if config.noise_threshold.is_finite() {
        format!(
            "Change of medians with its bootstrap interval; Mann-Whitney U p-value. A change counts only when p < {} \
             and the whole interval lies beyond ±{:.0}%; a regression fails the gate only when a re-run reproduces it.",
            config.significance_level,
            config.noise_threshold * 100.0
        )
    } else {
        "Change of medians with its bootstrap interval; Mann-Whitney U p-value. Shown for information only: \
         the two runs are of different machines or builds, so wall-clock figures do not decide."
            .to_string()
    });
    lines.push(String::new());
    lines
}

fn latency_row(scenario: &ScenarioComparison, config: &CompareConfig) -> Option<String> {
    let latency = scenario.latency.as_ref()?;
    Some(format!(
        "| {} | {} | {} | {} | {} | {} | {} |",
        scenario.name,
        milliseconds(latency.baseline_median_us),
        milliseconds(latency.current_median_us),
        percent(latency.relative_change),
        interval(latency),
        p_value(latency.p_value),
        latency_verdict_text(scenario, latency, config)
    ))
}

fn latency_verdict_text(
    scenario: &ScenarioComparison,
    latency: &LatencyComparison,
    config: &CompareConfig,
) -> String {
    if !config.noise_threshold.is_finite() {
        // Different machines or builds: the figures are shown, not judged.
        return "not judged (runs not comparable)".to_string();
    }
    match (latency.verdict, &scenario.confirmation) {
        (Verdict::Regressed, Some(c)) if c.confirmed => match (&c.rerun, &c.pooled) {
            (Some(rerun), Some(pooled)) => format!(
                "**regressed**, confirmed by re-run `{}` ({}, pooled {})",
                c.rerun_id,
                percent(rerun.relative_change),
                percent(pooled.relative_change)
            ),
            _ => format!("**regressed**, re-run `{}` brought no samples", c.rerun_id),
        },
        (Verdict::Regressed, Some(c)) => {
            let change = c
                .rerun
                .as_ref()
                .map(|r| percent(r.relative_change))
                .unwrap_or_default();
            format!(
                "unchanged: not reproduced by re-run `{}` ({change})",
                c.rerun_id
            )
        }
        (Verdict::Regressed, None) => "**regressed** (not confirmed by a re-run)".to_string(),
        (Verdict::Improved, _) => "improved".to_string(),
        (Verdict::Unchanged, _) if latency.significant(config) => {
            "unchanged (within noise)".to_string()
        }
        (Verdict::Unchanged, _) => "unchanged (not significant)".to_string(),
    }
}

fn paired_section(comparison: &Comparison) -> Vec<String> {
    let config = &comparison.config;
    let rows: Vec<String> = comparison
        .scenarios
        .iter()
        .filter_map(|s| Some(paired_row(&s.name, s.paired.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        "### Latency, A/B interleaved (A: baseline build, B: current build)".to_string(),
        String::new(),
        format!(
            "| scenario | pairs | A median | B median | B/A change | {:.0}% CI | p | verdict |",
            config.confidence_level * 100.0
        ),
        "|---|---|---|---|---|---|---|---|".to_string(),
    ];
    lines.extend(rows);
    lines.push(String::new());
    lines.push(format!(
        "Median over pairs of B/A − 1 with its bootstrap interval; Wilcoxon signed-rank p-value. A change counts only \
         when p < {} and the whole interval lies beyond ±{:.0}%; a regression fails the gate only when a second A/B \
         run reproduces it.",
        config.significance_level,
        config.noise_threshold * 100.0
    ));
    lines.push(String::new());
    lines
}

fn paired_row(name: &str, outcome: &PairedOutcome) -> String {
    let first = &outcome.first;
    let verdict = match (first.verdict, &outcome.rerun) {
        (Verdict::Regressed, Some(rerun)) if rerun.verdict == Verdict::Regressed => format!(
            "**regressed**, confirmed by a second A/B run ({})",
            percent(rerun.relative_change)
        ),
        (Verdict::Regressed, Some(rerun)) => format!(
            "unchanged: not reproduced by a second A/B run ({})",
            percent(rerun.relative_change)
        ),
        (Verdict::Regressed, None) => "**regressed** (not confirmed by a re-run)".to_string(),
        (verdict, _) => verdict.label().to_string(),
    };
    format!(
        "| {name} | {} | {} | {} | {} | [{}, {}] | {} | {verdict} |",
        first.pairs,
        milliseconds(first.baseline_median_us),
        milliseconds(first.candidate_median_us),
        percent(first.relative_change),
        percent(first.ci_low),
        percent(first.ci_high),
        p_value(first.p_value),
    )
}

fn cost_section(comparison: &Comparison) -> Vec<String> {
    let rows: Vec<String> = comparison
        .scenarios
        .iter()
        .filter(|s| !s.costs.is_empty())
        .map(cost_row)
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let config = &comparison.config;
    let mut lines = vec![
        format!(
            "### Per-step cost (tolerance: statements and commits ±{:.0}%, rows and WAL records ±{:.0}%, WAL bytes ±{:.0}%)",
            config.statement_tolerance * 100.0,
            config.cost_tolerance * 100.0,
            config.wal_bytes_tolerance * 100.0
        ),
        String::new(),
        "| scenario | statements | commits | rows written | WAL records | WAL bytes | verdict |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    lines.extend(rows);
    lines.push(String::new());
    lines.extend(widened_note(comparison));
    lines
}

/// Names the scenarios whose statements and commits were judged within a
/// band widened by their parallel steps.
fn widened_note(comparison: &Comparison) -> Vec<String> {
    let widened: Vec<String> = comparison
        .scenarios
        .iter()
        .filter_map(|s| {
            let statements = s.costs.iter().find(|c| c.metric.counts_transactions())?;
            (statements.tolerance > comparison.config.statement_tolerance + 1e-9)
                .then(|| format!("{} (+{:.0}%)", s.name, statements.tolerance * 100.0))
        })
        .collect();
    if widened.is_empty() {
        return Vec::new();
    }
    vec![
        format!(
            "Statements and commits of scenarios whose steps run at the same time are judged within a \
             wider band, as timing decides how many of those steps share a transaction: {}.",
            widened.join(", ")
        ),
        String::new(),
    ]
}

fn cost_row(scenario: &ScenarioComparison) -> String {
    let cells: Vec<String> = scenario.costs.iter().map(cost_cell).collect();
    let verdict = match scenario.cost_verdict() {
        Verdict::Regressed => "**regressed**",
        other => other.label(),
    };
    format!("| {} | {} | {verdict} |", scenario.name, cells.join(" | "))
}

fn cost_cell(change: &CostChange) -> String {
    if change.baseline == change.current {
        return count(change.current);
    }
    let relative = change
        .relative_change
        .map(percent)
        .unwrap_or_else(|| "new".to_string());
    let cell = format!(
        "{} → {} ({relative})",
        count(change.baseline),
        count(change.current)
    );
    match change.verdict {
        Verdict::Regressed => format!("**{cell}**"),
        _ => cell,
    }
}

fn throughput_section(comparison: &Comparison) -> Vec<String> {
    let rows: Vec<String> = comparison
        .scenarios
        .iter()
        .flat_map(|s| s.throughput.iter().map(|t| throughput_row(&s.name, t)))
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        "### Throughput (informative, not gating)".to_string(),
        String::new(),
        "| scenario | target/s | baseline tasks/s | current tasks/s | change | P99 baseline → current | timed out |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    lines.extend(rows);
    lines.push(String::new());
    lines
}

fn throughput_row(scenario: &str, change: &ThroughputChange) -> String {
    format!(
        "| {scenario} | {} | {:.1} | {:.1} | {} | {} → {} | {} → {} |",
        change.target_rate,
        change.baseline_achieved_tasks_per_second,
        change.current_achieved_tasks_per_second,
        change
            .relative_change
            .map(percent)
            .unwrap_or_else(|| "n/a".to_string()),
        milliseconds(change.baseline_p99_us as f64),
        milliseconds(change.current_p99_us as f64),
        change.baseline_timed_out,
        change.current_timed_out
    )
}

fn not_compared_section(comparison: &Comparison) -> Vec<String> {
    let mut items = Vec::new();
    if !comparison.only_in_baseline.is_empty() {
        items.push(format!(
            "- only in the baseline: {}",
            comparison.only_in_baseline.join(", ")
        ));
    }
    if !comparison.only_in_current.is_empty() {
        items.push(format!(
            "- only in the current run: {}",
            comparison.only_in_current.join(", ")
        ));
    }
    for scenario in &comparison.scenarios {
        items.extend(
            scenario
                .notes
                .iter()
                .map(|note| format!("- {}: {note}", scenario.name)),
        );
    }
    if items.is_empty() {
        return Vec::new();
    }
    let mut lines = vec!["### Not compared".to_string(), String::new()];
    lines.extend(items);
    lines.push(String::new());
    lines
}

fn milliseconds(us: f64) -> String {
    format!("{:.2} ms", us / 1_000.0)
}

fn percent(share: f64) -> String {
    format!("{:+.1}%", share * 100.0)
}

fn interval(latency: &LatencyComparison) -> String {
    format!(
        "[{}, {}]",
        percent(latency.ci_low),
        percent(latency.ci_high)
    )
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        "<0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

/// A per-step count: two decimals when small, whole when large (WAL bytes).
fn count(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}
