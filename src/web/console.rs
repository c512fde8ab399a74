//! The console's pages: dashboard, archive, one report, its delivery log, the delivery log
//! across runs, recipients and sources. Each needs a session; each list is one bounded page.

use std::sync::Arc;

use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, NaiveDate, Utc};
use minijinja::Value;
use minijinja::value::Serde;

use super::auth::Session;
use super::render::Chrome;
use super::{AppState, WebError, WebResponse};
use crate::run::{Channel, DeliveryStatus};
use crate::store::{DeliveryFilter, DeliverySearch, Page, Period};

/// Rows per page unless `?size=` says otherwise (at most `Page::MAX`).
const PAGE_SIZE: u32 = 30;

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    page: Option<u32>,
    size: Option<u32>,
    status: Option<String>,
    channel: Option<String>,
    /// A search: part of an address or a name.
    q: Option<String>,
    /// The archive from this report date back (YYYY-MM-DD).
    date: Option<String>,
    /// The delivery search's report (`namespace/name`) and period (YYYY-MM-DD).
    report: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The longest search looked for (characters).
const MAX_SEARCH: usize = 100;

impl ListQuery {
    /// The search asked for, trimmed and bounded; none when blank.
    fn search(&self) -> Option<String> {
        self.q
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(MAX_SEARCH).collect())
    }

    fn page(&self) -> Page {
        Page::new(self.page, self.size, PAGE_SIZE)
    }

    /// The status filter, when one is chosen.
    pub(super) fn status(&self) -> Result<Option<DeliveryStatus>, WebError> {
        match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s.parse::<DeliveryStatus>().map(Some).map_err(|e| {
                WebError::BadRequest(format!("{e}; one of: {}", status_names().join(", ")))
            }),
        }
    }

    /// The channel filter, when one is chosen.
    pub(super) fn channel(&self) -> Result<Option<Channel>, WebError> {
        match self.channel.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(c) => c
                .parse::<Channel>()
                .map(Some)
                .map_err(|e| WebError::BadRequest(e.to_string())),
        }
    }

    /// The date of parameter `name` (`value`), when given.
    pub(super) fn date(name: &str, value: Option<&str>) -> Result<Option<NaiveDate>, WebError> {
        match value.filter(|d| !d.is_empty()) {
            None => Ok(None),
            Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| WebError::BadRequest(format!("{name} {d:?} is not YYYY-MM-DD"))),
        }
    }
}

/// Each card's month of delivery times against its window, in the cards' order.
fn month_strips(
    cards: &[finrep_core::glance::Card],
    runs: &[crate::store::RunDay],
    today: chrono::NaiveDate,
) -> Vec<super::chart::DeliveryTimes> {
    cards
        .iter()
        .map(|c| {
            let mine: Vec<_> = runs
                .iter()
                .filter(|r| r.namespace == c.namespace && r.report == c.report)
                .cloned()
                .collect();
            super::chart::delivery_times(&mine, today)
        })
        .collect()
}

/// The dashboard's picture: 30 days (default) or 90.
#[derive(serde::Deserialize, Default)]
pub struct DashboardQuery {
    days: Option<u32>,
}

impl DashboardQuery {
    fn days(&self) -> i64 {
        match self.days {
            Some(90) => 90,
            _ => 30,
        }
    }
}

/// A logged-in person looking at a console page: the session, and the page's chrome (their
/// language, the section the navigation marks, the query the language switch keeps).
pub struct Viewer {
    session: Session,
    chrome: Chrome,
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        let query = parts.uri.query();
        let lang = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "lang")
                .map(|(_, v)| v.into_owned())
        });
        // The navigation marks the section: /console/reports/7/deliveries is under Reports.
        let section: String = parts
            .uri
            .path()
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/");
        let chrome =
            Chrome::new(&parts.headers, lang.as_deref(), &section, Some(&session)).keeping(query);
        Ok(Self { session, chrome })
    }
}

impl Viewer {
    pub(super) fn page(&self, state: &AppState, name: &str, data: Value) -> WebResponse {
        Ok(self
            .chrome
            .respond(state.pages.render(name, &self.chrome, data)?))
    }
}

/// `GET /console?days=30|90`: each report's verdict, deliveries per day, the period figures.
pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(q): Query<DashboardQuery>,
) -> WebResponse {
    let now = Utc::now();
    // One counting rule for every figure: the runs of these report dates (stated on the page).
    let today = now.with_timezone(&state.settings.time_zone).date_naive();
    let store = &state.store;
    let chart_days = q.days();
    let month_ago = today - Duration::days(super::chart::STRIP_DAYS - 1);
    let (day, week, failing, next_slots, backups, records, per_day, run_days) = tokio::try_join!(
        store.period_figures(today - Duration::days(1)),
        store.period_figures(today - Duration::days(7)),
        store.sources_failing_now(),
        store.next_slots(),
        store.last_backups(),
        store.report_records(),
        store.deliveries_per_day(today - Duration::days(chart_days - 1)),
        store.run_days(month_ago),
    )?;
    let cards = finrep_core::glance::cards(&records, now);
    let strips = month_strips(&cards, &run_days, today);
    let bars = super::chart::delivery_bars(&per_day, today, chart_days);
    viewer.page(
        &state,
        "dashboard.html",
        minijinja::context! {
            cards => Value::from(Serde(&cards)),
            strips => Value::from(Serde(&strips)),
            strip => minijinja::context! {
                width => super::chart::STRIP_DAYS as f64 * super::chart::STRIP_CELL,
                cell => super::chart::STRIP_CELL,
                days => super::chart::STRIP_DAYS,
                height => super::chart::TIMES_HEIGHT,
                line => super::chart::TIMES_HEIGHT - super::chart::WINDOW_LINE,
            },
            bars => Value::from(Serde(&bars)),
            chart_days => chart_days,
            chart => minijinja::context! {
                width => super::chart::WIDTH,
                height => super::chart::HEIGHT,
            },
            periods => Value::from(Serde(&vec![("last_24h", day), ("last_7d", week)])),
            failing => Value::from(Serde(failing)),
            next_slots => Value::from(Serde(next_slots)),
            backups => Value::from(Serde(backups)),
        },
    )
}

/// `GET /console/reports`: the archive by date.
pub async fn archive(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> WebResponse {
    let date = ListQuery::date("date", q.date.as_deref())?;
    let runs = state.store.archive(date, q.page()).await?;
    let (previews, test_sends) = super::previews::recent(&state).await?;
    viewer.page(
        &state,
        "reports.html",
        minijinja::context! {
            runs => Value::from(Serde(&runs)),
            date => date.map(|d| d.to_string()),
            keep => date.map(|d| format!("&date={d}")).unwrap_or_default(),
            previews => Value::from(Serde(&previews)),
            test_sends => Value::from(Serde(&test_sends)),
        },
    )
}

/// `GET /console/reports/{id}`: the report as sent, its downloads and its run's steps.
pub async fn report(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> WebResponse {
    let stored = state
        .store
        .stored_report(id)
        .await?
        .ok_or(WebError::NotFound)?;
    viewer.page(
        &state,
        "report.html",
        minijinja::context! { report => Value::from(Serde(&stored)) },
    )
}

/// `GET /console/reports/{id}/deliveries?status=…`: the report's delivery log.
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<ListQuery>,
) -> WebResponse {
    let status = q.status()?;
    let channel = q.channel()?;
    let run = state
        .store
        .archived_run_of(id)
        .await?
        .ok_or(WebError::NotFound)?;
    let search = q.search();
    let filter = DeliveryFilter {
        status,
        channel,
        search: search.clone(),
    };
    let rows = state.store.delivery_log(id, &filter, q.page()).await?;
    // The pager keeps the filter.
    let keep: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("status", status.map(DeliveryStatus::as_str).unwrap_or(""))
        .append_pair("channel", channel.map(Channel::as_str).unwrap_or(""))
        .append_pair("q", search.as_deref().unwrap_or(""))
        .finish();
    viewer.page(
        &state,
        "deliveries.html",
        minijinja::context! {
            report => Value::from(Serde(&run)),
            rows => Value::from(Serde(&rows)),
            status => Value::from(Serde(&status)),
            statuses => status_names(),
            channel => channel.map(Channel::as_str),
            channels => Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            q => search,
            keep => format!("&{keep}"),
        },
    )
}

/// `GET /console/deliveries?report=&from=&to=&status=&channel=&q=`: the delivery log across
/// runs — every copy of a period's reports (a week unless chosen, a month at most).
pub async fn delivery_search(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> WebResponse {
    let today = Utc::now()
        .with_timezone(&state.settings.time_zone)
        .date_naive();
    let period = Period::new(
        ListQuery::date("from", q.from.as_deref())?,
        ListQuery::date("to", q.to.as_deref())?,
        today,
    );
    let report = match q.report.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(
            r.split_once('/')
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
                .ok_or_else(|| {
                    WebError::BadRequest(format!("report {r:?} is not NAMESPACE/NAME"))
                })?,
        ),
    };
    let search = DeliverySearch {
        report,
        period,
        status: q.status()?,
        channel: q.channel()?,
        address: q.search(),
    };
    let (rows, reports) = tokio::try_join!(
        state.store.search_deliveries(&search, q.page()),
        state.store.reports_with_runs(),
    )?;
    let chosen = search
        .report
        .as_ref()
        .map(|(ns, name)| format!("{ns}/{name}"));
    // The pager keeps the filter, the period as searched.
    let keep: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("report", chosen.as_deref().unwrap_or(""))
        .append_pair("from", &period.from.to_string())
        .append_pair("to", &period.to.to_string())
        .append_pair(
            "status",
            search.status.map(DeliveryStatus::as_str).unwrap_or(""),
        )
        .append_pair("channel", search.channel.map(Channel::as_str).unwrap_or(""))
        .append_pair("q", search.address.as_deref().unwrap_or(""))
        .finish();
    viewer.page(
        &state,
        "delivery_search.html",
        minijinja::context! {
            rows => Value::from(Serde(&rows)),
            period => Value::from(Serde(&period)),
            max_days => DeliverySearch::MAX_DAYS,
            reports => reports.iter().map(|(ns, name)| format!("{ns}/{name}")).collect::<Vec<_>>(),
            report => chosen,
            status => Value::from(Serde(&search.status)),
            statuses => status_names(),
            channel => search.channel.map(Channel::as_str),
            channels => Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            q => search.address,
            keep => format!("&{keep}"),
        },
    )
}

fn status_names() -> Vec<&'static str> {
    DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect()
}

/// `GET /console/recipients`: addresses with their subscription state.
pub async fn recipients(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> WebResponse {
    let search = q.search();
    let rows = state.store.recipients(search.as_deref(), q.page()).await?;
    let keep: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", search.as_deref().unwrap_or(""))
        .finish();
    viewer.page(
        &state,
        "recipients.html",
        minijinja::context! {
            rows => Value::from(Serde(&rows)),
            manage => state.settings.manage_subscriptions,
            q => search,
            keep => format!("&{keep}"),
        },
    )
}

#[derive(serde::Deserialize)]
pub struct ResubscribeForm {
    #[serde(default)]
    csrf: String,
    namespace: String,
    email: String,
    /// Why an unsubscribe may be lifted (the recipient's consent); required for one.
    #[serde(default)]
    reason: String,
}

/// `POST /console/recipients/resubscribe`: lifts a bounce, or — with the recipient's consent
/// written as the reason — an unsubscribe, recorded with the console account (standalone mode;
/// in Kubernetes the Recipient's annotation lifts bounces and `finrep resubscribe` the rest).
pub async fn resubscribe(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Form(form): Form<ResubscribeForm>,
) -> WebResponse {
    viewer.session.check_csrf(&form.csrf)?;
    if !state.settings.manage_subscriptions {
        return Err(WebError::BadRequest(
            "this console does not change subscriptions; annotate the Recipient with finrep.io/unblock".into(),
        ));
    }
    let email = form.email.to_lowercase();
    let reason = crate::untrusted::clean(form.reason.trim(), 200);
    let lifted = match state
        .store
        .blacklist_reason(&form.namespace, &email)
        .await?
    {
        Some(crate::run::BlacklistReason::Unsubscribe) if reason.is_empty() => {
            return Err(WebError::BadRequest(
                "lifting an unsubscribe needs the recipient's consent written as the reason".into(),
            ));
        }
        Some(crate::run::BlacklistReason::Unsubscribe) => {
            state
                .store
                .resubscribe(
                    &form.namespace,
                    &email,
                    finrep_core::store::Resubscriber::Operator,
                    Some(&viewer.session.account),
                    Some(&reason),
                )
                .await?
        }
        _ => state.store.unblock(&form.namespace, &email).await?,
    };
    tracing::info!(account = %viewer.session.account, namespace = %form.namespace, lifted, "a blacklist entry lifted from the console");
    Ok(Redirect::to("/console/recipients").into_response())
}

/// `GET /console/sources`: every source with its last week of fetches.
pub async fn sources(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> WebResponse {
    let now = Utc::now();
    let rows = state.store.source_fetch_health(now, q.page()).await?;
    let zone = state.settings.time_zone;
    let keys: Vec<(String, String)> = rows
        .rows
        .iter()
        .map(|s| (s.namespace.clone(), s.source.clone()))
        .collect();
    let since = now - Duration::days(super::chart::STRIP_DAYS);
    let days = state.store.source_days(&keys, zone.name(), since).await?;
    let today = now.with_timezone(&zone).date_naive();
    let strips: Vec<_> = keys
        .iter()
        .map(|(ns, source)| {
            let mine: Vec<_> = days
                .iter()
                .filter(|d| &d.namespace == ns && &d.source == source)
                .cloned()
                .collect();
            super::chart::health_strip(&mine, today)
        })
        .collect();
    viewer.page(
        &state,
        "sources.html",
        minijinja::context! {
            rows => Value::from(Serde(&rows)),
            strips => Value::from(Serde(&strips)),
            strip => minijinja::context! {
                width => super::chart::STRIP_DAYS as f64 * super::chart::STRIP_CELL,
                cell => super::chart::STRIP_CELL,
                days => super::chart::STRIP_DAYS,
            },
        },
    )
}
