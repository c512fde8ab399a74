//! The delivery log across runs: every copy of a period's reports, filtered by report,
//! status, channel and address — "did reader97 get Tuesday's brief?" without opening each
//! run. Bounded: at most [`DeliverySearch::MAX_DAYS`] report dates, the page's rows read run by
//! run in date order, the total counted from an index alone.

use chrono::NaiveDate;
use sqlx::Row;

use super::console::{DeliveryLogRow, Page, Paged, contains_pattern, delivery_log_row};
use super::{Store, StoreError};
use crate::run::{Channel, DeliveryStatus};

/// What the search keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverySearch {
    /// One report (`namespace`, `name`), or every report.
    pub report: Option<(String, String)>,
    /// Report dates, both ends included.
    pub period: Period,
    pub status: Option<DeliveryStatus>,
    pub channel: Option<Channel>,
    /// Part of an address or of a chat group's `<platform>:<name>`, any case.
    pub address: Option<String>,
}

impl DeliverySearch {
    /// The longest period searched at once: a month of a few reports keeps the count, read
    /// from the index alone, inside the console's budget (docs/benchmarks.md, W3).
    pub const MAX_DAYS: i64 = 31;
    /// The period shown when none is asked for: the last week.
    pub const DEFAULT_DAYS: i64 = 7;
}

/// The report dates searched, as asked for or as they could be searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The period asked for was reversed or longer than [`DeliverySearch::MAX_DAYS`]: the page
    /// says what it searched instead.
    pub adjusted: bool,
}

impl Period {
    /// The period from `from` to `to` (the last [`DeliverySearch::DEFAULT_DAYS`] up to
    /// `today` where not given): ends swapped when reversed, cut to its last
    /// [`DeliverySearch::MAX_DAYS`] days when longer.
    pub fn new(from: Option<NaiveDate>, to: Option<NaiveDate>, today: NaiveDate) -> Self {
        // Dates come from a URL: at the calendar's ends, saturate rather than overflow.
        let back = |d: NaiveDate, days: i64| {
            d.checked_sub_signed(chrono::Duration::days(days - 1))
                .unwrap_or(NaiveDate::MIN)
        };
        let ahead = |d: NaiveDate, days: i64| {
            d.checked_add_signed(chrono::Duration::days(days - 1))
                .unwrap_or(NaiveDate::MAX)
        };
        let week = DeliverySearch::DEFAULT_DAYS;
        let (mut from, mut to) = match (from, to) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, ahead(f, week).min(today).max(f)),
            (None, Some(t)) => (back(t, week), t),
            (None, None) => (back(today, week), today),
        };
        let mut adjusted = false;
        if to < from {
            std::mem::swap(&mut from, &mut to);
            adjusted = true;
        }
        if (to - from).num_days() + 1 > DeliverySearch::MAX_DAYS {
            from = back(to, DeliverySearch::MAX_DAYS);
            adjusted = true;
        }
        Self { from, to, adjusted }
    }
}

/// One copy found, with the run it belongs to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FoundDelivery {
    pub report_id: i64,
    pub namespace: String,
    pub report: String,
    pub date: NaiveDate,
    #[serde(flatten)]
    pub delivery: DeliveryLogRow,
}

/// The filters, bound in the same order by the page's query and the count's.
macro_rules! search_conditions {
    () => {
        "r.report_date BETWEEN $1 AND $2
           AND ($3::text IS NULL OR r.namespace = $3) AND ($4::text IS NULL OR r.report = $4)
           AND ($5::text IS NULL OR d.status = $5) AND ($6::text IS NULL OR d.channel = $6)
           AND ($7::text IS NULL OR d.email ILIKE $7)"
    };
}

impl Store {
    /// A page of the copies `search` keeps: newest report date first; within a run, copies
    /// not delivered first, then addresses in numeric-aware order (reader9 before reader10);
    /// with the count of every copy kept.
    pub async fn search_deliveries(
        &self,
        search: &DeliverySearch,
        page: Page,
    ) -> Result<Paged<FoundDelivery>, StoreError> {
        // No window count here: it would read every row of the period; the page reads the
        // runs in date order and stops, the count reads the index.
        let query = sqlx::query(concat!(
            "SELECT r.id AS report_id, r.namespace, r.report, r.report_date, d.recipient, d.email,
                    d.channel, d.status, d.attempts, d.smtp_code, d.smtp_reply, d.last_error,
                    d.sent_at, d.updated_at
             FROM reports r JOIN delivery_log d ON d.report_id = r.id
             WHERE ",
            search_conditions!(),
            " ORDER BY r.report_date DESC, r.namespace, r.report,
                      COALESCE(array_position($8::text[], d.status), 99),
                      regexp_replace(lower(d.email), '[0-9]+', '', 'g'),
                      substring(d.email from '[0-9]{1,18}')::bigint NULLS FIRST, d.email
             LIMIT $9 OFFSET $10"
        ));
        let rows = bind_search(query, search)
            .bind(
                DeliveryStatus::NOT_DELIVERED_FIRST
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(self.pool())
            .await?;
        let count = sqlx::query(concat!(
            "SELECT count(*) AS n FROM reports r JOIN delivery_log d ON d.report_id = r.id WHERE ",
            search_conditions!()
        ));
        let total: i64 = bind_search(count, search)
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(FoundDelivery {
                    report_id: r.try_get("report_id")?,
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    date: r.try_get("report_date")?,
                    delivery: delivery_log_row(r)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Paged::from_rows(rows, page).with_total(total))
    }

    /// Every report that has a run, by namespace and name (the search's choice of report).
    pub async fn reports_with_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT namespace, report FROM reports ORDER BY namespace, report LIMIT 500",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("namespace")?, r.try_get("report")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

fn bind_search<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    search: &'q DeliverySearch,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let (namespace, report) = match &search.report {
        Some((ns, name)) => (Some(ns.as_str()), Some(name.as_str())),
        None => (None, None),
    };
    query
        .bind(search.period.from)
        .bind(search.period.to)
        .bind(namespace)
        .bind(report)
        .bind(search.status.map(DeliveryStatus::as_str))
        .bind(search.channel.map(Channel::as_str))
        .bind(search.address.as_deref().map(contains_pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_period_is_a_month_at_most_and_runs_forward() {
        let today = day("2026-12-05");
        let p = |from: Option<&str>, to: Option<&str>| {
            let p = Period::new(from.map(day), to.map(day), today);
            (p.from.to_string(), p.to.to_string(), p.adjusted)
        };
        let s = |a: &str, b: &str, adjusted: bool| (a.to_string(), b.to_string(), adjusted);
        assert_eq!(p(None, None), s("2026-11-29", "2026-12-05", false));
        assert_eq!(
            p(Some("2026-11-05"), Some("2026-12-05")),
            s("2026-11-05", "2026-12-05", false)
        );
        assert_eq!(
            p(Some("2026-01-01"), Some("2026-12-05")),
            s("2026-11-05", "2026-12-05", true)
        );
        assert_eq!(
            p(Some("2026-12-05"), Some("2026-12-01")),
            s("2026-12-01", "2026-12-05", true)
        );
        assert_eq!(
            p(Some("2026-12-04"), None),
            s("2026-12-04", "2026-12-05", false)
        );
        assert_eq!(
            p(None, Some("2026-06-10")),
            s("2026-06-04", "2026-06-10", false)
        );
    }

    proptest::proptest! {
        /// Whatever is asked, the period searched runs forward and spans at most a month.
        #[test]
        fn any_period_is_searchable(a in -96_000_000i32..96_000_000, b in -96_000_000i32..96_000_000, given in 0u8..4) {
            let today = day("2026-12-05");
            let date = |n: i32| NaiveDate::from_num_days_from_ce_opt(n).unwrap_or(NaiveDate::MIN);
            let from = (given & 1 == 1).then(|| date(a));
            let to = (given & 2 == 2).then(|| date(b));
            let p = Period::new(from, to, today);
            let days = (p.to - p.from).num_days() + 1;
            proptest::prop_assert!((1..=DeliverySearch::MAX_DAYS).contains(&days), "{p:?}");
        }
    }
}
