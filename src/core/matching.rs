//! Text as it is compared: normalised for matching (fullwidth forms folded, case and
//! punctuation ignored), and keyword filters compiled once, the same way for `finrep
//! validate`, the controller's checks and the pipeline — so a pattern that validates is the
//! pattern that runs.

use regex::{Regex, RegexBuilder};

use crate::api::KeywordFilters;

/// Largest compiled size of a keyword regex; keeps a filter from costing memory or time.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Text normalised for comparison: full-width forms folded to ASCII, lower case, and
/// punctuation and spaces removed.
pub fn normalise_for_matching(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    out.extend(normalised_chars(s));
    out
}

/// The characters of `normalise_for_matching(s)`, one at a time: a caller that needs only the
/// start (a content hash) stops early and allocates nothing.
#[inline]
pub fn normalised_chars(s: &str) -> NormalisedChars<'_> {
    NormalisedChars {
        chars: s.chars(),
        lower: None,
    }
}

/// The iterator of `normalised_chars`. A loop of its own rather than a `flat_map`: it runs
/// for every item's title and summary start, and the flattening adapter's state per character
/// was a tenth of the parse benchmark.
pub struct NormalisedChars<'a> {
    chars: std::str::Chars<'a>,
    /// The rest of a character whose lower case is several.
    lower: Option<std::char::ToLowercase>,
}

impl Iterator for NormalisedChars<'_> {
    type Item = char;

    // Inline across crates (the pipeline hashes with it), as `untrusted::is_break`.
    #[inline]
    fn next(&mut self) -> Option<char> {
        if let Some(lower) = &mut self.lower {
            if let Some(c) = lower.next() {
                return Some(c);
            }
            self.lower = None;
        }
        loop {
            let c = self.chars.next()?;
            let c = match c {
                '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
                _ => c,
            };
            // Fast paths for the two scripts reports are made of; the Unicode tables only for
            // the rest.
            if c.is_ascii() {
                if c.is_ascii_alphanumeric() {
                    return Some(c.to_ascii_lowercase());
                }
            } else if matches!(c as u32, 0x4e00..=0x9fff) {
                return Some(c);
            } else if is_common_punctuation(c) {
                continue;
            } else if c.is_alphanumeric() {
                let mut lower = c.to_lowercase();
                let first = lower.next();
                self.lower = Some(lower);
                if first.is_some() {
                    return first;
                }
            }
        }
    }
}

/// General punctuation (dashes, quotes, ellipsis) and CJK punctuation (`。`, `、`, `《》`,
/// `【】`): never alphanumeric, and told so without the Unicode tables.
#[inline]
fn is_common_punctuation(c: char) -> bool {
    matches!(c, '\u{2000}'..='\u{206f}' | '\u{3000}'..='\u{3004}' | '\u{3008}'..='\u{3020}')
}

/// One compiled include or exclude entry.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// A word or phrase, normalised; matched as a substring of normalised text.
    Word(String),
    /// `re:<pattern>`, case-insensitive, linear time; matched against the raw text.
    Regex(Regex),
}

/// Why an entry does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("keywords must not be blank")]
    Blank,
    #[error("invalid regular expression {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
}

impl Matcher {
    /// Compiles one entry exactly as runs use it.
    pub fn compile(entry: &str) -> Result<Self, FilterError> {
        match entry.strip_prefix("re:") {
            Some(pattern) => RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(Matcher::Regex)
                .map_err(|e| FilterError::Regex {
                    pattern: pattern.to_string(),
                    reason: last_line(&e.to_string())
                        .trim_start_matches("error: ")
                        .to_string(),
                }),
            None if entry.trim().is_empty() => Err(FilterError::Blank),
            None => Ok(Matcher::Word(normalise_for_matching(entry))),
        }
    }

    fn matches(&self, normalised: &str, raw: &str) -> bool {
        match self {
            Self::Word(w) => !w.is_empty() && normalised.contains(w.as_str()),
            Self::Regex(r) => r.is_match(raw),
        }
    }
}

/// Parser errors often draw a picture over several lines; the verdict is the last one.
pub fn last_line(message: &str) -> &str {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
}

/// Compiled include / exclude keywords.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    include: Vec<Matcher>,
    exclude: Vec<Matcher>,
}

impl Filters {
    /// Compiles every entry; the error names the first that fails (`include[2]: …`).
    pub fn compile(f: &KeywordFilters) -> Result<Self, String> {
        let compile = |list: &str, entries: &[String]| -> Result<Vec<Matcher>, String> {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| Matcher::compile(e).map_err(|err| format!("{list}[{i}]: {err}")))
                .collect()
        };
        Ok(Self {
            include: compile("include", &f.include)?,
            exclude: compile("exclude", &f.exclude)?,
        })
    }

    /// Kept when it matches an include (or there are none) and no exclude.
    pub fn keeps(&self, normalised: &str, raw: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|m| m.matches(normalised, raw)))
            && !self.exclude.iter().any(|m| m.matches(normalised, raw))
    }

    /// How many include keywords an item matches (a ranking signal).
    pub fn include_hits(&self, normalised: &str, raw: &str) -> usize {
        self.include
            .iter()
            .filter(|m| m.matches(normalised, raw))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_punctuation_is_not_alphanumeric() {
        for c in ('\0'..=char::MAX).filter(|&c| is_common_punctuation(c)) {
            assert!(!c.is_alphanumeric(), "{c:?}");
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise_for_matching("【快讯】Ａ股 收涨！"), "快讯a股收涨");
        // A capital whose lower case is two characters.
        assert_eq!(normalise_for_matching("İstanbul Ｂ"), "i\u{307}stanbulb");
    }

    /// The rules written plainly: every character folded from full width, then kept in lower
    /// case when it is a letter or digit.
    fn reference(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
                _ => c,
            })
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn normalised_text_follows_the_rules(s in "\\PC{0,200}") {
            proptest::prop_assert_eq!(normalise_for_matching(&s), reference(&s));
        }
    }

    #[test]
    fn regexes_are_case_insensitive_and_refused_the_same_way_everywhere() {
        let f = Filters::compile(&KeywordFilters {
            include: vec!["re:\\bipo\\b".into(), "降准".into()],
            exclude: vec![],
        })
        .unwrap();
        assert!(f.keeps("", "Tencent IPO filing"));
        assert!(f.keeps(&normalise_for_matching("央行降准"), "央行降准"));
        assert!(!f.keeps("", "nothing"));
        let err = Filters::compile(&KeywordFilters {
            include: vec![],
            exclude: vec!["ok".into(), "re:(unclosed".into()],
        })
        .unwrap_err();
        assert!(
            err.starts_with("exclude[1]: invalid regular expression"),
            "{err}"
        );
        assert_eq!(Matcher::compile("  ").unwrap_err(), FilterError::Blank);
    }
}
