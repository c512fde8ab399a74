// Several printcolumn(...) entries share argument values, which this lint mistakes for
// repeated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, KeywordFilters, SecretKeyRef, default_true};

/// A place report items come from: a feed, a JSON API or an HTML page.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "finrep.io",
    version = "v1alpha1",
    kind = "Source",
    namespaced,
    shortname = "src",
    category = "finrep",
    status = "SourceStatus",
    doc = "A news or data source (RSS/Atom/JSON Feed, JSON API or HTML page) that daily reports collect items from.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.kind"),
    printcolumn(name = "Category", type_ = "string", json_path = ".spec.category"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(
        name = "Items",
        type_ = "integer",
        json_path = ".status.itemsInLastFetch"
    ),
    printcolumn(
        name = "Last-Fetch",
        type_ = "date",
        json_path = ".status.lastFetchTime"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.kind != 'json' || has(self.json)").message("a Source of kind json needs spec.json (the items path and the title and link fields)").field_path(".json"),
    validation = Rule::new("self.kind != 'html' || has(self.html)").message("a Source of kind html needs spec.html (the item selector and the title and link selectors)").field_path(".html"),
    validation = Rule::new("self.kind == 'json' || !has(self.json)").message("spec.json applies only to kind json; remove it or set kind: json").field_path(".json"),
    validation = Rule::new("self.kind == 'html' || !has(self.html)").message("spec.html applies only to kind html; remove it or set kind: html").field_path(".html")
)]
pub struct SourceSpec {
    /// How the response is read: `feed` (RSS 0.9x/1.0/2.0, Atom or JSON Feed, detected from the
    /// content), `json` (a JSON API mapped by `spec.json`) or `html` (a web page mapped by
    /// `spec.html`).
    pub kind: SourceKind,

    /// Absolute http:// or https:// URL that is fetched.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("url must be an absolute http:// or https:// URL"))]
    #[x_kube(validation = Rule::new("!self.contains(' ')").message("url must not contain spaces; percent-encode them as %20"))]
    pub url: String,

    /// Name shown in the report next to each item (defaults to the resource name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub display_name: Option<String>,

    /// Report section this source feeds, e.g. 宏观, A股, 港股, 美股, 行业, 公告. Recipients
    /// subscribe to categories, and a report orders its sections by them.
    #[schemars(length(min = 1, max = 64))]
    pub category: String,

    /// Free-form tags, for people and label-less grouping in the console.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tags: Vec<String>,

    /// Language of the content as a BCP 47 tag, e.g. zh-CN or en.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 35))]
    pub language: Option<String>,

    /// Whether reports collect from this source. A disabled source keeps its history.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Ranking weight of this source's items: 1.0 is neutral, 2.0 counts twice, 0 keeps the
    /// items but ranks them last.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub weight: f64,

    /// How the URL is fetched: timeout, limits, headers, charset.
    #[serde(default)]
    pub fetch: FetchSpec,

    /// Item mapping for kind `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonMapping>,

    /// Item mapping for kind `html`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<HtmlMapping>,

    /// Keyword filters applied to this source's items.
    #[serde(default, skip_serializing_if = "KeywordFilters::is_empty")]
    pub filters: KeywordFilters,
}

/// How a Source's response is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// RSS 0.9x/1.0/2.0, Atom or JSON Feed, detected from the content.
    Feed,
    /// A JSON HTTP API mapped to items by `spec.json`.
    Json,
    /// An HTML page mapped to items by CSS selectors in `spec.html`.
    Html,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Feed => "feed",
            Self::Json => "json",
            Self::Html => "html",
        }
    }
}

/// Fetch settings of a Source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FetchSpec {
    /// Total time allowed for one fetch (connect, headers and body), in seconds.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: u32,

    /// Most items taken from one fetch; the rest are ignored.
    #[serde(default = "default_max_items")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_items: u32,

    /// Largest accepted body after decompression, in bytes (default 5 MiB, at most 50 MiB).
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 1024, max = 52428800))]
    pub max_body_bytes: u64,

    /// Extra request headers (not secret), e.g. Accept or Referer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,

    /// Request headers whose values come from Secrets, e.g. an API token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers_from: Vec<HeaderFromSecret>,

    /// Charset to decode the body with when the server declares none or declares it wrongly,
    /// e.g. GBK, GB18030 or Big5 (WHATWG encoding labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub charset: Option<String>,
}

impl Default for FetchSpec {
    fn default() -> Self {
        Self {
            timeout_seconds: default_timeout_seconds(),
            max_items: default_max_items(),
            max_body_bytes: default_max_body_bytes(),
            headers: BTreeMap::new(),
            headers_from: Vec::new(),
            charset: None,
        }
    }
}

/// A request header whose value is read from a Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderFromSecret {
    /// Header name, e.g. Authorization or X-Api-Key.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Secret key holding the header value.
    pub secret_key_ref: SecretKeyRef,
}

/// Maps a JSON API response to items.
///
/// Paths are dot-separated keys from the document root, with `[N]` for an array index and an
/// optional leading `$.`, e.g. `data.list` or `$.result.items[0].title`. Field paths are
/// relative to one item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonMapping {
    /// Path of the array of items, e.g. `data.list` (`$` when the document is the array).
    #[schemars(length(min = 1, max = 256))]
    pub items: String,
    /// Path of an item's title.
    #[schemars(length(min = 1, max = 256))]
    pub title: String,
    /// Path of an item's link (absolute, or relative to the Source URL).
    #[schemars(length(min = 1, max = 256))]
    pub link: String,
    /// Path of an item's publication time (RFC 3339, RFC 2822, `YYYY-MM-DD HH:MM:SS` in the
    /// report's time zone, or Unix seconds / milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub published: Option<String>,
    /// Path of an item's summary (plain text or HTML, sanitised either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub summary: Option<String>,
}

/// Maps an HTML page to items with CSS selectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HtmlMapping {
    /// Selector matching each item's element, e.g. `ul.news-list > li`.
    #[schemars(length(min = 1, max = 512))]
    pub item: String,
    /// Selector, inside an item, of the title text (default: the link's text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub title: Option<String>,
    /// Selector, inside an item, of the element whose `href` is the item link (default `a`).
    #[serde(default = "default_link_selector")]
    #[schemars(length(min = 1, max = 512))]
    pub link: String,
    /// Selector, inside an item, of the publication time (a `datetime` attribute or the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub published: Option<String>,
    /// Selector, inside an item, of the summary text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub summary: Option<String>,
}

/// Observed state of a Source, written by the controller from the pipeline's fetch records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the source was last fetched (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<String>,
    /// When a fetch last succeeded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// Items found by the last fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_in_last_fetch: Option<u32>,
    /// Failed fetches since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The last fetch error, if the last fetch failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Standard conditions; `Ready` tells whether the source is valid and fetchable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_weight() -> f64 {
    1.0
}
fn default_timeout_seconds() -> u32 {
    20
}
fn default_max_items() -> u32 {
    50
}
fn default_max_body_bytes() -> u64 {
    5 * 1024 * 1024
}
fn default_link_selector() -> String {
    "a".to_string()
}
