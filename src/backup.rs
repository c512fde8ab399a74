//! Backups of the finrep database: `pg_dump` into gzipped plain SQL named
//! `finrep_<name>_<YYYYMMDD>.sql.gz`, retention that deletes only finrep's own dumps of that
//! name, and restore into an empty database with `psql`. The operator's backup CronJob writes
//! and prunes the same names (`controller::objects::backup_args` runs this code).
//!
//! The decisions (names, what to prune, whether a client may dump a server) are pure; the
//! rest runs the PostgreSQL client programs, which must be of the server's major version or
//! newer: pg_dump refuses to dump a newer server, and says so less clearly than we do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::NaiveDate;

use crate::store::{Store, StoreError};
use crate::untrusted::redact_url;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Client(String),
    #[error(
        "{program} is PostgreSQL {client} but the server is PostgreSQL {server}: a client older than the server cannot dump it; install postgresql-client-{server} or point --pg-dump at it"
    )]
    TooOld {
        program: String,
        client: u32,
        server: u32,
    },
    #[error("the target database already holds finrep's tables; restore into an empty database")]
    NotEmpty,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BackupError {
    pub fn category(&self) -> crate::run::ErrorCategory {
        use crate::run::ErrorCategory;
        match self {
            Self::Client(_) | Self::TooOld { .. } | Self::NotEmpty => ErrorCategory::Config,
            Self::Store(_) => ErrorCategory::Database,
            Self::Io { .. } => ErrorCategory::Io,
        }
    }
}

/// A dump's file name.
pub fn file_name(name: &str, date: NaiveDate) -> String {
    format!("finrep_{name}_{}.sql.gz", date.format("%Y%m%d"))
}

/// The date in a dump's name, when `file` is a dump of `name`.
pub fn dump_date(name: &str, file: &str) -> Option<NaiveDate> {
    let digits = file
        .strip_prefix(&format!("finrep_{name}_"))?
        .strip_suffix(".sql.gz")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Dumps of `name` among `files` older than `retention_days` before `today`. Other files,
/// other names and anything not named like a dump are never listed.
pub fn to_prune(
    files: &[String],
    name: &str,
    today: NaiveDate,
    retention_days: u32,
) -> Vec<String> {
    let oldest_kept = today - chrono::Duration::days(i64::from(retention_days));
    let mut out: Vec<String> = files
        .iter()
        .filter(|f| dump_date(name, f).is_some_and(|d| d < oldest_kept))
        .cloned()
        .collect();
    out.sort();
    out
}

/// The major version in a client's `--version` line (`pg_dump (PostgreSQL) 15.20 (Debian …)`).
pub fn client_major(version_line: &str) -> Option<u32> {
    version_line
        .split_whitespace()
        .find_map(|w| w.split('.').next()?.parse::<u32>().ok().filter(|m| *m >= 9))
}

/// Refuses a client older than the server.
pub fn check_versions(program: &str, client: u32, server: u32) -> Result<(), BackupError> {
    if client < server {
        return Err(BackupError::TooOld {
            program: program.to_string(),
            client,
            server,
        });
    }
    Ok(())
}

fn run_version(program: &Path) -> Result<u32, BackupError> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|e| BackupError::Client(format!("cannot run {}: {e}", program.display())))?;
    let line = String::from_utf8_lossy(&out.stdout);
    client_major(&line).ok_or_else(|| {
        BackupError::Client(format!(
            "cannot read the version of {} from {line:?}",
            program.display()
        ))
    })
}

async fn server_major(store: &Store) -> Result<u32, BackupError> {
    let num: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(store.pool())
        .await
        .map_err(StoreError::from)?;
    Ok(num.parse::<u32>().map(|n| n / 10_000).unwrap_or(0))
}

/// What `backup` did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackupOutcome {
    pub file: PathBuf,
    pub bytes: u64,
    pub pruned: Vec<String>,
}

/// Where and what `backup` dumps.
#[derive(Clone, Debug)]
pub struct BackupTarget<'a> {
    pub dir: &'a Path,
    /// The name in the file name (a report's name).
    pub name: &'a str,
    /// The date in the file name; retention counts back from it.
    pub today: NaiveDate,
    pub retention_days: u32,
}

/// Dumps the database behind `database_url` into the target directory and prunes old dumps
/// of the target's name.
pub async fn backup(
    store: &Store,
    database_url: &str,
    pg_dump: &Path,
    target: &BackupTarget<'_>,
) -> Result<BackupOutcome, BackupError> {
    let BackupTarget {
        dir,
        name,
        today,
        retention_days,
    } = *target;
    check_versions(
        &pg_dump.display().to_string(),
        run_version(pg_dump)?,
        server_major(store).await?,
    )?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let file = dir.join(file_name(name, today));
    let partial = file.with_extension("gz.partial");
    let (program, url, target) = (
        pg_dump.to_path_buf(),
        database_url.to_string(),
        partial.clone(),
    );
    tokio::task::spawn_blocking(move || dump_to(&program, &url, &target))
        .await
        .map_err(|e| BackupError::Client(format!("the dump task failed: {e}")))??;
    std::fs::rename(&partial, &file).map_err(io(&file))?;
    let bytes = std::fs::metadata(&file).map_err(io(&file))?.len();
    let pruned = prune(dir, name, today, retention_days)?;
    Ok(BackupOutcome {
        file,
        bytes,
        pruned,
    })
}

/// Streams `pg_dump`'s output through gzip into `target`.
fn dump_to(pg_dump: &Path, database_url: &str, target: &Path) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: target.to_path_buf(),
        source,
    };
    let mut child = Command::new(pg_dump)
        .args(["--no-owner", "--no-privileges", "--dbname", database_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Client(format!("cannot run {}: {e}", pg_dump.display())))?;
    // Read stderr aside, so a chatty client can never stall on a full pipe.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
            text
        })
    });
    let out = std::fs::File::create(target).map_err(io)?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    if let Some(mut stdout) = child.stdout.take() {
        std::io::copy(&mut stdout, &mut gz).map_err(io)?;
    }
    gz.finish().map_err(io)?;
    let status = child
        .wait()
        .map_err(|e| BackupError::Client(format!("pg_dump: {e}")))?;
    if !status.success() {
        let err = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        // The client's words may quote the URL, password included.
        let err = err.replace(database_url, &redact_url(database_url));
        let _ = std::fs::remove_file(target);
        return Err(BackupError::Client(format!(
            "pg_dump failed: {}",
            err.trim()
        )));
    }
    Ok(())
}

fn prune(
    dir: &Path,
    name: &str,
    today: NaiveDate,
    retention_days: u32,
) -> Result<Vec<String>, BackupError> {
    let files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| BackupError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let doomed = to_prune(&files, name, today, retention_days);
    for f in &doomed {
        let path = dir.join(f);
        std::fs::remove_file(&path).map_err(|source| BackupError::Io { path, source })?;
    }
    Ok(doomed)
}

/// Restores a dump (gzipped or plain SQL) into the empty database behind `database_url`.
pub async fn restore(
    store: &Store,
    database_url: &str,
    psql: &Path,
    file: &Path,
) -> Result<(), BackupError> {
    check_versions(
        &psql.display().to_string(),
        run_version(psql)?,
        server_major(store).await?,
    )?;
    let occupied: bool = sqlx::query_scalar("SELECT to_regclass('public.reports') IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .map_err(StoreError::from)?;
    if occupied {
        return Err(BackupError::NotEmpty);
    }
    let bytes = std::fs::read(file).map_err(|source| BackupError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let sql = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(bytes.as_slice()),
            &mut out,
        )
        .map_err(|source| BackupError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        out
    } else {
        bytes
    };
    let mut child = Command::new(psql)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--dbname",
            database_url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Client(format!("cannot run {}: {e}", psql.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&sql).map_err(|source| BackupError::Io {
            path: file.to_path_buf(),
            source,
        })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BackupError::Client(format!("psql: {e}")))?;
    if !out.status.success() {
        let err =
            String::from_utf8_lossy(&out.stderr).replace(database_url, &redact_url(database_url));
        return Err(BackupError::Client(format!("psql failed: {}", err.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn names_and_dates() {
        assert_eq!(
            file_name("brief", d("2026-11-23")),
            "finrep_brief_20261123.sql.gz"
        );
        assert_eq!(
            dump_date("brief", "finrep_brief_20261123.sql.gz"),
            Some(d("2026-11-23"))
        );
        for not_ours in [
            "finrep_brief_2026112.sql.gz",
            "finrep_brief_20261323.sql.gz",
            "finrep_other_20261123.sql.gz",
            "finrep_brief_20261123.sql.gz.partial",
            "notes.txt",
        ] {
            assert_eq!(dump_date("brief", not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn retention_deletes_only_our_old_dumps() {
        let files: Vec<String> = [
            "finrep_brief_20261101.sql.gz",
            "finrep_brief_20261115.sql.gz",
            "finrep_brief_20261116.sql.gz",
            "finrep_brief_20261123.sql.gz",
            "finrep_other_20261101.sql.gz",
            "finrep_brief_20261101.sql.gz.bak",
            "important.sql.gz",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            to_prune(&files, "brief", d("2026-11-23"), 7),
            [
                "finrep_brief_20261101.sql.gz",
                "finrep_brief_20261115.sql.gz"
            ]
        );
    }

    #[test]
    fn an_older_client_is_refused() {
        assert_eq!(
            client_major("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(client_major("psql (PostgreSQL) 16.4"), Some(16));
        assert!(check_versions("pg_dump", 16, 16).is_ok());
        assert!(check_versions("pg_dump", 17, 16).is_ok());
        let err = check_versions("pg_dump", 15, 16).unwrap_err().to_string();
        assert!(err.contains("postgresql-client-16"), "{err}");
    }
}
