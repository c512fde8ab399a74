//! A summariser's answer says only what its article says: a URL, an e-mail address or a phone
//! number in the answer that the article's own text (what the model was given) does not
//! contain is dropped before the answer reaches any copy — mail clients make such text a link,
//! and an invented "open an account here" link in a financial report is a phishing vector.
//!
//! Matching is by regex (linear time) and compares normalised forms: URLs without scheme,
//! `www.`, trailing punctuation and case; addresses in lower case; phone numbers by their
//! digits (fullwidth digits folded), so a number the article wrote with other spacing stays.

use std::sync::LazyLock;

use regex::Regex;

/// A pattern of this module: a constant, so a failure to compile it is a bug the unit tests
/// catch, never input-dependent (as `entities`' patterns).
fn pattern(re: &str) -> Regex {
    Regex::new(re).unwrap_or_else(|e| panic!("grounding pattern {re}: {e}"))
}

/// A markdown link `[text](target)`: the text stays, the target goes unless grounded.
static MARKDOWN_LINK: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\[([^\]\n]{0,200})\]\(\s*([^)\s]{1,2000})\s*\)"));
/// A URL with a scheme, a bare `www.` host, or a bare host with a path (mail clients make
/// each of them a link).
static URL: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)\b(?:(?:https?|ftp)://|www\.|(?:[a-z0-9-]{1,63}\.)+[a-z]{2,24}/)[^\s<>()\[\]{}，。、；：！？“”‘’《》【】]*",
    )
});
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?i)\b[a-z0-9._%+-]{1,64}@[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+\b"));
/// A date written with digits only (`2026-12-05`): not a phone number.
static DATE: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^[0-9０-９]{4}[-/.－][0-9０-９]{1,2}[-/.－][0-9０-９]{1,2}$"));
/// Seven or more digits, with the separators phone numbers are written with.
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?:[+＋]\s?)?[0-9０-９](?:[0-9０-９\s().\-－—]{5,24})[0-9０-９]"));

/// An answer after grounding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grounded {
    pub text: String,
    /// How many URLs, addresses and numbers were dropped.
    pub dropped: usize,
}

fn url_form(s: &str) -> String {
    let s = s.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"']);
    let lower = s.to_lowercase();
    let no_scheme = lower
        .split_once("://")
        .map_or(lower.as_str(), |(_, rest)| rest)
        .trim_start_matches("www.");
    no_scheme.trim_end_matches('/').to_string()
}

fn digits(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
            _ => None,
        })
        .collect()
}

/// What of `source` the answer may repeat.
struct Source {
    urls: String,
    lower: String,
    digits: String,
}

impl Source {
    fn of(text: &str) -> Self {
        let urls = URL
            .find_iter(text)
            .map(|m| url_form(m.as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            urls,
            lower: text.to_lowercase(),
            digits: digits(text),
        }
    }

    fn has_url(&self, url: &str) -> bool {
        let form = url_form(url);
        !form.is_empty() && self.urls.lines().any(|u| u == form)
    }
}

/// `answer` without the URLs, addresses and phone numbers `source` does not contain.
pub fn ground(answer: &str, source: &str) -> Grounded {
    let src = Source::of(source);
    let mut dropped = 0;
    let text = MARKDOWN_LINK.replace_all(answer, |c: &regex::Captures<'_>| {
        let (label, target) = (&c[1], &c[2]);
        if src.has_url(target) {
            c[0].to_string()
        } else {
            dropped += 1;
            label.to_string()
        }
    });
    let text = URL.replace_all(&text, |c: &regex::Captures<'_>| {
        if src.has_url(&c[0]) {
            c[0].to_string()
        } else {
            dropped += 1;
            String::new()
        }
    });
    let text = EMAIL.replace_all(&text, |c: &regex::Captures<'_>| {
        if src.lower.contains(&c[0].to_lowercase()) {
            c[0].to_string()
        } else {
            dropped += 1;
            String::new()
        }
    });
    let text = PHONE.replace_all(&text, |c: &regex::Captures<'_>| {
        let d = digits(&c[0]);
        if d.len() < 7 || src.digits.contains(&d) || DATE.is_match(c[0].trim()) {
            c[0].to_string()
        } else {
            dropped += 1;
            String::new()
        }
    });
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Grounded {
        text: text.trim().to_string(),
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTICLE: &str = "央行开展5000亿元MLF操作，利率持平。详见 https://www.pbc.gov.cn/notice/1.html 或致电 010-6619 4114。";

    #[test]
    fn an_invented_link_address_or_number_is_dropped() {
        let g = ground(
            "央行开展MLF操作。[立即开户](http://evil.example/phish) 咨询 vip@evil.example 或 400-800-1234。",
            ARTICLE,
        );
        assert!(!g.text.contains("evil"), "{}", g.text);
        assert!(!g.text.contains("400"), "{}", g.text);
        assert!(
            g.text.contains("立即开户"),
            "the link's words stay: {}",
            g.text
        );
        assert_eq!(g.dropped, 3);
    }

    #[test]
    fn what_the_article_said_stays() {
        let g = ground(
            "MLF操作5000亿元，见 pbc.gov.cn/notice/1.html；电话 010 66194114。",
            ARTICLE,
        );
        assert_eq!(g.dropped, 0, "{}", g.text);
        let g = ground(
            "详见 https://www.pbc.gov.cn/notice/1.html。电话010-66194114",
            ARTICLE,
        );
        assert_eq!(g.dropped, 0, "{}", g.text);
        assert!(g.text.contains("https://www.pbc.gov.cn/notice/1.html"));
        // Amounts and dates are not phone numbers.
        let g = ground(
            "2026年12月5日（2026-12-05），央行开展5000亿元操作。",
            ARTICLE,
        );
        assert_eq!(g.dropped, 0, "{}", g.text);
    }

    #[test]
    fn fullwidth_digits_and_bare_hosts_are_caught() {
        let g = ground(
            "请拨打１３８００１３８０００，或访问 www.evil.example/x 或 evil.example/open",
            ARTICLE,
        );
        assert_eq!(g.dropped, 3, "{}", g.text);
        assert!(!g.text.contains("１３８") && !g.text.contains("evil"));
    }

    proptest::proptest! {
        #[test]
        fn grounding_never_panics_and_never_adds(answer in ".{0,300}", source in ".{0,300}") {
            let g = ground(&answer, &source);
            proptest::prop_assert!(g.text.chars().count() <= answer.chars().count());
        }
    }
}
