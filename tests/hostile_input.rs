//! Property tests: text and bytes from the network never panic decode → parse → clean →
//! extract, and what comes out is bounded and clean. Run with more cases as a fuzzing
//! session: `scripts/fuzz.sh` (PROPTEST_CASES, default here 256 per property).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use finrep::api::{HtmlMapping, JsonMapping, SourceSpec};
use finrep::pipeline::extract::{self, ExtractConfig, Filters, SourceBatch};
use finrep::pipeline::{canonical, decode, entities, parse, text};
use finrep::plan::PlannedSource;
use finrep::run::ExtractStats;
use finrep::untrusted;
use proptest::prelude::*;
use url::Url;

/// Longest cleaned title and summary (`extract::clean`).
const TITLE_CHARS: usize = 200;
const SUMMARY_CHARS: usize = 400;

/// Characters feeds get wrong: fullwidth forms, combining marks, bidirectional controls,
/// NUL and other controls, line separators, surrogate-adjacent and astral characters.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        Just('\0'),
        Just('\r'),
        Just('\n'),
        Just('\u{7f}'),
        Just('\u{85}'),
        Just('\u{202e}'),
        Just('\u{2066}'),
        Just('\u{200f}'),
        Just('\u{2028}'),
        Just('\u{feff}'),
        Just('\u{fffd}'),
        Just('\u{ffff}'),
        Just('（'),
        Just('）'),
        Just('．'),
        Just('＄'),
        Just('\u{0301}'),
        Just('\u{1f600}'),
        Just('<'),
        Just('&'),
        Just('$'),
        Just('.'),
        Just('('),
        Just(')'),
        proptest::char::range('０', '９'),
        proptest::char::range('Ａ', 'Ｚ'),
        proptest::char::range('0', '9'),
        proptest::char::range('A', 'Z'),
        proptest::char::range('\u{0660}', '\u{0669}'), // Arabic-Indic digits
        proptest::char::range('\u{0966}', '\u{096f}'), // Devanagari digits
        proptest::char::range('\u{4e00}', '\u{4e40}'),
        any::<char>(),
    ]
}

fn nasty_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Text for one field: usually short, sometimes a 100 kB title.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => nasty_text(80),
        1 => nasty_text(8).prop_map(|s| s.repeat(100_000 / s.len().max(1)).chars().take(100_000).collect()),
    ]
}

fn source(kind: &str, extra: &str) -> PlannedSource {
    let spec: SourceSpec = serde_norway::from_str(&format!(
        "{{kind: {kind}, url: 'https://e.example.com/feed', category: 宏观{extra}}}"
    ))
    .unwrap();
    PlannedSource {
        name: kind.to_string(),
        spec,
    }
}

fn json_mapping() -> JsonMapping {
    serde_norway::from_str(
        "{items: '$.data.items', title: title, link: url, published: time, summary: digest}",
    )
    .unwrap()
}

fn html_mapping() -> HtmlMapping {
    serde_norway::from_str("{item: 'li', link: 'a', published: 'time', summary: 'p'}").unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T22:00:00Z")
        .unwrap()
        .to_utc()
}

fn base() -> Url {
    Url::parse("https://e.example.com/feed").unwrap()
}

fn config(lookback_hours: u32, watchlist: &[&str]) -> ExtractConfig {
    let watchlist: Vec<String> = watchlist.iter().map(|w| w.to_string()).collect();
    ExtractConfig {
        now: now(),
        end: finrep::plan::LookbackEnd::RunStart,
        lookback_hours,
        report_filters: Filters::default(),
        watchlist: entities::watch_entries(&watchlist),
        max_items: 40,
        max_items_per_source: 40,
    }
}

fn is_clean_line(s: &str) -> bool {
    !s.chars()
        .any(|c| untrusted::is_break(c) && c != ' ' || untrusted::is_dropped(c))
}

/// Everything after parsing, as a run does it; checks the cleaned items and the selection.
fn extract_all(kind: &str, items: Vec<parse::RawItem>) {
    let src = source(kind, "");
    let cleaned: Vec<extract::CleanItem> = items.into_iter().map(extract::clean).collect();
    for item in &cleaned {
        assert!(
            item.title.chars().count() <= TITLE_CHARS + 1,
            "title bounded"
        );
        assert!(
            item.summary.chars().count() <= SUMMARY_CHARS + 1,
            "summary bounded"
        );
        assert!(is_clean_line(&item.title), "title clean: {:?}", item.title);
        assert!(
            is_clean_line(&item.summary),
            "summary clean: {:?}",
            item.summary
        );
    }
    let cfg = config(168, &["600519", "AAPL", "降准"]);
    let mut stats = ExtractStats::default();
    let batch = SourceBatch {
        source: &src,
        filters: Filters::default(),
        items: cleaned,
        fetched_at: now(),
        failed: 0,
    };
    let cands = extract::candidates(vec![batch], &cfg, &mut stats);
    assert_eq!(stats.failed, 0, "no item handling panicked");
    let selected = extract::select(cands, &HashSet::new(), &cfg, &mut stats);
    assert!(selected.len() <= 40);
    for c in &selected {
        assert!(url::Url::parse(&c.url).is_ok());
        for t in &c.tickers {
            assert!(t.is_ascii(), "tickers are ASCII: {t}");
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn rss(items: &[(String, String, String)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><rss version=\"2.0\"><channel><title>t</title>",
    );
    for (title, link, summary) in items {
        out += &format!(
            "<item><title>{}</title><link>https://e.example.com/{}</link><description>{}</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>",
            xml_escape(title),
            xml_escape(link),
            xml_escape(summary)
        );
    }
    out + "</channel></rss>"
}

fn atom(items: &[(String, String, String)]) -> String {
    let mut out = String::from("<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title>");
    for (title, link, summary) in items {
        out += &format!(
            "<entry><title type=\"html\">{}</title><link href=\"https://e.example.com/{}\"/><id>{}</id><updated>2026-11-22T21:00:00Z</updated><summary type=\"html\">{}</summary></entry>",
            xml_escape(title),
            xml_escape(link),
            xml_escape(link),
            xml_escape(summary)
        );
    }
    out + "</feed>"
}

fn json_feed(items: &[(String, String, String)]) -> String {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(title, link, summary)| {
            serde_json::json!({"id": link, "url": format!("https://e.example.com/{link}"), "title": title, "content_html": summary, "date_published": "2026-11-22T21:00:00Z"})
        })
        .collect();
    serde_json::json!({"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": items})
        .to_string()
}

fn json_api(items: &[(String, String, String)]) -> String {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(title, link, summary)| {
            serde_json::json!({"title": title, "url": format!("/{link}"), "digest": summary, "time": "2026-11-23 05:00"})
        })
        .collect();
    serde_json::json!({"data": {"items": items}}).to_string()
}

fn html_page(items: &[(String, String, String)]) -> String {
    let mut out = String::from("<html><body><ul>");
    for (title, link, summary) in items {
        out += &format!(
            "<li><a href=\"/{}\">{}</a><time>2026-11-23 05:00</time><p>{}</p></li>",
            xml_escape(link),
            xml_escape(title),
            xml_escape(summary)
        );
    }
    out + "</ul></body></html>"
}

const FIXTURES: &[&str] = &[
    "cls-rss2.xml",
    "hk-atom.xml",
    "us-feed.json",
    "fed-rss1.rdf",
    "announcements.json",
    "stats-page.html",
    "industry-gbk.xml.utf8",
];

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/feeds")
}

fn items() -> impl Strategy<Value = Vec<(String, String, String)>> {
    prop::collection::vec((field(), nasty_text(30), field()), 0..8)
}

/// Cases of the slower properties: a quarter of PROPTEST_CASES (default 256), so the test
/// command stays quick and `scripts/fuzz.sh` still scales them.
fn slow_cases() -> u32 {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256u32);
    (cases / 4).max(1)
}

/// Parses `text` as every kind, then extracts whatever came out.
fn parse_every_way(text: &str) {
    let tz = chrono_tz::Asia::Shanghai;
    if let Ok(items) = parse::parse_feed(text, &base()) {
        extract_all("feed", items);
    }
    if let Ok(items) = parse::parse_json(text, &json_mapping(), &base(), tz) {
        extract_all("json", items);
    }
    if let Ok(items) = parse::parse_html(text, &html_mapping(), &base(), tz) {
        extract_all("html", items);
    }
}

proptest! {
    /// Arbitrary bytes in any declared charset: decoding and every parser return items or an
    /// error, and what they return extracts cleanly.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        charset in prop::option::of(prop::sample::select(vec!["gbk", "gb18030", "big5", "utf-8", "utf-16le"])),
        content_type in prop::option::of(prop::sample::select(vec!["application/rss+xml; charset=gbk", "text/html", "application/json"])),
    ) {
        let decoded = decode::decode(&bytes, content_type, charset);
        parse_every_way(&decoded.text);
    }

    /// JSON with lone surrogates, NUL escapes and deep nesting: an error or items, never a
    /// panic or a stack overflow.
    #[test]
    fn tricky_json(
        depth in 0usize..2000,
        escape in prop::sample::select(vec!["\\ud800", "\\udfff", "\\u0000", "\\ud83d\\ude00", "\\u202e", "\\\\", "\\\""]),
        word in nasty_text(20),
    ) {
        let title = format!("{escape}{}", word.replace(['"', '\\'], ""));
        let docs = [
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            format!("{{\"version\":\"{escape}\",\"title\":\"t\",\"items\":[{{\"id\":\"1\",\"title\":\"{title}\",\"url\":\"https://e.example.com/1\"}}]}}"),
            format!("{{\"data\":{{\"items\":[{{\"title\":\"{title}\",\"url\":\"/1\"}}]}}}}"),
        ];
        for doc in docs {
            parse_every_way(&doc);
        }
    }

    /// The pure text functions on arbitrary Unicode: no panic, bounded and clean output.
    #[test]
    fn text_functions_are_total(s in field(), max in 0usize..300) {
        let cleaned = untrusted::clean(&s, max);
        prop_assert!(cleaned.chars().count() <= max);
        prop_assert!(is_clean_line(&cleaned));
        let plain = text::to_plain_text(&s);
        prop_assert!(is_clean_line(&plain));
        let _ = text::truncate(&plain, max);
        let _ = text::normalise_for_matching(&s);
        for t in entities::tickers(&s) {
            prop_assert!(t.0.is_ascii());
        }
        let entries = entities::watch_entries(std::slice::from_ref(&s));
        let _ = entities::watch_hits(&entries, &entities::tickers(&s), &text::normalise_for_matching(&s), &s);
        let _ = canonical::canonical_url(&s);
        let _ = canonical::content_hash(&s, &s);
        let _ = untrusted::redact_url(&s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(slow_cases()))]

    /// Real documents of every kind (the test fixtures) with bytes flipped, inserted and cut:
    /// the parsers go deep before they meet the damage.
    #[test]
    fn damaged_documents_never_panic(
        which in 0usize..FIXTURES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..24),
    ) {
        let mut bytes = std::fs::read(fixture_dir().join(FIXTURES[which])).unwrap();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        for charset in [None, Some("gb18030")] {
            parse_every_way(&decode::decode(&bytes, None, charset).text);
        }
    }

    /// Well-formed documents of every format whose fields hold hostile text.
    #[test]
    fn hostile_fields_in_every_format(items in items()) {
        for doc in [rss(&items), atom(&items), json_feed(&items)] {
            let parsed = parse::parse_feed(&doc, &base());
            prop_assert!(parsed.is_ok(), "a well-formed feed parses: {parsed:?}");
            extract_all("feed", parsed.unwrap_or_default());
        }
        let tz = chrono_tz::Asia::Shanghai;
        if let Ok(found) = parse::parse_json(&json_api(&items), &json_mapping(), &base(), tz) {
            extract_all("json", found);
        }
        if let Ok(found) = parse::parse_html(&html_page(&items), &html_mapping(), &base(), tz) {
            extract_all("html", found);
        }
    }
}

#[test]
fn fullwidth_codes_in_a_title_are_tickers_not_panics() {
    let items = vec![(
        "贵州茅台（６００５１９）三季度净利润预增".to_string(),
        "moutai".to_string(),
        "公司公告".to_string(),
    )];
    let parsed = parse::parse_feed(&rss(&items), &base()).unwrap();
    let src = source("feed", "");
    let cfg = config(24, &["600519"]);
    let mut stats = ExtractStats::default();
    let batch = SourceBatch {
        source: &src,
        filters: Filters::default(),
        items: parsed.into_iter().map(extract::clean).collect(),
        fetched_at: now(),
        failed: 0,
    };
    let cands = extract::candidates(vec![batch], &cfg, &mut stats);
    assert_eq!(cands.len(), 1, "{stats:?}");
    assert_eq!(cands[0].tickers, ["600519.SH"]);
    assert_eq!(cands[0].watch_hits, 1);
}

/// Headlines for a chat digest: hostile titles, sources and URLs in a few sections.
fn digest() -> impl Strategy<Value = finrep::delivery::chat::Digest> {
    use finrep::delivery::chat::{Digest, DigestItem, DigestSection};
    let item = (
        field(),
        field(),
        field(),
        prop::collection::vec(nasty_text(12), 0..3),
    )
        .prop_map(|(title, url, source, tickers)| DigestItem {
            title,
            url: format!("https://e.example.com/{url}"),
            source,
            tickers,
        });
    let section = (nasty_text(20), prop::collection::vec(item, 0..6))
        .prop_map(|(name, items)| DigestSection { name, items });
    (
        field(),
        prop::collection::vec(section, 0..4),
        nasty_text(40),
    )
        .prop_map(|(title, sections, url)| Digest {
            title,
            date: "2026-11-26".into(),
            date_display: "2026年11月26日 星期四".into(),
            sections,
            full_report_url: Some(url),
            left_out: 3,
        })
}

/// The characters that make markup in WeCom, DingTalk and Feishu/Lark markdown.
const CHAT_MARKUP: &[char] = &[
    '*', '_', '`', '[', ']', '(', ')', '#', '<', '>', '|', '~', '!', '\\', '&', '@', '$',
];

proptest! {
    /// A chat message from hostile headlines: escaped values hold no markup character and no
    /// line break; links are web links or nothing; every platform's message is within its
    /// limit (or refused as too long), never a panic.
    #[test]
    fn chat_messages_from_hostile_text_are_inert_and_bounded(d in digest(), value in field(), url in field()) {
        use finrep::api::{ChatGroup, ChatLanguage, ChatPlatform, SecretKeyRef};
        use finrep::delivery::chat::{self, ChatTemplates, escape};
        let escaped = escape::escape(&value);
        prop_assert!(!escaped.contains(CHAT_MARKUP), "{escaped}");
        prop_assert!(!escaped.chars().any(char::is_control), "{escaped:?}");
        prop_assert!(escaped.chars().count() <= 301);
        let href = escape::href(&url);
        prop_assert!(href.is_empty() || href.starts_with("http"), "{href}");
        prop_assert!(!href.contains(['(', ')', ' ', '<', '>', '"', '\n']), "{href}");

        let templates = ChatTemplates::builtin().unwrap();
        for platform in [ChatPlatform::Wecom, ChatPlatform::Dingtalk, ChatPlatform::Feishu, ChatPlatform::Lark] {
            for language in [ChatLanguage::Zh, ChatLanguage::En] {
                let bot = ChatGroup {
                    platform,
                    webhook_secret_ref: SecretKeyRef { name: "bot".into(), key: "webhook".into() },
                    signing_secret_ref: None,
                    keyword: None,
                    language,
                };
                let (size, limit) = chat::budget(platform);
                match chat::compose(&templates, &d, &bot) {
                    Ok(post) => {
                        let m = &post.message;
                        prop_assert!(size(&m.title, &m.markdown) <= limit);
                        prop_assert!(!m.title.contains(CHAT_MARKUP));
                        let headings = m.markdown.lines().filter(|l| l.starts_with('#')).count();
                        prop_assert_eq!(headings, 1, "{}", m.markdown);
                    }
                    Err(e) => prop_assert!(e.to_string().contains("over the platform's limit"), "{e}"),
                }
            }
        }
    }
}
