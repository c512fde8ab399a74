//! The text of everyday HTML fragments — text, tags with attributes, and the common
//! character references — read in one pass, for a fraction of what html5ever's tokenizer
//! costs per item. Whatever else a fragment holds (comments, `<!` and `<?` markup, any
//! element whose content is hidden, other references, NUL, CR, a byte-order mark, a tag cut
//! off by the end) declines the fast path, and `text::tokenized_text` reads the whole
//! fragment instead. The states below are those of the HTML standard's tokenizer for tags
//! and attributes, and a property test holds the result equal to html5ever's wherever this
//! path answers.

use memchr::{memchr, memchr2};

use super::text::{ElementRole, FoldedText, element_role};

/// The folded plain text of `fragment`, or `None` when it needs the full tokenizer.
pub(super) fn plain_text(fragment: &str) -> Option<String> {
    let bytes = fragment.as_bytes();
    if fragment.starts_with('\u{feff}') || memchr2(b'\0', b'\r', bytes).is_some() {
        return None;
    }
    let mut text = FoldedText::with_capacity(fragment.len());
    let mut at = 0;
    // Markup starts at an ASCII byte, so every index found here is a character boundary.
    while let Some(found) = memchr2(b'<', b'&', &bytes[at..]) {
        let mark = at + found;
        text.push_str(&fragment[at..mark]);
        at = if bytes[mark] == b'&' {
            let (c, len) = character_reference(&bytes[mark..])?;
            text.push_char(c);
            mark + len
        } else {
            match tag(&bytes[mark..])? {
                Markup::LessThan => {
                    text.push_char('<');
                    mark + 1
                }
                Markup::Nothing(len) => mark + len,
                Markup::Tag { name, len } => {
                    match element_role(name) {
                        ElementRole::Hidden => return None,
                        ElementRole::Break => text.push_break(),
                        ElementRole::Inline => {}
                    }
                    mark + len
                }
            }
        };
    }
    text.push_str(&fragment[at..]);
    Some(text.finish())
}

/// What a `<` starts.
enum Markup<'a> {
    /// A `<` that is text (`a < b`, `<3`, a `<` at the end).
    LessThan,
    /// Markup that produces nothing (`</>`), of this many bytes.
    Nothing(usize),
    /// A start or end tag of `len` bytes.
    Tag { name: &'a [u8], len: usize },
}

/// Reads what starts at `s[0] == b'<'`; `None` for what the fast path leaves to html5ever.
fn tag(s: &[u8]) -> Option<Markup<'_>> {
    // End tags are read as start tags are: their attributes are ignored, as the standard says.
    let name_at = match s.get(1) {
        Some(b) if b.is_ascii_alphabetic() => 1,
        Some(b'/') => match s.get(2) {
            Some(b) if b.is_ascii_alphabetic() => 2,
            Some(b'>') => return Some(Markup::Nothing(3)),
            // `</` at the end, or a bogus comment.
            _ => return None,
        },
        Some(b'!' | b'?') => return None,
        _ => return Some(Markup::LessThan),
    };
    let name_len = s[name_at..]
        .iter()
        .position(|&b| is_space(b) || b == b'/' || b == b'>')?;
    let attributes_at = name_at + name_len;
    Some(Markup::Tag {
        name: &s[name_at..attributes_at],
        len: attributes_at + tag_end(&s[attributes_at..])?,
    })
}

/// The tokenizer's states from a tag's name to its `>`. The standard's states after a quoted
/// value and after a `/` move exactly as the state between attributes does, except on `>`,
/// which ends the tag in every state but a quoted value.
#[derive(Clone, Copy)]
enum State {
    BetweenAttributes,
    Name,
    AfterName,
    BeforeValue,
    Quoted(u8),
    Unquoted,
}

/// The length of `s` up to and including the `>` that ends the tag, or `None` when the
/// fragment ends first.
fn tag_end(s: &[u8]) -> Option<usize> {
    let mut state = State::BetweenAttributes;
    let mut at = 0;
    while let Some(&b) = s.get(at) {
        state = match state {
            State::Quoted(quote) => {
                // A value can run long (a URL): straight to its closing quote.
                at += memchr(quote, &s[at..])?;
                State::BetweenAttributes
            }
            _ if b == b'>' => return Some(at + 1),
            State::BetweenAttributes if is_space(b) || b == b'/' => State::BetweenAttributes,
            State::BetweenAttributes => State::Name,
            State::Name | State::AfterName if b == b'=' => State::BeforeValue,
            State::Name | State::AfterName if b == b'/' => State::BetweenAttributes,
            State::Name | State::AfterName if is_space(b) => State::AfterName,
            State::Name | State::AfterName => State::Name,
            State::BeforeValue if is_space(b) => State::BeforeValue,
            State::BeforeValue if b == b'"' || b == b'\'' => State::Quoted(b),
            State::Unquoted if is_space(b) => State::BetweenAttributes,
            State::BeforeValue | State::Unquoted => State::Unquoted,
        };
        at += 1;
    }
    None
}

/// The standard's ASCII whitespace within a tag (CR never reaches here).
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b' ')
}

/// Named references the fast path reads: those feeds write most (every one also checked
/// against html5ever by a test). A name followed by `;` is never the start of a longer name.
const NAMED: &[(&[u8], char)] = &[
    (b"&amp;", '&'),
    (b"&lt;", '<'),
    (b"&gt;", '>'),
    (b"&quot;", '"'),
    (b"&apos;", '\''),
    (b"&nbsp;", '\u{a0}'),
    (b"&ldquo;", '\u{201c}'),
    (b"&rdquo;", '\u{201d}'),
    (b"&lsquo;", '\u{2018}'),
    (b"&rsquo;", '\u{2019}'),
    (b"&mdash;", '\u{2014}'),
    (b"&ndash;", '\u{2013}'),
    (b"&hellip;", '\u{2026}'),
    (b"&middot;", '\u{b7}'),
    (b"&times;", '\u{d7}'),
    (b"&yen;", '\u{a5}'),
    (b"&copy;", '\u{a9}'),
    (b"&reg;", '\u{ae}'),
    (b"&deg;", '\u{b0}'),
];

/// The character and length of the reference at `s[0] == b'&'`: `&` before anything that
/// cannot start a reference is itself; the `NAMED` references and decimal or hexadecimal
/// references to ordinary characters are read; anything else goes to html5ever.
fn character_reference(s: &[u8]) -> Option<(char, usize)> {
    match s.get(1) {
        Some(b'#') => numeric_reference(s),
        Some(b) if b.is_ascii_alphanumeric() => NAMED
            .iter()
            .find(|(name, _)| s.starts_with(name))
            .map(|&(name, c)| (c, name.len())),
        _ => Some(('&', 1)),
    }
}

fn numeric_reference(s: &[u8]) -> Option<(char, usize)> {
    let (radix, digits_at) = match s.get(2) {
        Some(b'x' | b'X') => (16, 3),
        _ => (10, 2),
    };
    let digits = s[digits_at..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit() && (radix == 16 || b.is_ascii_digit()))
        .count();
    // At most seven digits, so the value cannot overflow; longer runs are html5ever's.
    if digits == 0 || digits > 7 || s.get(digits_at + digits) != Some(&b';') {
        return None;
    }
    let text = std::str::from_utf8(&s[digits_at..digits_at + digits]).ok()?;
    let value = u32::from_str_radix(text, radix).ok()?;
    // Controls, surrogates, noncharacters and the C1 range (which the standard maps to
    // Windows-1252) are html5ever's to read.
    let ordinary = matches!(value, 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfdcf | 0xfdf0..=0xfffd | 0x1_0000..=0x10_ffff)
        && value & 0xfffe != 0xfffe;
    let c = char::from_u32(value).filter(|_| ordinary)?;
    Some((c, digits_at + digits + 1))
}

#[cfg(test)]
mod tests {
    use super::super::text::tokenized_text;
    use super::*;
    use proptest::prelude::*;

    /// Pieces that fragments are made of: the markup the fast path reads, the markup it
    /// declines, and text of several scripts.
    const PIECES: &[&str] = &[
        "<",
        ">",
        "/",
        "=",
        "\"",
        "'",
        " ",
        "\n",
        "\t",
        "\u{c}",
        "&",
        "#",
        "x",
        ";",
        "p",
        "br",
        "a",
        "img",
        "P",
        "Br",
        "div",
        "script",
        "style",
        "title",
        "svg",
        "amp",
        "lt",
        "nbsp",
        "quot",
        "39",
        "x3c",
        "x41",
        "128",
        "0",
        "!",
        "?",
        "-",
        "href",
        "src",
        "中文",
        "。",
        "A",
        "\u{3000}",
        "\0",
        "\r",
        "\u{feff}",
        "\u{202e}",
        "<p>",
        "</p>",
        "<a href=\"",
        "&amp;",
        "&#",
        "<!--",
        "-->",
        "</",
        "<br/>",
    ];

    /// Pieces of the markup the fast path reads, so that most fragments made of them take it.
    const EVERYDAY_PIECES: &[&str] = &[
        "<p>",
        "</p>",
        "<P class=x>",
        "<br/>",
        "<br>",
        "<a href=\"u?a=1&amp;b>2\">",
        "</a>",
        "<img src='x' alt=\"a'b\" width=1/>",
        "<b",
        " ",
        "=",
        "\"",
        "'",
        "/",
        ">",
        "<",
        "&amp;",
        "&lt;",
        "&nbsp;",
        "&#39;",
        "&#x4e2d;",
        "& ",
        "中文",
        "。",
        "A",
        "\u{3000}",
        "\n",
        "\t",
        "<div\n>",
        "</div >",
        "<span title=\"<p>\">",
        "</>",
        "<td",
        "=a",
        "/>",
    ];

    fn fragment() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|p| p.concat())
    }

    fn everyday_fragment() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(EVERYDAY_PIECES), 0..30).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// Wherever the fast path answers, it answers what html5ever's tokenizer does.
        #[test]
        fn the_fast_path_reads_as_html5ever_does(fragment in fragment()) {
            if let Some(text) = plain_text(&fragment) {
                prop_assert_eq!(text, tokenized_text(&fragment), "{:?}", fragment);
            }
        }

        #[test]
        fn everyday_fragments_read_as_html5ever_reads_them(fragment in everyday_fragment()) {
            if let Some(text) = plain_text(&fragment) {
                prop_assert_eq!(text, tokenized_text(&fragment), "{:?}", fragment);
            }
        }

        #[test]
        fn any_text_reads_without_panic(fragment in "\\PC{0,200}") {
            if let Some(text) = plain_text(&fragment) {
                prop_assert_eq!(text, tokenized_text(&fragment), "{:?}", fragment);
            }
        }
    }

    #[test]
    fn everyday_summaries_take_the_fast_path() {
        let summary = "<p>央行：降准&nbsp;0.5个百分点。A &amp; B &#8220;引号&#x201d; a < b</p>\
            <p><a href=\"https://e.example.com/more?id=1&amp;x=>\" target=_blank>阅读全文</a>\
            <img src='https://t.example.com/p.gif' width=\"1\" height=\"1\"/><br></p>";
        let text = plain_text(summary);
        assert_eq!(
            text.as_deref(),
            Some("央行：降准 0.5个百分点。A & B \u{201c}引号\u{201d} a < b 阅读全文")
        );
        assert_eq!(text, Some(tokenized_text(summary)));
    }

    #[test]
    fn named_references_read_as_html5ever_reads_them() {
        for (name, c) in NAMED {
            let name = std::str::from_utf8(name).unwrap();
            let fragment = format!("a{name}b");
            let want = super::super::text::fold_whitespace(&format!("a{c}b"));
            assert_eq!(plain_text(&fragment).as_ref(), Some(&want), "{name}");
            assert_eq!(tokenized_text(&fragment), want, "{name}");
        }
    }

    #[test]
    fn markup_it_does_not_read_goes_to_html5ever() {
        for fragment in [
            "<script>alert(1)</script>正文",
            "<STYLE>p{}</STYLE>正文",
            "<!-- c -->正文",
            "<?php ?>正文",
            "</ bogus>正文",
            "AT&T",
            "&#0;",
            "&#128;",
            "<p class=\"open",
            "a\r\nb",
        ] {
            assert_eq!(plain_text(fragment), None, "{fragment}");
        }
    }
}
