//! Databases for tests: one PostgreSQL cluster per test binary (the
//! process-wide throwaway cluster, or the server at `DATABASE_URL`), a
//! migrated template database made once, and a fresh database per test
//! cloned from it with `CREATE DATABASE … TEMPLATE`, which costs
//! milliseconds instead of a migration run.

use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

use crate::database::{self, DatabaseError, PoolSettings};
use pg_local::PostgresError;

#[derive(Debug, thiserror::Error)]
pub enum TestDatabaseError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error("DATABASE_URL {0:?} is not a URL")]
    BadUrl(String),
    #[error("creating a test database failed: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A database of its own for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// A fresh, migrated database.
pub async fn test_database() -> Result<TestDatabase, TestDatabaseError> {
    let template = TEMPLATE.get_or_try_init(make_template).await?;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server_url("postgres")?).await?;
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(TestDatabase {
        url: server_url(&name)?,
        name,
    })
}

async fn make_template() -> Result<String, TestDatabaseError> {
    let name = format!("tasker_template_{}", std::process::id());
    let mut admin = PgConnection::connect(&server_url("postgres")?).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let pool = database::connect(&server_url(&name)?, &PoolSettings::default()).await?;
    database::migrate(&pool).await?;
    // CREATE DATABASE … TEMPLATE needs the template to have no sessions.
    pool.close().await;
    Ok(name)
}

/// URL of `database` on the test server: the shared local cluster, or the
/// server named by DATABASE_URL.
fn server_url(database: &str) -> Result<String, TestDatabaseError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let mut parsed =
                url::Url::parse(&url).map_err(|_| TestDatabaseError::BadUrl(url.clone()))?;
            parsed.set_path(database);
            Ok(parsed.to_string())
        }
        Err(_) => Ok(pg_local::shared()?.url(database)),
    }
}
