//! A clock read from a file, so tests and demos can make days pass in seconds with the real
//! binaries: the file holds an RFC 3339 instant, optionally followed by a rate (`x60` runs 60
//! times faster than the wall clock from the moment the file was written — its modification
//! time — so every process reading it, started before or after, agrees on the time). Standalone
//! mode, the controller and a run's pipeline all read it (`--clock-file`, `FINREP_CLOCK_FILE`),
//! so every time they act on and record is the same clock's.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::clock::Clock;

/// How often a sleeper looks at the file again.
const POLL: Duration = Duration::from_millis(20);

/// What the file says, and since when (the file's modification time).
#[derive(Clone, Debug, PartialEq)]
struct Reading {
    text: String,
    at: DateTime<Utc>,
    rate: f64,
    since: SystemTime,
}

pub struct FileClock {
    path: PathBuf,
    last: Mutex<Option<Reading>>,
}

/// Parses `2026-11-24T05:59:00+08:00` or `2026-11-24T05:59:00+08:00 x60`.
pub fn parse(text: &str) -> Option<(DateTime<Utc>, f64)> {
    let mut parts = text.split_whitespace();
    let at = DateTime::parse_from_rfc3339(parts.next()?).ok()?.to_utc();
    let rate = match parts.next() {
        None => 0.0,
        Some(r) => r
            .strip_prefix('x')?
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.0)?,
    };
    parts.next().is_none().then_some((at, rate))
}

impl FileClock {
    /// Fails when the file does not hold a valid instant now.
    pub fn open(path: PathBuf) -> Result<Self, String> {
        let clock = Self {
            path,
            last: Mutex::new(None),
        };
        clock.read().map(|_| clock)
    }

    fn read(&self) -> Result<DateTime<Utc>, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("clock file {}: {e}", self.path.display()))?;
        let text = text.trim().to_string();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_none_or(|r| r.text != text) {
            let (at, rate) = parse(&text).ok_or_else(|| {
                format!(
                    "clock file {} must hold an RFC 3339 instant, optionally followed by a rate such as x60; found {text:?}",
                    self.path.display()
                )
            })?;
            let since = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now());
            *last = Some(Reading {
                text,
                at,
                rate,
                since,
            });
        }
        let r = last.as_ref().ok_or("clock file not read")?;
        let elapsed = SystemTime::now()
            .duration_since(r.since)
            .unwrap_or_default()
            .as_secs_f64()
            * r.rate;
        Ok(r.at + chrono::Duration::milliseconds((elapsed * 1000.0) as i64))
    }
}

/// The clock a process runs on: the file's when `--clock-file` names one, else the wall clock.
pub fn from_file_option(
    path: Option<&std::path::Path>,
) -> Result<std::sync::Arc<dyn Clock>, String> {
    Ok(match path {
        Some(p) => std::sync::Arc::new(FileClock::open(p.to_path_buf())?),
        None => std::sync::Arc::new(crate::clock::SystemClock),
    })
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        match self.read() {
            Ok(t) => t,
            Err(e) => {
                // A half-written file: keep the last instant seen.
                warn!(error = %e, "clock file unreadable; keeping the last instant");
                let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                last.as_ref().map_or_else(Utc::now, |r| r.at)
            }
        }
    }

    /// At most a second: the file may jump at any moment (a test moving to the next slot), and
    /// whoever waits must see it soon.
    fn wall_wait(&self, t: DateTime<Utc>) -> Duration {
        (t - self.now())
            .to_std()
            .unwrap_or_default()
            .min(Duration::from_secs(1))
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            while self.now() < t {
                tokio::time::sleep(POLL).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_rates() {
        let (at, rate) = parse("2026-11-24T05:59:00+08:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-23T21:59:00+00:00");
        assert_eq!(rate, 0.0);
        assert_eq!(parse("2026-11-24T05:59:00Z x60").unwrap().1, 60.0);
        for bad in [
            "",
            "tomorrow",
            "2026-11-24T05:59:00Z 60",
            "2026-11-24T05:59:00Z x-1",
            "2026-11-24T05:59:00Z x2 y",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    /// A running clock counts from when the file was written, not from when a process first
    /// read it: a run started later (a Job's pod) tells the controller's time.
    #[test]
    fn processes_reading_a_running_clock_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now");
        std::fs::write(&path, "2026-11-24T06:00:00Z x60\n").unwrap();
        let ten_seconds_ago = SystemTime::now() - Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(ten_seconds_ago)
            .unwrap();
        let late_reader = FileClock::open(path).unwrap();
        let seconds = (late_reader.now() - parse("2026-11-24T06:00:00Z").unwrap().0).num_seconds();
        assert!((600..605).contains(&seconds), "{seconds} s after 06:00");
    }

    #[test]
    fn a_frozen_clock_moves_only_when_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now");
        std::fs::write(&path, "2026-11-24T05:59:00+08:00\n").unwrap();
        let clock = FileClock::open(path.clone()).unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-11-23T21:59:00+00:00");
        std::fs::write(&path, "2026-11-24T06:00:00+08:00").unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-11-23T22:00:00+00:00");
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-11-23T22:00:00+00:00");
    }
}
