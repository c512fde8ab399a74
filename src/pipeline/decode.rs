//! Bytes to text: picks the charset from the Source's declared override, a byte-order mark,
//! the HTTP header, the XML declaration or the HTML meta tag — in that order — and guesses
//! (chardetng) only when nothing is declared and the bytes are not UTF-8. Many Chinese sites
//! serve GBK or GB18030 with no declaration, or a wrong one.

use encoding_rs::{Encoding, UTF_8};

/// The decoded text and the encoding used.
#[derive(Debug)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static Encoding,
}

/// Decodes a response body. `declared` is the Source's `fetch.charset`, which wins because it
/// exists to correct servers that lie.
pub fn decode(bytes: &[u8], content_type: Option<&str>, declared: Option<&str>) -> Decoded {
    let from_label = |label: &str| Encoding::for_label(label.trim().as_bytes());
    let encoding = declared
        .and_then(from_label)
        .or_else(|| Encoding::for_bom(bytes).map(|(e, _)| e))
        .or_else(|| {
            content_type
                .and_then(charset_param)
                .and_then(|l| from_label(&l))
        })
        .or_else(|| sniff_declaration(bytes).and_then(|l| from_label(&l)))
        .unwrap_or_else(|| guess(bytes));
    let (text, _, _) = encoding.decode(bytes);
    let mut text = text.into_owned();
    if encoding != UTF_8 {
        // The text is UTF-8 now; an XML parser must not decode it a second time.
        text = rewrite_xml_encoding(text);
    }
    Decoded { text, encoding }
}

fn guess(bytes: &[u8]) -> &'static Encoding {
    if std::str::from_utf8(bytes).is_ok() {
        return UTF_8;
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    // Chinese pages are the common case of undeclared legacy encodings here.
    detector.guess(Some(b"cn"), true)
}

/// `charset` of a Content-Type header value.
fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// The encoding named by an XML declaration or an HTML `<meta>` in the first 2 KiB.
fn sniff_declaration(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(2048)];
    // Declarations are ASCII; lossy decoding keeps them readable whatever the encoding.
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    if head.trim_start().starts_with("<?xml") {
        let decl_end = head.find("?>")?;
        let decl = &head[..decl_end];
        return attribute_value(decl, "encoding");
    }
    let mut rest = head.as_str();
    while let Some(pos) = rest.find("<meta") {
        rest = &rest[pos + 5..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        if let Some(cs) = attribute_value(tag, "charset") {
            return Some(cs);
        }
        if tag.contains("http-equiv")
            && let Some(content) = attribute_value(tag, "content")
            && let Some(cs) = charset_param(&format!("x;{content}"))
        {
            return Some(cs);
        }
    }
    None
}

/// The value of `name=` in a tag or declaration, quoted or not.
fn attribute_value(tag: &str, name: &str) -> Option<String> {
    let mut search = tag;
    while let Some(pos) = search.find(name) {
        let after = search[pos + name.len()..].trim_start();
        search = &search[pos + name.len()..];
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let v = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value
                .split(|c: char| c.is_whitespace() || matches!(c, '>' | '/' | ';' | '"' | '\''))
                .next()
                .unwrap_or(""),
        };
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    None
}

fn rewrite_xml_encoding(text: String) -> String {
    let trimmed = text.trim_start_matches('\u{feff}');
    if !trimmed.starts_with("<?xml") {
        return text;
    }
    let Some(end) = trimmed.find("?>") else {
        return text;
    };
    let decl = &trimmed[..end];
    let lower = decl.to_ascii_lowercase();
    let Some(pos) = lower.find("encoding") else {
        return text;
    };
    let after = &decl[pos..];
    let Some(q_start) = after.find(['"', '\'']) else {
        return text;
    };
    let quote = after[q_start..].chars().next().unwrap_or('"');
    let Some(q_len) = after[q_start + 1..].find(quote) else {
        return text;
    };
    let value_start = pos + q_start + 1;
    let value_end = value_start + q_len;
    format!("{}utf-8{}", &trimmed[..value_start], &trimmed[value_end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbk(s: &str) -> Vec<u8> {
        encoding_rs::GBK.encode(s).0.into_owned()
    }

    #[test]
    fn xml_declaration_decides_and_is_rewritten() {
        let mut bytes = br#"<?xml version="1.0" encoding="GBK"?><rss><title>"#.to_vec();
        bytes.extend(gbk("贵州茅台"));
        bytes.extend(b"</title></rss>");
        let d = decode(&bytes, Some("application/xml"), None);
        assert_eq!(d.encoding, encoding_rs::GBK);
        assert!(d.text.contains("贵州茅台"));
        assert!(
            d.text
                .starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#),
            "{}",
            d.text
        );
    }

    #[test]
    fn header_beats_sniffing_and_override_beats_header() {
        let bytes = gbk("<html><head><meta charset=\"utf-8\"></head><body>港股通</body></html>");
        let d = decode(&bytes, Some("text/html; charset=gbk"), None);
        assert!(d.text.contains("港股通"));
        let d = decode(&bytes, Some("text/html; charset=utf-8"), Some("gb18030"));
        assert!(d.text.contains("港股通"));
    }

    #[test]
    fn html_meta_http_equiv() {
        let mut bytes =
            br#"<html><head><meta http-equiv="Content-Type" content="text/html; charset=big5"></head><body>"#
                .to_vec();
        bytes.extend(encoding_rs::BIG5.encode("恒生指數").0.iter());
        let d = decode(&bytes, Some("text/html"), None);
        assert_eq!(d.encoding, encoding_rs::BIG5);
        assert!(d.text.contains("恒生指數"));
    }

    #[test]
    fn undeclared_chinese_is_guessed() {
        let bytes = gbk(
            "<html><body><p>央行宣布下调存款准备金率0.5个百分点，释放长期流动性约1万亿元。</p></body></html>",
        );
        let d = decode(&bytes, None, None);
        assert!(d.text.contains("存款准备金率"), "{}", d.text);
    }
}
