// Several printcolumn(...) entries share argument values, which this lint mistakes for
// repeated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, SecretKeyRef, default_true};

/// A subscriber: an e-mail address or a chat group (a WeCom, DingTalk or Feishu/Lark group
/// bot). Which reports it receives is decided by each DailyReport's `recipientSelector`, so
/// one Recipient can subscribe to several reports.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "finrep.io",
    version = "v1alpha1",
    kind = "Recipient",
    namespaced,
    shortname = "rcpt",
    category = "finrep",
    status = "RecipientStatus",
    doc = "A subscriber of daily reports: an e-mail address or a chat group.",
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Chat", type_ = "string", json_path = ".spec.chat.platform"),
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
#[x_kube(validation = Rule::new("has(self.email) != has(self.chat)").message(ONE_CHANNEL_MESSAGE))]
pub struct RecipientSpec {
    /// E-mail address the report is sent to, e.g. analyst@example.com. Exactly one of
    /// `email` and `chat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s<>()\\\\[\\\\],;:\"]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$')").message("email must be a plain address such as analyst@example.com (no display name, spaces or brackets)"))]
    pub email: Option<String>,

    /// A chat group the report is posted to by its group bot (WeCom, DingTalk, Feishu or
    /// Lark). Exactly one of `email` and `chat`.
    // Boxed: most Recipients are addresses, and the controller caches thousands of specs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<Box<ChatGroup>>,

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

    /// `html` (HTML with a plain-text alternative) or `text` (plain text only); e-mail only.
    #[serde(default)]
    pub format: MailFormat,
}

/// The refusal when a Recipient names both an address and a chat group, or neither.
pub const ONE_CHANNEL_MESSAGE: &str = "a Recipient is either an e-mail address (spec.email) or a chat group (spec.chat): set exactly one";

/// A chat group reached through its custom group bot's webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.platform != 'wecom' || !has(self.signingSecretRef)").message("WeCom group bots do not sign requests: remove chat.signingSecretRef").field_path(".signingSecretRef"))]
#[x_kube(validation = Rule::new("self.platform != 'wecom' || !has(self.keyword)").message("WeCom group bots have no custom keywords: remove chat.keyword").field_path(".keyword"))]
pub struct ChatGroup {
    /// Which platform's group bot: `wecom` (企业微信), `dingtalk` (钉钉), `feishu` (飞书) or
    /// `lark` (Lark, Feishu's international edition).
    pub platform: ChatPlatform,
    /// The Secret key holding the bot's webhook URL, e.g.
    /// https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… — the URL is a credential: it
    /// is read only from a Secret of this namespace and never shown.
    pub webhook_secret_ref: SecretKeyRef,
    /// The Secret key holding the bot's signing secret (DingTalk 加签 `SEC…`, Feishu/Lark
    /// 签名校验), when the bot was created with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_ref: Option<SecretKeyRef>,
    /// The custom keyword the bot requires (DingTalk, Feishu/Lark 自定义关键词): added to the
    /// message when the message does not already hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("!self.matches('[\\\\[\\\\]()*_`#<>|~!\\\\\\\\\\\\r\\\\n]')").message("keyword must be plain words without line breaks or markup characters ([ ] ( ) * _ ` # < > | ~ ! and backslash)"))]
    pub keyword: Option<String>,
    /// Language of the message's fixed words: `zh` (default) or `en`.
    #[serde(default)]
    pub language: ChatLanguage,
}

/// A group-bot platform.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ChatPlatform {
    /// 企业微信 group bot (qyapi.weixin.qq.com).
    Wecom,
    /// 钉钉 custom bot (oapi.dingtalk.com).
    Dingtalk,
    /// 飞书 custom bot (open.feishu.cn).
    Feishu,
    /// Lark custom bot (open.larksuite.com).
    Lark,
}

impl ChatPlatform {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Wecom => "wecom",
            Self::Dingtalk => "dingtalk",
            Self::Feishu => "feishu",
            Self::Lark => "lark",
        }
    }
}

/// Language of a chat message's fixed words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatLanguage {
    #[default]
    Zh,
    En,
}

impl RecipientSpec {
    /// The identity of this recipient's deliveries and blacklist entry: the lower-cased
    /// address, or `<platform>:<name>` for a chat group (its webhook is a secret, its
    /// Recipient name is not).
    pub fn address(&self, name: &str) -> String {
        match (&self.email, &self.chat) {
            (Some(email), _) => email.trim().to_lowercase(),
            (None, Some(chat)) => format!("{}:{name}", chat.platform.as_str()),
            (None, None) => String::new(),
        }
    }
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
    /// True when the address is not mailed: a permanent rejection (set the annotation
    /// `finrep.io/unblock` to a new value to lift it) or the recipient's unsubscribe (lifted
    /// only by the recipient's own link or `finrep resubscribe`, never by the annotation).
    #[serde(default)]
    pub blacklisted: bool,
    /// Why the address was blacklisted (the SMTP reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blacklist_reason: Option<String>,
    /// When the address was blacklisted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blacklisted_since: Option<String>,
    /// The last value of the `finrep.io/unblock` annotation acted on: a value lifts a bounce
    /// once (never an unsubscribe).
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
