//! A database profile as a person reads it: the critical path of a step,
//! the wait-event split, the WAL, the statements, the functions and the
//! plans as tables, and the findings the profiling report ranks beside
//! the Rust processes' (µs a step).

use super::probe::DatabaseProfile;
use super::waits::Category;
use super::{functions, one_line, plans, statements};
use crate::profile::analyze::relative;
use crate::profile::record::{Finding, Unit};

/// Every table of the profile, in the order a reader wants them: the
/// step's critical path first, then where the server's time goes.
pub fn tables(profile: &DatabaseProfile, top: usize) -> String {
    let steps = profile.steps;
    let mut parts = vec![
        format!(
            "#### Critical path of a step\n\n{}",
            profile.critical_path.markdown()
        ),
        format!(
            "#### Wait events of the engine's backends\n\n{}",
            profile.waits.markdown(steps)
        ),
        format!(
            "#### WAL (pg_stat_wal, server-wide)\n\n{}",
            profile.wal.markdown(steps, profile.wal_timed)
        ),
        format!(
            "#### Statements (pg_stat_statements, track = all)\n\n{}",
            statements::markdown(&profile.statements, steps, top)
        ),
        format!(
            "#### PL/pgSQL functions (pg_stat_user_functions)\n\n{}",
            functions::markdown(&profile.functions, steps, top)
        ),
    ];
    if !profile.plans.is_empty() {
        let file = profile
            .plans_file
            .as_ref()
            .map(|f| format!("; each statement's slowest plan: `{}`", relative(f)))
            .unwrap_or_default();
        parts.push(format!(
            "#### Plans (auto_explain, a sample of statements{file})\n\n{}",
            plans::markdown(&profile.plans, top)
        ));
    }
    if !profile.notes.is_empty() {
        let notes: Vec<String> = profile.notes.iter().map(|n| format!("- {n}")).collect();
        parts.push(notes.join("\n"));
    }
    parts.join("\n\n")
}

/// The database's optimization targets in µs a step: the heaviest
/// top-level statements, nested statements and functions (self time), the
/// commit flush, and the backends' waits on locks.
pub fn findings(profile: &DatabaseProfile) -> Vec<Finding> {
    let steps = profile.steps.max(1) as f64;
    let per_step = |ms: f64| ms * 1000.0 / steps;
    let mut findings = Vec::new();
    for toplevel in [true, false] {
        let (what, take, why) = match toplevel {
            true => ("statement", 5, "server execution"),
            false => (
                "nested statement",
                3,
                "execution inside a PL/pgSQL function (also in its caller's time)",
            ),
        };
        for s in profile
            .statements
            .iter()
            .filter(|s| s.toplevel == toplevel)
            .take(take)
        {
            findings.push(Finding {
                what: format!("database {what} `{}`", one_line(&s.query, 60)),
                unit: Unit::Micros,
                per_step: per_step(s.total_exec_time),
                evidence: format!(
                    "{why}: {:.2} calls, {:.1} rows, {:.1} buffer hits and {:.0} WAL bytes a step \
                     (pg_stat_statements)",
                    s.calls as f64 / steps,
                    s.rows as f64 / steps,
                    s.shared_blks_hit as f64 / steps,
                    s.wal_bytes as f64 / steps
                ),
            });
        }
    }
    for f in profile.functions.iter().take(3) {
        findings.push(Finding {
            what: format!("PL/pgSQL function `{}` (own time)", f.name),
            unit: Unit::Micros,
            per_step: per_step(f.self_time),
            evidence: format!(
                "{:.2} calls a step; {:.1} µs a step with what it calls (pg_stat_user_functions)",
                f.calls as f64 / steps,
                per_step(f.total_time)
            ),
        });
    }
    if profile.wal_timed {
        findings.push(Finding {
            what: "commit flush (WAL write + fsync)".into(),
            unit: Unit::Micros,
            per_step: per_step(profile.wal.wal_sync_time + profile.wal.wal_write_time),
            evidence: format!(
                "{:.2} fsyncs and {:.2} writes a step (pg_stat_wal, track_wal_io_timing)",
                profile.wal.wal_sync as f64 / steps,
                profile.wal.wal_write as f64 / steps
            ),
        });
    }
    let locks = profile.waits.per_step_us(Category::Lock, profile.steps);
    if locks > 0.0 {
        findings.push(Finding {
            what: "database lock waits".into(),
            unit: Unit::Micros,
            per_step: locks,
            evidence: "backend time waiting on locks, sampled from pg_stat_activity".into(),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::database::critical_path::CriticalPath;
    use crate::profile::database::functions::FunctionStats;
    use crate::profile::database::statements::StatementStats;
    use crate::profile::database::waits::{Activity, WaitProfile};
    use crate::profile::database::wal::WalStats;

    fn statement(toplevel: bool, query: &str, calls: i64, ms: f64) -> StatementStats {
        StatementStats {
            queryid: calls,
            toplevel,
            query: query.into(),
            calls,
            total_exec_time: ms,
            rows: calls,
            shared_blks_hit: 12 * calls,
            shared_blks_read: 0,
            wal_bytes: 300 * calls,
        }
    }

    /// 100 steps of linear, as the probes would leave them.
    fn profile() -> DatabaseProfile {
        let mut waits = WaitProfile {
            rounds: 400,
            interval_us: 5000,
            ..WaitProfile::default()
        };
        for (kind, event, n) in [(None, None, 30), (Some("Lock"), Some("tuple"), 2)] {
            for _ in 0..n {
                waits.add(&Activity {
                    state: "active".into(),
                    wait_event_type: kind.map(Into::into),
                    wait_event: event.map(Into::into),
                });
            }
        }
        DatabaseProfile {
            steps: 100,
            statements: vec![
                statement(true, "SELECT * FROM tasker.claim_steps($1, $2)", 100, 40.0),
                statement(false, "UPDATE tasker.workflow_steps SET x = $1", 100, 15.0),
                statement(true, "COMMIT", 300, 1.0),
            ],
            functions: vec![FunctionStats {
                name: "tasker.claim_steps".into(),
                calls: 100,
                total_time: 38.0,
                self_time: 20.0,
            }],
            waits,
            wal: WalStats {
                wal_records: 2000,
                wal_bytes: 300_000,
                wal_write: 150,
                wal_sync: 140,
                wal_write_time: 3.0,
                wal_sync_time: 27.0,
            },
            wal_timed: true,
            plans: Vec::new(),
            plans_file: None,
            perf_data: None,
            notes: vec!["no plans: the server's log is not readable from here".into()],
            critical_path: CriticalPath::example(),
        }
    }

    #[test]
    fn findings_are_time_a_step_for_statements_functions_commits_and_locks() {
        let findings = findings(&profile());
        let got: Vec<(&str, f64)> = findings
            .iter()
            .map(|f| (f.what.as_str(), f.per_step))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "database statement `SELECT * FROM tasker.claim_steps($1, $2)`",
                    400.0
                ),
                ("database statement `COMMIT`", 10.0),
                (
                    "database nested statement `UPDATE tasker.workflow_steps SET x = $1`",
                    150.0
                ),
                ("PL/pgSQL function `tasker.claim_steps` (own time)", 200.0),
                ("commit flush (WAL write + fsync)", 300.0),
                ("database lock waits", 100.0),
            ]
        );
        assert!(findings[0].evidence.contains("1.00 calls"), "{findings:?}");
        assert!(findings.iter().all(|f| f.unit == Unit::Micros));
    }

    #[test]
    fn without_wal_timing_there_is_no_commit_finding() {
        let mut p = profile();
        p.wal_timed = false;
        assert!(!findings(&p).iter().any(|f| f.what.starts_with("commit")));
    }

    /// A real profile of 300 linear tasks (1,200 steps) from
    /// `profile --with postgres`, trimmed to its top 20 statements and 5
    /// plans.
    fn stored() -> DatabaseProfile {
        serde_json::from_str(include_str!("../testdata/postgres-linear.postgres.json"))
            .expect("the stored profile reads")
    }

    #[test]
    fn a_stored_profile_of_linear_ranks_the_result_processing_function_first() {
        let profile = stored();
        assert_eq!(profile.steps, 1200);
        let findings = findings(&profile);
        let first = &findings[0];
        assert_eq!(
            first.what,
            "database statement `SELECT * FROM tasker.process_step_results($1)`"
        );
        assert!((first.per_step - 817.3).abs() < 0.1, "{first:?}");
        assert!(first.evidence.starts_with("server execution: 1.00 calls"));
        // The engine's four statements a step, then the functions' own
        // time (try_transition_step: 4 calls a step), the commit flush
        // from pg_stat_wal, and no lock waits (none were sampled).
        let function = findings
            .iter()
            .find(|f| f.what.starts_with("PL/pgSQL function"))
            .unwrap();
        assert_eq!(
            function.what,
            "PL/pgSQL function `tasker.try_transition_step` (own time)"
        );
        let flush = findings
            .iter()
            .find(|f| f.what.starts_with("commit"))
            .unwrap();
        assert!((flush.per_step - (721.57 + 29.258) * 1000.0 / 1200.0).abs() < 0.1);
        assert!(flush.evidence.starts_with("2.28 fsyncs"), "{flush:?}");
        assert!(!findings.iter().any(|f| f.what == "database lock waits"));
    }

    #[test]
    fn a_stored_profile_of_linear_reads_as_tables() {
        let profile = stored();
        let md = tables(&profile, 5);
        assert!(
            md.contains("| round trips (3.52 × 50 µs) | 176 | 4.8 % |"),
            "{md}"
        );
        assert!(
            md.contains("| **explained** | **3554** | **95.9 %** |"),
            "{md}"
        );
        assert!(
            md.contains("| CPU (executing) | 529 | 69.7 % | 2204 |"),
            "the wait-event split: {md}"
        );
        assert!(md.contains("| flushes (fsync) | 2.28 | 601.3 |"), "{md}");
        assert!(
            md.contains("| `SELECT * FROM tasker.process_step_results($1)` | top | 1.00 | 817.3 |")
        );
        assert!(md.contains("#### Plans (auto_explain, a sample of statements; each statement's slowest plan: `reports/profiles/postgres-linear.plans.md`)"), "{md}");
        assert!(md.contains("- 2 of the engine's 13 backends opened after perf attached"));
    }

    #[test]
    fn the_tables_start_with_the_critical_path_and_keep_the_notes() {
        let md = tables(&profile(), 10);
        assert!(md.starts_with("#### Critical path of a step"), "{md}");
        for heading in [
            "#### Wait events",
            "#### WAL",
            "#### Statements",
            "#### PL/pgSQL functions",
        ] {
            assert!(md.contains(heading), "{heading}: {md}");
        }
        assert!(!md.contains("#### Plans"), "no plans were logged");
        assert!(md.ends_with("- no plans: the server's log is not readable from here"));
    }
}
