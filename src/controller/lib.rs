//! The operator: what a DailyReport owns in the cluster and what its status says.
//!
//! Pure parts, tested directly: the objects it owns (`objects`), the restricted Pod Security
//! Standard they are held to (`pod_security`), the status decided from a run's Job and record
//! (`status`), Source and Recipient status from their fetch and delivery records (`health`),
//! which finished runs are kept (`history`), what is read off a Job (`observed`), and the
//! whole reconcile decision (`desired`) on top of `crate::schedule::decide`.
//!
//! Thin I/O around them: the reconcilers (`report_reconciler`, `health_reconciler`) observe,
//! call the pure decision and apply it through `cluster`; `runtime` wires the watches, leader
//! election, the admin port and shutdown. This crate depends on `finrep-core` alone (`api`,
//! `schedule`, `plan`, `run`, `store`, …): never on the pipeline, delivery or the console.

#![forbid(unsafe_code)]

// The core's modules, reachable as `crate::api` and so on from every module here.
use finrep_core::{
    admin, api, build, clock, metrics, plan, run, schedule, signals, store, tls, unsubscribe,
    untrusted, validation, window,
};

pub mod cli;
pub mod cluster;
pub mod context;
pub mod desired;
pub mod editor;
pub mod error;
pub mod health;
pub mod health_loop;
pub mod health_reconciler;
pub mod history;
pub mod image_policy;
pub mod objects;
pub mod observed;
pub mod pod_security;
pub mod report_reconciler;
pub mod run_queue;
pub mod runtime;
pub mod status;
pub mod tenant_secret;
