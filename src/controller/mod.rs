//! The operator's side: what a DailyReport owns in the cluster and what its status says. So
//! far the pure parts: the objects it owns (`objects`), the restricted Pod Security Standard
//! they are held to (`pod_security`), the status decided from a run's Job and record
//! (`status`), Source and Recipient status from their fetch and delivery records (`health`),
//! which finished runs are kept (`history`), and the whole reconcile decision
//! over them (`desired`: the run to start, missed slots, status, Events, the next wake-up),
//! on top of `crate::schedule::decide`. The reconciler that observes the cluster and applies
//! the decision is not written yet. This module may use `api`, `schedule`, `plan`, `run` and `store` — never
//! `pipeline`.

pub mod desired;
pub mod health;
pub mod history;
pub mod objects;
pub mod pod_security;
pub mod status;
