//! finrep: a Kubernetes operator that collects financial news and data every morning, builds
//! one ranked report, and mails it to every subscriber inside a delivery window.
//!
//! The parts are crates of their own, so that a release build on a small host compiles one
//! part at a time (docs/benchmarks.md); this crate names them all under one roof, as
//! `finrep::pipeline`, `finrep::controller`, `finrep::store` and so on.
#![forbid(unsafe_code)]

pub use finrep_controller as controller;
pub use finrep_core::*;
pub use finrep_delivery as delivery;
pub use finrep_pipeline as pipeline;
pub use finrep_relay as relay;
pub use finrep_standalone as standalone;
pub use finrep_web as web;
