//! PostgreSQL through sqlx. All SQL lives under this module.

mod articles;
mod consent;
mod console;
mod deliveries;
mod delivery_search;
mod previews;
mod run_counts;
mod run_lock;
mod runs;
mod schedule;
mod sources;
mod tenant;

pub use articles::*;
pub use consent::*;
pub use console::*;
pub use deliveries::*;
pub use delivery_search::*;
pub use previews::*;
pub use run_counts::*;
pub use run_lock::*;
pub use runs::*;
pub use schedule::*;
pub use sources::*;
pub use tenant::*;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use crate::untrusted::redact_url;

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "DATABASE_URL is empty: set it to postgres://USER:PASSWORD@HOST:5432/DATABASE (or pass --database-url)"
    )]
    Unset,
    #[error("DATABASE_URL is not a valid PostgreSQL URL ({url}): {source}")]
    Url { url: String, source: sqlx::Error },
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

impl StoreError {
    /// The database may answer if asked again: it was unreachable, restarting or shutting
    /// down (connection errors, SQLSTATE classes 08 and 57P), or the pool had no connection
    /// in time. A query it refused is not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Query(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            Self::Unset | Self::Url { .. } | Self::Migrate(_) => false,
        }
    }
}

/// A state column (`phase`, `status` …) read as its enum; a name this build does not know is a
/// decode error, never a guess.
pub(crate) fn state_column<T>(row: &sqlx::postgres::PgRow, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = crate::run::UnknownState>,
{
    use sqlx::Row;
    let name: String = row.try_get(column)?;
    name.parse()
        .map_err(|e: crate::run::UnknownState| sqlx::Error::Decode(Box::new(e)))
}

/// A pool of connections to the finrep database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Settled runs' delivery counts, shared by the clones of this store (`run_counts`).
    counts: std::sync::Arc<run_counts::CountCache>,
}

/// Migrations applied by one `migrate` call.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub already_applied: usize,
}

/// The connection settings of `url`, or why it is not a PostgreSQL URL (password redacted).
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    if url.trim().is_empty() {
        return Err(StoreError::Unset);
    }
    url.parse().map_err(|source| StoreError::Url {
        url: redact_url(url),
        source,
    })
}

fn pool_options(max_connections: u32, timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeout)
}

impl Store {
    /// Connects, failing within `timeout` with the URL (password redacted) in the message.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let options = connect_options(url)?;
        let pool = pool_options(max_connections, timeout)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(Self {
            pool,
            counts: Default::default(),
        })
    }

    /// A pool that connects when first used: a process that starts while the database is
    /// away (a first install, a restart of both) waits for it instead of exiting. Only a URL
    /// that cannot be parsed fails here.
    pub fn connect_lazy(
        url: &str,
        max_connections: u32,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let options = connect_options(url)?;
        let pool = pool_options(max_connections, timeout).connect_lazy_with(options);
        Ok(Self {
            pool,
            counts: Default::default(),
        })
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations; a no-op when the schema is current. Migrations newer than
    /// this build (applied by a newer release during a rolling upgrade) are left alone: they
    /// only add (expand, then contract a release later), so this build keeps working.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let before: Vec<i64> = applied_versions(&self.pool).await?;
        let mut migrator = sqlx::migrate!("../../migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        let mut report = MigrationReport::default();
        for m in MIGRATOR.iter() {
            if before.contains(&m.version) {
                report.already_applied += 1;
            } else {
                report
                    .applied
                    .push(format!("{} {}", m.version, m.description));
            }
        }
        Ok(report)
    }
}

impl Store {
    /// Addresses of `namespace` that must not be mailed (lower-cased).
    pub async fn blacklisted_emails(
        &self,
        namespace: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT email FROM blacklist WHERE namespace = $1")
                .bind(namespace)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().collect())
    }
}

async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
}
