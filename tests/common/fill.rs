//! A database holding one real run (sources fetched, articles, a composed report, two
//! deliveries sent and one bounced), for tests of what reads it.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use finrep::delivery::DeliveryOptions;
use finrep::guard::NetworkPolicy;
use finrep::pipeline::fetch::FetchConfig;
use finrep::pipeline::{PipelineOptions, run};
use finrep::plan::Slot;
use finrep::store::Store;
use finrep::window::WindowMode;

use super::http::{Response, TestServer};
use super::smtp::SmtpServer;

const FEED: &str = r#"<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>
<item><title>央行开展5000亿元MLF操作</title><link>https://e.example.com/mlf</link><description>利率持平。</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
<item><title>贵州茅台(600519)三季度净利润预增</title><link>https://e.example.com/moutai</link><description>公告。</description><pubDate>Sun, 22 Nov 2026 20:00:00 GMT</pubDate></item>
</channel></rss>"#;

/// A database holding one real run: sources fetched, articles, a composed report, deliveries.
pub async fn filled_database() -> String {
    let feeds = TestServer::start().await;
    feeds.route("/rss.xml", Response::ok("application/rss+xml", FEED));
    let smtp = SmtpServer::start(serde_json::json!({"reject": ["gone@example.com"]}));
    let dir = tempfile::tempdir().unwrap();
    let yaml = desk_yaml(&feeds.url("/rss.xml"), smtp.port);
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let (plan, store, opts, url) = prepare(dir.path(), NetworkPolicy::permissive()).await;
    let outcome = run(&plan, &store, &opts, Some(&deliver_at_once()))
        .await
        .unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 2);
    url
}

/// Delivery as a manual run does it, to servers on loopback, retrying quickly.
pub fn deliver_at_once() -> DeliveryOptions {
    DeliveryOptions {
        mode: WindowMode::Ignore,
        network: NetworkPolicy::permissive(),
        retry_base: Duration::from_millis(10),
        ..Default::default()
    }
}

/// A desk of one feed source, three recipients (`gone@example.com` is refused by the SMTP
/// servers the tests start) and the report `brief`, mailing through `smtp_port`.
pub fn desk_yaml(feed_url: &str, smtp_port: u16) -> String {
    let mut yaml = format!(
        "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata:\n  name: news\nspec:\n  kind: feed\n  url: {feed_url}\n  category: 宏观\n---\n"
    );
    for (i, email) in ["a@example.com", "b@example.com", "gone@example.com"]
        .iter()
        .enumerate()
    {
        yaml += &format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata:\n  name: r{i}\nspec:\n  email: {email}\n  displayName: 读者{i}\n---\n"
        );
    }
    yaml + &format!(
        "apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata:\n  name: brief\nspec:\n  title: 日报\n  smtp:\n    host: 127.0.0.1\n    port: {smtp_port}\n    tls: none\n    from: brief@finrep.example\n"
    )
}

/// The plan of the report `brief` in `dir` (a manual run on 2026-11-23), a migrated scratch
/// database (and its URL), and pipeline options fetching under `policy`.
pub async fn prepare(
    dir: &std::path::Path,
    policy: NetworkPolicy,
) -> (finrep::plan::RunPlan, Store, PipelineOptions, String) {
    let six = DateTime::parse_from_rfc3339("2026-11-23T06:00:00+08:00").unwrap();
    let plan = super::plan_of_brief(
        dir,
        Slot {
            date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            scheduled_for: six,
            manual: true,
        },
        &Default::default(),
    );
    let url = super::scratch_database().await;
    let store = Store::connect(&url, 4, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let opts = PipelineOptions {
        fetch: FetchConfig {
            policy,
            ..Default::default()
        },
        template_dir: None,
        output_dir: None,
        now: six.with_timezone(&Utc),
        clock: std::sync::Arc::new(finrep::clock::SystemClock),
        recompose: false,
        lock_wait: std::time::Duration::ZERO,
    };
    (plan, store, opts, url)
}
