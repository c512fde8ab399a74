//! One attempt at a report's day at a time, across every process on the database: a
//! session-level advisory lock on a connection of its own, held for the whole attempt.
//!
//! A connection of its own, not one of the pool's: a session lock stays with its connection,
//! so a pooled one would go back to the pool still holding it (and the next attempt in this
//! process would be let in by it). When the attempt ends — or its process dies — the
//! connection closes and PostgreSQL releases the lock.
//!
//! The lock's key is computed inside the database (`finrep_try_run_lock`, a SECURITY DEFINER
//! function of migrations/20261205000002_tenant_isolation.sql) from the report's namespace and
//! a salt no tenant role can read: a namespace's role can take only its own reports' locks, and
//! cannot compute another namespace's key to hold it hostage.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection, Row};

use super::{Store, StoreError};

/// How often a waiting attempt asks again (a lock wait in SQL could not say who holds it).
const LOCK_POLL: Duration = Duration::from_millis(250);

/// Holds a run's lock until dropped.
#[derive(Debug)]
pub struct RunLock {
    conn: Option<PgConnection>,
}

/// Who holds a run's lock, as PostgreSQL knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder's `application_name`: `finrep <role> pid <pid> on <host>`.
    pub application: String,
    /// When the holder's connection opened (RFC 3339), when visible.
    pub since: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.since {
            Some(since) => write!(f, "{} (connected since {since})", self.application),
            None => f.write_str(&self.application),
        }
    }
}

/// How this process names itself to PostgreSQL, so a waiting attempt can say who it waits for.
pub fn application_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".to_string());
    // application_name holds 63 bytes; the pid is what tells two processes apart.
    let mut name = format!("finrep {role} pid {} on {host}", std::process::id());
    if name.len() > 63 {
        let mut cut = 63;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

impl Store {
    /// Takes the lock of run `report_id` (a `reports` row), waiting up to `wait` for its
    /// holder to finish; when it does not, says who holds it.
    pub async fn lock_run(
        &self,
        report_id: i64,
        role: &str,
        wait: Duration,
    ) -> Result<Result<RunLock, LockHolder>, StoreError> {
        let options = self
            .pool()
            .connect_options()
            .as_ref()
            .clone()
            .application_name(&application_name(role));
        let mut conn = options.connect().await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got: bool = sqlx::query("SELECT finrep_try_run_lock($1)")
                .bind(report_id)
                .fetch_one(&mut conn)
                .await?
                .try_get(0)?;
            if got {
                return Ok(Ok(RunLock { conn: Some(conn) }));
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(LOCK_POLL.min(deadline - tokio::time::Instant::now())).await;
        }
        let holder = lock_holder(&mut conn, report_id).await?;
        let _ = conn.close().await;
        Ok(Err(holder))
    }
}

/// The session holding run `report_id`'s lock, as pg_locks and pg_stat_activity show it.
async fn lock_holder(conn: &mut PgConnection, report_id: i64) -> Result<LockHolder, StoreError> {
    let row = sqlx::query("SELECT application, since FROM finrep_run_lock_holder($1)")
        .bind(report_id)
        .fetch_optional(&mut *conn)
        .await?;
    let (application, since) = match row {
        Some(r) => (
            r.try_get::<Option<String>, _>("application")?,
            r.try_get::<Option<String>, _>("since")?,
        ),
        None => (None, None),
    };
    Ok(LockHolder {
        application: application.filter(|a| !a.is_empty()).unwrap_or_else(|| {
            "another session (it just ended, or is not visible to this role)".into()
        }),
        since,
    })
}

impl RunLock {
    /// Releases the lock now (dropping it does too, when the connection closes).
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}
