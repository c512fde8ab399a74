//! RSS and Atom are read by `syndication` (the rust-syndication crates) and everything it
//! declines by feed-rs: both paths must give the same items, whatever the shape of the feed
//! and the text in it, and the fast path must take the common shapes.

use chrono::{DateTime, Utc};
use finrep::pipeline::parse::{ParseError, RawItem};
use finrep::pipeline::{parse, syndication, text};
use proptest::prelude::*;
use url::Url;

fn base() -> Url {
    Url::parse("https://news.example.com/feeds/markets.xml").unwrap()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// How an item writes its text: escaped, in CDATA, or absent.
#[derive(Clone, Debug)]
enum Body {
    Escaped(String),
    Cdata(String),
    Absent,
}

impl Body {
    fn element(&self, name: &str, attrs: &str) -> String {
        match self {
            Body::Escaped(t) => format!("<{name}{attrs}>{}</{name}>", escape(t)),
            Body::Cdata(t) => format!(
                "<{name}{attrs}><![CDATA[{}]]></{name}>",
                t.replace("]]>", "")
            ),
            Body::Absent => String::new(),
        }
    }
}

/// One item of a generated feed.
#[derive(Clone, Debug)]
struct Item {
    title: Body,
    summary: Body,
    content: Body,
    link: Option<String>,
    date: Option<String>,
    alternate: bool,
}

/// The feed shapes the fast path reads.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Rss2,
    Rss1,
    Atom,
}

fn feed(shape: Shape, items: &[Item]) -> String {
    let body: String = items.iter().map(|i| item(shape, i)).collect();
    match shape {
        Shape::Rss2 => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><rss version=\"2.0\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"><channel><title>Markets</title><link>https://news.example.com/</link><description>d</description>{body}</channel></rss>"
        ),
        Shape::Rss1 => format!(
            "<?xml version=\"1.0\"?><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" xmlns=\"http://purl.org/rss/1.0/\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"><channel rdf:about=\"https://news.example.com/\"><title>Markets</title><link>https://news.example.com/</link><description>d</description></channel>{body}</rdf:RDF>"
        ),
        Shape::Atom => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><title>Markets</title><id>urn:markets</id><updated>2026-11-22T21:00:00Z</updated>{body}</feed>"
        ),
    }
}

fn item(shape: Shape, i: &Item) -> String {
    let link = i.link.as_deref().map(escape);
    match shape {
        Shape::Rss2 | Shape::Rss1 => {
            let date = match (shape, &i.date) {
                (Shape::Rss2, Some(d)) => format!("<pubDate>{}</pubDate>", escape(d)),
                (Shape::Rss1, Some(d)) => format!("<dc:date>{}</dc:date>", escape(d)),
                _ => String::new(),
            };
            let about = link.clone().unwrap_or_else(|| "urn:x".into());
            let (open, close) = match shape {
                Shape::Rss1 => (format!("<item rdf:about=\"{about}\">"), "</item>"),
                _ => ("<item>".to_string(), "</item>"),
            };
            format!(
                "{open}{}{}{}{}{}{close}",
                i.title.element("title", ""),
                link.map(|l| format!("<link>{l}</link>"))
                    .unwrap_or_default(),
                i.summary.element("description", ""),
                i.content.element("content:encoded", ""),
                date
            )
        }
        Shape::Atom => {
            let rel = if i.alternate { "" } else { " rel=\"related\"" };
            format!(
                "<entry>{}<id>urn:e</id>{}{}{}{}</entry>",
                i.title.element("title", " type=\"html\""),
                link.map(|l| format!("<link{rel} href=\"{l}\"/>"))
                    .unwrap_or_default(),
                i.summary.element("summary", " type=\"html\""),
                i.content.element("content", " type=\"html\""),
                i.date
                    .as_deref()
                    .map(|d| format!("<updated>{}</updated>", escape(d)))
                    .unwrap_or_default()
            )
        }
    }
}

/// Text a feed may hold: markup, entities, CJK, spaces at the edges, astral characters.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("<p>".to_string()),
            Just("&amp;".to_string()),
            Just("  ".to_string()),
            Just("\n".to_string()),
            Just("贵州茅台（６００５１９）".to_string()),
            Just("\u{1f600}".to_string()),
            "[a-zA-Z0-9 .,;:'\"/?=-]{0,12}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        text().prop_map(Body::Escaped),
        text().prop_map(Body::Cdata),
        Just(Body::Absent),
    ]
}

fn date() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("Sun, 22 Nov 2026 21:00:00 GMT".to_string())),
        Just(Some("Sun, 22 Nov 2026 21:00:00 +0800".to_string())),
        Just(Some("2026-11-22T21:00:00+08:00".to_string())),
        Just(Some("2026-11-22T21:00:00Z".to_string())),
        Just(Some(" 2026-11-22T21:00:00.250Z ".to_string())),
        Just(Some("22 Nov 2026 21:00 EST".to_string())),
        Just(Some("2026-11-22 21:00:00".to_string())),
        Just(Some("yesterday".to_string())),
        Just(Some(String::new())),
    ]
}

fn link() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[a-z0-9/-]{1,20}".prop_map(|p| Some(format!("https://news.example.com/{p}"))),
        "[a-z0-9-]{1,12}".prop_map(|p| Some(format!("../a/{p}?x=1&y=2"))),
        Just(Some("javascript:alert(1)".to_string())),
        Just(Some("  https://news.example.com/padded  ".to_string())),
    ]
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    let item = (body(), body(), body(), link(), date(), any::<bool>()).prop_map(
        |(title, summary, content, link, date, alternate)| Item {
            title,
            summary,
            content,
            link,
            date,
            alternate,
        },
    );
    prop::collection::vec(item, 0..6)
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![Just(Shape::Rss2), Just(Shape::Rss1), Just(Shape::Atom)]
}

/// An item as the pipeline goes on with it: text as plain text, where an empty or
/// whitespace-only element and a missing one are the same nothing.
type Seen = (String, Option<String>, Option<DateTime<Utc>>, String);

fn seen(items: Result<Vec<RawItem>, ParseError>) -> Result<Vec<Seen>, ParseError> {
    let plain = |t: &str| text::to_plain_text(t).trim().to_string();
    Ok(items?
        .into_iter()
        .map(|i| {
            let summary = plain(i.summary.as_deref().unwrap_or_default());
            (
                plain(&i.title),
                i.link.map(String::from),
                i.published,
                summary,
            )
        })
        .collect())
}

proptest! {
    #[test]
    fn both_paths_read_the_same_items(shape in shape(), items in items()) {
        let doc = feed(shape, &items);
        let fast = seen(parse::parse_feed(&doc, &base()));
        let reference = seen(parse::parse_feed_rs(&doc, &base()));
        prop_assert_eq!(&fast, &reference, "{}", doc);
        prop_assert!(fast.is_ok(), "a well-formed feed parses: {:?}", fast);
    }

    /// Feeds of the common shapes, dated as their format says (RFC 2822 in RSS, RFC 3339 in
    /// Atom), take the fast path.
    #[test]
    fn the_common_shapes_take_the_fast_path(shape in shape(), mut items in items()) {
        let in_its_format = |d: &str| match shape {
            Shape::Atom => d.trim().is_empty() || chrono::DateTime::parse_from_rfc3339(d.trim()).is_ok(),
            Shape::Rss2 | Shape::Rss1 => {
                let d = d.trim();
                d.is_empty()
                    || chrono::DateTime::parse_from_rfc2822(d).is_ok()
                    || chrono::DateTime::parse_from_rfc3339(d).is_ok()
            }
        };
        for item in &mut items {
            item.date = item.date.take().filter(|d| in_its_format(d));
        }
        let doc = feed(shape, &items);
        prop_assert!(syndication::read(&doc, &base()).is_some(), "{}", doc);
    }
}

#[test]
fn json_feed_and_xml_base_go_to_feed_rs() {
    let json = r#"{"version":"https://jsonfeed.org/version/1.1","title":"t","items":[{"id":"1","url":"https://e.example.com/1","title":"a"}]}"#;
    assert!(syndication::read(json, &base()).is_none());
    assert_eq!(parse::parse_feed(json, &base()).unwrap().len(), 1);
    let based = "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:base=\"https://other.example.com/x/\"><title>t</title><entry><title>a</title><id>1</id><link href=\"b\"/><updated>2026-11-22T21:00:00Z</updated></entry></feed>";
    assert!(syndication::read(based, &base()).is_none());
    let items = parse::parse_feed(based, &base()).unwrap();
    assert_eq!(
        items[0].link.as_deref(),
        Some("https://other.example.com/x/b")
    );
}
