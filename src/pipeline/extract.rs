//! From raw items to the ranked selection of a report. Pure: the only outside knowledge is
//! passed in (the clock, and which articles earlier reports already carried).
//!
//! Steps: clean text and canonical URLs → lookback window → Source and report keyword
//! filters → one item per canonical URL → drop what earlier days reported → group the same
//! story from several outlets (the best-ranked copy stays, the others corroborate it) → score
//! → caps per source and in total → sections in the report's order. The score is documented
//! in docs/ranking.md.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::canonical::{CanonicalUrl, content_hash, url_hash};
use super::entities::{WatchEntry, tickers, watch_hits};
use super::isolate::isolate;
use super::near_dup;
use super::parse::RawItem;
use super::text::{normalise_for_matching, to_plain_text, truncate};
pub use crate::matching::Filters;
use crate::plan::{LookbackEnd, PlannedSource};
pub use crate::run::ExtractStats;

/// Longest summary kept per item, in characters.
const SUMMARY_CHARS: usize = 400;
/// Longest title kept, in characters.
const TITLE_CHARS: usize = 200;
/// Items published further in the future than this are treated as published now.
const CLOCK_SKEW_HOURS: i64 = 2;

/// An item with plain-text title and summary, cut to size.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanItem {
    pub title: String,
    pub link: Option<CanonicalUrl>,
    pub published: Option<DateTime<Utc>>,
    pub summary: String,
}

/// Reduces a raw item to plain text. Done right after parsing, in the fetch task, so the
/// HTML of a feed is dropped early and cleaning overlaps with waiting for slower sources.
pub fn clean(raw: RawItem) -> CleanItem {
    CleanItem {
        title: truncate(&to_plain_text(&raw.title), TITLE_CHARS),
        link: raw.link,
        published: raw.published,
        summary: raw
            .summary
            .as_deref()
            .map(|s| truncate(&to_plain_text(s), SUMMARY_CHARS))
            .unwrap_or_default(),
    }
}

/// What one source produced in this run.
#[derive(Clone)]
pub struct SourceBatch<'a> {
    pub source: &'a PlannedSource,
    /// The source's own keyword filters, compiled before it was fetched.
    pub filters: Filters,
    pub items: Vec<CleanItem>,
    pub fetched_at: DateTime<Utc>,
    /// Items of this source dropped because cleaning them panicked.
    pub failed: usize,
}

/// Settings of extraction, from the plan.
#[derive(Clone, Debug)]
pub struct ExtractConfig {
    /// Where the lookback window ends.
    pub now: DateTime<Utc>,
    /// Whether `now` is the run's start (a date past the clock-skew allowance is a feed's
    /// wrong clock: the item counts as published now) or an earlier day's slot (an item
    /// published after it is later news, not that day's).
    pub end: LookbackEnd,
    pub lookback_hours: u32,
    pub report_filters: Filters,
    pub watchlist: Vec<WatchEntry>,
    pub max_items: usize,
    pub max_items_per_source: usize,
}

/// An item that may go into the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub source: String,
    pub source_display: String,
    pub category: String,
    pub weight: f64,
    pub language: Option<String>,
    pub title: Arc<str>,
    pub url: String,
    pub url_hash: [u8; 32],
    pub content_hash: [u8; 32],
    pub published: DateTime<Utc>,
    pub published_known: bool,
    pub summary: Arc<str>,
    pub tickers: Vec<String>,
    pub watch_hits: usize,
    pub keyword_hits: usize,
    /// Display names of other sources that carried the same story.
    pub corroborated_by: Vec<String>,
    pub score: f64,
}

/// Cleans and filters raw items into candidates, one per canonical URL (the copy from the
/// heaviest source wins).
pub fn candidates(
    batches: Vec<SourceBatch<'_>>,
    cfg: &ExtractConfig,
    stats: &mut ExtractStats,
) -> Vec<Candidate> {
    let window = (
        cfg.now - chrono::Duration::hours(i64::from(cfg.lookback_hours)),
        cfg.now + chrono::Duration::hours(CLOCK_SKEW_HOURS),
    );
    let mut by_url: HashMap<[u8; 32], Candidate> = HashMap::new();
    for batch in batches {
        stats.failed += batch.failed;
        let limit = batch.source.spec.fetch.max_items as usize;
        for raw in batch.items.into_iter().take(limit) {
            stats.raw_items += 1;
            // A bug met by one item drops that item, never the run.
            let verdict = isolate(|| {
                candidate(
                    batch.source,
                    &batch.filters,
                    batch.fetched_at,
                    raw,
                    cfg,
                    window,
                )
            })
            .unwrap_or(Verdict::Failed);
            let candidate = match verdict {
                Verdict::Keep(c) => c,
                Verdict::Invalid => {
                    stats.invalid += 1;
                    continue;
                }
                Verdict::TooOld => {
                    stats.too_old += 1;
                    continue;
                }
                Verdict::TooNew => {
                    stats.too_new += 1;
                    continue;
                }
                Verdict::Filtered => {
                    stats.filtered += 1;
                    continue;
                }
                Verdict::Failed => {
                    stats.failed += 1;
                    continue;
                }
            };
            match by_url.get(&candidate.url_hash) {
                Some(existing) if existing.weight >= candidate.weight => stats.same_url += 1,
                Some(_) => {
                    stats.same_url += 1;
                    by_url.insert(candidate.url_hash, *candidate);
                }
                None => {
                    by_url.insert(candidate.url_hash, *candidate);
                }
            }
        }
    }
    let mut out: Vec<Candidate> = by_url.into_values().collect();
    // Deterministic order for everything that follows.
    out.sort_by(|a, b| b.published.cmp(&a.published).then(a.url.cmp(&b.url)));
    out
}

/// What becomes of one item.
enum Verdict {
    Keep(Box<Candidate>),
    /// No title or no http(s) link.
    Invalid,
    TooOld,
    /// Published after an earlier day's slot.
    TooNew,
    Filtered,
    /// Handling it panicked.
    Failed,
}

/// One item as a candidate, or why it is not one. `window` is (oldest, latest) publication
/// time accepted.
fn candidate(
    source: &PlannedSource,
    source_filters: &Filters,
    fetched_at: DateTime<Utc>,
    raw: CleanItem,
    cfg: &ExtractConfig,
    (oldest, latest): (DateTime<Utc>, DateTime<Utc>),
) -> Verdict {
    let spec = &source.spec;
    let title = raw.title;
    let url = raw.link.map(String::from);
    let (Some(url), false) = (url, title.is_empty()) else {
        return Verdict::Invalid;
    };
    let (published, published_known) = match raw.published {
        Some(p) if p > latest && cfg.end == LookbackEnd::Slot => return Verdict::TooNew,
        Some(p) if p > latest => (cfg.now, true),
        Some(p) => (p, true),
        None => (fetched_at, false),
    };
    if published < oldest {
        return Verdict::TooOld;
    }
    let summary = raw.summary;
    let raw_text = format!("{title}\n{summary}");
    let normalised = normalise_for_matching(&raw_text);
    if !source_filters.keeps(&normalised, &raw_text)
        || !cfg.report_filters.keeps(&normalised, &raw_text)
    {
        return Verdict::Filtered;
    }
    let found = tickers(&raw_text);
    Verdict::Keep(Box::new(Candidate {
        source: source.name.clone(),
        source_display: source.display_name().to_string(),
        category: spec.category.clone(),
        weight: spec.weight,
        language: spec.language.clone(),
        url_hash: url_hash(&url),
        content_hash: content_hash(&title, &summary),
        watch_hits: watch_hits(&cfg.watchlist, &found, &normalised, &raw_text),
        keyword_hits: cfg.report_filters.include_hits(&normalised, &raw_text),
        tickers: found.into_iter().map(|t| t.0).collect(),
        title: title.into(),
        url,
        published,
        published_known,
        summary: summary.into(),
        corroborated_by: Vec::new(),
        score: 0.0,
    }))
}

/// The ranking score (docs/ranking.md).
pub fn score(c: &Candidate, now: DateTime<Utc>) -> f64 {
    let age_hours = (now - c.published).num_seconds().max(0) as f64 / 3600.0;
    let recency = 0.5f64.powf(age_hours / 12.0);
    let corroboration = c.corroborated_by.len().min(3) as f64;
    let watch = c.watch_hits.min(3) as f64;
    let keywords = c.keyword_hits.min(3) as f64;
    c.weight * (1.0 + 2.0 * recency + 0.75 * corroboration + watch + 0.5 * keywords)
}

/// Drops what earlier reports carried, merges the same story from several sources, ranks,
/// and applies the caps. Returns the selection, best first.
pub fn select(
    mut cands: Vec<Candidate>,
    reported_before: &HashSet<[u8; 32]>,
    cfg: &ExtractConfig,
    stats: &mut ExtractStats,
) -> Vec<Candidate> {
    let before = cands.len();
    cands.retain(|c| {
        !reported_before.contains(&c.url_hash) && !reported_before.contains(&c.content_hash)
    });
    stats.reported_before += before - cands.len();

    for c in &mut cands {
        c.score = score(c, cfg.now);
    }
    let titles: Vec<&str> = cands.iter().map(|c| &*c.title).collect();
    // Should grouping meet a bug, every item stands alone: the report loses its merging of
    // duplicate stories, not its content.
    let groups = isolate(|| near_dup::cluster(&titles, near_dup::DEFAULT_THRESHOLD))
        .unwrap_or_else(|_| (0..titles.len()).collect());
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        members.entry(*g).or_default().push(i);
    }
    let mut keep = vec![false; cands.len()];
    let mut corroborations: Vec<(usize, Vec<String>)> = Vec::new();
    for list in members.values() {
        let best = *list
            .iter()
            .max_by(|&&a, &&b| {
                cands[a]
                    .score
                    .total_cmp(&cands[b].score)
                    .then(cands[b].url.cmp(&cands[a].url))
            })
            .unwrap_or(&list[0]);
        keep[best] = true;
        let others: BTreeSet<String> = list
            .iter()
            .filter(|&&i| i != best && cands[i].source != cands[best].source)
            .map(|&i| cands[i].source_display.clone())
            .collect();
        stats.same_story += list.len() - 1;
        corroborations.push((best, others.into_iter().collect()));
    }
    for (best, others) in corroborations {
        cands[best].corroborated_by = others;
        cands[best].score = score(&cands[best], cfg.now);
    }
    let mut kept: Vec<Candidate> = cands
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect();
    kept.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.published.cmp(&a.published))
            .then(a.url.cmp(&b.url))
    });

    let mut per_source: HashMap<String, usize> = HashMap::new();
    let mut selected = Vec::new();
    for c in kept {
        let n = per_source.entry(c.source.clone()).or_default();
        if selected.len() >= cfg.max_items || *n >= cfg.max_items_per_source {
            stats.over_caps += 1;
            continue;
        }
        *n += 1;
        selected.push(c);
    }
    stats.selected = selected.len();
    selected
}

/// Section names in the report's order: `order` first, then the others alphabetically.
/// Empty sections are left out.
pub fn section_order(items: &[Candidate], order: &[String]) -> Vec<String> {
    let present: BTreeSet<&str> = items.iter().map(|c| c.category.as_str()).collect();
    let mut out: Vec<String> = order
        .iter()
        .filter(|c| present.contains(c.as_str()))
        .cloned()
        .collect();
    for c in present {
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KeywordFilters, SourceSpec};

    fn source(name: &str, category: &str, weight: f64) -> PlannedSource {
        let spec: SourceSpec = serde_norway::from_str(&format!(
            "{{kind: feed, url: 'https://{name}.example.com/rss', category: {category}, weight: {weight}}}"
        ))
        .unwrap();
        PlannedSource {
            name: name.to_string(),
            spec,
        }
    }

    fn item(title: &str, link: &str, hours_ago: i64, now: DateTime<Utc>) -> CleanItem {
        clean(RawItem {
            title: title.to_string(),
            link: crate::canonical::canonical_url(link),
            published: Some(now - chrono::Duration::hours(hours_ago)),
            summary: Some(format!("<p>{title}的详细内容</p>")),
        })
    }

    /// A source's batch fetched at `now`, of items (title, link, hours before `now`).
    fn batch<'a>(
        source: &'a PlannedSource,
        now: DateTime<Utc>,
        items: &[(&str, &str, i64)],
    ) -> SourceBatch<'a> {
        SourceBatch {
            failed: 0,
            filters: Filters::default(),
            source,
            items: items
                .iter()
                .map(|&(title, link, hours_ago)| item(title, link, hours_ago, now))
                .collect(),
            fetched_at: now,
        }
    }

    /// One morning's batches of three sources: a story carried by two of them, a watch-list
    /// hit, a filtered job ad, an old item and more items than the caps let through.
    fn morning_news<'a>(
        [cls, sina, fed]: [&'a PlannedSource; 3],
        now: DateTime<Utc>,
    ) -> Vec<SourceBatch<'a>> {
        vec![
            batch(
                cls,
                now,
                &[
                    (
                        "央行宣布下调存款准备金率0.5个百分点",
                        "https://cls.example.com/1?utm_source=rss",
                        1,
                    ),
                    (
                        "贵州茅台(600519)三季度净利增长15%",
                        "https://cls.example.com/2",
                        3,
                    ),
                    ("某券商招聘分析师", "https://cls.example.com/3", 1),
                    ("三天前的旧闻", "https://cls.example.com/4", 72),
                ],
            ),
            batch(
                sina,
                now,
                &[
                    (
                        "【快讯】央行宣布下调存款准备金率0.5个百分点",
                        "https://sina.example.com/a",
                        2,
                    ),
                    ("沪指午间收涨0.3%", "https://sina.example.com/b", 2),
                    ("创业板指震荡", "https://sina.example.com/c", 5),
                    ("两市成交额回落", "https://sina.example.com/d", 6),
                ],
            ),
            batch(
                fed,
                now,
                &[("Fed holds rates steady", "https://fed.example.com/x#top", 8)],
            ),
        ]
    }

    fn config(now: DateTime<Utc>) -> ExtractConfig {
        ExtractConfig {
            now,
            end: LookbackEnd::RunStart,
            lookback_hours: 24,
            report_filters: Filters::compile(&KeywordFilters {
                include: vec![],
                exclude: vec!["招聘".into()],
            })
            .unwrap(),
            watchlist: super::super::entities::watch_entries(&["600519".into()]),
            max_items: 4,
            max_items_per_source: 2,
        }
    }

    #[test]
    fn ranks_merges_filters_and_caps() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T22:00:00Z")
            .unwrap()
            .to_utc();
        let cls = source("cls", "A股", 1.5);
        let sina = source("sina", "A股", 1.0);
        let fed = source("fed", "宏观", 1.0);
        let batches = morning_news([&cls, &sina, &fed], now);
        let cfg = config(now);
        let mut stats = ExtractStats::default();
        let cands = candidates(batches.clone(), &cfg, &mut stats);
        assert_eq!(stats.filtered, 1, "招聘 excluded");
        assert_eq!(stats.too_old, 1);
        let selected = select(cands, &HashSet::new(), &cfg, &mut stats);
        let titles: Vec<&str> = selected.iter().map(|c| &*c.title).collect();
        // The watch-list hit lifts the Moutai item above the fresher reserve-ratio story,
        // which is merged (the cls copy kept: heavier source) and corroborated by sina; the
        // caps keep two items per source and four in all.
        assert_eq!(
            titles,
            [
                "贵州茅台(600519)三季度净利增长15%",
                "央行宣布下调存款准备金率0.5个百分点",
                "沪指午间收涨0.3%",
                "创业板指震荡",
            ]
        );
        assert_eq!(selected[1].corroborated_by, ["sina"]);
        assert_eq!(selected[1].url, "https://cls.example.com/1");
        assert_eq!(selected[0].tickers, ["600519.SH"]);
        assert_eq!(stats.same_story, 1);
        assert_eq!(stats.over_caps, 2);

        // The next day, what was reported is not reported again.
        let reported: HashSet<[u8; 32]> = selected.iter().map(|c| c.url_hash).collect();
        let mut stats2 = ExtractStats::default();
        let again = select(
            candidates(batches, &cfg, &mut stats2),
            &reported,
            &cfg,
            &mut stats2,
        );
        assert!(again.iter().all(|c| !reported.contains(&c.url_hash)));
        assert!(stats2.reported_before >= 4);

        let order = section_order(&selected, &["宏观".to_string(), "A股".to_string()]);
        assert_eq!(order, ["A股"]);
    }

    #[test]
    fn dates_past_the_window_end_are_a_wrong_clock_today_and_later_news_for_an_earlier_day() {
        let end = DateTime::parse_from_rfc3339("2026-11-22T22:00:00Z")
            .unwrap()
            .to_utc();
        let cls = source("cls", "A股", 1.0);
        let batches = || {
            vec![batch(
                &cls,
                end,
                &[
                    ("昨日收盘综述", "https://cls.example.com/1", 10),
                    // Three days after the window's end.
                    ("三天后的新闻", "https://cls.example.com/2", -72),
                ],
            )]
        };
        let mut today = ExtractStats::default();
        let kept = candidates(batches(), &config(end), &mut today);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].published, end, "a future date counts as now");

        let earlier_day = ExtractConfig {
            end: LookbackEnd::Slot,
            ..config(end)
        };
        let mut stats = ExtractStats::default();
        let kept = candidates(batches(), &earlier_day, &mut stats);
        let titles: Vec<&str> = kept.iter().map(|c| &*c.title).collect();
        assert_eq!(titles, ["昨日收盘综述"]);
        assert_eq!(stats.too_new, 1);
    }
}
