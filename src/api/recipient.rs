// Several printcolumn(...) entries share argument values, which this lint mistakes for
// repeated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, default_true};

/// An e-mail subscriber. Which reports it receives is decided by each DailyReport's
/// `recipientSelector`, so one Recipient can subscribe to several reports.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "finrep.io",
    version = "v1alpha1",
    kind = "Recipient",
    namespaced,
    shortname = "rcpt",
    category = "finrep",
    status = "RecipientStatus",
    doc = "An e-mail subscriber of daily reports.",
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(
        name = "Last-Delivered",
        type_ = "string",
        json_path = ".status.lastDelivered.date"
    ),
    printcolumn(
        name = "Deliverable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Deliverable\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RecipientSpec {
    /// E-mail address the report is sent to, e.g. analyst@example.com.
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s<>()\\\\[\\\\],;:\"]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$')").message("email must be a plain address such as analyst@example.com (no display name, spaces or brackets)"))]
    pub email: String,

    /// Name used in the To: header and the greeting, e.g. 张伟.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub display_name: Option<String>,

    /// Whether this recipient receives reports. Disabling keeps the delivery history.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Report sections (Source categories) this recipient wants; empty means every section.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub categories: Vec<String>,

    /// `html` (HTML with a plain-text alternative) or `text` (plain text only).
    #[serde(default)]
    pub format: MailFormat,
}

/// Body format of the e-mail a recipient receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MailFormat {
    /// HTML with a plain-text alternative (multipart/alternative).
    #[default]
    Html,
    /// Plain text only.
    Text,
}

/// Observed state of a Recipient, written by the controller from the delivery log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecipientStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The most recent delivery attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered: Option<LastDelivery>,
    /// Reports delivered to this address so far.
    #[serde(default)]
    pub delivered_count: u64,
    /// Permanent rejections by the receiving server so far.
    #[serde(default)]
    pub bounce_count: u64,
    /// True when a permanent rejection stopped deliveries; set the annotation
    /// `finrep.io/unblock` to a new value to lift it.
    #[serde(default)]
    pub blacklisted: bool,
    /// Why the address was blacklisted (the SMTP reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blacklist_reason: Option<String>,
    /// When the address was blacklisted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blacklisted_since: Option<String>,
    /// The last value of the `finrep.io/unblock` annotation acted on: a value lifts the
    /// blacklist entry once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_unblock: Option<String>,
    /// Standard conditions: `Ready` (the spec is valid) and `Deliverable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One delivery as shown in a Recipient's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    /// Local date of the report (YYYY-MM-DD).
    pub date: String,
    /// Name of the DailyReport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Delivery outcome: sent, deferred, failed, bounced or uncertain.
    pub outcome: String,
}
