//! A clock for delivery tests: sleeping moves it forward at once; every reading may advance it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use finrep::delivery::Clock;

/// A clock that jumps: sleeping moves it forward at once; every reading may advance it.
pub struct FakeClock {
    now: AtomicI64,
    step_ms: i64,
}

impl FakeClock {
    pub fn new(start: DateTime<Utc>, step: Duration) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(start.timestamp_millis()),
            step_ms: step.as_millis() as i64,
        })
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        let ms = self.now.fetch_add(self.step_ms, Ordering::SeqCst);
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.now.fetch_max(t.timestamp_millis(), Ordering::SeqCst);
        Box::pin(async {})
    }
}

/// The day the delivery tests' runs are for.
pub fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

/// `local` (HH:MM) on that day in Asia/Shanghai.
pub fn at(local: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-11-23T{local}:00+08:00"))
        .unwrap()
        .to_utc()
}
