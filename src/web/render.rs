//! Server-rendered pages: minijinja templates compiled into the binary, HTML-escaped by
//! default (every value from a feed, a mailbox or the database is text, never markup), a
//! stylesheet of our own and no script at all.

use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};

use super::i18n::{LANG_COOKIE, Lang};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("reports.html", include_str!("templates/reports.html")),
    ("report.html", include_str!("templates/report.html")),
    ("preview.html", include_str!("templates/preview.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("filters.html", include_str!("templates/filters.html")),
    (
        "delivery_search.html",
        include_str!("templates/delivery_search.html"),
    ),
    ("recipients.html", include_str!("templates/recipients.html")),
    ("sources.html", include_str!("templates/sources.html")),
    (
        "unsubscribe.html",
        include_str!("templates/unsubscribe.html"),
    ),
    ("pager.html", include_str!("templates/pager.html")),
    ("error.html", include_str!("templates/error.html")),
];

const STYLESHEET: &str = include_str!("templates/console.css");

/// The compiled templates.
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    pub fn new(zone: chrono_tz::Tz) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        // Pages are .html: autoescape is on for every one of them.
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        env.add_filter("time", move |v: Option<String>| {
            local_time(v.as_deref(), zone)
        });
        env.add_filter("percent", |failed: i64, total: i64| {
            if total > 0 {
                format!("{:.1}%", failed as f64 * 100.0 / total as f64)
            } else {
                "–".to_string()
            }
        });
        Ok(Self { env })
    }

    /// Renders `name` with the page chrome and the page's own data.
    pub fn render(
        &self,
        name: &str,
        chrome: &Chrome,
        data: Value,
    ) -> Result<Html<String>, minijinja::Error> {
        let template = self.env.get_template(name)?;
        let html = template.render(minijinja::context! {
            t => chrome.lang.texts(),
            lang => chrome.lang.code(),
            lang_switch => chrome.lang.texts().get("lang_switch").copied(),
            keep => &chrome.keep,
            path => &chrome.path,
            csrf => &chrome.csrf,
            user => &chrome.user,
            ..data
        })?;
        Ok(Html(html))
    }
}

/// A time from the database (RFC 3339) shown in the console's zone, to the minute.
fn local_time(value: Option<&str>, zone: chrono_tz::Tz) -> String {
    value
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
        .map(|t| {
            t.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M %:z")
                .to_string()
        })
        .unwrap_or_else(|| "–".to_string())
}

/// What every page shows around its content: the language, the logged-in account, the
/// logout form's CSRF token.
pub struct Chrome {
    pub lang: Lang,
    /// The language was chosen by the switch: remember it.
    switched: bool,
    pub path: String,
    pub user: Option<String>,
    pub csrf: Option<String>,
    /// The request's query without `lang`, so the switch keeps the page (and a token).
    keep: String,
}

impl Chrome {
    pub fn new(
        headers: &HeaderMap,
        lang_query: Option<&str>,
        path: &str,
        session: Option<&super::auth::Session>,
    ) -> Self {
        Self {
            lang: Lang::of_request(lang_query, headers),
            switched: lang_query.is_some(),
            path: path.to_string(),
            user: session.map(|s| s.account.clone()),
            csrf: session.map(|s| s.csrf.clone()),
            keep: String::new(),
        }
    }

    /// Keeps the request's other query parameters in the language switch's link.
    pub fn keeping(self, query: Option<&str>) -> Self {
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .filter(|(k, _)| k != "lang")
            .fold(self, |chrome, (k, v)| chrome.keeping_pair(&k, &v))
    }

    /// Keeps one parameter in the language switch's link.
    pub fn keeping_pair(mut self, name: &str, value: &str) -> Self {
        // The whole string is the query: a pair after another is joined with '&'.
        let mut kept =
            url::form_urlencoded::Serializer::for_suffix(std::mem::take(&mut self.keep), 0);
        kept.append_pair(name, value);
        self.keep = kept.finish();
        self
    }

    /// Sets the language cookie when the switch was used.
    pub fn remember_language(&self, response: &mut Response) {
        if !self.switched {
            return;
        }
        let value = format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; Secure; SameSite=Lax",
            self.lang.code()
        );
        if let Ok(v) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// A page as a response, with the language remembered.
    pub fn respond(&self, html: Html<String>) -> Response {
        let mut response = html.into_response();
        self.remember_language(&mut response);
        response
    }
}

/// `GET /static/console.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_switch_keeps_the_other_parameters() {
        let chrome = Chrome::new(&HeaderMap::new(), Some("en"), "/x", None)
            .keeping(Some("page=2&lang=en&status=failed"))
            .keeping_pair("token", "a b&c");
        assert_eq!(chrome.keep, "page=2&status=failed&token=a+b%26c");
    }

    #[test]
    fn every_template_compiles_and_times_show_in_the_zone() {
        Pages::new(chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(
            local_time(Some("2026-11-25T22:05:00Z"), chrono_tz::Asia::Shanghai),
            "2026-11-26 06:05 +08:00"
        );
        assert_eq!(local_time(Some("garbage"), chrono_tz::UTC), "–");
    }
}
