//! The operator's side: what a DailyReport owns in the cluster and what its status says. So
//! far the pure parts: the objects it owns (`objects`), the restricted Pod Security Standard
//! they are held to (`pod_security`), the status decided from a run's Job and record
//! (`status`) and which finished runs are kept (`history`); the scheduling decision is
//! `crate::schedule::decide`. The reconciler that observes the cluster and applies them is
//! not written yet. This module may use `api`, `schedule`, `plan`, `run` and `store` — never
//! `pipeline`.

pub mod history;
pub mod objects;
pub mod pod_security;
pub mod status;
