use chrono::{DateTime, NaiveTime, Utc};

use super::FieldProblem;
use crate::api::{
    ChatGroup, ChatPlatform, ContentSpec, DailyReportSpec, KeywordFilters, LabelSelector,
    MailWindow, ONE_CHANNEL_MESSAGE, RESERVED_SECRET_MESSAGE, RESERVED_SECRET_NAMES, RecipientSpec,
    SecretKeyRef, SmtpSpec, SourceKind, SourceSpec, TemplateRef, TlsMode, selector,
};
use crate::jsonpath::JsonPath;
use crate::matching::{Matcher, last_line};
use crate::schedule::{Schedule, parse_local_time};

/// Code-only checks of a Source spec; field paths start at `spec`.
pub fn check_source(spec: &SourceSpec) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    check_http_url(&spec.url, "spec.url", &mut out);
    if spec.category.trim().is_empty() {
        out.push(FieldProblem::error(
            "spec.category",
            "category must not be blank",
        ));
    }
    check_line(&spec.category, "spec.category", &mut out);
    if let Some(name) = &spec.display_name {
        check_line(name, "spec.displayName", &mut out);
    }
    if let Some(language) = &spec.language {
        check_line(language, "spec.language", &mut out);
    }
    for (i, tag) in spec.tags.iter().enumerate() {
        check_line(tag, &format!("spec.tags[{i}]"), &mut out);
    }
    if !spec.weight.is_finite() {
        out.push(FieldProblem::error(
            "spec.weight",
            "weight must be a finite number",
        ));
    }
    check_fetch(&spec.fetch, &mut out);
    check_mapping(spec, &mut out);
    check_filters(&spec.filters, "spec.filters", &mut out);
    out
}

/// Fetch settings: the charset override and the request headers (plain ones must not carry a
/// credential; those from Secrets name a key).
fn check_fetch(fetch: &crate::api::FetchSpec, out: &mut Vec<FieldProblem>) {
    if let Some(charset) = &fetch.charset
        && encoding_rs::Encoding::for_label(charset.trim().as_bytes()).is_none()
    {
        out.push(FieldProblem::error(
            "spec.fetch.charset",
            format!("unknown charset {charset:?}; use a WHATWG label such as utf-8, gbk, gb18030 or big5"),
        ));
    }
    for (name, value) in &fetch.headers {
        if let Some(msg) = header_name_problem(name) {
            out.push(FieldProblem::error(
                format!("spec.fetch.headers.{name}"),
                msg,
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            out.push(FieldProblem::error(
                format!("spec.fetch.headers.{name}"),
                "header values must not contain line breaks or other control characters",
            ));
        }
        if is_secret_header(name) {
            out.push(FieldProblem::error(
                format!("spec.fetch.headers.{name}"),
                format!(
                    "{name} carries a credential; put it in a Secret and use spec.fetch.headersFrom"
                ),
            ));
        }
    }
    for (i, h) in fetch.headers_from.iter().enumerate() {
        if let Some(msg) = header_name_problem(&h.name) {
            out.push(FieldProblem::error(
                format!("spec.fetch.headersFrom[{i}].name"),
                msg,
            ));
        }
        check_secret_ref(
            &h.secret_key_ref,
            &format!("spec.fetch.headersFrom[{i}].secretKeyRef"),
            out,
        );
    }
}

/// The item mapping of `json` and `html` sources: paths and selectors that parse.
fn check_mapping(spec: &SourceSpec, out: &mut Vec<FieldProblem>) {
    match spec.kind {
        SourceKind::Json => {
            if let Some(m) = &spec.json {
                let paths = [
                    ("items", Some(&m.items)),
                    ("title", Some(&m.title)),
                    ("link", Some(&m.link)),
                    ("published", m.published.as_ref()),
                    ("summary", m.summary.as_ref()),
                ];
                for (field, path) in paths {
                    if let Some(path) = path
                        && let Err(e) = JsonPath::parse(path)
                    {
                        out.push(FieldProblem::error(
                            format!("spec.json.{field}"),
                            e.to_string(),
                        ));
                    }
                }
            }
        }
        SourceKind::Html => {
            if let Some(m) = &spec.html {
                let selectors = [
                    ("item", Some(&m.item)),
                    ("title", m.title.as_ref()),
                    ("link", Some(&m.link)),
                    ("published", m.published.as_ref()),
                    ("summary", m.summary.as_ref()),
                ];
                for (field, sel) in selectors {
                    if let Some(sel) = sel
                        && let Err(e) = scraper::Selector::parse(sel)
                    {
                        out.push(FieldProblem::error(
                            format!("spec.html.{field}"),
                            format!(
                                "invalid CSS selector {sel:?} ({}); write it as in a stylesheet, e.g. ul.news > li",
                                last_line(&e.to_string())
                            ),
                        ));
                    }
                }
            }
        }
        SourceKind::Feed => {}
    }
}

/// Code-only checks of a Recipient spec.
pub fn check_recipient(spec: &RecipientSpec) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    match (&spec.email, &spec.chat) {
        (Some(email), None) => {
            if let Some(msg) = address_problem(email) {
                out.push(FieldProblem::error("spec.email", msg));
            }
        }
        (None, Some(chat)) => check_chat_group(chat, &mut out),
        _ => out.push(FieldProblem::error("spec", ONE_CHANNEL_MESSAGE)),
    }
    if let Some(name) = &spec.display_name {
        check_line(name, "spec.displayName", &mut out);
    }
    for (i, c) in spec.categories.iter().enumerate() {
        if c.trim().is_empty() {
            out.push(FieldProblem::error(
                format!("spec.categories[{i}]"),
                "categories must not be blank",
            ));
        }
        check_line(c, &format!("spec.categories[{i}]"), &mut out);
    }
    out
}

/// The chat group's Secret references, and the settings its platform has no use for (the
/// schema's CEL rules say the same at admission).
fn check_chat_group(chat: &ChatGroup, out: &mut Vec<FieldProblem>) {
    check_secret_ref(&chat.webhook_secret_ref, "spec.chat.webhookSecretRef", out);
    if let Some(r) = &chat.signing_secret_ref {
        check_secret_ref(r, "spec.chat.signingSecretRef", out);
    }
    if chat.platform == ChatPlatform::Wecom {
        if chat.signing_secret_ref.is_some() {
            out.push(FieldProblem::error(
                "spec.chat.signingSecretRef",
                "WeCom group bots do not sign requests: remove chat.signingSecretRef",
            ));
        }
        if chat.keyword.is_some() {
            out.push(FieldProblem::error(
                "spec.chat.keyword",
                "WeCom group bots have no custom keywords: remove chat.keyword",
            ));
        }
    }
    if let Some(k) = &chat.keyword
        && (k.is_empty()
            || k.chars().count() > 64
            || k.chars().any(|c| "[]()*_`#<>|~!\\\r\n".contains(c)))
    {
        out.push(FieldProblem::error(
            "spec.chat.keyword",
            "keyword must be plain words without line breaks or markup characters ([ ] ( ) * _ ` # < > | ~ ! and backslash)",
        ));
    }
}

/// Code-only checks of a DailyReport spec. `reference` anchors the sample of slots used to
/// check the schedule, so the result does not depend on the clock.
pub fn check_daily_report(spec: &DailyReportSpec, reference: DateTime<Utc>) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    if spec.title.trim().is_empty() || spec.title.contains(['\r', '\n']) {
        out.push(FieldProblem::error(
            "spec.title",
            "title must be one non-blank line",
        ));
    }

    let zone_ok = match crate::schedule::parse_time_zone(&spec.time_zone) {
        Ok(_) => true,
        Err(e) => {
            out.push(FieldProblem::error("spec.timeZone", e.to_string()));
            false
        }
    };
    let start = check_mail_window(&spec.mail_window, &mut out);

    // With an unknown zone the schedule is still parsed (in UTC) so both mistakes show at once.
    let zone = if zone_ok {
        spec.time_zone.as_str()
    } else {
        "UTC"
    };
    check_schedule(spec, zone, start, reference, &mut out);

    if spec.backup.is_some() {
        out.push(FieldProblem::warning(
            "spec.backup",
            "deprecated and ignored: the database is backed up once per installation, not per report — in a cluster by the chart's backup.* values, in standalone mode by --backup-schedule and --backup-retention-days (FINREP_BACKUP_SCHEDULE, FINREP_BACKUP_RETENTION_DAYS); remove this section",
        ));
    }

    check_selector(
        spec.source_selector.as_ref(),
        "spec.sourceSelector",
        &mut out,
    );
    check_selector(
        spec.recipient_selector.as_ref(),
        "spec.recipientSelector",
        &mut out,
    );

    check_content(&spec.content, &mut out);
    if let Some(smtp) = &spec.smtp {
        check_smtp(smtp, &mut out);
    }
    if let Some(image) = &spec.job.image
        && image.contains(char::is_whitespace)
    {
        out.push(FieldProblem::error(
            "spec.job.image",
            "image must be an image reference without spaces, e.g. ghcr.io/example/finrep:0.1.0",
        ));
    }
    out
}

/// The schedule parses, fires at most once a day, and not after the mail window opens.
fn check_schedule(
    spec: &DailyReportSpec,
    zone: &str,
    window_start: Option<NaiveTime>,
    reference: DateTime<Utc>,
    out: &mut Vec<FieldProblem>,
) {
    let start = window_start;
    match Schedule::parse(&spec.schedule, zone) {
        Err(e) => out.push(FieldProblem::error("spec.schedule", e.to_string())),
        Ok(schedule) => match schedule.daily_fire_times(reference, 64) {
            Err(e) => out.push(FieldProblem::error("spec.schedule", e.to_string())),
            Ok(fired) => {
                if let Some((date, a, b)) = fired.same_day {
                    out.push(FieldProblem::error(
                        "spec.schedule",
                        format!(
                            "{:?} fires more than once a day (e.g. {date} at {} and {}); a daily report runs once a day",
                            spec.schedule,
                            a.format("%H:%M"),
                            b.format("%H:%M")
                        ),
                    ));
                }
                if let (Some(start), Some(latest)) = (start, fired.times.last())
                    && *latest > start
                {
                    out.push(FieldProblem::error(
                        "spec.mailWindow.start",
                        format!(
                            "the mail window opens at {} but the report runs at {}; the window must open at or after the scheduled time, the same day",
                            spec.mail_window.start,
                            latest.format("%H:%M")
                        ),
                    ));
                }
            }
        },
    }
}

/// The mail window's times; returns its start when it parses.
pub fn check_mail_window(mw: &MailWindow, out: &mut Vec<FieldProblem>) -> Option<NaiveTime> {
    let start = parse_local_time(&mw.start)
        .map_err(|e| out.push(FieldProblem::error("spec.mailWindow.start", e.to_string())))
        .ok();
    let end = parse_local_time(&mw.end)
        .map_err(|e| out.push(FieldProblem::error("spec.mailWindow.end", e.to_string())))
        .ok();
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        out.push(FieldProblem::error(
            "spec.mailWindow.end",
            format!(
                "the window ends ({}) before it starts ({}); it must end later the same day",
                mw.end, mw.start
            ),
        ));
    }
    start
}

/// Text that reaches a mail header, a section heading or a log line: one line, no control or
/// bidirectional-override characters.
fn check_line(value: &str, field: &str, out: &mut Vec<FieldProblem>) {
    if value.chars().any(|c| {
        c.is_control() || crate::untrusted::is_dropped(c) || matches!(c, '\u{2028}' | '\u{2029}')
    }) {
        out.push(FieldProblem::error(
            field,
            "must be one line of text, without control characters (line breaks, NUL, tabs) or bidirectional overrides",
        ));
    }
}

/// What goes into the report: caps, filters, watch-list, summariser, template.
pub fn check_content(content: &ContentSpec, out: &mut Vec<FieldProblem>) {
    for (i, section) in content.section_order.iter().enumerate() {
        check_line(section, &format!("spec.content.sectionOrder[{i}]"), out);
    }
    if content.max_items_per_source > content.max_items {
        out.push(FieldProblem::warning(
            "spec.content.maxItemsPerSource",
            format!(
                "maxItemsPerSource ({}) is larger than maxItems ({}); one source could fill the report",
                content.max_items_per_source, content.max_items
            ),
        ));
    }
    check_filters(&content.filters, "spec.content.filters", out);
    for (i, w) in content.watchlist.iter().enumerate() {
        if w.trim().is_empty() {
            out.push(FieldProblem::error(
                format!("spec.content.watchlist[{i}]"),
                "watchlist entries must not be blank",
            ));
        }
        check_line(w, &format!("spec.content.watchlist[{i}]"), out);
    }
    if let Some(s) = &content.summarizer {
        check_http_url(&s.endpoint, "spec.content.summarizer.endpoint", out);
        check_line(&s.model, "spec.content.summarizer.model", out);
        if let Some(r) = &s.api_key_secret_ref {
            check_secret_ref(r, "spec.content.summarizer.apiKeySecretRef", out);
        }
    }
    if let Some(t) = &content.template {
        check_object_name(
            &t.config_map_name,
            "spec.content.template.configMapName",
            out,
        );
        for (field, key) in [
            ("htmlKey", &t.html_key),
            ("textKey", &t.text_key),
            ("chatKey", &t.chat_key),
        ] {
            if let Some(msg) = TemplateRef::key_problem(key) {
                out.push(FieldProblem::error(
                    format!("spec.content.template.{field}"),
                    msg,
                ));
            }
        }
    }
}

/// The mail server: host, addresses, credentials only over TLS (unless allowed).
pub fn check_smtp(smtp: &SmtpSpec, out: &mut Vec<FieldProblem>) {
    if smtp.host.trim().is_empty() || smtp.host.contains(['/', ' ', '\r', '\n']) {
        out.push(FieldProblem::error(
            "spec.smtp.host",
            "host must be a bare host name or address such as smtp.example.com",
        ));
    }
    if let Some(msg) = mailbox_problem(&smtp.from) {
        out.push(FieldProblem::error("spec.smtp.from", msg));
    }
    if let Some(reply_to) = &smtp.reply_to
        && let Some(msg) = mailbox_problem(reply_to)
    {
        out.push(FieldProblem::error("spec.smtp.replyTo", msg));
    }
    if let Some(c) = &smtp.credentials_secret_ref {
        check_object_name(&c.name, "spec.smtp.credentialsSecretRef.name", out);
        check_not_reserved(
            &c.name,
            "spec.smtp.credentialsSecretRef.name",
            &RESERVED_SECRET_NAMES,
            out,
        );
        if smtp.tls == TlsMode::None && !smtp.allow_plaintext_auth {
            out.push(FieldProblem::error(
                "spec.smtp.tls",
                "credentials over tls: none would send the password in clear text; use starttls or tls, or set allowPlaintextAuth: true for a relay on a trusted network",
            ));
        }
    }
}

fn check_http_url(value: &str, field: &str, out: &mut Vec<FieldProblem>) {
    match url::Url::parse(value) {
        Err(e) => out.push(FieldProblem::error(
            field,
            format!("{value:?} is not a valid URL: {e}"),
        )),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => out.push(FieldProblem::error(
            field,
            format!("scheme {:?} is not allowed; use http or https", u.scheme()),
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => out.push(FieldProblem::error(
            field,
            format!("{value:?} has no host"),
        )),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            out.push(FieldProblem::error(
                field,
                "credentials in a URL end up in logs; put them in a Secret (spec.fetch.headersFrom)",
            ))
        }
        Ok(_) => {}
    }
}

fn check_selector(sel: Option<&LabelSelector>, field: &str, out: &mut Vec<FieldProblem>) {
    if let Some(sel) = sel {
        for (sub, msg) in selector::selector_problems(sel) {
            out.push(FieldProblem::error(format!("{field}.{sub}"), msg));
        }
    }
}

fn check_filters(filters: &KeywordFilters, field: &str, out: &mut Vec<FieldProblem>) {
    for (list, entries) in [("include", &filters.include), ("exclude", &filters.exclude)] {
        for (i, entry) in entries.iter().enumerate() {
            let field = format!("{field}.{list}[{i}]");
            // The same compile function runs use: what validates is what runs.
            if let Err(e) = Matcher::compile(entry) {
                out.push(FieldProblem::error(field.clone(), e.to_string()));
            }
            check_line(entry, &field, out);
        }
    }
}

fn check_secret_ref(r: &SecretKeyRef, field: &str, out: &mut Vec<FieldProblem>) {
    check_object_name(&r.name, &format!("{field}.name"), out);
    check_not_reserved(
        &r.name,
        &format!("{field}.name"),
        &RESERVED_SECRET_NAMES,
        out,
    );
    let key_ok = !r.key.is_empty()
        && r.key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !key_ok {
        out.push(FieldProblem::error(
            format!("{field}.key"),
            format!(
                "{:?} is not a valid Secret key (letters, digits, '-', '_', '.')",
                r.key
            ),
        ));
    }
}

fn check_not_reserved(
    name: &str,
    field: &str,
    reserved: &[impl AsRef<str>],
    out: &mut Vec<FieldProblem>,
) {
    if reserved.iter().any(|r| r.as_ref() == name) {
        out.push(FieldProblem::error(
            field,
            format!("{name}: {RESERVED_SECRET_MESSAGE}"),
        ));
    }
}

/// Every Secret a report's run would read — the SMTP credentials, the summariser's key, the
/// headers of its selected Sources — that is one of `reserved` (the operator's own Secrets,
/// as the controller is configured with them), each named by the field that names it.
pub fn reserved_secret_problems<'a>(
    spec: &DailyReportSpec,
    sources: impl IntoIterator<Item = (&'a str, &'a SourceSpec)>,
    chat_groups: impl IntoIterator<Item = (&'a str, &'a ChatGroup)>,
    reserved: &[impl AsRef<str>],
) -> Vec<FieldProblem> {
    let mut out = Vec::new();
    for (recipient, chat) in chat_groups {
        let refs = [
            Some(&chat.webhook_secret_ref),
            chat.signing_secret_ref.as_ref(),
        ];
        for (r, field) in refs
            .into_iter()
            .zip(["webhookSecretRef", "signingSecretRef"])
        {
            if let Some(r) = r {
                let field = format!("Recipient {recipient} spec.chat.{field}.name");
                check_not_reserved(&r.name, &field, reserved, &mut out);
            }
        }
    }
    if let Some(c) = spec
        .smtp
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref())
    {
        check_not_reserved(
            &c.name,
            "spec.smtp.credentialsSecretRef.name",
            reserved,
            &mut out,
        );
    }
    if let Some(r) = spec
        .content
        .summarizer
        .as_ref()
        .and_then(|s| s.api_key_secret_ref.as_ref())
    {
        let field = "spec.content.summarizer.apiKeySecretRef.name";
        check_not_reserved(&r.name, field, reserved, &mut out);
    }
    for (source, spec) in sources {
        for (i, h) in spec.fetch.headers_from.iter().enumerate() {
            let field = format!("Source {source} spec.fetch.headersFrom[{i}].secretKeyRef.name");
            check_not_reserved(&h.secret_key_ref.name, &field, reserved, &mut out);
        }
    }
    out
}

fn check_object_name(name: &str, field: &str, out: &mut Vec<FieldProblem>) {
    if !selector::is_dns_subdomain(name) {
        out.push(FieldProblem::error(
            field,
            format!("{name:?} is not a valid object name (lowercase letters, digits, '-' and '.')"),
        ));
    }
}

fn header_name_problem(name: &str) -> Option<String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || TCHAR.contains(&c));
    (!ok).then(|| format!("{name:?} is not a valid HTTP header name"))
}

fn is_secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "authorization"
        || lower == "cookie"
        || lower.contains("token")
        || lower.contains("api-key")
        || lower.contains("apikey")
        || lower.contains("secret")
}

/// Checks a bare address `local@domain` beyond the schema's pattern: lengths and labels.
pub(crate) fn address_problem(address: &str) -> Option<String> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Some(format!("{address:?} is not an e-mail address (no @)"));
    };
    if local.is_empty() || local.len() > 64 {
        return Some(format!(
            "{address:?}: the part before @ must be 1 to 64 characters"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Some(format!(
            "{address:?}: the part before @ must not start or end with a dot or contain two dots in a row"
        ));
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c))
    {
        return Some(format!(
            "{address:?}: the part before @ contains a character that needs quoting; use a plain address"
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    (!domain_ok)
        .then(|| format!("{address:?}: the domain after @ must be a host name such as example.com"))
}

/// Checks `address` or `Display Name <address>`.
pub(crate) fn mailbox_problem(mailbox: &str) -> Option<String> {
    if mailbox.contains(['\r', '\n']) {
        return Some("an address must be one line".to_string());
    }
    let address = match (mailbox.rfind('<'), mailbox.ends_with('>')) {
        (Some(open), true) => &mailbox[open + 1..mailbox.len() - 1],
        (None, false) => mailbox.trim(),
        _ => {
            return Some(format!(
                "{mailbox:?}: unbalanced <>; write Name <user@example.com>"
            ));
        }
    };
    address_problem(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address_problem("analyst@example.com"), None);
        assert_eq!(address_problem("张伟@例子.中国"), None);
        for bad in [
            "a@b",
            "@example.com",
            "a..b@example.com",
            "a b@example.com",
            "a@-x.com",
        ] {
            assert!(address_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(mailbox_problem("金融情报 <report@example.com>"), None);
        assert!(mailbox_problem("金融情报 <report@example.com").is_some());
    }
}
