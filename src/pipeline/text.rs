//! Third-party text made safe and plain: HTML fragments from feeds are sanitised with ammonia
//! down to their text (scripts, styles, images and links dropped), entities decoded, and
//! whitespace folded. The result is plain text; templates escape it again on output.

use std::collections::HashSet;

use std::sync::OnceLock;

fn cleaner() -> &'static ammonia::Builder<'static> {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER.get_or_init(|| {
        let mut b = ammonia::Builder::empty();
        // Their content is code or invisible, never text a reader should see.
        b.clean_content_tags(HashSet::from([
            "script", "style", "noscript", "template", "iframe", "object", "svg", "math", "head",
            "title",
        ]));
        b
    })
}

/// The readable text of an HTML fragment (or of plain text that may contain entities).
pub fn to_plain_text(fragment: &str) -> String {
    let needs_html = fragment.contains('<') || fragment.contains('&');
    let text = if needs_html {
        // Block elements separate words; ammonia drops tags, so keep a space where they were.
        let spaced = fragment
            .replace("<br", " <br")
            .replace("</p>", "</p> ")
            .replace("</div>", "</div> ")
            .replace("</li>", "</li> ");
        let cleaned = cleaner().clean(&spaced).to_string();
        html_escape::decode_html_entities(&cleaned).into_owned()
    } else {
        fragment.to_string()
    };
    fold_whitespace(&text)
}

/// Collapses runs of whitespace (including full-width spaces) into one space.
pub fn fold_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() || c == '\u{3000}' || c.is_control() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
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

/// Text normalised for comparison: full-width forms folded to ASCII, lower case, and
/// punctuation and spaces removed.
pub fn normalise_for_matching(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_html_becomes_plain_text() {
        let html = r#"<p>央行<b>降准</b>&amp;放量</p><script>alert('x')</script><img src="https://t.example/p.gif" width=1 height=1><a href="javascript:evil()" onclick="x()">点击</a><style>p{}</style>"#;
        let text = to_plain_text(html);
        assert_eq!(text, "央行降准&放量 点击");
        assert!(!text.contains("alert"));
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

    #[test]
    fn normalisation() {
        assert_eq!(normalise_for_matching("【快讯】Ａ股 收涨！"), "快讯a股收涨");
    }
}
