//! Why a standalone task failed, and whether a later attempt may succeed.

use crate::backup::BackupError;
use crate::manifest::ManifestError;
use crate::pipeline::RunError;
use crate::plan::PlanError;
use crate::run::ErrorCategory;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("configuration: {0}")]
    Config(#[from] ManifestError),
    #[error("plan: {0}")]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run: {0}")]
    Run(#[from] RunError),
    #[error("backup: {0}")]
    Backup(#[from] BackupError),
    #[error("report {0} is no longer in the configuration")]
    Gone(String),
    #[error("admin port {addr}: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl StandaloneError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Config(_) | Self::Plan(_) | Self::Gone(_) => ErrorCategory::Config,
            Self::Store(_) => ErrorCategory::Database,
            Self::Run(e) => e.category(),
            Self::Backup(e) => e.category(),
            Self::Admin { .. } => ErrorCategory::Io,
        }
    }

    /// A later attempt may succeed (the database or a server may come back).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.category(),
            ErrorCategory::Database | ErrorCategory::Network | ErrorCategory::Busy
        )
    }
}
