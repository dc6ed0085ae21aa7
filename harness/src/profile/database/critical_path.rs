//! Where one step's wall time goes across client, server and commit: the
//! sum of the engine processes' CPU, the database round trips, the
//! server's execution and the commit flushes, against the measured wall
//! time, with what is left unexplained.
//!
//! The components are measured separately, so they are not disjoint: the
//! processes' CPU includes their background loops (off the step's path),
//! and a round trip's measured time includes both sides' socket work. A
//! negative remainder says the parts overlap or ran beside the path, not
//! that time was created.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// One scenario's figures, each a mean per step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    /// Measured: the tasks' mean latency over their steps, µs.
    pub wall_us: f64,
    /// CPU of the engine's processes (orchestration and worker), µs.
    pub client_cpu_us: f64,
    /// Top-level statements sent (each a round trip).
    pub round_trips: f64,
    /// The median round trip of a trivial prepared statement, µs.
    pub round_trip_us: f64,
    /// Top-level statements' execution in the server, µs.
    pub server_us: f64,
    /// WAL flushes (fsync) at commit, µs.
    pub commit_flush_us: f64,
}

impl CriticalPath {
    /// The four parts, named, µs a step, in the order they are shown.
    pub fn parts(&self) -> [(String, f64); 4] {
        [
            (
                "client CPU (orchestration + worker)".into(),
                self.client_cpu_us,
            ),
            (
                format!(
                    "round trips ({:.2} × {:.0} µs)",
                    self.round_trips, self.round_trip_us
                ),
                self.round_trips * self.round_trip_us,
            ),
            (
                "server execution (top-level statements)".into(),
                self.server_us,
            ),
            ("commit flush (WAL fsync)".into(), self.commit_flush_us),
        ]
    }

    pub fn explained_us(&self) -> f64 {
        self.parts().iter().map(|(_, us)| us).sum()
    }

    pub fn unexplained_us(&self) -> f64 {
        self.wall_us - self.explained_us()
    }

    /// The share of the wall time the parts account for, in percent.
    pub fn explained_share(&self) -> f64 {
        100.0 * self.explained_us() / self.wall_us.max(f64::MIN_POSITIVE)
    }

    /// A step of 2 ms with 1.6 ms explained, for tests.
    #[cfg(test)]
    pub(crate) fn example() -> Self {
        Self {
            wall_us: 2000.0,
            client_cpu_us: 500.0,
            round_trips: 4.0,
            round_trip_us: 60.0,
            server_us: 410.0,
            commit_flush_us: 270.0,
        }
    }

    pub fn markdown(&self) -> String {
        let share = |us: f64| 100.0 * us / self.wall_us.max(f64::MIN_POSITIVE);
        let mut md = String::from("| one step | µs | share of wall |\n|---|---:|---:|\n");
        for (what, us) in self.parts() {
            let _ = writeln!(md, "| {what} | {us:.0} | {:.1} % |", share(us));
        }
        let _ = writeln!(
            md,
            "| **explained** | **{:.0}** | **{:.1} %** |",
            self.explained_us(),
            self.explained_share()
        );
        let _ = writeln!(
            md,
            "| unexplained (wall − explained) | {:.0} | {:.1} % |",
            self.unexplained_us(),
            share(self.unexplained_us())
        );
        let _ = writeln!(md, "| measured wall time | {:.0} | 100 % |", self.wall_us);
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> CriticalPath {
        CriticalPath {
            wall_us: 2500.0,
            client_cpu_us: 600.0,
            round_trips: 4.0,
            round_trip_us: 100.0,
            server_us: 700.0,
            commit_flush_us: 300.0,
        }
    }

    #[test]
    fn the_parts_add_up_and_the_rest_is_unexplained() {
        let p = path();
        assert_eq!(p.explained_us(), 2000.0);
        assert_eq!(p.unexplained_us(), 500.0);
        assert_eq!(p.explained_share(), 80.0);
        let md = p.markdown();
        assert!(
            md.contains("| round trips (4.00 × 100 µs) | 400 | 16.0 % |"),
            "{md}"
        );
        assert!(
            md.contains("| **explained** | **2000** | **80.0 %** |"),
            "{md}"
        );
        assert!(
            md.contains("| unexplained (wall − explained) | 500 | 20.0 % |"),
            "{md}"
        );
    }

    #[test]
    fn overlapping_parts_leave_a_negative_remainder() {
        let p = CriticalPath {
            client_cpu_us: 1500.0,
            ..path()
        };
        assert_eq!(p.unexplained_us(), -400.0);
        assert!(p.markdown().contains("| -400 | -16.0 % |"));
    }
}
