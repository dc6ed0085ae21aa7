//! The engine's SQL functions: `engine/sql/<operation>.sql`, one file per
//! operation, each function in its current definition (see
//! `engine/sql/README.md`).
//!
//! The migrations hold the schema only. After them, under the same advisory
//! lock, `apply` runs the files in the order of [`FILES`], in one
//! transaction, every function a `CREATE OR REPLACE`. The last file ends by
//! writing the functions of every existing worker queue again
//! (`claim_<queue>`, `submit_<queue>`, and the send dispatcher with a
//! branch per queue, written by that file's generators), so a change
//! reaches queues made before it.
//!
//! The sha256 of the files' names and text is kept in
//! `tasker.sql_functions`. When it is the hash of the last files applied,
//! nothing is run: processes starting together, or again, do not rewrite
//! the functions (a rewrite invalidates every session's cached plans). Any
//! change to a file, a comment included, applies them all again.
//!
//! `CREATE OR REPLACE` cannot change a function's return type, its
//! argument types (that makes another function beside it) or the names of
//! its arguments, and a function deleted from a file stays in databases
//! that had it. Either needs a `DROP FUNCTION IF EXISTS` of the old
//! signature in the file, before the new definition.
//!
//! Two processes of different builds starting one after the other apply
//! their own files each time (the hashes differ): a rolled-back build puts
//! its functions back.

use sha2::{Digest, Sha256};
use sqlx::{Executor, PgPool};

use super::DatabaseError;

/// One file of `engine/sql/`: its name and its text.
#[derive(Debug, Clone, Copy)]
pub struct SqlFile<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

macro_rules! sql_file {
    ($name:literal) => {
        SqlFile {
            name: $name,
            text: include_str!(concat!("../../sql/", $name)),
        }
    };
}

/// The function files, embedded at compile time, in the order they are
/// applied. The order matters for `LANGUAGE sql` functions only, which are
/// checked against the functions they call when created (PL/pgSQL resolves
/// its calls when run): a file comes after those it uses that way.
/// `worker_queues.sql` is last: it writes every existing queue's functions
/// again, with everything they call in place.
pub const FILES: &[SqlFile<'static>] = &[
    sql_file!("states.sql"),
    sql_file!("queues.sql"),
    sql_file!("templates.sql"),
    sql_file!("evaluate.sql"),
    sql_file!("create_task.sql"),
    sql_file!("results.sql"),
    sql_file!("batches.sql"),
    sql_file!("staleness.sql"),
    sql_file!("retention.sql"),
    sql_file!("worker_queues.sql"),
];

/// What applying the files did ([`super::migrate_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The database had these files' functions already: nothing was run.
    Unchanged,
    /// The files were run and their hash recorded.
    Written,
}

/// The hash recorded for `files`: sha256 of each name and text, in order,
/// hex.
pub fn hash(files: &[SqlFile<'_>]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        for part in [file.name, file.text] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

/// Apply `files` unless they are the ones applied last, in one
/// transaction. The caller holds the migration lock (`database::migrate`),
/// and the schema is migrated.
pub(super) async fn apply(pool: &PgPool, files: &[SqlFile<'_>]) -> Result<Applied, DatabaseError> {
    let hash = hash(files);
    let mut tx = pool.begin().await?;
    let current: Option<String> = sqlx::query_scalar(
        "SELECT hash FROM tasker.sql_functions ORDER BY applied_at DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if current.as_deref() == Some(hash.as_str()) {
        tx.rollback().await?;
        return Ok(Applied::Unchanged);
    }
    for file in files {
        // The simple query protocol: a file is many statements. Through
        // the Executor on the connection, not RawSql::execute(&mut *tx):
        // rustc cannot prove that one's future Send for every lifetime,
        // which made every future awaiting `migrate` (Embedded::start)
        // unusable in tokio::spawn.
        (&mut *tx)
            .execute(sqlx::raw_sql(file.text))
            .await
            .map_err(|source| DatabaseError::Functions {
                file: file.name.to_string(),
                source,
            })?;
    }
    sqlx::query(
        "INSERT INTO tasker.sql_functions (hash) VALUES ($1)
         ON CONFLICT (hash) DO UPDATE SET applied_at = clock_timestamp()",
    )
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(hash = %hash, files = files.len(), "SQL functions applied");
    Ok(Applied::Written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_engine_sql_is_applied_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|f| f.name.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "FILES and the .sql files of engine/sql/");
    }

    #[test]
    fn every_file_says_what_it_holds_and_defines_with_create_or_replace() {
        for file in FILES {
            assert!(
                file.text.starts_with("-- "),
                "{} starts with a comment saying what it holds",
                file.name
            );
            // Top-level definitions only: the per-queue functions written
            // by format() are `CREATE [OR REPLACE] FUNCTION tasker.%3$I`.
            for line in file.text.lines() {
                assert!(
                    !line.starts_with("CREATE FUNCTION") || line.contains("tasker.%"),
                    "{}: {line:?} is not CREATE OR REPLACE",
                    file.name
                );
            }
        }
    }

    #[test]
    fn migrations_define_no_function() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap().to_uppercase();
            for statement in [
                "CREATE FUNCTION",
                "CREATE OR REPLACE FUNCTION",
                "CREATE PROCEDURE",
            ] {
                assert!(
                    !text.contains(statement),
                    "{}: functions belong in engine/sql/, not in a migration",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn the_hash_changes_with_any_text_name_or_order() {
        let a = SqlFile {
            name: "a.sql",
            text: "x",
        };
        let b = SqlFile {
            name: "b.sql",
            text: "y",
        };
        let base = hash(&[a, b]);
        assert_eq!(base, hash(&[a, b]));
        assert_eq!(base.len(), 64);
        assert_ne!(base, hash(&[b, a]));
        assert_ne!(base, hash(&[SqlFile { text: "x ", ..a }, b]));
        assert_ne!(base, hash(&[SqlFile { name: "c.sql", ..a }, b]));
        // name and text are delimited: moving a character across is a change
        assert_ne!(
            hash(&[SqlFile {
                name: "ab",
                text: "c"
            }]),
            hash(&[SqlFile {
                name: "a",
                text: "bc"
            }])
        );
    }
}
