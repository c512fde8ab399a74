//! finrep's shared core: the resource types and their validation, the run plan and its
//! schedule, the store, the run's vocabulary and the untrusted-text rules, used by the
//! operator, the pipeline, delivery, the console and standalone mode alike. Each of those is
//! a crate of its own (a release build compiles one crate at a time in far less memory than
//! one crate holding all of them; docs/benchmarks.md); the `finrep` crate puts them together.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod backup;
pub mod clock;
pub mod crd;
pub mod editor;
pub mod file_clock;
pub mod glance;
pub mod guard;
pub mod jsonpath;
pub mod manifest;
pub mod matching;
pub mod metrics;
pub mod overview;
pub mod pace;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod signals;
pub mod store;
pub mod telemetry;
pub mod text_layout;
pub mod tls;
pub mod unsubscribe;
pub mod untrusted;
pub mod validation;
pub mod window;

/// Version and git revision of this build, recorded with every report.
pub mod build {
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    pub const REVISION: &str = match option_env!("FINREP_GIT_REVISION") {
        Some(r) => r,
        None => "unknown",
    };
}
