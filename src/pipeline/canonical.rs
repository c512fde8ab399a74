//! Article identity: the canonical URL (tracking parameters, fragments and default ports
//! removed, parameters sorted) and content hashes. Never the feed's GUID alone: some feeds
//! change GUIDs every day.

use sha2::{Digest, Sha256};
use url::Url;

use crate::matching::normalised_chars;

/// Query parameters that only track the reader.
const TRACKING_PARAMS: &[&str] = &[
    "spm",
    "scm",
    "fbclid",
    "gclid",
    "dclid",
    "yclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "igshid",
    "_hsenc",
    "_hsmi",
    "ref",
    "ref_src",
    "referer",
    "from",
    "source",
    "share",
    "share_token",
    "sharer_shareid",
    "sharer_sharetime",
    "isappinstalled",
    "wfr",
    "scene",
    "clicktime",
    "enterid",
    "timestamp",
    "_t",
    "cmpid",
    "ncid",
    "sr_share",
    "share_from",
    "tt_from",
    "utm",
    "wt.mc_id",
    "wt_mc_id",
];

fn is_tracking(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("utm_") || k.starts_with("pk_") || TRACKING_PARAMS.contains(&k.as_str())
}

/// The canonical form of an article URL, or `None` for a URL that is not http(s).
pub fn canonical_url(raw: &str) -> Option<String> {
    let mut url = Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_fragment(None);
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_tracking(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // Url already lower-cases the host and drops default ports.
    Some(url.to_string())
}

/// Hash of a canonical URL; http and https forms of one page are one article.
pub fn url_hash(canonical: &str) -> [u8; 32] {
    let without_scheme = canonical
        .strip_prefix("https://")
        .or_else(|| canonical.strip_prefix("http://"))
        .unwrap_or(canonical);
    Sha256::digest(without_scheme.as_bytes()).into()
}

/// Hash of what an article says (normalised title and the start of its summary), so the same
/// story at a new URL is still recognised.
pub fn content_hash(title: &str, summary: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_chars(&mut h, normalised_chars(title));
    h.update([0u8]);
    // Only the start of the summary: a feed may append to the end of a story it republishes.
    hash_chars(&mut h, normalised_chars(summary).take(200));
    h.finalize().into()
}

/// Feeds `chars` to `h` as UTF-8 through a buffer on the stack (no allocation per item).
fn hash_chars(h: &mut Sha256, chars: impl Iterator<Item = char>) {
    let mut buf = [0u8; 256];
    let mut len = 0;
    for c in chars {
        if len + 4 > buf.len() {
            h.update(&buf[..len]);
            len = 0;
        }
        len += c.encode_utf8(&mut buf[len..]).len();
    }
    h.update(&buf[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_removed_and_params_sorted() {
        assert_eq!(
            canonical_url(
                "HTTPS://News.Example.com:443/a/1.html?utm_source=wx&id=7&spm=a.b&b=2#comments"
            )
            .as_deref(),
            Some("https://news.example.com/a/1.html?b=2&id=7")
        );
        assert_eq!(
            canonical_url("http://e.com/x?utm_medium=rss").as_deref(),
            Some("http://e.com/x")
        );
        assert_eq!(canonical_url("javascript:alert(1)"), None);
    }

    #[test]
    fn scheme_does_not_change_identity() {
        assert_eq!(url_hash("http://e.com/a"), url_hash("https://e.com/a"));
        assert_ne!(url_hash("https://e.com/a"), url_hash("https://e.com/b"));
    }

    proptest::proptest! {
        /// Streaming the hash changes no stored hash: it equals the hash of the normalised
        /// title, a NUL and the first 200 normalised characters of the summary.
        #[test]
        fn content_hash_is_the_hash_of_the_normalised_text(title in "\\PC{0,300}", summary in "\\PC{0,600}") {
            let head: String = crate::matching::normalise_for_matching(&summary).chars().take(200).collect();
            let mut h = Sha256::new();
            h.update(crate::matching::normalise_for_matching(&title).as_bytes());
            h.update([0u8]);
            h.update(head.as_bytes());
            let want: [u8; 32] = h.finalize().into();
            proptest::prop_assert_eq!(content_hash(&title, &summary), want);
        }
    }

    #[test]
    fn content_hash_ignores_punctuation_and_width() {
        assert_eq!(
            content_hash("央行：降准０.５个百分点", "释放资金"),
            content_hash("央行 降准0.5个百分点！", "释放资金")
        );
    }
}
