//! What can go wrong in a reconcile, by category: the error policy retries transient errors
//! soon (with a backoff per object) and waits long on permanent ones, which only a change of
//! the object or its environment can cure.

use std::time::Duration;

use crate::plan::PlanError;
use crate::run::ErrorCategory;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("PostgreSQL: {0}")]
    Store(#[from] StoreError),
    #[error("building the plan: {0}")]
    Plan(#[from] PlanError),
    #[error(
        "the plan of {run} is {bytes} bytes compressed; a ConfigMap holds at most {max} (select fewer recipients or sources)"
    )]
    PlanTooLarge {
        run: String,
        bytes: usize,
        max: usize,
    },
    #[error(transparent)]
    NameConflict(#[from] super::cluster::NameConflict),
}

impl From<super::cluster::OwnedWriteError> for ReconcileError {
    fn from(e: super::cluster::OwnedWriteError) -> Self {
        match e {
            super::cluster::OwnedWriteError::Kube(e) => Self::Kube(e),
            super::cluster::OwnedWriteError::Conflict(c) => Self::NameConflict(c),
        }
    }
}

/// The most a plan ConfigMap may carry: the API server's 1 MiB object limit less room for
/// metadata.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024 - 16 * 1024;

impl ReconcileError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Kube(e) => kube_category(e),
            Self::Store(_) => ErrorCategory::Database,
            Self::Plan(_) | Self::PlanTooLarge { .. } | Self::NameConflict(_) => {
                ErrorCategory::Config
            }
        }
    }

    /// Worth retrying soon: the API server or PostgreSQL may answer next time.
    pub fn is_transient(&self) -> bool {
        match self.category() {
            ErrorCategory::Database | ErrorCategory::Network | ErrorCategory::Busy => true,
            ErrorCategory::Config | ErrorCategory::Io | ErrorCategory::Internal => false,
        }
    }
}

/// A refusal by the API server (invalid object, forbidden, bad request) is the request's fault
/// and permanent; conflicts, throttling, server errors and transport failures pass.
fn kube_category(e: &kube::Error) -> ErrorCategory {
    match e {
        kube::Error::Api(status) => match status.code {
            400 | 403 | 404 | 405 | 413 | 415 | 422 => ErrorCategory::Config,
            _ => ErrorCategory::Network,
        },
        kube::Error::SerdeError(_) | kube::Error::BuildRequest(_) => ErrorCategory::Internal,
        _ => ErrorCategory::Network,
    }
}

/// How long to wait before retrying after `failures` failures in a row: transient errors
/// back off from 5 s to 5 min, permanent ones wait 10 min (a change to the object triggers a
/// reconcile sooner anyway).
pub fn retry_after(transient: bool, failures: u32) -> Duration {
    if !transient {
        return Duration::from_secs(600);
    }
    let seconds = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> ReconcileError {
        ReconcileError::Kube(kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        })))
    }

    #[test]
    fn refusals_are_permanent_and_outages_transient() {
        assert!(!api_error(422).is_transient());
        assert!(!api_error(403).is_transient());
        assert!(api_error(409).is_transient());
        assert!(api_error(429).is_transient());
        assert!(api_error(503).is_transient());
        assert!(
            !ReconcileError::PlanTooLarge {
                run: "r".into(),
                bytes: 2,
                max: 1
            }
            .is_transient()
        );
    }

    #[test]
    fn transient_retries_back_off_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_after(true, n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_after(false, 1).as_secs(), 600);
    }
}
