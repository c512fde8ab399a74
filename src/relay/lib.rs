//! `finrep relay`: the operator's shared SMTP login and summariser key, used by every report
//! without any of them holding it.
//!
//! It runs in the release namespace beside the controller and holds the upstream credentials
//! (from the release namespace's Secrets). Pipeline pods of the report namespaces reach it —
//! admitted by NetworkPolicy, with no credential — as an SMTP server (`smtp`) and as an
//! OpenAI-compatible endpoint (`summarizer`); it sends on only to the hosts the operator
//! configured, so a tenant can use the operator's login but never send it anywhere.
#![forbid(unsafe_code)]

pub mod cli;
pub mod session;
pub mod smtp;
pub mod summarizer;
