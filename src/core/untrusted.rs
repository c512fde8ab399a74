//! Text from the network (and from resources) is hostile until cleaned: NUL and other control
//! characters (PostgreSQL refuses NUL in text; CR/LF can forge log lines and mail headers),
//! bidirectional overrides that make text read differently than it is, and titles of 100 kB.
//! `clean` is the one function that bounds and cleans such text before it reaches the
//! database, a log line, an e-mail header or a template; `redact_url` hides the secrets a URL
//! may carry before it is shown or stored.

/// Longest error message kept for a source or a delivery, in characters.
pub const MAX_ERROR_CHARS: usize = 500;

/// Characters dropped outright: bidirectional embeddings, overrides and isolates (they reorder
/// what a reader sees), the byte-order mark, interlinear annotation controls and the
/// noncharacters U+FFFE/U+FFFF.
#[inline] // per character, from other crates (see `is_break`)
pub fn is_dropped(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{FFFE}'
            | '\u{FFFF}'
    )
}

/// Characters that separate words: whitespace of any script (line and paragraph separators,
/// the ideographic space included) and every control character, NUL among them.
// Inline: the pipeline's crate calls it for every character of every item, and without
// link-time optimisation (the small-host profile) only inline functions cross crates.
#[inline]
pub fn is_break(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// One line of plain text: controls and runs of whitespace become one space, dropped
/// characters go, the ends are trimmed, and at most `max_chars` characters remain (the last
/// one an ellipsis when anything was cut).
pub fn clean(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(4)));
    let mut chars = 0usize;
    let mut space = false;
    let mut cut = false;
    for c in s.chars() {
        if is_break(c) {
            space = chars > 0;
            continue;
        }
        if is_dropped(c) {
            continue;
        }
        let needed = 1 + usize::from(space);
        if chars + needed > max_chars {
            cut = true;
            break;
        }
        if space {
            out.push(' ');
            chars += 1;
            space = false;
        }
        out.push(c);
        chars += 1;
    }
    if cut && max_chars > 0 {
        while chars >= max_chars {
            out.pop();
            chars -= 1;
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('…');
    }
    out
}

/// The message of a panic payload, cleaned (a panic message may quote the text that caused
/// it).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    clean(&text, MAX_ERROR_CHARS)
}

/// Query parameters whose value is a credential (compared lower-cased, without `-` and `_`).
const SECRET_PARAMS: &[&str] = &[
    "key", "apikey", "appkey", "sig", "sign", "auth", "pwd", "passwd", "code", "ticket",
];
/// Parts of a parameter name that mark it as a credential.
const SECRET_PARTS: &[&str] = &[
    "authorization",
    "cookie",
    "token",
    "secret",
    "password",
    "apikey",
    "signature",
    "credential",
    "session",
    "accesskey",
];

/// Whether a query parameter or header named `name` carries a credential (`apikey`,
/// `access_token`, `Authorization`, `X-Api-Key` …).
pub fn is_secret_param(name: &str) -> bool {
    let k: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_PARAMS.contains(&k.as_str()) || SECRET_PARTS.iter().any(|p| k.contains(p))
}

/// The URL with its password and every credential-looking query value (`?apikey=`,
/// `access_token=`, `password=` …) replaced by `***`, for logs, errors and stored records.
/// Text that is not a URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "<unparseable URL>".to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if pairs.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_spaces_and_bidi_overrides_go() {
        assert_eq!(clean("a\0b\r\nc\u{7}d", 100), "a b c d");
        assert_eq!(
            clean("  \u{3000}标题\u{202E}txt.exe\u{2066} ", 100),
            "标题txt.exe"
        );
        assert_eq!(clean("\u{85}x\u{2028}y", 100), "x y");
        assert_eq!(clean("", 10), "");
    }

    #[test]
    fn bounded_by_characters() {
        assert_eq!(clean("abcdef", 6), "abcdef");
        assert_eq!(clean("abcdefg", 6), "abcde…");
        assert_eq!(clean("一二三四五六七", 4), "一二三…");
        assert_eq!(clean("ab cdefg", 4), "ab…");
        assert_eq!(clean("abc", 0), "");
        let huge = "长".repeat(100_000);
        assert_eq!(clean(&huge, 200).chars().count(), 200);
    }

    #[test]
    fn secrets_leave_urls() {
        assert_eq!(
            redact_url("postgres://finrep:s3cret@db:5432/finrep"),
            "postgres://finrep:***@db:5432/finrep"
        );
        assert_eq!(
            redact_url("postgres://db/finrep?password=s3cret&sslmode=disable"),
            "postgres://db/finrep?password=***&sslmode=disable"
        );
        let shown = redact_url(
            "https://api.example.com/v1/news?apikey=K1&access_token=T2&X-Api-Key=K3&page=2&client_secret=S",
        );
        assert_eq!(
            shown,
            "https://api.example.com/v1/news?apikey=***&access_token=***&X-Api-Key=***&page=2&client_secret=***"
        );
        assert!(!redact_url("not a url s3cret").contains("s3cret"));
        assert_eq!(
            redact_url("https://e.com/feed.xml"),
            "https://e.com/feed.xml"
        );
    }
}
