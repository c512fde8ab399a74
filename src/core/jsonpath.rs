//! The small path language a `json` Source uses to find items and their fields.
//!
//! `data.list`, `$.result.items[*]`, `items[0].title`, `$` (the document itself) and
//! `data["key.with.dots"]`. Deliberately not full JSONPath: no filters or recursive descent,
//! so a path is cheap to evaluate on any document and easy to check offline.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    /// `[*]`: every element of an array (or every value of an object).
    All,
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid path {path:?} at character {position}: {reason}")]
pub struct JsonPathError {
    pub path: String,
    pub position: usize,
    pub reason: &'static str,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, JsonPathError> {
        let err = |position: usize, reason| JsonPathError {
            path: text.to_string(),
            position,
            reason,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(err(0, "the path is empty"));
        }
        let mut rest = trimmed;
        let mut pos = 0;
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
            pos += 1;
        }
        let mut segments = Vec::new();
        let mut expect_key = rest.is_empty() || pos == 0;
        if pos == 0 && rest.starts_with('.') {
            return Err(err(0, "a path starts with a key or with $"));
        }
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let close = r.find(']').ok_or_else(|| err(pos, "unclosed ["))?;
                let inner = r[..close].trim();
                let seg = if inner == "*" {
                    Segment::All
                } else if let Some(q) = inner
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                {
                    Segment::Key(q.to_string())
                } else {
                    Segment::Index(
                        inner
                            .parse()
                            .map_err(|_| err(pos + 1, "expected an index, * or a quoted key"))?,
                    )
                };
                segments.push(seg);
                rest = &r[close + 1..];
                pos += close + 2;
                expect_key = false;
                continue;
            }
            if let Some(r) = rest.strip_prefix('.') {
                if r.is_empty() || r.starts_with('.') {
                    return Err(err(pos, "empty key between dots"));
                }
                rest = r;
                pos += 1;
                expect_key = true;
                continue;
            }
            if !expect_key {
                return Err(err(pos, "expected . or [ after a key"));
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            if key.contains(']') {
                return Err(err(pos, "] without a matching ["));
            }
            if key == "*" {
                segments.push(Segment::All);
            } else {
                segments.push(Segment::Key(key.to_string()));
            }
            rest = &rest[end..];
            pos += end;
            expect_key = false;
        }
        Ok(Self {
            text: trimmed.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value the path reaches; `[*]` fans out.
    pub fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for seg in &self.segments {
            let mut next = Vec::new();
            for v in current {
                match seg {
                    Segment::Key(k) => next.extend(v.get(k.as_str())),
                    Segment::Index(i) => next.extend(v.get(*i)),
                    Segment::All => match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                }
            }
            current = next;
        }
        current
    }

    /// The items an items path designates: the elements of the array it reaches (or the
    /// values it fans out to).
    pub fn select_items<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let found = self.select(root);
        match found.as_slice() {
            [Value::Array(items)] => items.iter().collect(),
            _ => found,
        }
    }

    /// The first value the path reaches, as display text: strings as they are, numbers and
    /// booleans printed, null and containers ignored.
    pub fn text(&self, item: &Value) -> Option<String> {
        self.select(item).into_iter().find_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_selects() {
        let doc = json!({"data": {"list": [{"t": "a", "n": 1}, {"t": "b"}], "x.y": 5}});
        let items = JsonPath::parse("data.list").unwrap();
        assert_eq!(items.select_items(&doc).len(), 2);
        let items = JsonPath::parse("$.data.list[*]").unwrap();
        assert_eq!(items.select_items(&doc).len(), 2);
        let first = JsonPath::parse("$.data.list[0].t").unwrap();
        assert_eq!(first.text(&doc).as_deref(), Some("a"));
        let quoted = JsonPath::parse("data[\"x.y\"]").unwrap();
        assert_eq!(quoted.text(&doc).as_deref(), Some("5"));
        let root = JsonPath::parse("$").unwrap();
        assert_eq!(root.select_items(&json!([1, 2, 3])).len(), 3);
    }

    #[test]
    fn refuses_malformed_paths() {
        for bad in ["", ".a", "a..b", "a[", "a[x]", "a.", "a]b"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
