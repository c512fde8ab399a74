//! RSS (0.91 – 2.0, 1.0) and Atom read with the rust-syndication crates (`rss`,
//! `atom_syndication`), which map quick-xml's events straight to items; feed-rs builds an
//! element tree first and takes two to three times as long on the benchmark corpus.
//! `parse::parse_feed` tries this first and gives feed-rs whatever it declines: JSON Feed,
//! XML these crates refuse, `xml:base`, XHTML text, links only in `atom:link`, and dates that
//! only feed-rs' lenient reader understands. A property test holds the items of both paths
//! equal.

use atom_syndication::{Feed, TextType};
use chrono::{DateTime, Utc};
use memchr::memmem;
use rss::Channel;
use url::Url;

use super::parse::{RawItem, canonical_link, not_blank};

/// RSS 0.90's namespace: an `rdf:RDF` document without it is RSS 1.0.
const RSS_0_90: &str = "http://my.netscape.com/rdf/simple/0.9/";

/// The items of an RSS or Atom document, or `None` when feed-rs is to read it.
pub fn read(text: &str, base: &Url) -> Option<Vec<RawItem>> {
    // feed-rs resolves links against `xml:base`; these crates do not.
    if memmem::find(text.as_bytes(), b"xml:base").is_some() {
        return None;
    }
    // Each refuses a document of another root element at its first tag.
    if let Ok(channel) = Channel::read_from(text.as_bytes()) {
        let rdf = root_element(text) == Some("rdf:RDF");
        if rdf && memmem::find(text.as_bytes(), RSS_0_90.as_bytes()).is_some() {
            // RSS 0.90: feed-rs reads it with rules of its own.
            return None;
        }
        return channel
            .items
            .into_iter()
            // feed-rs drops an RSS 1.0 item without a link: it has nowhere to point.
            .filter(|i| !rdf || i.link.as_deref().is_some_and(|l| !l.trim().is_empty()))
            .map(|i| rss_item(i, base))
            .collect();
    }
    // The crate reads any date form it can guess; feed-rs only RFC 3339 and RFC 2822.
    if !atom_dates_are_rfc3339(text) {
        return None;
    }
    let feed = Feed::read_from(text.as_bytes()).ok()?;
    feed.entries
        .into_iter()
        .map(|e| atom_entry(e, base))
        .collect()
}

fn rss_item(item: rss::Item, base: &Url) -> Option<RawItem> {
    // feed-rs takes a link from `atom:link` too.
    if item.link.is_none() && item.extensions.contains_key("atom") {
        return None;
    }
    let (dc_dates, dc_descriptions) = item
        .dublin_core_ext
        .as_ref()
        .map_or((&[][..], &[][..]), |dc| {
            (&dc.dates[..], &dc.descriptions[..])
        });
    // Where feed-rs' choice depends on the order of elements or the RSS version.
    if (item.pub_date.is_some() && !dc_dates.is_empty())
        || (item.description.is_none() && !dc_descriptions.is_empty())
    {
        return None;
    }
    let published = item
        .pub_date
        .as_deref()
        .or(dc_dates.first().map(String::as_str));
    let published = timestamp(published)?;
    Some(RawItem {
        title: item.title.unwrap_or_default(),
        link: item.link.and_then(|l| canonical_link(base, &l)),
        published,
        summary: not_blank(item.description).or(item.content),
    })
}

fn atom_entry(entry: atom_syndication::Entry, base: &Url) -> Option<RawItem> {
    let xhtml = |t: TextType| t == TextType::Xhtml;
    if xhtml(entry.title.r#type) || entry.summary.as_ref().is_some_and(|s| xhtml(s.r#type)) {
        return None;
    }
    if entry
        .content
        .as_ref()
        .is_some_and(|c| c.content_type.as_deref() == Some("xhtml"))
    {
        return None;
    }
    let link = entry
        .links
        .iter()
        .find(|l| l.rel == "alternate")
        .or(entry.links.first())
        .and_then(|l| canonical_link(base, &l.href));
    // The crate fills a missing `updated` with the epoch.
    let updated = Some(entry.updated).filter(|u| u.timestamp() != 0);
    let summary =
        not_blank(entry.summary.map(|s| s.value)).or_else(|| entry.content.and_then(|c| c.value));
    Some(RawItem {
        title: entry.title.value,
        link,
        published: entry.published.or(updated).map(|t| t.to_utc()),
        summary,
    })
}

/// The name of the document's first element, past the declaration, comments and doctype.
fn root_element(text: &str) -> Option<&str> {
    let mut rest = text;
    loop {
        rest = &rest[rest.find('<')?..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            rest = &comment[comment.find("-->")? + 3..];
        } else if rest.starts_with("<?") || rest.starts_with("<!") {
            rest = &rest[rest.find('>')? + 1..];
        } else {
            let name = &rest[1..];
            let end = name.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
            return Some(&name[..end]);
        }
    }
}

/// Whether every `<published>` and `<updated>` holds RFC 3339 (or nothing), the one form
/// Atom allows and both readers read alike.
fn atom_dates_are_rfc3339(text: &str) -> bool {
    ["<published", "<updated"].iter().all(|tag| {
        memmem::find_iter(text.as_bytes(), tag).all(|at| {
            // `at` starts an ASCII tag, so `at + tag.len()` is a character boundary.
            let rest = &text[at + tag.len()..];
            let Some(body) = rest.strip_prefix('>') else {
                // Another element whose name begins the same (`<updatedBy>`), or attributes.
                return !rest.starts_with(|c: char| c.is_whitespace());
            };
            let value = body[..body.find('<').unwrap_or(body.len())].trim();
            value.is_empty() || DateTime::parse_from_rfc3339(value).is_ok()
        })
    })
}

/// A publication time as feed-rs reads the common forms (RFC 3339, then RFC 2822): the outer
/// `None` declines the document, so that feed-rs' lenient reader tries the rest.
fn timestamp(raw: Option<&str>) -> Option<Option<DateTime<Utc>>> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Some(None);
    };
    DateTime::parse_from_rfc3339(raw)
        .or_else(|_| DateTime::parse_from_rfc2822(raw))
        .ok()
        .map(|t| Some(t.to_utc()))
}
