//! Pictures the console draws on the server as inline SVG — no script, nothing fetched,
//! styled by the stylesheet's classes — with the numbers beside them for screen readers.
//! Only geometry is decided here (pure); the template writes the elements.

use chrono::{Duration, NaiveDate};

use crate::store::DayDeliveries;

/// The drawing's size in its own units (it scales to its box).
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 160.0;
/// Room under the bars for the first and last dates.
const AXIS: f64 = 18.0;

/// One part of a day's bar.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Segment {
    /// `delivered`, `failed`, `deferred` or `other`: the stylesheet's colour for it.
    pub class: &'static str,
    pub y: f64,
    pub height: f64,
}

/// One day's bar: its segments stacked from the bottom.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Bar {
    pub date: NaiveDate,
    pub x: f64,
    pub width: f64,
    pub segments: Vec<Segment>,
    pub total: i64,
    pub day: DayDeliveries,
}

/// Deliveries per day as bars, one per day of the `days` ending `today` (a day without
/// deliveries has an empty bar), scaled to the busiest day.
pub fn delivery_bars(per_day: &[DayDeliveries], today: NaiveDate, days: i64) -> Vec<Bar> {
    let days = days.max(1);
    let slot = WIDTH / days as f64;
    let width = (slot * 0.8).max(1.0);
    let total = |d: &DayDeliveries| d.delivered + d.failed + d.deferred + d.other;
    let most = per_day.iter().map(total).max().unwrap_or(0).max(1) as f64;
    let room = HEIGHT - AXIS;
    (0..days)
        .map(|i| {
            let date = today - Duration::days(days - 1 - i);
            let day = per_day
                .iter()
                .find(|d| d.date == date)
                .cloned()
                .unwrap_or(DayDeliveries {
                    date,
                    ..DayDeliveries::default()
                });
            let mut y = room;
            let mut segments = Vec::new();
            for (class, n) in [
                ("delivered", day.delivered),
                ("failed", day.failed),
                ("deferred", day.deferred),
                ("other", day.other),
            ] {
                if n <= 0 {
                    continue;
                }
                let height = n as f64 / most * room;
                y -= height;
                segments.push(Segment {
                    class,
                    y: round(y),
                    height: round(height),
                });
            }
            Bar {
                date,
                x: round(i as f64 * slot + (slot - width) / 2.0),
                width: round(width),
                segments,
                total: total(&day),
                day,
            }
        })
        .collect()
}

/// Days of a source's health strip.
pub const STRIP_DAYS: i64 = 30;
/// The strip's size in its own units: a cell per day.
pub const STRIP_CELL: f64 = 4.0;

/// One day of a source's health strip.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Cell {
    pub date: NaiveDate,
    pub x: f64,
    /// `none` (not fetched), `ok`, `some` (some fetches failed) or `failed` (all did).
    pub class: &'static str,
}

/// A source's last `STRIP_DAYS` days ending `today`, a cell each, and the days with failures.
pub fn health_strip(days: &[crate::store::SourceDay], today: NaiveDate) -> (Vec<Cell>, usize) {
    strip(today, &["some", "failed"], |date| {
        match days.iter().find(|d| d.day == date) {
            None => "none",
            Some(d) if d.failures == 0 => "ok",
            Some(d) if d.failures < d.fetches => "some",
            Some(_) => "failed",
        }
    })
}

/// The last `STRIP_DAYS` days ending `today`, a cell each of the class `class_of` gives its
/// date, and how many cells are of one of the `off` classes.
fn strip(
    today: NaiveDate,
    off: &[&str],
    class_of: impl Fn(NaiveDate) -> &'static str,
) -> (Vec<Cell>, usize) {
    let cells: Vec<Cell> = (0..STRIP_DAYS)
        .map(|i| {
            let date = today - Duration::days(STRIP_DAYS - 1 - i);
            Cell {
                date,
                x: i as f64 * STRIP_CELL,
                class: class_of(date),
            }
        })
        .collect();
    let count = cells.iter().filter(|c| off.contains(&c.class)).count();
    (cells, count)
}

/// A report's last `STRIP_DAYS` days ending `today`, a cell each: `ontime` (delivered by the
/// window's end), `late` (finished after it), `short` (not everything delivered), `running`,
/// or `none` (no run); and the days that were not on time.
pub fn delivery_strip(runs: &[crate::store::RunDay], today: NaiveDate) -> (Vec<Cell>, usize) {
    use crate::run::RunPhase as P;
    strip(today, &["late", "short"], |date| {
        match runs.iter().find(|r| r.date == date) {
            None => "none",
            Some(r) => match r.phase {
                P::Succeeded if !r.manual && finished_late(r) => "late",
                P::Succeeded => "ontime",
                P::PartiallyDelivered | P::Failed | P::Missed => "short",
                P::Queued | P::Pending | P::Collecting | P::Composing | P::Sending => "running",
            },
        }
    })
}

/// A run that finished after its mail window closed.
fn finished_late(r: &crate::store::RunDay) -> bool {
    let (Some(finished), Some((window, zone))) = (r.finished_at, &r.window) else {
        return false;
    };
    finrep_core::glance::window_end(window, zone, r.date).is_some_and(|end| finished > end)
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32, delivered: i64, failed: i64) -> DayDeliveries {
        DayDeliveries {
            date: NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            delivered,
            failed,
            ..DayDeliveries::default()
        }
    }

    #[test]
    fn every_day_has_a_bar_and_the_busiest_fills_the_height() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let bars = delivery_bars(&[day(3, 90, 10), day(5, 40, 0)], today, 30);
        assert_eq!(bars.len(), 30);
        assert_eq!(bars.last().unwrap().date, today);
        let busiest = bars.iter().find(|b| b.total == 100).unwrap();
        let top = busiest
            .segments
            .iter()
            .map(|s| s.y)
            .fold(f64::MAX, f64::min);
        assert!(top.abs() < 0.2, "{busiest:?}");
        assert_eq!(busiest.segments[0].class, "delivered");
        assert_eq!(busiest.segments[1].class, "failed");
        assert!(bars[0].segments.is_empty(), "a quiet day is an empty bar");
        // Nothing leaves the drawing, whatever the counts.
        for b in &bars {
            assert!(b.x >= 0.0 && b.x + b.width <= WIDTH + 0.1);
            for s in &b.segments {
                assert!(s.y >= -0.1 && s.y + s.height <= HEIGHT - AXIS + 0.1);
            }
        }
    }

    #[test]
    fn a_strip_has_a_cell_per_day_coloured_by_its_failures() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let day = |d: u32, fetches, failures| crate::store::SourceDay {
            day: NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            fetches,
            failures,
            ..Default::default()
        };
        let (cells, failing) = health_strip(&[day(5, 2, 2), day(4, 3, 1), day(3, 1, 0)], today);
        assert_eq!(cells.len() as i64, STRIP_DAYS);
        let last: Vec<&str> = cells.iter().rev().take(4).map(|c| c.class).collect();
        assert_eq!(last, ["failed", "some", "ok", "none"]);
        assert_eq!(failing, 2);
        assert!(cells.last().unwrap().x + STRIP_CELL <= STRIP_DAYS as f64 * STRIP_CELL);
    }

    #[test]
    fn a_reports_month_says_on_time_late_short_or_no_run() {
        use crate::run::RunPhase as P;
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let run = |d: u32, phase, finished: &str| crate::store::RunDay {
            namespace: "desk".into(),
            report: "brief".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            phase,
            manual: false,
            finished_at: Some(
                chrono::DateTime::parse_from_rfc3339(finished)
                    .unwrap()
                    .to_utc(),
            ),
            window: Some((
                finrep_core::api::MailWindow::default(),
                "Asia/Shanghai".into(),
            )),
        };
        let runs = [
            run(5, P::Sending, "2026-12-04T22:10:00Z"),
            run(4, P::Succeeded, "2026-12-03T22:30:00Z"),
            run(3, P::PartiallyDelivered, "2026-12-02T22:12:00Z"),
            run(2, P::Succeeded, "2026-12-01T22:12:00Z"),
        ];
        let (cells, off) = delivery_strip(&runs, today);
        let last: Vec<&str> = cells.iter().rev().take(5).map(|c| c.class).collect();
        assert_eq!(last, ["running", "late", "short", "ontime", "none"]);
        assert_eq!(off, 2);
        // A manual run sends at once whatever the window: never late (as the cards say).
        let mut manual = run(4, P::Succeeded, "2026-12-03T22:30:00Z");
        manual.manual = true;
        let (cells, off) = delivery_strip(&[manual], today);
        assert_eq!(cells[cells.len() - 2].class, "ontime");
        assert_eq!(off, 0);
    }

    #[test]
    fn no_deliveries_draw_empty_bars_not_a_division_by_zero() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let bars = delivery_bars(&[], today, 90);
        assert_eq!(bars.len(), 90);
        assert!(bars.iter().all(|b| b.segments.is_empty() && b.total == 0));
    }
}
