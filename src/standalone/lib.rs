//! Standalone mode: the operator's schedule without a cluster. One process reads the same
//! manifests (`--config DIR`), decides slots with the controller's functions, runs each
//! report's plan in-process at its slot and backs the database up at each report's backup
//! slot, keeping its scheduling state in PostgreSQL so a restart neither repeats nor forgets
//! a slot.

#![forbid(unsafe_code)]

// The core's modules, reachable as `crate::api` and so on from every module here.
use finrep_core::{
    admin, api, backup, clock, manifest, metrics, plan, run, schedule, signals, store, validation,
    window,
};
use finrep_delivery as delivery;
use finrep_pipeline as pipeline;

pub mod config;
pub mod error;
pub mod runner;
pub mod scheduler;
pub mod slots;

pub use error::StandaloneError;
pub use scheduler::{Scheduler, Settings};
