//! Third-party text made safe and plain. HTML fragments from feeds are reduced to their text
//! with html5ever's tokenizer (the HTML standard's own tokenization, so entities, comments and
//! malformed markup are read exactly as a browser reads them): tags, attributes, scripts,
//! styles, images and links are dropped, never rewritten. Only plain text leaves this module,
//! and templates escape it again on output, so no markup from a feed can reach a report.

use std::cell::{Cell, RefCell};

use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// Elements whose content is code or invisible, never text a reader should see.
const HIDDEN: &[&str] = &[
    "script", "style", "noscript", "template", "iframe", "object", "svg", "math", "head", "title",
    "textarea", "select",
];

/// Elements that separate words when they start or end.
const BREAKS: &[&str] = &[
    "br",
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "section",
    "article",
    "header",
    "footer",
    "hr",
    "dd",
    "dt",
];

/// What an element is to the text of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ElementRole {
    /// Its content is never text (`HIDDEN`).
    Hidden,
    /// It separates words (`BREAKS`).
    Break,
    /// Its content runs on with the text around it.
    Inline,
}

/// The role of the element named `name`, ASCII case ignored (the tokenizer lower-cases tag
/// names; the one-pass reader of `simple_markup` does not): the one rule both readers follow.
pub(super) fn element_role(name: &[u8]) -> ElementRole {
    let is = |names: &[&str]| {
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    };
    if is(HIDDEN) {
        ElementRole::Hidden
    } else if is(BREAKS) {
        ElementRole::Break
    } else {
        ElementRole::Inline
    }
}

struct TextSink {
    out: RefCell<FoldedText>,
    hidden_depth: Cell<u32>,
}

impl TokenSink for TextSink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::CharacterTokens(text) if self.hidden_depth.get() == 0 => {
                self.out.borrow_mut().push_str(&text);
            }
            Token::TagToken(tag) => {
                let name: &str = &tag.name;
                match element_role(name.as_bytes()) {
                    ElementRole::Hidden => match tag.kind {
                        TagKind::StartTag if !tag.self_closing => {
                            self.hidden_depth.set(self.hidden_depth.get() + 1);
                            // Read their content as the standard does (raw text up to the
                            // matching end tag), so markup-like text inside cannot escape.
                            return match name {
                                "script" => TokenSinkResult::RawData(RawKind::ScriptData),
                                "style" | "iframe" | "noscript" => {
                                    TokenSinkResult::RawData(RawKind::Rawtext)
                                }
                                "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
                                _ => TokenSinkResult::Continue,
                            };
                        }
                        TagKind::EndTag => {
                            self.hidden_depth
                                .set(self.hidden_depth.get().saturating_sub(1));
                        }
                        TagKind::StartTag => {}
                    },
                    ElementRole::Break => self.out.borrow_mut().push_break(),
                    ElementRole::Inline => {}
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The readable text of an HTML fragment (or of plain text that may contain entities).
pub fn to_plain_text(fragment: &str) -> String {
    if !fragment.contains(['<', '&']) {
        return fold_whitespace(fragment);
    }
    // Most summaries are text, tags and a few character references: read in one pass.
    super::simple_markup::plain_text(fragment).unwrap_or_else(|| tokenized_text(fragment))
}

/// The readable text of any HTML fragment, by html5ever's tokenizer.
pub(super) fn tokenized_text(fragment: &str) -> String {
    let sink = TextSink {
        out: RefCell::new(FoldedText::with_capacity(fragment.len())),
        hidden_depth: Cell::new(0),
    };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(fragment.into());
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.out.into_inner().finish()
}

/// Collapses runs of whitespace (including full-width spaces) and control characters into
/// one space, and drops the characters `untrusted::is_dropped` names (bidirectional
/// overrides and the like).
pub fn fold_whitespace(s: &str) -> String {
    let mut text = FoldedText::with_capacity(s.len());
    text.push_str(s);
    text.finish()
}

/// Text folded as it is written (`fold_whitespace` of everything pushed), so that markup
/// readers fold the text of a fragment in the same pass as they read it.
pub(super) struct FoldedText {
    out: String,
    /// A break was seen after some text: a space comes before the next kept character.
    space: bool,
}

impl FoldedText {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        FoldedText {
            out: String::with_capacity(capacity),
            space: false,
        }
    }

    pub(super) fn push_str(&mut self, s: &str) {
        // Runs of kept characters are copied whole: this runs over every item's summary.
        let mut run: Option<usize> = None;
        for (at, c) in s.char_indices() {
            if is_plainly_kept(c) {
                self.start_run(&mut run, at);
                continue;
            }
            let is_break = crate::untrusted::is_break(c);
            if is_break || crate::untrusted::is_dropped(c) {
                if let Some(start) = run.take() {
                    self.out.push_str(&s[start..at]);
                }
                if is_break {
                    self.push_break();
                }
            } else {
                self.start_run(&mut run, at);
            }
        }
        if let Some(start) = run {
            self.out.push_str(&s[start..]);
        }
    }

    fn start_run(&mut self, run: &mut Option<usize>, at: usize) {
        if run.is_none() {
            if self.space {
                self.out.push(' ');
                self.space = false;
            }
            *run = Some(at);
        }
    }

    /// A break between words (whitespace, or an element such as `<p>`).
    pub(super) fn push_break(&mut self) {
        self.space = !self.out.is_empty();
    }

    pub(super) fn push_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.push_str(c.encode_utf8(&mut buf));
    }

    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// Printable ASCII and the CJK, kana and full-width blocks: neither breaks nor dropped
/// characters (`untrusted::is_break`, `is_dropped`), decided without Unicode tables.
#[inline]
fn is_plainly_kept(c: char) -> bool {
    matches!(c, '!'..='~' | '\u{3001}'..='\u{FEFE}')
}

/// At most `max` characters, cut at a sentence end when one is near, with an ellipsis when
/// anything was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    let sentence_end = cut
        .char_indices()
        .filter(|(_, c)| matches!(c, '。' | '！' | '？' | '；' | '.' | '!' | '?'))
        .map(|(i, c)| i + c.len_utf8())
        .rfind(|&i| i >= cut.len() / 2);
    match sentence_end {
        Some(end) => cut[..end].to_string(),
        None => format!("{}…", cut.trim_end()),
    }
}

pub use crate::matching::normalise_for_matching;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The folding written plainly, character by character.
    fn folded_plainly(s: &str) -> String {
        let mut out = String::new();
        let mut space = false;
        for c in s.chars() {
            if crate::untrusted::is_break(c) {
                space = !out.is_empty();
            } else if !crate::untrusted::is_dropped(c) {
                if space {
                    out.push(' ');
                    space = false;
                }
                out.push(c);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn folding_copies_runs_as_the_plain_rule_says(
            chars in prop::collection::vec(
                prop_oneof![
                    Just(' '),
                    Just('\u{3000}'),
                    Just('\0'),
                    Just('\u{202e}'),
                    Just('\u{feff}'),
                    any::<char>(),
                ],
                0..60,
            )
        ) {
            let s: String = chars.into_iter().collect();
            prop_assert_eq!(fold_whitespace(&s), folded_plainly(&s));
        }
    }

    #[test]
    fn plainly_kept_characters_are_neither_breaks_nor_dropped() {
        for c in ('\0'..=char::MAX).filter(|&c| is_plainly_kept(c)) {
            assert!(
                !crate::untrusted::is_break(c) && !crate::untrusted::is_dropped(c),
                "{c:?}"
            );
        }
    }

    #[test]
    fn hostile_html_becomes_plain_text() {
        let html = r#"<p>央行<b>降准</b>&amp;放量</p><script>alert('x')</script><img src="https://t.example/p.gif" width=1 height=1><a href="javascript:evil()" onclick="x()">点击</a><style>p{}</style>"#;
        let text = to_plain_text(html);
        assert_eq!(text, "央行降准&放量 点击");
        assert!(!text.contains("alert"));
    }

    #[test]
    fn malformed_and_nested_tricks_stay_text() {
        let cases = [
            ("<scr<script>ipt>alert(1)</script>正文", "正文"),
            ("<script>var s='</p><p>';</script>正文", "正文"),
            ("<style>p{content:'<b>'}</style>正文", "正文"),
            ("<!-- <script>alert(1)</script> -->正文", "正文"),
            ("<svg><script>alert(1)</script></svg>正文", "正文"),
            ("<p onmouseover=alert(1)>正文</p>", "正文"),
        ];
        for (html, want) in cases {
            let got = to_plain_text(html);
            assert!(got.ends_with(want), "{html} -> {got}");
            assert!(
                !got.contains("alert(1)") || got.starts_with("ipt>"),
                "{html} -> {got}"
            );
        }
    }

    #[test]
    fn escaped_markup_is_not_revived_as_markup() {
        // An entity-encoded tag is text; it comes out as the characters, to be escaped again
        // by the template.
        assert_eq!(
            to_plain_text("&lt;script&gt;x&lt;/script&gt;"),
            "<script>x</script>"
        );
    }

    #[test]
    fn truncates_at_sentence_end() {
        let s = "第一句话说明情况。第二句话补充细节，而且很长很长很长。";
        assert_eq!(truncate(s, 12), "第一句话说明情况。");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("短", 10), "短");
    }
}
