//! The custom resources users type: `Source`, `Recipient` and `DailyReport`.
//!
//! The Rust types are the source of truth for the CRDs (`finrep crd` prints them). Everything
//! here is plain data plus pure checks: no I/O, so the controller, standalone mode and
//! `finrep validate` share one definition of what a valid resource is.

mod catalog_entry;
mod daily_report;
pub mod lean;
mod recipient;
pub mod selector;
mod source;

pub use catalog_entry::{CatalogEntry, CompactLabels, StatusMemory, status_digest};
pub use daily_report::*;
pub use recipient::*;
pub use source::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, LabelSelectorRequirement,
};

/// API group of every finrep resource.
pub const GROUP: &str = "finrep.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "finrep.io/v1alpha1";

/// Annotations users set on resources.
pub mod annotations {
    /// On a DailyReport: a new value starts one manual run now (today's run of the report).
    pub const RUN_NOW: &str = "finrep.io/run-now";
    /// On a Recipient: a new value lifts its bounce (never an unsubscribe).
    pub const UNBLOCK: &str = "finrep.io/unblock";
    /// On a DailyReport: a new value composes the next slot's report (or `PREVIEW_DATE`'s)
    /// and sends it to nobody.
    pub const PREVIEW: &str = "finrep.io/preview";
    /// On a DailyReport: the local date (YYYY-MM-DD) a preview is of, instead of the next slot.
    pub const PREVIEW_DATE: &str = "finrep.io/preview-date";
    /// On a DailyReport: the Recipient whose copy a preview shows.
    pub const PREVIEW_AS: &str = "finrep.io/preview-as";
    /// On a DailyReport: `RECIPIENT` (or `RECIPIENT#anything`, to send again) sends one test
    /// copy of the latest preview or run to that Recipient of the report.
    pub const TEST_SEND: &str = "finrep.io/test-send";
}

/// Condition types and reasons, named once so the controller, console and tests agree.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const DELIVERABLE: &str = "Deliverable";
    pub const LAST_RUN_SUCCEEDED: &str = "LastRunSucceeded";
}

/// The three kinds finrep understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Source,
    Recipient,
    DailyReport,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 3] = [Self::Source, Self::Recipient, Self::DailyReport];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "Source",
            Self::Recipient => "Recipient",
            Self::DailyReport => "DailyReport",
        }
    }

    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The generated CRD of this kind.
    pub fn crd(self) -> CustomResourceDefinition {
        match self {
            Self::Source => Source::crd(),
            Self::Recipient => Recipient::crd(),
            Self::DailyReport => DailyReport::crd(),
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Secrets of the operator's own pods — the database URL and the unsubscribe signing key —
/// which the chart places in every report namespace. No resource may name them: a Source's
/// header, SMTP AUTH or a summariser's key would send them to whatever server the resource
/// names. (An operator who renames them tells the controller, which refuses those names too.)
pub const RESERVED_SECRET_NAMES: [&str; 2] = ["finrep-database", "finrep-unsubscribe"];

/// The CEL rule keeping a Secret name field off `RESERVED_SECRET_NAMES` (a test holds the two
/// lists equal).
pub const RESERVED_SECRET_RULE: &str = "!(self in ['finrep-database', 'finrep-unsubscribe'])";

/// The message of `RESERVED_SECRET_RULE`, also `finrep validate`'s and the controller's.
pub const RESERVED_SECRET_MESSAGE: &str = "this Secret belongs to the finrep operator (the database URL, the unsubscribe signing key) and cannot be used by a resource; create a Secret of your own";

/// A key inside a Secret in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (in the same namespace as this resource).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(RESERVED_SECRET_RULE).message(RESERVED_SECRET_MESSAGE))]
    pub name: String,
    /// Key inside the Secret whose value is used.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Include / exclude keyword filters applied to item titles and summaries.
///
/// Each entry is a plain word or phrase (matched case-insensitively as a substring), or a
/// regular expression written as `re:<pattern>`. Regular expressions run in linear time (no
/// backreferences or look-around), so a filter can never stall a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeywordFilters {
    /// When not empty, an item is kept only if it matches at least one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub include: Vec<String>,
    /// An item matching any of these is dropped (applied after `include`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub exclude: Vec<String>,
}

impl KeywordFilters {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

pub(crate) fn default_true() -> bool {
    true
}
