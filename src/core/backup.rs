//! Backups of the finrep database: `pg_dump` into gzipped plain SQL named
//! `finrep_<name>_<YYYYMMDD>.sql.gz`, retention that deletes only finrep's own dumps of that
//! name, and restore into an empty database with `psql`. The operator's backup CronJob writes
//! and prunes the same names (`controller::objects::backup_args` runs this code).
//!
//! The decisions (names, what to prune, whether a client may dump a server) are pure; the
//! rest runs the PostgreSQL client programs, which must be of the server's major version or
//! newer: pg_dump refuses to dump a newer server, and says so less clearly than we do.

use std::io::{Read, Write};
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
    #[error(
        "the target database already holds tables ({tables}); restore into an empty database (createdb, then finrep restore)"
    )]
    NotEmpty { tables: String },
    #[error("{0}; nothing was restored, the database is as empty as before")]
    Aborted(String),
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
            Self::Client(_) | Self::TooOld { .. } | Self::NotEmpty { .. } | Self::Aborted(_) => {
                ErrorCategory::Config
            }
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

/// How a client program reaches the database without its password on the command line (where
/// `ps` shows it to every user of the host): the URL without the password, for `--dbname`, and
/// the password, for `PGPASSWORD` in the program's environment only.
pub fn client_connection(database_url: &str) -> (String, Option<String>) {
    let Ok(mut url) = url::Url::parse(database_url) else {
        return (database_url.to_string(), None);
    };
    let password = url.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    if password.is_some() && url.set_password(None).is_err() {
        return (database_url.to_string(), None);
    }
    (url.to_string(), password)
}

/// A client program's command: the database without the password in its arguments, the
/// password in its environment.
fn client_command(program: &Path, database_url: &str) -> (Command, String) {
    let (url, password) = client_connection(database_url);
    let mut cmd = Command::new(program);
    cmd.env_remove("PGPASSWORD");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    (cmd, url)
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

/// Dumps the database behind `database_url` into the target directory, prunes old dumps
/// of the target's name, and records the result in the database for the console (a failure
/// to record is logged: the dump is what matters).
pub async fn backup(
    store: &Store,
    database_url: &str,
    pg_dump: &Path,
    target: &BackupTarget<'_>,
) -> Result<BackupOutcome, BackupError> {
    let started = chrono::Utc::now();
    let result = dump_and_prune(store, database_url, pg_dump, target).await;
    let file;
    let error;
    let recorded = match &result {
        Ok(o) => {
            file = o.file.display().to_string();
            Ok((file.as_str(), i64::try_from(o.bytes).unwrap_or(i64::MAX)))
        }
        Err(e) => {
            error = e.to_string();
            Err(error.as_str())
        }
    };
    if let Err(e) = store.record_backup(target.name, started, recorded).await {
        tracing::warn!(error = %e, "the backup's result could not be recorded");
    }
    result
}

async fn dump_and_prune(
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
    private_dir(dir).map_err(io(dir))?;
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

/// Creates `dir` readable by its owner only, or makes an existing one so where this process
/// may (a mounted volume's root may belong to someone else: it is left as it is, and each dump
/// is 0600 whatever the directory).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        return std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0
        && let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot make the backup directory private; each dump is still readable by its owner only");
    }
    Ok(())
}

/// A client program's standard error, read aside on a thread of its own so that a chatty
/// client can never stall on a full pipe.
struct ClientStderr(Option<std::thread::JoinHandle<String>>);

impl ClientStderr {
    fn aside(child: &mut std::process::Child) -> Self {
        Self(child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = e.read_to_string(&mut text);
                text
            })
        }))
    }

    /// What the client wrote, trimmed, with `database_url` redacted: the client's words may
    /// quote it.
    fn text(self, database_url: &str) -> String {
        let text = self.0.and_then(|t| t.join().ok()).unwrap_or_default();
        text.replace(database_url, &redact_url(database_url))
            .trim()
            .to_string()
    }
}

/// Streams `pg_dump`'s output through gzip into `target`.
fn dump_to(pg_dump: &Path, database_url: &str, target: &Path) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: target.to_path_buf(),
        source,
    };
    let (mut cmd, dbname) = client_command(pg_dump, database_url);
    let mut child = cmd
        .args(["--no-owner", "--no-privileges", "--dbname", &dbname])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Client(format!("cannot run {}: {e}", pg_dump.display())))?;
    let stderr = ClientStderr::aside(&mut child);
    let out = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(target)
            .map_err(io)?
    };
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    if let Some(mut stdout) = child.stdout.take() {
        std::io::copy(&mut stdout, &mut gz).map_err(io)?;
    }
    gz.finish().map_err(io)?;
    let status = child
        .wait()
        .map_err(|e| BackupError::Client(format!("pg_dump: {e}")))?;
    if !status.success() {
        let _ = std::fs::remove_file(target);
        return Err(BackupError::Client(format!(
            "pg_dump failed: {}",
            stderr.text(database_url)
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

/// The line `pg_dump` ends a complete plain dump with: a dump without it was cut short.
const DUMP_COMPLETE: &[u8] = b"-- PostgreSQL database dump complete";

/// Restores a dump (gzipped or plain SQL) into the empty database behind `database_url`, all
/// or nothing: one transaction that stops at the first error, fed as the file is read (never
/// the whole dump in memory), and committed only when the dump's own closing line arrived.
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
    ensure_empty(store).await?;
    let (program, url, file) = (
        psql.to_path_buf(),
        database_url.to_string(),
        file.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || stream_restore(&program, &url, &file))
        .await
        .map_err(|e| BackupError::Client(format!("the restore task failed: {e}")))?
}

/// Refuses a database holding any table: a restore adds everything, it replaces nothing.
async fn ensure_empty(store: &Store) -> Result<(), BackupError> {
    let tables: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(schemaname || '.' || tablename, ', ' ORDER BY schemaname, tablename)
         FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(store.pool())
    .await
    .map_err(StoreError::from)?;
    match tables {
        Some(tables) => Err(BackupError::NotEmpty { tables }),
        None => Ok(()),
    }
}

/// The dump as a stream of SQL: gunzipped on the fly when it is gzipped.
fn open_dump(file: &Path) -> Result<Box<dyn std::io::Read + Send>, BackupError> {
    use std::io::{BufRead, BufReader};
    let io = |source| BackupError::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(std::fs::File::open(file).map_err(io)?);
    let gzipped = reader.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// Where the copy of a dump into psql got to.
#[derive(Default)]
struct Progress {
    bytes: u64,
    lines: u64,
    /// The end of what was sent, to find the closing line and to say where a dump stops.
    tail: Vec<u8>,
}

impl Progress {
    const TAIL: usize = 4096;

    fn add(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > 2 * Self::TAIL {
            self.tail.drain(..self.tail.len() - Self::TAIL);
        }
    }

    fn complete(&self) -> bool {
        self.tail
            .windows(DUMP_COMPLETE.len())
            .any(|w| w == DUMP_COMPLETE)
    }

    /// The last statement line sent, shortened, for the message.
    fn last_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.tail);
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("--"))
            .unwrap_or_default();
        crate::untrusted::clean(line, 120)
    }
}

fn stream_restore(psql: &Path, database_url: &str, file: &Path) -> Result<(), BackupError> {
    let mut dump = open_dump(file)?;
    let (mut cmd, dbname) = client_command(psql, database_url);
    let mut child = cmd
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
        .args(["--dbname", &dbname])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Client(format!("cannot run {}: {e}", psql.display())))?;
    let stderr = ClientStderr::aside(&mut child);
    let psql_error = |stderr: ClientStderr| {
        BackupError::Aborted(format!(
            "psql stopped at an error: {}",
            stderr.text(database_url)
        ))
    };
    let mut progress = Progress::default();
    let mut stdin = child.stdin.take();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match dump.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                // psql has not seen the end of its input: killed, it commits nothing.
                let _ = child.kill();
                let _ = child.wait();
                return Err(BackupError::Aborted(format!(
                    "{} cannot be read past {} bytes of SQL (line {}, after `{}`): {e}",
                    file.display(),
                    progress.bytes,
                    progress.lines,
                    progress.last_line()
                )));
            }
        };
        progress.add(&buf[..n]);
        let sent = stdin.as_mut().map(|s| s.write_all(&buf[..n]));
        if let Some(Err(_)) = sent {
            // psql closed its input: it stopped at an error, which its own words name.
            let _ = child.wait();
            return Err(psql_error(stderr));
        }
    }
    if !progress.complete() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BackupError::Aborted(format!(
            "{} ends at line {} (`{}`) without pg_dump's closing line: the dump was cut short",
            file.display(),
            progress.lines,
            progress.last_line()
        )));
    }
    // End of input: psql commits the one transaction, unless a statement failed.
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| BackupError::Client(format!("psql: {e}")))?;
    if !status.success() {
        return Err(psql_error(stderr));
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
