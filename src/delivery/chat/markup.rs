//! The report at chat size: the digest the pipeline hands over, rendered with a (built-in or
//! user) template into the markdown the group bots show, inert whatever the feeds said, and
//! cut on item boundaries to fit the platform's limit (escaping: `escape`).

use std::path::Path;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use super::escape::{escape, href};
use crate::api::ChatLanguage;

const ZH: &str = include_str!("../../../templates/chat.zh.md.j2");
const EN: &str = include_str!("../../../templates/chat.en.md.j2");
const ZH_NAME: &str = "chat.zh.md";
const EN_NAME: &str = "chat.en.md";

/// One headline as a chat line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DigestItem {
    pub title: String,
    pub url: String,
    pub source: String,
    pub tickers: Vec<String>,
}

/// A section of the digest, in the report's order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DigestSection {
    pub name: String,
    pub items: Vec<DigestItem>,
}

/// The report at chat size, before markup: neutral data from the composed report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Digest {
    pub title: String,
    /// YYYY-MM-DD.
    pub date: String,
    /// The date as the Chinese report prints it (2026年11月26日 星期四).
    pub date_display: String,
    pub sections: Vec<DigestSection>,
    /// The full report (the console's page of this run) when a public URL is set.
    pub full_report_url: Option<String>,
    /// Headlines of the report already left out of the digest (past each section's top few).
    pub left_out: usize,
}

impl Digest {
    fn item_count(&self) -> usize {
        self.sections.iter().map(|s| s.items.len()).sum()
    }

    /// The first `keep` items in report order, empty sections left out.
    fn first(&self, keep: usize) -> Vec<DigestSection> {
        let mut left = keep;
        let mut out = Vec::new();
        for s in &self.sections {
            if left == 0 {
                break;
            }
            let items: Vec<DigestItem> = s.items.iter().take(left).cloned().collect();
            left -= items.len();
            if !items.is_empty() {
                out.push(DigestSection {
                    name: s.name.clone(),
                    items,
                });
            }
        }
        out
    }
}

/// A rendered chat message: a one-line title (DingTalk shows it in the conversation list;
/// Feishu/Lark in the card's header) and the markdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub title: String,
    pub markdown: String,
    /// Headlines left out to fit the platform's limit.
    pub omitted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatRenderError {
    #[error("chat template {name}: {source}")]
    Template {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("chat template {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the chat message is {bytes} bytes without a single headline, over the platform's limit of {limit}; shorten the chat template or the report's title"
    )]
    TooLong { bytes: usize, limit: usize },
}

/// The chat templates of a run: the built-in Chinese and English ones, or one template from
/// the report's ConfigMap (`content.template.chatKey`) for both (it sees `language`).
pub struct ChatTemplates {
    env: Environment<'static>,
    single: bool,
}

impl ChatTemplates {
    pub fn builtin() -> Result<Self, ChatRenderError> {
        Self::from_sources(vec![(ZH_NAME, ZH.to_string()), (EN_NAME, EN.to_string())])
    }

    /// The user's template when the directory (a mounted ConfigMap) holds `key`, otherwise
    /// the built-in ones. `key` has been checked to be a key name, never a path.
    pub fn from_dir(dir: &Path, key: &str) -> Result<Self, ChatRenderError> {
        let path = dir.join(key);
        match std::fs::read_to_string(&path) {
            Ok(source) => Self::from_sources(vec![(ZH_NAME, source)]),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::builtin(),
            Err(source) => Err(ChatRenderError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn from_sources(templates: Vec<(&'static str, String)>) -> Result<Self, ChatRenderError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Custom("chat-markdown".into()));
        env.set_formatter(|out, _state, value| {
            if value.is_safe() || value.is_none() || value.is_undefined() {
                write!(out, "{value}").map_err(minijinja::Error::from)
            } else {
                out.write_str(&escape(&value.to_string()))
                    .map_err(minijinja::Error::from)
            }
        });
        env.add_filter("href", |url: String| Value::from_safe_string(href(&url)));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A user template cannot loop forever or blow up memory.
        env.set_fuel(Some(1_000_000));
        let single = templates.len() == 1;
        for (name, source) in templates {
            env.add_template_owned(name, source)
                .map_err(|source| ChatRenderError::Template {
                    name: name.to_string(),
                    source,
                })?;
        }
        Ok(Self { env, single })
    }

    fn name(&self, language: ChatLanguage) -> &'static str {
        match (self.single, language) {
            (true, _) | (false, ChatLanguage::Zh) => ZH_NAME,
            (false, ChatLanguage::En) => EN_NAME,
        }
    }

    /// Renders the first `keep` headlines.
    fn render_first(
        &self,
        digest: &Digest,
        language: ChatLanguage,
        keep: usize,
    ) -> Result<String, ChatRenderError> {
        let name = self.name(language);
        let ctx = minijinja::context! {
            title => &digest.title,
            date => &digest.date,
            date_display => &digest.date_display,
            language => match language { ChatLanguage::Zh => "zh", ChatLanguage::En => "en" },
            sections => Value::from(minijinja::value::Serde(digest.first(keep))),
            omitted => digest.item_count() - keep + digest.left_out,
            full_report_url => &digest.full_report_url,
        };
        let text = self
            .env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| ChatRenderError::Template {
                name: name.to_string(),
                source,
            })?;
        Ok(tidy(&text))
    }

    /// The message with as many headlines, in report order, as fit: `size` says how many
    /// bytes a message costs on the platform (its whole request body, or its content field),
    /// `limit` how many it allows. The cut is always between headlines. `keyword` (a bot's
    /// required word) is added at the end when the message does not already hold it.
    pub fn render(
        &self,
        digest: &Digest,
        language: ChatLanguage,
        keyword: Option<&str>,
        size: &dyn Fn(&str, &str) -> usize,
        limit: usize,
    ) -> Result<ChatMessage, ChatRenderError> {
        let title = escape(&digest.title);
        let with_keyword = |mut text: String| {
            if let Some(k) = keyword.filter(|k| !text.contains(*k)) {
                text.push('\n');
                text.push_str(k);
                text.push('\n');
            }
            text
        };
        let attempt = |keep: usize| -> Result<(String, usize), ChatRenderError> {
            let text = with_keyword(self.render_first(digest, language, keep)?);
            let bytes = size(&title, &text);
            Ok((text, bytes))
        };
        let (mut best, bytes) = attempt(0)?;
        if bytes > limit {
            return Err(ChatRenderError::TooLong { bytes, limit });
        }
        // The largest number of headlines that fits: more headlines never make a message
        // shorter, so a binary search finds it in log2(n) renders.
        let total = digest.item_count();
        let (mut fits, mut too_many) = (0, total + 1);
        while too_many - fits > 1 {
            let mid = fits + (too_many - fits) / 2;
            let (text, bytes) = attempt(mid)?;
            if bytes <= limit {
                fits = mid;
                best = text;
            } else {
                too_many = mid;
            }
        }
        Ok(ChatMessage {
            title,
            markdown: best,
            omitted: total - fits + digest.left_out,
        })
    }
}

/// The template's text with at most one blank line in a row and one final newline.
fn tidy(s: &str) -> String {
    crate::text_layout::tidy_blank_lines(s)
        .trim_end_matches('\n')
        .to_string()
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn digest(items: usize) -> Digest {
        let item = |i: usize| DigestItem {
            title: format!(
                "央行第{i}次降准 *重磅* [点此](javascript:alert(1)) <font color=red>x</font>"
            ),
            url: format!("https://news.example.com/a?id={i}&x=(1)"),
            source: "财联社".into(),
            tickers: vec!["600519.SH".into()],
        };
        Digest {
            title: "金融情报日报".into(),
            date: "2026-11-26".into(),
            date_display: "2026年11月26日 星期四".into(),
            sections: vec![
                DigestSection {
                    name: "宏观".into(),
                    items: (0..items / 2).map(item).collect(),
                },
                DigestSection {
                    name: "市场".into(),
                    items: (items / 2..items).map(item).collect(),
                },
            ],
            full_report_url: Some("https://finrep.example.com/console/reports/7".into()),
            left_out: 0,
        }
    }

    fn bytes(_: &str, text: &str) -> usize {
        text.len()
    }

    #[test]
    fn hostile_text_is_inert_and_links_stay_links() {
        let t = ChatTemplates::builtin().unwrap();
        let m = t
            .render(&digest(2), ChatLanguage::Zh, None, &bytes, 4096)
            .unwrap();
        assert_eq!(m.omitted, 0);
        assert!(!m.markdown.contains("<font"), "{}", m.markdown);
        assert!(!m.markdown.contains("*重磅*"), "{}", m.markdown);
        assert!(!m.markdown.contains("](javascript"), "{}", m.markdown);
        assert!(
            m.markdown
                .contains("](https://news.example.com/a?id=0&x=%281%29)"),
            "{}",
            m.markdown
        );
        assert!(
            m.markdown
                .contains("[阅读完整日报](https://finrep.example.com/console/reports/7)")
        );
        assert!(m.markdown.starts_with("## 金融情报日报\n2026年11月26日"));
    }

    #[test]
    fn the_cut_is_between_headlines_and_says_how_many_are_left_out() {
        let t = ChatTemplates::builtin().unwrap();
        let full = t
            .render(&digest(40), ChatLanguage::En, None, &bytes, 1 << 20)
            .unwrap();
        assert_eq!(full.omitted, 0);
        let limit = full.markdown.len() / 3;
        let cut = t
            .render(&digest(40), ChatLanguage::En, None, &bytes, limit)
            .unwrap();
        assert!(cut.markdown.len() <= limit);
        assert!(cut.omitted > 0 && cut.omitted < 40);
        assert!(
            cut.markdown
                .contains(&format!("{} more item(s)", cut.omitted))
        );
        // Every listed line is a whole headline with its source.
        for line in cut
            .markdown
            .lines()
            .filter(|l| l.contains("](https://news"))
        {
            assert!(line.ends_with("· 600519.SH"), "{line}");
        }
        assert!(
            cut.markdown
                .ends_with("(https://finrep.example.com/console/reports/7)\n")
        );
    }

    #[test]
    fn a_message_too_long_without_headlines_is_an_error_and_a_keyword_is_added_once() {
        let t = ChatTemplates::builtin().unwrap();
        let err = t
            .render(&digest(4), ChatLanguage::Zh, None, &bytes, 10)
            .unwrap_err();
        assert!(matches!(err, ChatRenderError::TooLong { .. }), "{err}");
        let m = t
            .render(&digest(4), ChatLanguage::Zh, Some("日报"), &bytes, 4096)
            .unwrap();
        assert!(!m.markdown.ends_with("日报\n"));
        let m = t
            .render(&digest(4), ChatLanguage::Zh, Some("FINREP"), &bytes, 4096)
            .unwrap();
        assert!(m.markdown.ends_with("\nFINREP\n"));
    }

    #[test]
    fn a_template_of_the_report_replaces_both_and_is_escaped_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let custom = "# {{ title }} ({{ language }})\n{% for s in sections %}{% for i in s.items %}- [{{ i.title }}]({{ i.url|href }})\n{% endfor %}{% endfor %}";
        std::fs::write(dir.path().join("chat.md"), custom).unwrap();
        let t = ChatTemplates::from_dir(dir.path(), "chat.md").unwrap();
        let m = t
            .render(&digest(2), ChatLanguage::En, None, &bytes, 4096)
            .unwrap();
        assert!(
            m.markdown
                .starts_with("# 金融情报日报 (en)\n- [央行第0次降准 ＊重磅＊"),
            "{}",
            m.markdown
        );
        assert!(!m.markdown.contains("<font"));
        // Without the key in the ConfigMap, the built-in templates.
        let builtin = ChatTemplates::from_dir(dir.path(), "absent.md").unwrap();
        let m = builtin
            .render(&digest(2), ChatLanguage::En, None, &bytes, 4096)
            .unwrap();
        assert!(m.markdown.contains("Read the full report"));
    }
}
