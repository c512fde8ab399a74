//! finrep: a Kubernetes operator that collects financial news and data every morning, builds
//! one ranked report, and mails it to every subscriber inside a delivery window.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod backup;
pub mod clock;
pub mod controller;
pub mod crd;
pub mod delivery;
pub mod guard;
pub mod jsonpath;
pub mod manifest;
pub mod matching;
pub mod metrics;
pub mod overview;
pub mod pipeline;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod signals;
pub mod standalone;
pub mod store;
pub mod telemetry;
pub mod text_layout;
pub mod tls;
pub mod unsubscribe;
pub mod untrusted;
pub mod validation;
pub mod web;
pub mod window;

/// Version and git revision of this build, recorded with every report.
pub mod build {
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    pub const REVISION: &str = match option_env!("FINREP_GIT_REVISION") {
        Some(r) => r,
        None => "unknown",
    };
}
