//! The campaign's verdict, read from the database and the handlers' run
//! records: every submitted task finished as expected, no attempt of a
//! step ran its handler twice, and how long recoveries took.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// What a submitted task should end as.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Complete, with this result on its final step.
    Complete { sink: String, result: Value },
    /// In error, because step `step` was made to fail for good.
    Error { step: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    pub task_uuid: Uuid,
    pub expect: Expect,
}

/// A task that did not end as expected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub task_uuid: Uuid,
    pub problem: String,
}

/// An attempt of a step whose handler ran more than once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicate {
    pub step_uuid: Uuid,
    pub attempt: u32,
    pub runs: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub tasks: usize,
    pub completed: usize,
    pub failed_as_expected: usize,
    /// In error because one step lost its worker on every attempt
    /// (max_attempts leases lapsed): the retry policy's outcome, reported
    /// apart.
    pub exhausted_by_faults: usize,
    /// Not finished, or finished otherwise than expected.
    pub lost: Vec<Problem>,
    pub duplicated: Vec<Duplicate>,
    /// Tasks in the database that were never submitted.
    pub unexpected_tasks: i64,
    /// Handler runs recorded.
    pub handler_runs: usize,
    /// Leases that lapsed and were taken over (or failed).
    pub lapsed_leases: i64,
    /// The longest wait from a lease's end to its step being claimed again
    /// (or failed), ms.
    pub longest_lease_recovery_ms: f64,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.unexpected_tasks == 0
    }
}

/// Checks every submitted task and the run records in `runs_dir`; `margin_s`
/// is the workers' lease margin.
pub async fn check(
    pool: &PgPool,
    submitted: &[Submitted],
    runs_dir: &Path,
    margin_s: i32,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict {
        tasks: submitted.len(),
        ..Verdict::default()
    };
    let outcomes = outcomes(pool).await?;
    for task in submitted {
        match outcomes.get(&task.task_uuid) {
            None => verdict
                .lost
                .push(problem(task, "not in the database".into())),
            Some(outcome) => judge(&mut verdict, task, outcome),
        }
    }
    let known: std::collections::HashSet<Uuid> = submitted.iter().map(|t| t.task_uuid).collect();
    verdict.unexpected_tasks = outcomes.keys().filter(|t| !known.contains(t)).count() as i64;

    let runs = read_runs(runs_dir)?;
    verdict.handler_runs = runs.values().sum();
    verdict.duplicated = runs
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((step_uuid, attempt), runs)| Duplicate {
            step_uuid,
            attempt,
            runs,
        })
        .collect();
    let (lapsed, longest): (i64, Option<f64>) = sqlx::query_as(LEASE_RECOVERIES)
        .bind(margin_s)
        .fetch_one(pool)
        .await
        .context("reading lease recoveries")?;
    verdict.lapsed_leases = lapsed;
    verdict.longest_lease_recovery_ms = longest.unwrap_or(0.0);
    Ok(verdict)
}

/// A task's end as the database has it.
#[derive(Debug, sqlx::FromRow)]
struct Outcome {
    task_uuid: Uuid,
    state: String,
    /// Final results by step name.
    results: Value,
    /// error_type of each step in error, by step name.
    errors: Value,
}

async fn outcomes(pool: &PgPool) -> anyhow::Result<HashMap<Uuid, Outcome>> {
    let rows: Vec<Outcome> = sqlx::query_as(
        "SELECT t.task_uuid, t.state::text AS state,
                coalesce(jsonb_object_agg(s.name, s.results) FILTER (WHERE s.results IS NOT NULL), '{}') AS results,
                coalesce(jsonb_object_agg(s.name, s.last_error->>'error_type')
                         FILTER (WHERE s.state = 'error'), '{}') AS errors
           FROM tasker.tasks t JOIN tasker.workflow_steps s USING (task_uuid)
          GROUP BY t.task_uuid",
    )
    .fetch_all(pool)
    .await
    .context("reading the tasks' outcomes")?;
    Ok(rows.into_iter().map(|o| (o.task_uuid, o)).collect())
}

fn problem(task: &Submitted, problem: String) -> Problem {
    Problem {
        task_uuid: task.task_uuid,
        problem,
    }
}

fn judge(verdict: &mut Verdict, task: &Submitted, outcome: &Outcome) {
    let errors: Vec<(&str, &str)> = outcome
        .errors
        .as_object()
        .into_iter()
        .flatten()
        .map(|(step, e)| (step.as_str(), e.as_str().unwrap_or("?")))
        .collect();
    match (&task.expect, outcome.state.as_str()) {
        (Expect::Complete { sink, result }, "complete") => match outcome.results.get(sink) {
            Some(got) if got == result => verdict.completed += 1,
            got => verdict.lost.push(problem(
                task,
                format!("complete with {sink} = {got:?}, expected {result}"),
            )),
        },
        (Expect::Error { step }, "error")
            if errors
                .iter()
                .any(|(s, e)| s == step && *e == "InjectedFatal") =>
        {
            verdict.failed_as_expected += 1
        }
        (_, "error") if !errors.is_empty() && errors.iter().all(|(_, e)| *e == "ClaimExpired") => {
            verdict.exhausted_by_faults += 1
        }
        (expect, state) => verdict.lost.push(problem(
            task,
            format!("ended {state} (step errors {errors:?}), expected {expect:?}"),
        )),
    }
}

/// Handler runs per (step, attempt), from every `runs-*.log` in `dir`.
fn read_runs(dir: &Path) -> anyhow::Result<BTreeMap<(Uuid, u32), usize>> {
    let mut runs = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(runs),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let parsed = (|| Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?)))();
            let key = parsed.with_context(|| format!("{}: bad line {line:?}", path.display()))?;
            *runs.entry(key).or_insert(0) += 1;
        }
    }
    Ok(runs)
}

/// Each lapsed lease (a claim_expired transition out of in_progress) and
/// how long after the lease's end it was acted on: the lease ended
/// timeout_seconds + margin after the claim.
const LEASE_RECOVERIES: &str = "
    SELECT count(*), max(extract(epoch FROM lapsed.created_at - claimed.created_at) * 1000
                         - (s.timeout_seconds + $1) * 1000)::float8
      FROM tasker.workflow_step_transitions lapsed
      JOIN tasker.workflow_step_transitions claimed
        ON claimed.workflow_step_uuid = lapsed.workflow_step_uuid
       AND claimed.sort_key = lapsed.sort_key - 1
      JOIN tasker.workflow_steps s ON s.workflow_step_uuid = lapsed.workflow_step_uuid
     WHERE lapsed.from_state = 'in_progress' AND lapsed.metadata->>'reason' = 'claim_expired'";

/// The verdict as a table.
pub fn render(verdict: &Verdict) -> String {
    let mut out = String::new();
    let rows = [
        ("tasks submitted", verdict.tasks.to_string()),
        (
            "completed with the expected result",
            verdict.completed.to_string(),
        ),
        ("failed as expected", verdict.failed_as_expected.to_string()),
        (
            "in error: a step lost its worker on every attempt",
            verdict.exhausted_by_faults.to_string(),
        ),
        ("lost (unfinished or wrong)", verdict.lost.len().to_string()),
        (
            "duplicated (an attempt run twice)",
            verdict.duplicated.len().to_string(),
        ),
        (
            "tasks never submitted",
            verdict.unexpected_tasks.to_string(),
        ),
        ("handler runs", verdict.handler_runs.to_string()),
        (
            "lapsed leases taken over",
            verdict.lapsed_leases.to_string(),
        ),
        (
            "longest lease recovery (after the lease's end)",
            format!("{:.0} ms", verdict.longest_lease_recovery_ms),
        ),
    ];
    for (what, value) in rows {
        out.push_str(&format!("  {what:<50} {value:>10}\n"));
    }
    for p in verdict.lost.iter().take(20) {
        out.push_str(&format!("  LOST {}: {}\n", p.task_uuid, p.problem));
    }
    for d in verdict.duplicated.iter().take(20) {
        out.push_str(&format!(
            "  DUPLICATED step {} attempt {}: {} runs\n",
            d.step_uuid, d.attempt, d.runs
        ));
    }
    out
}
