//! Time per PL/pgSQL function from pg_stat_user_functions
//! (`track_functions = all`): `total` includes the functions it calls,
//! `self` does not, so the self times add up without counting twice.

use std::collections::HashMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// One function's cumulative counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FunctionStats {
    /// `schema.name`.
    pub name: String,
    pub calls: i64,
    /// ms, with the functions it calls.
    pub total_time: f64,
    /// ms, its own.
    pub self_time: f64,
}

/// Every tracked function of the current database at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionSnapshot {
    pub functions: Vec<FunctionStats>,
}

impl FunctionSnapshot {
    /// Reads pg_stat_user_functions. A backend publishes its function
    /// statistics when it goes idle, so read after the engine's sessions
    /// have settled (run::costs::STATS_SETTLE).
    pub async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let functions = sqlx::query_as(
            "SELECT schemaname || '.' || funcname AS name, calls, total_time, self_time
               FROM pg_stat_user_functions",
        )
        .fetch_all(pool)
        .await?;
        Ok(Self { functions })
    }

    /// Each function's growth between `self` (before) and `after`, those
    /// not called left out, the most self time first.
    pub fn since(&self, after: &FunctionSnapshot) -> Vec<FunctionStats> {
        let before: HashMap<&str, &FunctionStats> = self
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f))
            .collect();
        let mut grown: Vec<FunctionStats> = after
            .functions
            .iter()
            .map(|a| match before.get(a.name.as_str()) {
                Some(b) => FunctionStats {
                    name: a.name.clone(),
                    calls: a.calls - b.calls,
                    total_time: a.total_time - b.total_time,
                    self_time: a.self_time - b.self_time,
                },
                None => a.clone(),
            })
            .filter(|f| f.calls > 0)
            .collect();
        grown.sort_by(|x, y| y.self_time.total_cmp(&x.self_time));
        grown
    }
}

/// The `top` functions by self time as a markdown table, per step over
/// `steps`.
pub fn markdown(functions: &[FunctionStats], steps: u64, top: usize) -> String {
    let steps = steps.max(1) as f64;
    let mut md = String::from(
        "| function | calls a step | self µs a step | total µs a step |\n|---|---:|---:|---:|\n",
    );
    for f in functions.iter().take(top) {
        let _ = writeln!(
            md,
            "| `{}` | {:.2} | {:.1} | {:.1} |",
            f.name,
            f.calls as f64 / steps,
            f.self_time * 1000.0 / steps,
            f.total_time * 1000.0 / steps,
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, calls: i64, total: f64, own: f64) -> FunctionStats {
        FunctionStats {
            name: name.into(),
            calls,
            total_time: total,
            self_time: own,
        }
    }

    #[test]
    fn functions_rank_by_their_own_time_between_two_readings() {
        let before = FunctionSnapshot {
            functions: vec![
                f("tasker.process_step_results", 10, 20.0, 5.0),
                f("tasker.transition_step", 30, 6.0, 6.0),
                f("tasker.repair_task", 2, 1.0, 1.0),
            ],
        };
        let after = FunctionSnapshot {
            functions: vec![
                f("tasker.process_step_results", 110, 120.0, 25.0),
                f("tasker.transition_step", 330, 66.0, 66.0),
                f("tasker.repair_task", 2, 1.0, 1.0),
                f("tasker.enqueue_steps", 100, 30.0, 30.0),
            ],
        };
        let ran = before.since(&after);
        let names: Vec<&str> = ran.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tasker.transition_step",
                "tasker.enqueue_steps",
                "tasker.process_step_results"
            ],
            "by self time; repair_task was not called"
        );
        assert_eq!(ran[2], f("tasker.process_step_results", 100, 100.0, 20.0));
        let md = markdown(&ran, 100, 10);
        assert!(
            md.contains("| `tasker.process_step_results` | 1.00 | 200.0 | 1000.0 |"),
            "{md}"
        );
    }
}
