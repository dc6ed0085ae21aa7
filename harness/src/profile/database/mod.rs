//! The database as a profiling target (`profile --with postgres`): where
//! each step's server time goes, in the same unit as the Rust processes'
//! (time a step).
//!
//! - `probe`: sets the database up and runs the probes below around the
//!   measured tasks, into a `DatabaseProfile`;
//! - `summary`: its tables and the findings the profiling report ranks;
//! - `critical_path`: one step's wall time against the engine's CPU, the
//!   round trips, the server's execution and the commit flushes;
//! - `statements`: pg_stat_statements with `track = all`, read before and
//!   after the measured tasks: server time, calls, rows, buffers and WAL
//!   per statement, the hot-path functions' nested statements included;
//! - `functions`: pg_stat_user_functions (`track_functions = all`): time
//!   per PL/pgSQL function, its own and with what it calls;
//! - `plans`: auto_explain's JSON plans (nested statements included) read
//!   back from the server log: where inside a statement the time goes;
//! - `waits`: the engine's busy backends sampled from pg_stat_activity
//!   every few milliseconds: CPU, WAL flush, locks, I/O, client;
//! - `wal`: pg_stat_wal (`track_wal_io_timing = on`): WAL writes and
//!   flushes and their time, what commits cost.
//!
//! Statements and functions are snapshots taken by the caller and
//! subtracted, so a warm-up is left out without resetting the server's
//! counters.

pub mod critical_path;
pub mod functions;
pub mod plans;
pub mod probe;
pub mod statements;
pub mod summary;
pub mod symbols;
pub mod waits;
pub mod wal;

/// A statement's text on one line, at most `max` characters (an ellipsis
/// marks a cut), for tables.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn statements_are_shown_on_one_line_and_cut() {
        assert_eq!(
            one_line("SELECT *\n  FROM t\n WHERE x = $1", 80),
            "SELECT * FROM t WHERE x = $1"
        );
        assert_eq!(
            one_line("SELECT tasker.claim_steps($1, $2)", 13),
            "SELECT tasker…"
        );
        assert_eq!(one_line("é è ê", 3), "é è…");
    }
}
