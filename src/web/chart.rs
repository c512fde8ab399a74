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

/// The height of a report's month of delivery times, in its own units.
pub const TIMES_HEIGHT: f64 = 24.0;
/// Where the mail window's end is drawn: two thirds up. A run that finished later reaches
/// above the line; one that finished at the window's start is a stub.
pub const WINDOW_LINE: f64 = 16.0;

/// One day of a report's month: a bar from the bottom as tall as its finish is late in the
/// window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TimeBar {
    pub date: NaiveDate,
    pub x: f64,
    pub y: f64,
    pub height: f64,
    /// `ontime` (delivered by the window's end), `late` (finished after it), `short` (not
    /// everything delivered), `running` or `none` (no run).
    pub class: &'static str,
    /// When the run finished, in the report's zone (`HH:MM`).
    pub finished: Option<String>,
}

/// A report's month of delivery times against its window.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeliveryTimes {
    pub bars: Vec<TimeBar>,
    /// Days that were not on time (late or not all delivered).
    pub not_on_time: usize,
    /// The latest run's window as `HH:MM–HH:MM`, for the caption.
    pub window: Option<String>,
}

/// A report's last `STRIP_DAYS` days ending `today`: each day's bar is its run's finish
/// against the window its plan recorded (the window's end at [`WINDOW_LINE`], later runs
/// above it, capped at the drawing's top).
pub fn delivery_times(runs: &[crate::store::RunDay], today: NaiveDate) -> DeliveryTimes {
    let bars: Vec<TimeBar> = (0..STRIP_DAYS)
        .map(|i| {
            let date = today - Duration::days(STRIP_DAYS - 1 - i);
            let (class, height, finished) = match runs.iter().find(|r| r.date == date) {
                None => ("none", 1.0, None),
                Some(r) => time_bar(r),
            };
            TimeBar {
                date,
                x: i as f64 * STRIP_CELL,
                y: round(TIMES_HEIGHT - height),
                height: round(height),
                class,
                finished,
            }
        })
        .collect();
    let not_on_time = bars
        .iter()
        .filter(|b| matches!(b.class, "late" | "short"))
        .count();
    let window = runs
        .iter()
        .max_by_key(|r| r.date)
        .and_then(|r| r.window.as_ref())
        .map(|(w, _)| format!("{}–{}", w.start, w.end));
    DeliveryTimes {
        bars,
        not_on_time,
        window,
    }
}

/// A run's class, bar height and local finish time.
fn time_bar(r: &crate::store::RunDay) -> (&'static str, f64, Option<String>) {
    use crate::run::RunPhase as P;
    let window = r.window.as_ref().and_then(|(w, zone)| {
        let tz = finrep_core::schedule::parse_time_zone(zone).ok()?;
        let bounds = finrep_core::window::Window::for_date(w, tz, r.date).ok()?;
        Some((bounds, tz))
    });
    let finished = r
        .finished_at
        .zip(window.as_ref())
        .map(|(t, (_, tz))| t.with_timezone(tz).format("%H:%M").to_string());
    // How far into the window the run finished: 0 at its start, 1 at its end.
    let into = match (r.finished_at, &window) {
        (Some(t), Some((w, _))) if w.end > w.start => {
            (t - w.start).num_seconds() as f64 / (w.end - w.start).num_seconds() as f64
        }
        _ => 0.0,
    };
    let height = (into * WINDOW_LINE).clamp(2.0, TIMES_HEIGHT);
    let late = !r.manual
        && window
            .as_ref()
            .is_some_and(|(w, _)| r.finished_at.is_some_and(|t| t > w.end));
    let class = match r.phase {
        P::Succeeded if late => "late",
        P::Succeeded => "ontime",
        P::PartiallyDelivered | P::Failed | P::Missed => "short",
        P::Queued | P::Pending | P::Collecting | P::Composing | P::Sending => "running",
    };
    // A manual run sends at once, whatever the window: drawn as a stub, never late.
    let height = if r.manual || r.finished_at.is_none() {
        2.0
    } else {
        height
    };
    (class, height, finished)
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
    fn a_reports_month_draws_each_finish_against_the_window() {
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
        // The default window is 06:05–06:20 in Shanghai (22:05–22:20 UTC the day before).
        let runs = [
            run(5, P::Sending, "2026-12-04T22:10:00Z"),
            run(4, P::Succeeded, "2026-12-03T22:24:00Z"),
            run(3, P::PartiallyDelivered, "2026-12-02T22:12:00Z"),
            run(2, P::Succeeded, "2026-12-01T22:20:00Z"),
            run(1, P::Succeeded, "2026-11-30T23:59:00Z"),
        ];
        let times = delivery_times(&runs, today);
        assert_eq!(times.bars.len() as i64, STRIP_DAYS);
        let last: Vec<&str> = times.bars.iter().rev().take(6).map(|b| b.class).collect();
        assert_eq!(last, ["running", "late", "short", "ontime", "late", "none"]);
        assert_eq!(times.not_on_time, 3);
        assert_eq!(times.window.as_deref(), Some("06:05–06:20"));
        let bar = |d: usize| &times.bars[times.bars.len() - 1 - d];
        // Finished at the window's end: the bar reaches the line; 4 minutes late: above it;
        // hours late: capped at the top (half a window past its end). Every bar stays inside the drawing.
        assert_eq!(bar(3).height, WINDOW_LINE);
        assert_eq!(bar(3).finished.as_deref(), Some("06:20"));
        assert!(bar(1).height > WINDOW_LINE && bar(1).height < TIMES_HEIGHT);
        assert_eq!(bar(4).height, TIMES_HEIGHT);
        for b in &times.bars {
            assert!(b.y >= 0.0 && b.y + b.height <= TIMES_HEIGHT + 0.01, "{b:?}");
        }
        // A manual run sends at once whatever the window: never late (as the cards say).
        let mut manual = run(4, P::Succeeded, "2026-12-03T22:30:00Z");
        manual.manual = true;
        let times = delivery_times(&[manual], today);
        assert_eq!(times.bars[times.bars.len() - 2].class, "ontime");
        assert_eq!(times.not_on_time, 0);
    }

    proptest::proptest! {
        /// Whatever a run's record holds, its bar stays inside the drawing.
        #[test]
        fn any_finish_stays_in_the_drawing(minutes in -100_000i64..100_000, manual: bool) {
            let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
            let r = crate::store::RunDay {
                namespace: "desk".into(),
                report: "brief".into(),
                date: today,
                phase: crate::run::RunPhase::Succeeded,
                manual,
                finished_at: Some(chrono::DateTime::UNIX_EPOCH + Duration::minutes(29_000_000 + minutes)),
                window: Some((finrep_core::api::MailWindow::default(), "Asia/Shanghai".into())),
            };
            let times = delivery_times(&[r], today);
            let b = times.bars.last().unwrap();
            proptest::prop_assert!(b.y >= 0.0 && b.height >= 1.0 && b.y + b.height <= TIMES_HEIGHT + 0.01);
        }
    }

    #[test]
    fn no_deliveries_draw_empty_bars_not_a_division_by_zero() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let bars = delivery_bars(&[], today, 90);
        assert_eq!(bars.len(), 90);
        assert!(bars.iter().all(|b| b.segments.is_empty() && b.total == 0));
    }
}
