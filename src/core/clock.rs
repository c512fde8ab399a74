//! The clock long-running parts read and sleep on: the delivery loop, the controller and the
//! standalone scheduler. Tests inject one that jumps, so days pass in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A clock to read and sleep on.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// How long to wait on the wall clock before this clock may have reached `t` (a
    /// controller's requeue): the difference, for a clock that moves with the wall clock.
    fn wall_wait(&self, t: DateTime<Utc>) -> Duration {
        (t - self.now()).to_std().unwrap_or_default()
    }

    /// Sleeps for `wait` on this clock.
    fn sleep(&self, wait: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let until = self.now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        self.sleep_until(until)
    }
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (t - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

pub use crate::file_clock::{FileClock, from_file_option};
