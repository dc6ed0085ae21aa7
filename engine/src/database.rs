//! Connecting to PostgreSQL and bringing the schema up to date.
//!
//! `migrate` installs pgmq's SQL from the pgmq crate's embedded copy (no
//! extension needed), runs the `tasker` schema migrations (`migrations/`,
//! the schema only), then applies the engine's SQL functions
//! (`engine/sql/`, see [`functions`]) when they changed. It holds an
//! advisory lock while doing so, so several processes may start at once.

pub mod functions;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// Errors from connecting or migrating, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid database URL {url:?}: {source}")]
    Url { url: String, source: sqlx::Error },
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("installing pgmq's SQL failed: {0}")]
    Pgmq(String),
    #[error("running the tasker migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("applying the SQL functions of engine/sql/{file} failed: {source}")]
    Functions { file: String, source: sqlx::Error },
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// The migrations of the `tasker` schema, embedded at compile time. They
/// hold no functions: those are [`functions::FILES`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Arbitrary key for the advisory lock that serializes migrations (and the
/// functions applied after them).
const MIGRATION_LOCK_KEY: i64 = 0x7461_736b_6572; // "tasker"

/// Settings for one connection pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
    /// `synchronous_commit = off` for every connection of this pool. Used
    /// only for the worker's claims: a claim lost in a crash only makes its
    /// message visible again after the visibility timeout.
    pub asynchronous_commit: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(10),
            asynchronous_commit: false,
        }
    }
}

impl From<&crate::config::DatabaseConfig> for PoolSettings {
    fn from(config: &crate::config::DatabaseConfig) -> Self {
        Self {
            max_connections: config.pool_size,
            acquire_timeout: Duration::from_millis(config.acquire_timeout_ms),
            ..Self::default()
        }
    }
}

/// Parse a URL into connect options, with statement logging turned down:
/// the hot path runs thousands of statements a second.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, DatabaseError> {
    let options: PgConnectOptions = url.parse().map_err(|source| DatabaseError::Url {
        url: url.to_string(),
        source,
    })?;
    Ok(options
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_millis(200)))
}

/// Open a pool. Statements are prepared once per connection and cached
/// (sqlx's default), so the hot path sends only Bind/Execute.
pub async fn connect(url: &str, settings: &PoolSettings) -> Result<PgPool, DatabaseError> {
    // search_path is pinned: with the default "$user", public, a role
    // named like the `tasker` schema would find sqlx's bookkeeping table in
    // a different schema once that schema exists. Everything of ours is
    // schema-qualified anyway. jit is off: every statement here is a short
    // transaction's, and JIT, decided by a plan's estimated cost, compiles
    // on every execution (engine/sql/worker_queues.sql says what that cost
    // once). Transactions are READ COMMITTED whatever the database's
    // default: orchestration locks a task, then reads its steps in the next
    // statement, which must see what the lock waited for (another
    // orchestrator's completed step). Under REPEATABLE READ every statement
    // reads the transaction's first snapshot, and a join whose parents were
    // processed side by side is never enqueued (e2e/orchestrators.rs).
    let mut options = connect_options(url)?.application_name("tasker").options([
        ("search_path", "public"),
        ("jit", "off"),
        // (a space in a value is escaped, as libpq's options say)
        ("default_transaction_isolation", "read\\ committed"),
    ]);
    let asynchronous = settings.asynchronous_commit;
    if asynchronous {
        options = options.options([("synchronous_commit", "off")]);
    }
    PgPoolOptions::new()
        // Commits wait for the WAL flush even where the server's or the
        // database's default says off: a task created, a result recorded, a
        // step enqueued must survive a crash once the engine has said so.
        // A stronger default (a synchronous standby's remote_apply) or
        // `local` is the server's to keep. Only the claim pool commits
        // asynchronously: a claim lost in a crash makes its message visible
        // again, nothing more.
        .after_connect(move |connection, _| {
            Box::pin(async move {
                if !asynchronous {
                    sqlx::query(DURABLE_COMMITS).execute(connection).await?;
                }
                Ok(())
            })
        })
        // sqlx pings a connection before every checkout by default: one
        // more round trip per statement on the hot path. A broken
        // connection fails its statement instead, and every hot-path loop
        // retries.
        .test_before_acquire(false)
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|source| DatabaseError::Connect {
            url: redact(url),
            source,
        })
}

/// Run on each new connection of a pool that is not asynchronous: commits
/// wait for the WAL flush unless the server asks for more.
const DURABLE_COMMITS: &str = "SELECT set_config('synchronous_commit', 'on', false) \
     WHERE current_setting('synchronous_commit') = 'off'";

/// The session of a hot loop that sends plain statements (the result
/// processor's `complete_steps`, the submitter's `submit_results`): what
/// the hot-path functions set for themselves, which a plain statement
/// takes from its session (engine/sql/README.md says why each).
pub const HOT_PATH_SESSION: &str =
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', false), \
     set_config('enable_seqscan', 'off', false), set_config('jit', 'off', false)";

/// A connection that one hot loop keeps for itself, out of its pool.
///
/// sqlx 0.8 pings every connection that goes back to its pool (in a task
/// its drop spawns): a round trip that is not a statement, and a task, for
/// every statement run on a pool. A loop that runs a statement a step keeps
/// a connection of its own instead, so a statement is one round trip. The
/// connection is taken out of the pool (detached): the pool may open
/// another in its place, so a loop never waits for one held by another.
pub struct Dedicated {
    pool: PgPool,
    connection: Option<PgConnection>,
    /// A statement run on each connection when it is taken (settings).
    session: Option<&'static str>,
}

impl Dedicated {
    /// Connections come from `pool`, with its settings (application name,
    /// asynchronous commit); none is taken before the first statement.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            connection: None,
            session: None,
        }
    }

    /// As [`Dedicated::new`], with settings of this loop's own for its
    /// session: `session` is run once a connection (`set_config` calls).
    pub fn with_session(pool: PgPool, session: &'static str) -> Self {
        Self {
            session: Some(session),
            ..Self::new(pool)
        }
    }

    /// The loop's connection: taken from the pool the first time, and
    /// again after a failure that may have broken it.
    pub async fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.connection.is_none() {
            let mut connection = self.pool.acquire().await?.detach();
            if let Some(session) = self.session {
                sqlx::query(session).execute(&mut connection).await?;
            }
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    /// A statement's outcome, passed through: the database refusing the
    /// statement leaves the connection as good as it was; any other error
    /// (I/O, the protocol, a timeout) may have broken it, so it is dropped
    /// and the next statement starts on a fresh one.
    pub fn checked<T>(&mut self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(error) = &outcome {
            if !matches!(error, sqlx::Error::Database(_)) {
                self.connection = None;
            }
        }
        outcome
    }
}

/// Install pgmq, run the tasker migrations and apply the SQL functions
/// (unless the database has these already), once, even when several
/// processes call this at the same time.
pub async fn migrate(pool: &PgPool) -> Result<(), DatabaseError> {
    migrate_with(pool, functions::FILES).await.map(|_| ())
}

/// [`migrate`] with other function files than the engine's own: for tests
/// of how a change of the files is applied.
pub async fn migrate_with(
    pool: &PgPool,
    files: &[functions::SqlFile<'_>],
) -> Result<functions::Applied, DatabaseError> {
    let mut lock_conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *lock_conn)
        .await?;
    let result = migrate_locked(pool, files).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *lock_conn)
        .await?;
    result
}

async fn migrate_locked(
    pool: &PgPool,
    files: &[functions::SqlFile<'_>],
) -> Result<functions::Applied, DatabaseError> {
    pgmq::PGMQueueExt::new_with_pool(pool.clone())
        .await
        .install_sql_from_embedded()
        .await
        .map_err(|e| DatabaseError::Pgmq(e.to_string()))?;
    MIGRATOR.run(pool).await?;
    functions::apply(pool, files).await
}

/// A statement the database refused for what it carried, not for the
/// state of the connection or the server: a data exception (class 22, e.g.
/// a `\u0000` in JSON text) or a program limit (class 54). Sending the same
/// statement again would fail again.
pub fn is_data_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("54")),
        _ => false,
    }
}

/// Logs a database outage once: the first failure of a loop as a warning,
/// later ones only at debug level, and the recovery with how long it took.
/// Each retrying loop (claimer, submitter, result processor, listeners)
/// keeps one, so a restart of PostgreSQL is a pair of lines per loop, not a
/// line per retry.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<std::time::Instant>,
}

impl Outage {
    pub fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        match self.since {
            None => {
                tracing::warn!(%error, "{what} failed; retrying until the database answers");
                self.since = Some(std::time::Instant::now());
            }
            Some(_) => tracing::debug!(%error, "{what} failed again"),
        }
    }

    pub fn recovered(&mut self, what: &str) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                outage_ms = since.elapsed().as_millis() as u64,
                "{what} works again"
            );
        }
    }
}

/// Check that the database answers (used by /health).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    conn.ping().await
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
