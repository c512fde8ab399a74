//! Securities mentioned in an item: A-share codes (`600519`, `600519.SH`, `贵州茅台(600519)`),
//! Hong Kong codes (`00700.HK`), US tickers (`$AAPL`, `NASDAQ: AAPL`, `AAPL.O`), and
//! watch-list hits.
//!
//! Chinese feeds write codes in fullwidth forms (`贵州茅台（６００５１９）`), so text is folded
//! to its NFKC compatibility form before matching, and the patterns use ASCII classes: a code
//! is ASCII digits and letters once folded, and every slice taken here is one a regex or
//! `match_indices` gave, never a guessed byte offset.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use super::text::normalise_for_matching;

/// A security, normalised: `600519.SH`, `00700.HK`, `AAPL`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Ticker(pub String);

struct Patterns {
    a_suffixed: Regex,
    a_prefixed: Regex,
    a_bracketed: Regex,
    hk: Regex,
    us_dollar: Regex,
    us_exchange: Regex,
    us_suffixed: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // The patterns are constants; a failure here is a bug caught by the unit tests.
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("ticker pattern {s}: {e}"));
        Patterns {
            a_suffixed: re(r"(?i)(?:^|[^0-9])([0-9]{6})\.(SH|SZ|BJ|SS)(?-u:\b)"),
            a_prefixed: re(r"(?:^|[^A-Za-z0-9])(SH|SZ|BJ|sh|sz|bj)([0-9]{6})(?:[^0-9]|$)"),
            a_bracketed: re(r"[（(]([0-9]{6})[)）]"),
            hk: re(r"(?i)(?:^|[^0-9])([0-9]{1,5})\.HK(?-u:\b)"),
            us_dollar: re(r"\$([A-Z]{1,5})(?-u:\b)"),
            us_exchange: re(
                r"(?:NASDAQ|NYSE|AMEX|NYSEARCA|纳斯达克|纽交所)\s*[:：]\s*([A-Z]{1,5})(?-u:\b)",
            ),
            us_suffixed: re(r"(?:^|[^A-Za-z0-9.])([A-Z]{1,5})\.(?:O|N|OQ|US)(?-u:\b)"),
        }
    })
}

/// The exchange suffix of a six-digit mainland code, or `None` when it is not one.
fn a_share_exchange(code: &str) -> Option<&'static str> {
    match code.get(..2)? {
        "60" | "68" | "90" => Some("SH"),
        "00" | "30" | "20" => Some("SZ"),
        "43" | "83" | "87" | "92" => Some("BJ"),
        _ => None,
    }
}

fn hk(code: &str) -> Ticker {
    Ticker(format!("{:0>5}.HK", code.trim_start_matches('0')))
}

/// `text` in NFKC compatibility form (fullwidth digits, letters and brackets become ASCII);
/// borrowed when it is already in that form, as most text is.
pub fn fold_compatibility(text: &str) -> Cow<'_, str> {
    match is_nfkc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfkc().collect()),
    }
}

/// Every security mentioned in `text` (in any width).
pub fn tickers(text: &str) -> BTreeSet<Ticker> {
    let folded = fold_compatibility(text);
    let text = folded.as_ref();
    let p = patterns();
    let mut out = BTreeSet::new();
    for c in p.a_suffixed.captures_iter(text) {
        let suffix = c[2].to_ascii_uppercase();
        let suffix = if suffix == "SS" {
            "SH".to_string()
        } else {
            suffix
        };
        out.insert(Ticker(format!("{}.{suffix}", &c[1])));
    }
    for c in p.a_prefixed.captures_iter(text) {
        out.insert(Ticker(format!("{}.{}", &c[2], c[1].to_ascii_uppercase())));
    }
    for c in p.a_bracketed.captures_iter(text) {
        if let Some(ex) = a_share_exchange(&c[1]) {
            out.insert(Ticker(format!("{}.{ex}", &c[1])));
        }
    }
    for c in p.hk.captures_iter(text) {
        out.insert(hk(&c[1]));
    }
    for re in [&p.us_dollar, &p.us_exchange, &p.us_suffixed] {
        for c in re.captures_iter(text) {
            if !cut_short(text, c.get(1).map_or(0, |m| m.end())) {
                out.insert(Ticker(c[1].to_string()));
            }
        }
    }
    out
}

/// Whether a code ending at `end` is where a long title or summary was cut (the `…` that
/// `untrusted::clean` puts at the end of a line, `...` once folded): `NASDAQ: AA…` is the
/// start of a symbol, not the symbol AA.
fn cut_short(text: &str, end: usize) -> bool {
    text.get(end..)
        .and_then(|rest| rest.strip_prefix('…').or_else(|| rest.strip_prefix("...")))
        .is_some_and(|after| after.is_empty() || after.starts_with('\n'))
}

/// A watch-list entry: a security (matched against tickers found) or a keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEntry {
    Ticker(Ticker),
    /// A bare six-digit code also matches where it appears as a number.
    AShareCode(String),
    Keyword(String),
}

/// Parses watch-list entries: `600519`, `600519.SH`, `00700.HK`, `700.HK`, `AAPL`, or words.
pub fn watch_entries(list: &[String]) -> Vec<WatchEntry> {
    list.iter()
        .filter_map(|raw| {
            let folded = fold_compatibility(raw.trim());
            let s = folded.trim();
            if s.is_empty() {
                return None;
            }
            let found = tickers(s);
            if found.len() == 1 {
                return found.into_iter().next().map(WatchEntry::Ticker);
            }
            if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
                return Some(WatchEntry::AShareCode(s.to_string()));
            }
            if (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase()) {
                return Some(WatchEntry::Ticker(Ticker(s.to_string())));
            }
            Some(WatchEntry::Keyword(normalise_for_matching(s)))
        })
        .collect()
}

/// How many distinct watch-list entries an item hits.
pub fn watch_hits(
    entries: &[WatchEntry],
    found: &BTreeSet<Ticker>,
    normalised_text: &str,
    raw_text: &str,
) -> usize {
    let folded = fold_compatibility(raw_text);
    let raw_text = folded.as_ref();
    entries
        .iter()
        .filter(|e| match e {
            WatchEntry::Ticker(t) => {
                found.contains(t)
                    || (t.0.bytes().all(|b| b.is_ascii_uppercase())
                        && contains_word(raw_text, &t.0))
            }
            WatchEntry::AShareCode(code) => {
                found.iter().any(|t| t.0.starts_with(code.as_str()))
                    || contains_number(raw_text, code)
            }
            WatchEntry::Keyword(k) => !k.is_empty() && normalised_text.contains(k.as_str()),
        })
        .count()
}

/// `word` in `text` with no letter or digit right before or after it.
fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

fn contains_number(text: &str, digits: &str) -> bool {
    text.match_indices(digits).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + digits.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        tickers(text).into_iter().map(|t| t.0).collect()
    }

    /// A summary cut in the middle of a symbol names no security: the cut `AA…` of
    /// `NASDAQ: AAPL` is not AA.
    #[test]
    fn a_symbol_cut_by_a_length_limit_is_not_a_symbol() {
        let title = "[AAPL](javascript:alert(1)) NASDAQ: AAPL";
        let summary = crate::untrusted::clean(&format!("{title} {title}"), 80);
        assert!(summary.ends_with("NASDAQ: AA…"), "{summary}");
        assert_eq!(names(&format!("{title}\n{summary}")), ["AAPL"]);
        assert_eq!(names("NASDAQ: AA…\n"), Vec::<String>::new());
        assert_eq!(
            names("NASDAQ: AA… 续"),
            ["AA"],
            "an ellipsis inside a line is text"
        );
        assert_eq!(names("$AMD…"), Vec::<String>::new());
    }

    #[test]
    fn finds_tickers_in_common_forms() {
        assert_eq!(names("贵州茅台(600519)发布公告"), ["600519.SH"]);
        assert_eq!(names("宁德时代（300750.SZ）涨停"), ["300750.SZ"]);
        assert_eq!(names("SH601318 中国平安"), ["601318.SH"]);
        assert_eq!(
            names("腾讯控股(00700.HK)与阿里巴巴(9988.HK)"),
            ["00700.HK", "09988.HK"]
        );
        assert_eq!(
            names("Shares of $AAPL and NASDAQ: NVDA rose"),
            ["AAPL", "NVDA"]
        );
        assert_eq!(names("特斯拉(TSLA.O)盘前涨3%"), ["TSLA"]);
        // Amounts and dates are not codes.
        assert!(names("成交额100000亿元，2026年11月23日").is_empty());
    }

    #[test]
    fn fullwidth_codes_are_codes() {
        assert_eq!(
            names("贵州茅台（６００５１９）三季度净利润预增"),
            ["600519.SH"]
        );
        assert_eq!(names("宁德时代（３００７５０．ＳＺ）"), ["300750.SZ"]);
        assert_eq!(names("腾讯控股（００７００．ＨＫ）"), ["00700.HK"]);
        // Digits of other scripts are not codes, and cut nothing.
        assert!(names("（٦٠٠٥١٩）").is_empty());
        assert!(names("（६००५१९）").is_empty());
        let entries = watch_entries(&["６００５１９".into()]);
        assert_eq!(entries, [WatchEntry::AShareCode("600519".into())]);
        let text = "茅台６００５１９走强";
        assert_eq!(
            watch_hits(
                &entries,
                &tickers(text),
                &normalise_for_matching(text),
                text
            ),
            1
        );
    }

    #[test]
    fn watch_list_hits() {
        let entries = watch_entries(&[
            "600519".into(),
            "700.HK".into(),
            "AAPL".into(),
            "降准".into(),
        ]);
        let text = "央行宣布降准；茅台600519与腾讯(00700.HK)走强，AAPL创新高";
        let found = tickers(text);
        assert_eq!(
            watch_hits(&entries, &found, &normalise_for_matching(text), text),
            4
        );
        let other = "AAPLX 无关";
        assert_eq!(
            watch_hits(
                &entries,
                &tickers(other),
                &normalise_for_matching(other),
                other
            ),
            0
        );
    }
}
