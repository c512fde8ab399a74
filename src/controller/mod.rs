//! The operator's side: what a DailyReport owns in the cluster. So far the pure builders of
//! the objects it owns (`objects`) and the restricted Pod Security Standard they are held to
//! (`pod_security`); the reconciler that applies them is not written yet. This module may use
//! `api`, `schedule`, `plan`, `run` and `store` — never `pipeline`.

pub mod objects;
pub mod pod_security;
