//! Escaping for chat markdown. Every value a template prints passes `escape`: the characters
//! that make markup (`* _ ` [ ] ( ) # < > | ~ ! \ &`) become their fullwidth forms, which read the same
//! in a Chinese line and mean nothing to any of the three renderers (WeCom and DingTalk
//! markdown, Feishu/Lark card markdown — including their `<font>`, `<at>` and `@` forms), and
//! line breaks become spaces, so no value starts a heading, a list or a quote. Link targets
//! go through the `href` filter, which keeps http(s) URLs only and percent-encodes what would
//! end a markdown link.

use crate::untrusted;

/// The longest any single printed value may be, in characters (a 100 kB title is cut).
const MAX_VALUE_CHARS: usize = 300;

/// Replaces what would be markup in chat markdown with inert look-alikes.
pub fn escape(text: &str) -> String {
    let clean = untrusted::clean(text, MAX_VALUE_CHARS);
    clean
        .chars()
        .map(|c| match c {
            '*' => '＊',
            '_' => '＿',
            '`' => '｀',
            '[' => '［',
            ']' => '］',
            '(' => '（',
            ')' => '）',
            '#' => '＃',
            '<' => '＜',
            '>' => '＞',
            '|' => '｜',
            '~' => '～',
            '!' => '！',
            '\\' => '＼',
            '&' => '＆',
            '@' => '＠',
            '$' => '＄',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A link target: an http(s) URL with everything that could close or break a markdown link
/// percent-encoded; anything else is no link at all.
pub fn href(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url.trim()) else {
        return String::new();
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return String::new();
    }
    let mut out = String::with_capacity(parsed.as_str().len());
    for c in parsed.as_str().chars() {
        match c {
            '(' | ')' | '[' | ']' | '<' | '>' | '"' | '\'' | '`' | '\\' | '|' | ' ' | '*' | '_'
            | '~' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn href_keeps_web_links_only() {
        assert_eq!(href("javascript:alert(1)"), "");
        assert_eq!(href("data:text/html,x"), "");
        assert_eq!(href("https://e.com/a b)"), "https://e.com/a%20b%29");
        assert_eq!(
            href("https://例子.com/路径"),
            "https://xn--fsqu00a.com/%E8%B7%AF%E5%BE%84"
        );
    }
}
