//! The report as a person reads it: a view model built from the selection, rendered with
//! minijinja into e-mail-safe HTML (inline CSS, tables) and plain text.
//!
//! Templates run sandboxed: no file or network access, a fuel limit against runaway loops,
//! strict undefined variables. Every value is plain text already (see `text`), and the HTML
//! template auto-escapes it, so nothing from a feed can become markup.

use std::path::Path;

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use super::extract::{Candidate, section_order};

const DEFAULT_HTML: &str = include_str!("../../templates/report.html.j2");
const DEFAULT_TEXT: &str = include_str!("../../templates/report.txt.j2");
const HTML_NAME: &str = "report.html";
const TEXT_NAME: &str = "report.txt";
/// Items in the 今日要点 head section.
pub const HIGHLIGHTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("template {name}: {source}")]
    Template {
        name: String,
        source: minijinja::Error,
    },
    #[error("cannot read template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("template key {0}")]
    Key(String),
    #[error("{0}")]
    Chat(String),
}

/// One item as templates see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemView {
    pub title: String,
    pub url: String,
    pub source: String,
    pub category: String,
    /// Local publication time, `11-23 07:30`.
    pub time: String,
    pub summary: String,
    pub tickers: Vec<String>,
    pub corroborated_by: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SectionView {
    pub name: String,
    pub items: Vec<ItemView>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsView {
    pub sources_total: usize,
    pub sources_ok: usize,
    pub items_considered: usize,
    pub items_selected: usize,
}

/// What a template renders.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReportView {
    pub title: String,
    pub date: String,
    pub date_display: String,
    pub time_zone: String,
    pub generated_at: String,
    pub overview: Option<String>,
    pub highlights: Vec<ItemView>,
    pub sections: Vec<SectionView>,
    pub stats: StatsView,
    pub notes: Vec<String>,
    pub recipient_name: Option<String>,
    pub unsubscribe_url: Option<String>,
}

impl ReportView {
    /// The view of the whole report. `summaries` gives each selected item's summary (AI or
    /// extractive), in selection order.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        title: &str,
        date: NaiveDate,
        tz: Tz,
        generated_at: DateTime<Utc>,
        selected: &[Candidate],
        summaries: &[String],
        overview: Option<String>,
        section_order_spec: &[String],
        stats: StatsView,
        notes: Vec<String>,
    ) -> Self {
        let view = |c: &Candidate, summary: &str| ItemView {
            title: c.title.to_string(),
            url: c.url.clone(),
            source: c.source_display.clone(),
            category: c.category.clone(),
            time: c
                .published
                .with_timezone(&tz)
                .format("%m-%d %H:%M")
                .to_string(),
            summary: summary.to_string(),
            tickers: c.tickers.clone(),
            corroborated_by: c.corroborated_by.clone(),
        };
        let items: Vec<ItemView> = selected
            .iter()
            .enumerate()
            .map(|(i, c)| view(c, summaries.get(i).map(String::as_str).unwrap_or("")))
            .collect();
        let sections = section_order(selected, section_order_spec)
            .into_iter()
            .map(|name| SectionView {
                items: items
                    .iter()
                    .filter(|i| i.category == name)
                    .cloned()
                    .collect(),
                name,
            })
            .collect();
        ReportView {
            title: title.to_string(),
            date: date.to_string(),
            date_display: date_display(date),
            time_zone: tz.name().to_string(),
            generated_at: generated_at
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M %:z")
                .to_string(),
            overview,
            highlights: items.iter().take(HIGHLIGHTS).cloned().collect(),
            sections,
            stats,
            notes,
            recipient_name: None,
            unsubscribe_url: None,
        }
    }

    /// The view one recipient gets: only the sections of the categories they chose (all when
    /// none), their name, their unsubscribe link.
    pub fn for_recipient(
        &self,
        categories: &[String],
        name: Option<&str>,
        unsubscribe_url: Option<String>,
    ) -> Self {
        let mut v = self.clone();
        if !categories.is_empty() {
            v.sections.retain(|s| categories.contains(&s.name));
            v.highlights.retain(|h| categories.contains(&h.category));
        }
        v.recipient_name = name.map(str::to_string);
        v.unsubscribe_url = unsubscribe_url;
        v
    }

    /// Subject line: `金融情报日报 · 2026-11-23`.
    pub fn subject(&self) -> String {
        format!("{} · {}", self.title, self.date)
    }
}

fn date_display(date: NaiveDate) -> String {
    let weekday = match date.weekday() {
        Weekday::Mon => "一",
        Weekday::Tue => "二",
        Weekday::Wed => "三",
        Weekday::Thu => "四",
        Weekday::Fri => "五",
        Weekday::Sat => "六",
        Weekday::Sun => "日",
    };
    format!(
        "{}年{}月{}日 星期{weekday}",
        date.year(),
        date.month(),
        date.day()
    )
}

/// The two templates of a report, compiled.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates.
    pub fn builtin() -> Result<Self, ComposeError> {
        Self::from_sources(DEFAULT_HTML.to_string(), DEFAULT_TEXT.to_string())
    }

    /// Templates from a directory (a mounted ConfigMap): each file replaces the built-in one
    /// when present.
    pub fn from_dir(dir: &Path, html_key: &str, text_key: &str) -> Result<Self, ComposeError> {
        // Keys come from the report; joined to the directory they must not be paths.
        for key in [html_key, text_key] {
            if let Some(problem) = crate::api::TemplateRef::key_problem(key) {
                return Err(ComposeError::Key(problem));
            }
        }
        let read = |key: &str, default: &str| -> Result<String, ComposeError> {
            let path = dir.join(key);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(default.to_string()),
                Err(source) => Err(ComposeError::Read {
                    path: path.display().to_string(),
                    source,
                }),
            }
        };
        Self::from_sources(read(html_key, DEFAULT_HTML)?, read(text_key, DEFAULT_TEXT)?)
    }

    pub fn from_sources(html: String, text: String) -> Result<Self, ComposeError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A user template cannot loop forever or blow up memory.
        env.set_fuel(Some(5_000_000));
        for (name, source) in [(HTML_NAME, html), (TEXT_NAME, text)] {
            env.add_template_owned(name, source)
                .map_err(|source| ComposeError::Template {
                    name: name.to_string(),
                    source,
                })?;
        }
        Ok(Self { env })
    }

    /// Renders (HTML, text).
    pub fn render(&self, view: &ReportView) -> Result<(String, String), ComposeError> {
        let ctx = Value::from(minijinja::value::Serde(view));
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(ctx.clone()))
                .map_err(|source| ComposeError::Template {
                    name: name.to_string(),
                    source,
                })
        };
        Ok((
            render(HTML_NAME)?,
            crate::text_layout::tidy_blank_lines(&render(TEXT_NAME)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ReportView {
        let item = ItemView {
            title: "央行<script>alert(1)</script>降准".into(),
            url: "https://e.com/a?x=1&y=2".into(),
            source: "财联社".into(),
            category: "宏观".into(),
            time: "11-23 07:30".into(),
            summary: "<img src=x onerror=alert(1)>".into(),
            tickers: vec!["600519.SH".into()],
            corroborated_by: vec!["新浪".into()],
        };
        ReportView {
            title: "金融情报日报".into(),
            date: "2026-11-23".into(),
            date_display: date_display(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()),
            time_zone: "Asia/Shanghai".into(),
            generated_at: "2026-11-23 06:01 +08:00".into(),
            overview: None,
            highlights: vec![item.clone()],
            sections: vec![SectionView {
                name: "宏观".into(),
                items: vec![item],
            }],
            stats: StatsView::default(),
            notes: vec![],
            recipient_name: Some("张伟".into()),
            unsubscribe_url: None,
        }
    }

    #[test]
    fn html_escapes_everything_from_feeds() {
        let (html, text) = Templates::builtin().unwrap().render(&view()).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("2026年11月23日 星期一"));
        assert!(html.contains("今日要点"));
        assert!(text.contains("== 宏观 =="));
        assert!(text.contains("https://e.com/a?x=1&y=2"));
    }

    #[test]
    fn recipient_view_keeps_chosen_sections() {
        let v = view().for_recipient(&["A股".to_string()], Some("李娜"), None);
        assert!(v.sections.is_empty());
        assert!(v.highlights.is_empty());
        assert_eq!(v.recipient_name.as_deref(), Some("李娜"));
    }

    #[test]
    fn user_templates_are_sandboxed() {
        let t = Templates::from_sources(
            "{% for i in range(100000000) %}{{ i }}{% endfor %}".into(),
            "{{ title }}".into(),
        )
        .unwrap();
        assert!(t.render(&view()).is_err(), "fuel stops a runaway loop");
        let t = Templates::from_sources("{% include '/etc/passwd' %}".into(), "x".into()).unwrap();
        assert!(t.render(&view()).is_err(), "no file access");
        let dir = std::env::temp_dir();
        for key in ["/etc/passwd", "../../x", "..", ".", "a/b", ""] {
            assert!(
                matches!(
                    Templates::from_dir(&dir, key, "report.txt"),
                    Err(ComposeError::Key(_))
                ),
                "{key}"
            );
        }
    }
}
