// Several printcolumn(...) entries share argument values, which this lint mistakes for
// repeated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, KeywordFilters, LabelSelector, SecretKeyRef, default_true};

/// A recurring report: when it runs, what goes in, who gets it and how it is sent.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "finrep.io",
    version = "v1alpha1",
    kind = "DailyReport",
    namespaced,
    shortname = "dr",
    category = "finrep",
    status = "DailyReportStatus",
    doc = "A daily report: its schedule, content, recipients and mail settings.",
    validation = Rule::new("size(self.metadata.name) <= 63").message("a DailyReport's name is at most 63 characters: its Jobs, plans and their labels carry it").field_path(".metadata.name"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Last-Run",
        type_ = "string",
        json_path = ".status.lastRun.date"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.lastRun.phase"),
    printcolumn(
        name = "Delivered",
        type_ = "integer",
        json_path = ".status.lastRun.delivered"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.lastRun.failed"
    ),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DailyReportSpec {
    /// Title of the report, used in the e-mail subject and heading, e.g. 金融情报日报.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,

    /// When the run starts: a 5-field cron expression (minute hour day-of-month month
    /// day-of-week) in `timeZone`, firing at most once a day, e.g. `0 6 * * 1-5`.
    #[serde(default = "default_schedule")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,

    /// IANA time zone of the schedule, the mail window and the report date, e.g. Asia/Shanghai.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,

    /// How late, in seconds, a missed slot (say, after controller downtime) may still start;
    /// a slot found later than that is recorded as Missed and not run.
    #[serde(default = "default_starting_deadline_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub starting_deadline_seconds: u32,

    /// Stops scheduling new runs. Slots passed while suspended are neither run nor counted
    /// as missed.
    #[serde(default)]
    pub suspend: bool,

    /// Local time window in which scheduled runs deliver.
    #[serde(default)]
    pub mail_window: MailWindow,

    /// Sources included, by label; empty or absent selects every Source in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_selector: Option<LabelSelector>,

    /// Recipients the report is sent to, by label; empty or absent selects every Recipient in
    /// the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_selector: Option<LabelSelector>,

    /// What goes into the report and how it is ranked, summarised and rendered.
    #[serde(default)]
    pub content: ContentSpec,

    /// Outgoing mail server and sending limits. Required when the report selects an e-mail
    /// Recipient; a report whose recipients are all chat groups needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSpec>,

    /// The pipeline Job run for each report.
    #[serde(default)]
    pub job: JobSpec,

    /// How many finished run Jobs are kept.
    #[serde(default)]
    pub history: HistorySpec,

    /// Deprecated and ignored: the database is backed up once per installation, not per
    /// report — in a cluster by the chart's CronJob (values `backup.*`), in standalone mode by
    /// `--backup-schedule` / `--backup-retention-days` (`FINREP_BACKUP_*`). A dump holds
    /// every namespace's rows, so no report can make, place or read one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
}

/// The local time window in which a scheduled run delivers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start.size() != 5 || self.end.size() != 5 || self.start < self.end").message("mailWindow.start must be before mailWindow.end; the window cannot cross midnight").field_path(".end"))]
pub struct MailWindow {
    /// Delivery never begins before this local time (HH:MM, 24-hour).
    #[serde(default = "default_window_start")]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("must be a local time HH:MM (24-hour), e.g. 06:05"))]
    pub start: String,
    /// What is not delivered by this local time (HH:MM) is recorded as deferred.
    #[serde(default = "default_window_end")]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("must be a local time HH:MM (24-hour), e.g. 06:20"))]
    pub end: String,
    /// What happens to deliveries deferred at the window end: `skip` them, or `send` them late.
    #[serde(default)]
    pub late_delivery: LateDelivery,
}

impl Default for MailWindow {
    fn default() -> Self {
        Self {
            start: default_window_start(),
            end: default_window_end(),
            late_delivery: LateDelivery::default(),
        }
    }
}

/// Policy for deliveries not done by the end of the mail window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LateDelivery {
    /// Leave them deferred; the recipient gets tomorrow's report.
    #[default]
    Skip,
    /// Send them after the window closes.
    Send,
}

/// What goes into the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentSpec {
    /// Items published within this many hours before the run are considered.
    #[serde(default = "default_lookback_hours")]
    #[schemars(range(min = 1, max = 168))]
    pub lookback_hours: u32,
    /// Most items in the whole report.
    #[serde(default = "default_max_items")]
    #[schemars(range(min = 1, max = 500))]
    pub max_items: u32,
    /// Most items from any one source.
    #[serde(default = "default_max_items_per_source")]
    #[schemars(range(min = 1, max = 100))]
    pub max_items_per_source: u32,
    /// Section order by Source category; categories not listed follow in alphabetical order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub section_order: Vec<String>,
    /// Report-wide keyword filters, applied after each Source's own.
    #[serde(default, skip_serializing_if = "KeywordFilters::is_empty")]
    pub filters: KeywordFilters,
    /// Tickers (600519, 00700.HK, AAPL) and words that rank an item higher when mentioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub watchlist: Vec<String>,
    /// Optional AI summaries from an OpenAI-compatible chat-completions endpoint. Without it,
    /// or when it fails, summaries are extracted from the items themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarizer: Option<SummarizerSpec>,
    /// Optional templates from a ConfigMap replacing the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
}

impl Default for ContentSpec {
    fn default() -> Self {
        Self {
            lookback_hours: default_lookback_hours(),
            max_items: default_max_items(),
            max_items_per_source: default_max_items_per_source(),
            section_order: Vec::new(),
            filters: KeywordFilters::default(),
            watchlist: Vec::new(),
            summarizer: None,
            template: None,
        }
    }
}

/// An OpenAI-compatible chat-completions summariser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummarizerSpec {
    /// Base URL of the API, e.g. https://api.deepseek.com/v1 (`/chat/completions` is appended).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("endpoint must be an absolute http:// or https:// URL"))]
    pub endpoint: String,
    /// Model name, e.g. deepseek-chat or gpt-4o-mini.
    #[schemars(length(min = 1, max = 128))]
    pub model: String,
    /// Secret key holding the API key (sent as a Bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Time allowed for one call, in seconds.
    #[serde(default = "default_summarizer_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: u32,
    /// Most calls one run may make; items beyond it get extractive summaries.
    #[serde(default = "default_max_calls")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_calls: u32,
}

/// Templates read from a ConfigMap in the report's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: String,
    /// Key of the HTML template in the ConfigMap: one key name such as report.html (letters,
    /// digits, `-`, `_` and `.`), never a path.
    #[serde(default = "default_html_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && self != '..'").message("htmlKey must be one ConfigMap key such as report.html (letters, digits, -, _ and .), not a path"))]
    pub html_key: String,
    /// Key of the plain-text template in the ConfigMap: one key name such as report.txt.
    #[serde(default = "default_text_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && self != '..'").message("textKey must be one ConfigMap key such as report.txt (letters, digits, -, _ and .), not a path"))]
    pub text_key: String,
    /// Key of the chat-group message template (markdown) in the ConfigMap: one key name such
    /// as chat.md. When the ConfigMap holds it, it replaces both built-in chat templates (it
    /// sees `language`: zh or en).
    #[serde(default = "default_chat_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && self != '..'").message("chatKey must be one ConfigMap key such as chat.md (letters, digits, -, _ and .), not a path"))]
    pub chat_key: String,
}

impl TemplateRef {
    /// Why `key` is not a ConfigMap key name, if it is not. A key is a file name in the
    /// mounted ConfigMap, so anything that could be a path (`/etc/passwd`, `../x`) is refused.
    pub fn key_problem(key: &str) -> Option<String> {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key != "."
            && key != ".."
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        (!valid).then(|| {
            format!(
                "{key:?} is not a ConfigMap key; use one key name such as report.html (letters, digits, -, _ and .), never a path"
            )
        })
    }
}

/// The outgoing mail server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.credentialsSecretRef) || !has(self.tls) || self.tls != 'none' || (has(self.allowPlaintextAuth) && self.allowPlaintextAuth)").message("credentials over tls: none would send the password in clear text; use starttls or tls, or set allowPlaintextAuth: true for a relay on a trusted network").field_path(".tls"))]
pub struct SmtpSpec {
    /// Host name or address of the SMTP server.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("!self.contains('://') && !self.contains(' ')").message("host must be a bare host name such as smtp.example.com, without a scheme or spaces"))]
    pub host: String,
    /// Port of the SMTP server (587 for starttls, 465 for tls, 25 for none).
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Transport security: `starttls` (upgrade a plain connection), `tls` (implicit TLS) or
    /// `none` (only for a relay on a trusted network).
    #[serde(default)]
    pub tls: TlsMode,
    /// Sender address, optionally with a display name: `金融情报 <report@example.com>`.
    #[schemars(length(min = 3, max = 320))]
    #[x_kube(validation = Rule::new("self.matches('^([^<>]*<)?[^@\\\\s<>]+@[^@\\\\s<>]+\\\\.[^@\\\\s<>]+>?$')").message("from must be an address such as report@example.com or 金融情报 <report@example.com>"))]
    pub from: String,
    /// Address replies go to, if not the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 320))]
    #[x_kube(validation = Rule::new("self.matches('^([^<>]*<)?[^@\\\\s<>]+@[^@\\\\s<>]+\\\\.[^@\\\\s<>]+>?$')").message("replyTo must be an address such as desk@example.com"))]
    pub reply_to: Option<String>,
    /// Secret holding the SMTP user name and password; absent means no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SmtpCredentialsRef>,
    /// Allow sending credentials over a connection without TLS (`tls: none`): only for a
    /// relay on a network you trust.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plaintext_auth: bool,
    /// Most messages sent per minute, to stay under the provider's limits.
    #[serde(default = "default_max_per_minute")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_per_minute: u32,
    /// Most SMTP connections open at once.
    #[serde(default = "default_max_connections")]
    #[schemars(range(min = 1, max = 32))]
    pub max_connections: u32,
}

/// Transport security of the SMTP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (required, not opportunistic).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption.
    None,
}

/// The Secret with SMTP credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpCredentialsRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(super::RESERVED_SECRET_RULE).message(super::RESERVED_SECRET_MESSAGE))]
    pub name: String,
    /// Key holding the user name.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: String,
    /// Key holding the password.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
}

/// Settings of the pipeline Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Container image of the pipeline, when not the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the pipeline container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Retries of a failed pipeline pod; each retry resumes where the last one stopped.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: u32,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            image: None,
            resources: None,
            backoff_limit: default_backoff_limit(),
        }
    }
}

/// How many finished run Jobs are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Succeeded Jobs kept.
    #[serde(default = "default_history")]
    #[schemars(range(min = 0, max = 100))]
    pub succeeded: u32,
    /// Failed Jobs kept.
    #[serde(default = "default_history")]
    #[schemars(range(min = 0, max = 100))]
    pub failed: u32,
}

impl Default for HistorySpec {
    fn default() -> Self {
        Self {
            succeeded: default_history(),
            failed: default_history(),
        }
    }
}

/// Deprecated: a report's own backup of the database (ignored; the installation backs the
/// database up once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Whether standalone mode backs the database up at this report's backup slot.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// 5-field cron expression in the report's time zone.
    #[serde(default = "default_backup_schedule")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// Dumps older than this many days are deleted.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: u32,
    /// Ignored (earlier versions wrote this report's dumps to this claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub pvc: Option<String>,
}

impl Default for BackupSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: default_backup_schedule(),
            retention_days: default_retention_days(),
            pvc: None,
        }
    }
}

/// Observed state of a DailyReport, owned by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyReportStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The slot of the last run started, with its UTC offset (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// The next slot, with its UTC offset (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// Name of the Job of the run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_run: Option<String>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// Slots after this instant are scheduled (RFC 3339): set when the report is first seen
    /// or resumed, so slots from before it existed or while it was suspended are neither run
    /// nor counted as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<String>,
    /// Why the due run has not started yet: it waits for a place among the run Jobs the node
    /// runs at once (the controller's `--max-concurrent-runs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The last value of the `finrep.io/run-now` annotation that started a run: a manual
    /// run starts once per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_run_now: Option<String>,
    /// The last preview asked for with `finrep.io/preview` (`kubectl finrep preview`): the
    /// report composed ahead of time and sent to nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewStatus>,
    /// The last test copy asked for with `finrep.io/test-send` (`kubectl finrep test-send`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_send: Option<TestSendStatus>,
    /// Standard conditions: `Ready` and `LastRunSucceeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Where a preview is. It is never a run: it sends nothing, claims no delivery and leaves
/// `lastRun` alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStatus {
    /// The `finrep.io/preview` value this preview answers (one preview per value).
    pub request: String,
    pub phase: PreviewPhase,
    /// The local date previewed (the next slot's, or the one asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The Recipient whose copy is previewed (`finrep.io/preview-as`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The preview's Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// When the preview started and finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Items in the previewed report.
    #[serde(default)]
    pub articles: u32,
    /// Sources the preview could not read, with their error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources_failing: Vec<SourceFailure>,
    /// The ConfigMap holding the previewed copy (report.html, report.txt or message.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// The preview on the console, when the controller knows the console's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// Why the preview waits, failed or was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Phase of a preview.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PreviewPhase {
    /// Waits for the report's run, or an earlier preview, to finish.
    #[default]
    Waiting,
    Running,
    Ready,
    Failed,
    /// Not started: the request cannot be carried out (the message says why).
    Refused,
}

impl PreviewPhase {
    /// Nothing more happens for this request.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ready | Self::Failed | Self::Refused)
    }
}

/// A source a preview could not read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceFailure {
    pub source: String,
    pub error: String,
}

/// Where a test copy is. A test copy is never the recipient's copy of the day: it is logged
/// apart, and the morning copy still goes out once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestSendStatus {
    /// The `finrep.io/test-send` value this answers (`RECIPIENT` or `RECIPIENT#anything`).
    pub request: String,
    /// The Recipient the copy goes to.
    pub recipient: String,
    pub phase: TestSendPhase,
    /// The test send's Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// What was sent: `preview of YYYY-MM-DD` or `run of YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
    /// When it was sent, or given up (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// The server's or platform's reply, or why it waits or was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Phase of a test send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TestSendPhase {
    /// Waits for the report's run or preview to finish.
    #[default]
    Waiting,
    Sending,
    Sent,
    Failed,
    /// Not sent: the address is not a recipient of this report, is blacklisted or
    /// unsubscribed, or there is nothing composed to send.
    Refused,
    /// The Job stopped during the request: the copy may or may not have arrived (it is not
    /// sent again on its own).
    Uncertain,
}

impl TestSendPhase {
    /// Nothing more happens for this request.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Waiting | Self::Sending)
    }
}

/// Summary of one run, identified by the report's local date.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Local date of the run (YYYY-MM-DD).
    pub date: String,
    /// Name of the run's Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Where the run is.
    pub phase: RunPhase,
    /// When the run started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When the run finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Items in the report.
    #[serde(default)]
    pub articles: u32,
    /// Recipients of the report.
    #[serde(default)]
    pub recipients: u32,
    /// Messages accepted by the mail server.
    #[serde(default)]
    pub delivered: u32,
    /// Deliveries that failed or bounced.
    #[serde(default)]
    pub failed: u32,
    /// Deliveries not done by the end of the mail window.
    #[serde(default)]
    pub deferred: u32,
    /// The same counts per channel (email, wecom, dingtalk, feishu, lark).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelSummary>,
}

/// A run's deliveries on one channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSummary {
    pub channel: String,
    pub delivered: u32,
    pub failed: u32,
    pub deferred: u32,
}

/// Phase of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunPhase {
    /// Due, waiting for a place among the run Jobs the node runs at once.
    Queued,
    #[default]
    Pending,
    Collecting,
    Composing,
    Sending,
    Succeeded,
    PartiallyDelivered,
    Failed,
    Missed,
}

fn default_schedule() -> String {
    "0 6 * * *".to_string()
}
fn default_time_zone() -> String {
    "Asia/Shanghai".to_string()
}
fn default_starting_deadline_seconds() -> u32 {
    900
}
fn default_window_start() -> String {
    "06:05".to_string()
}
fn default_window_end() -> String {
    "06:20".to_string()
}
fn default_lookback_hours() -> u32 {
    24
}
fn default_max_items() -> u32 {
    40
}
fn default_max_items_per_source() -> u32 {
    8
}
fn default_summarizer_timeout() -> u32 {
    20
}
fn default_max_calls() -> u32 {
    40
}
fn default_html_key() -> String {
    "report.html".to_string()
}
fn default_text_key() -> String {
    "report.txt".to_string()
}
fn default_chat_key() -> String {
    "chat.md".to_string()
}
fn default_smtp_port() -> u16 {
    587
}
fn default_max_per_minute() -> u32 {
    120
}
fn default_max_connections() -> u32 {
    2
}
fn default_username_key() -> String {
    "username".to_string()
}
fn default_password_key() -> String {
    "password".to_string()
}
fn default_backoff_limit() -> u32 {
    3
}
fn default_history() -> u32 {
    3
}
fn default_backup_schedule() -> String {
    "30 6 * * *".to_string()
}
fn default_retention_days() -> u32 {
    14
}
