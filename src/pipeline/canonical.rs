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
    let prefixed = |prefix: &str| {
        key.as_bytes()
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    prefixed("utm_")
        || prefixed("pk_")
        || TRACKING_PARAMS.iter().any(|t| t.eq_ignore_ascii_case(key))
}

/// An article's URL in canonical form, as `canonical_url` makes it: an item's identity from
/// the moment it is read (a feed's link is made canonical as it is resolved, so that it is
/// parsed once).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalUrl(String);

impl std::ops::Deref for CanonicalUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<CanonicalUrl> for String {
    fn from(url: CanonicalUrl) -> String {
        url.0
    }
}

/// The canonical form of an article URL, or `None` for a URL that is not http(s).
pub fn canonical_url(raw: &str) -> Option<CanonicalUrl> {
    canonical(Url::parse(raw.trim()).ok()?)
}

/// The canonical form of a parsed URL: http(s) only, without fragment and tracking
/// parameters, the other parameters sorted.
pub fn canonical(mut url: Url) -> Option<CanonicalUrl> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_fragment(None);
    if url.query().is_some() {
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
    }
    // Url already lower-cases the host and drops default ports.
    Some(CanonicalUrl(url.into()))
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
            canonical_url("https://e.com/x?UTM_Campaign=a&Spm=b&keep=1&fromage=2").as_deref(),
            Some("https://e.com/x?fromage=2&keep=1")
        );
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

    proptest::proptest! {
        /// A link made canonical as it is resolved is the link resolved, written out and then
        /// made canonical (the two steps the pipeline took before), and canonical stays
        /// canonical.
        #[test]
        fn resolving_and_canonicalising_in_one_step_changes_no_link(
            href in "(https?://[a-zA-Z0-9.]{1,12}(:[0-9]{1,5})?)?[/a-zA-Z0-9._~%!$'()*+,;:@-]{0,24}(\\?[a-zA-Z0-9_%.+=&;/?-]{0,40})?(#[a-z0-9#?]{0,8})?"
        ) {
            let base = Url::parse("https://news.example.com/list/index.html?page=2").unwrap();
            let two_steps = base
                .join(href.trim())
                .ok()
                .and_then(|u| canonical_url(u.as_str()));
            let one_step = base.join(href.trim()).ok().and_then(canonical);
            proptest::prop_assert_eq!(&one_step, &two_steps);
            if let Some(url) = one_step {
                proptest::prop_assert_eq!(canonical_url(&url), Some(url));
            }
        }
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
