//! Benchmark W2, first part (../shared/BENCHMARKS.md): building run plans at controller
//! scale — 50 DailyReports, 500 Sources, 5,000 Recipients in one namespace — with the one
//! function every scheduler uses (`plan::plan_for`), and compressing each for its ConfigMap.
//!
//! Usage: cargo bench --bench plan -- [RUNS] [SCALE]   (SCALE divides the sizes; 1 = W2)
//! Prints one JSON object per run.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::{DateTime, Utc};
use finrep::plan::{RunAt, plan_for};

#[path = "common/w2.rs"]
mod w2;
use w2::resources;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let scale: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
    let (n_reports, n_sources, n_recipients) = (50 / scale, 500 / scale, 5000 / scale);
    let set = resources(n_reports.max(1), n_sources.max(1), n_recipients.max(1));
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-22T22:00:00Z")
        .unwrap_or_else(|e| panic!("{e}"))
        .to_utc();
    let blacklist = BTreeSet::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut plan_seconds = Vec::new();
        let mut gz_bytes = Vec::new();
        let mut planned_recipients = 0usize;
        for r in &set.reports {
            let name = r.metadata.name.clone().unwrap_or_default();
            let t = Instant::now();
            let plan = plan_for(&set, "default", &name, RunAt::Slot(at), &blacklist)
                .unwrap_or_else(|e| panic!("{e}"));
            plan_seconds.push(t.elapsed().as_secs_f64());
            planned_recipients += plan.recipients.len();
            gz_bytes.push(plan.to_gzip().unwrap_or_else(|e| panic!("{e}")).len());
        }
        let total = started.elapsed().as_secs_f64();
        plan_seconds.sort_by(f64::total_cmp);
        let median = plan_seconds[plan_seconds.len() / 2];
        let max = plan_seconds[plan_seconds.len() - 1];
        println!(
            "{{\"reports\": {}, \"sources\": {}, \"recipients\": {}, \"planned_recipients\": {planned_recipients}, \"plan_ms_median\": {:.3}, \"plan_ms_max\": {:.3}, \"all_plans_with_gzip_seconds\": {total:.3}, \"gzip_bytes_max\": {}}}",
            set.reports.len(),
            set.sources.len(),
            set.recipients.len(),
            median * 1000.0,
            max * 1000.0,
            gz_bytes.iter().max().copied().unwrap_or(0)
        );
    }
}
