//! Decoded text to raw items, per Source kind: feeds (RSS 0.9x/1.0/2.0, Atom, JSON Feed,
//! detected from content) with `syndication`'s readers or feed-rs, JSON APIs by the Source's
//! paths, HTML pages by its CSS selectors. Links are resolved against the fetched URL and made
//! canonical as they are read; only http(s) links survive.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use scraper::{ElementRef, Html, Selector};
use serde_json::Value;
use url::Url;

use super::canonical::{CanonicalUrl, canonical};
use crate::api::{HtmlMapping, JsonMapping};
use crate::jsonpath::JsonPath;

/// An item as found in a source, before extraction.
#[derive(Clone, Debug, PartialEq)]
pub struct RawItem {
    pub title: String,
    /// The item's link, absolute and canonical: its identity.
    pub link: Option<CanonicalUrl>,
    pub published: Option<DateTime<Utc>>,
    /// Summary as the source gave it: text or an HTML fragment (sanitised later).
    pub summary: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses a feed of any supported format: RSS and Atom by `syndication` where it can,
/// everything else by feed-rs.
pub fn parse_feed(text: &str, base: &Url) -> Result<Vec<RawItem>, ParseError> {
    match super::syndication::read(text, base) {
        Some(items) => Ok(items),
        None => parse_feed_rs(text, base),
    }
}

/// Parses a feed of any format feed-rs reads.
pub fn parse_feed_rs(text: &str, base: &Url) -> Result<Vec<RawItem>, ParseError> {
    let parser = feed_rs::parser::Builder::new()
        .base_uri(Some(base.as_str()))
        .sanitize_content(false)
        .build();
    let feed = parser
        .parse(text.as_bytes())
        .map_err(|e| ParseError(format!("not a valid RSS, Atom or JSON Feed document: {e}")))?;
    Ok(feed
        .entries
        .into_iter()
        .map(|e| {
            let link = e
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
                .or(e.links.first())
                .and_then(|l| canonical_link(base, &l.href));
            let summary =
                not_blank(e.summary.map(|t| t.content)).or_else(|| e.content.and_then(|c| c.body));
            RawItem {
                title: e.title.map(|t| t.content).unwrap_or_default(),
                link,
                published: e.published.or(e.updated),
                summary,
            }
        })
        .collect())
}

/// Maps a JSON document to items with the Source's paths.
pub fn parse_json(
    text: &str,
    mapping: &JsonMapping,
    base: &Url,
    tz: Tz,
) -> Result<Vec<RawItem>, ParseError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| ParseError(format!("not valid JSON: {e}")))?;
    let path = |p: &str| JsonPath::parse(p).map_err(|e| ParseError(e.to_string()));
    let items_path = path(&mapping.items)?;
    let title = path(&mapping.title)?;
    let link = path(&mapping.link)?;
    let published = mapping.published.as_deref().map(path).transpose()?;
    let summary = mapping.summary.as_deref().map(path).transpose()?;
    let items = items_path.select_items(&doc);
    if items.is_empty() && !matches!(items_path.select(&doc).first(), Some(Value::Array(_))) {
        return Err(ParseError(format!(
            "items path {:?} matches nothing in the response",
            mapping.items
        )));
    }
    Ok(items
        .into_iter()
        .map(|item| RawItem {
            title: title.text(item).unwrap_or_default(),
            link: link.text(item).and_then(|l| canonical_link(base, &l)),
            published: published
                .as_ref()
                .and_then(|p| p.text(item))
                .and_then(|t| parse_time(&t, tz)),
            summary: summary.as_ref().and_then(|p| p.text(item)),
        })
        .collect())
}

/// Maps an HTML page to items with the Source's CSS selectors.
pub fn parse_html(
    text: &str,
    mapping: &HtmlMapping,
    base: &Url,
    tz: Tz,
) -> Result<Vec<RawItem>, ParseError> {
    let sel = |s: &str| {
        Selector::parse(s).map_err(|e| ParseError(format!("invalid CSS selector {s:?}: {e}")))
    };
    let item_sel = sel(&mapping.item)?;
    let link_sel = sel(&mapping.link)?;
    let title_sel = mapping.title.as_deref().map(sel).transpose()?;
    let published_sel = mapping.published.as_deref().map(sel).transpose()?;
    let summary_sel = mapping.summary.as_deref().map(sel).transpose()?;
    let doc = Html::parse_document(text);
    let mut out = Vec::new();
    for item in doc.select(&item_sel) {
        let link_el = if item.value().name() == "a" && mapping.link == "a" {
            Some(item)
        } else {
            item.select(&link_sel).next()
        };
        let title = match &title_sel {
            Some(s) => item.select(s).next().map(element_text),
            None => link_el.map(element_text),
        }
        .unwrap_or_default();
        let published = published_sel.as_ref().and_then(|s| {
            let el = item.select(s).next()?;
            let raw = el
                .value()
                .attr("datetime")
                .map(str::to_string)
                .unwrap_or_else(|| element_text(el));
            parse_time(&raw, tz)
        });
        out.push(RawItem {
            title,
            link: link_el
                .and_then(|a| a.value().attr("href"))
                .and_then(|h| canonical_link(base, h)),
            published,
            summary: summary_sel
                .as_ref()
                .and_then(|s| item.select(s).next())
                .map(element_text),
        });
    }
    if out.is_empty() {
        return Err(ParseError(format!(
            "item selector {:?} matches nothing on the page",
            mapping.item
        )));
    }
    Ok(out)
}

fn element_text(el: ElementRef<'_>) -> String {
    el.text().collect::<Vec<_>>().join(" ")
}

/// A summary of only whitespace gives way to the content, as no summary does (both feed
/// readers).
pub(super) fn not_blank(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

/// The canonical http(s) URL of `href`, resolved against `base`.
pub fn canonical_link(base: &Url, href: &str) -> Option<CanonicalUrl> {
    let href = href.trim();
    if href.is_empty() {
        return None;
    }
    canonical(base.join(href).ok()?)
}

/// Parses the publication times sources write: RFC 3339, RFC 2822, Unix seconds or
/// milliseconds, and local forms (`2026-11-23 07:30:00`, `2026/11/23 07:30`,
/// `2026年11月23日 07:30`, `2026-11-23`) in the report's time zone.
pub fn parse_time(raw: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return match n {
            n if n > 100_000_000_000 => DateTime::from_timestamp_millis(n),
            n if n > 100_000_000 => DateTime::from_timestamp(n, 0),
            _ => None,
        };
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(t.with_timezone(&Utc));
    }
    const LOCAL: &[&str] = &[
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
        "%Y年%m月%d日 %H:%M:%S",
        "%Y年%m月%d日 %H:%M",
        "%Y年%m月%d日%H:%M",
    ];
    for f in LOCAL {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return tz.from_local_datetime(&n).earliest().map(|t| t.to_utc());
        }
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return tz
                .from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
                .earliest()
                .map(|t| t.to_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://news.example.com/list/index.html").unwrap()
    }

    #[test]
    fn times_in_many_forms() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let want = "2026-11-22T23:30:00+00:00";
        for raw in [
            "2026-11-23 07:30:00",
            "2026/11/23 07:30",
            "2026年11月23日 07:30",
            "2026-11-23T07:30:00+08:00",
            "Sun, 22 Nov 2026 23:30:00 GMT",
            "1795390200",
            "1795390200000",
        ] {
            assert_eq!(
                parse_time(raw, tz).map(|t| t.to_rfc3339()).as_deref(),
                Some(want),
                "{raw}"
            );
        }
        assert_eq!(parse_time("yesterday", tz), None);
    }

    #[test]
    fn html_items_with_relative_links() {
        let page = r#"<ul class="news"><li><a href="/a/1.html">央行降准</a><span>2026-11-23</span></li>
            <li><a href="javascript:alert(1)">坏链接</a></li></ul>"#;
        let mapping = HtmlMapping {
            item: "ul.news li".into(),
            title: None,
            link: "a".into(),
            published: Some("span".into()),
            summary: None,
        };
        let items = parse_html(page, &mapping, &base(), chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].title, "央行降准");
        assert_eq!(
            items[0].link.as_deref(),
            Some("https://news.example.com/a/1.html")
        );
        assert!(items[0].published.is_some());
        assert_eq!(items[1].link, None);
    }

    #[test]
    fn json_items() {
        let doc = r#"{"result":{"data":[{"title":"港股收评","url":"https://e.com/1","ctime":"1795476600"}]}}"#;
        let mapping = JsonMapping {
            items: "result.data".into(),
            title: "title".into(),
            link: "url".into(),
            published: Some("ctime".into()),
            summary: None,
        };
        let items = parse_json(doc, &mapping, &base(), chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].title, "港股收评");
        let missing = JsonMapping {
            items: "data.list".into(),
            ..mapping
        };
        assert!(parse_json(doc, &missing, &base(), chrono_tz::Asia::Shanghai).is_err());
    }
}
