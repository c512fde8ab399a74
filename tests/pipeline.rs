//! The pipeline end to end against real PostgreSQL and HTTP servers on loopback: every
//! source kind and format, a GBK feed, hostile HTML, failing sources, conditional GET,
//! Retry-After, an SSRF redirect, and a chat-completions summariser that answers, times out
//! and errors.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use common::http::{Response, TestServer};
use finrep::guard::NetworkPolicy;
use finrep::pipeline::fetch::FetchConfig;
use finrep::pipeline::{PipelineOptions, collect_and_compose};
use finrep::plan::{RunPlan, Slot};
use finrep::run::{FetchErrorKind, FetchStatus, RunOutcome, RunPhase, SourceOutcome};
use finrep::store::Store;
use sqlx::Row;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/feeds")
            .join(name),
    )
    .unwrap()
}

fn gbk_feed() -> Vec<u8> {
    let text = String::from_utf8(fixture("industry-gbk.xml.utf8")).unwrap();
    encoding_rs::GBK.encode(&text).0.into_owned()
}

/// 06:00 in Shanghai on `date`.
fn six_am(date: NaiveDate) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{date}T06:00:00+08:00"))
        .unwrap()
        .to_utc()
}

fn serve_feeds(server: &TestServer, private: &TestServer) {
    server.route(
        "/cls.xml",
        Response::ok(
            "application/rss+xml; charset=utf-8",
            fixture("cls-rss2.xml"),
        ),
    );
    server.route_etag(
        "/hk.xml",
        "application/atom+xml",
        fixture("hk-atom.xml"),
        "\"hk-v1\"",
    );
    server.route(
        "/us.json",
        Response::ok("application/feed+json", fixture("us-feed.json")),
    );
    server.route(
        "/fed.rdf",
        Response::ok("application/rdf+xml", fixture("fed-rss1.rdf")),
    );
    // GBK bytes, declared only in the XML declaration.
    server.route("/industry.xml", Response::ok("text/xml", gbk_feed()));
    server.route(
        "/api/roll",
        Response::ok("application/json", fixture("announcements.json")),
    );
    server.route(
        "/stats/",
        Response::ok("text/html", fixture("stats-page.html")),
    );
    server.route(
        "/broken.xml",
        Response::ok("application/xml", fixture("malformed.xml")),
    );
    server.route("/error", Response::status(500));
    server.route("/slow", Response::hang());
    server.route(
        "/huge.xml",
        Response::ok("application/xml", vec![b'x'; 256 * 1024]),
    );
    server.route_seq(
        "/throttled.xml",
        vec![
            Response::status(429).header("Retry-After", "1"),
            Response::ok("application/rss+xml", fixture("fed-rss1.rdf")),
        ],
    );
    server.route(
        "/redirect",
        Response::status(302).header("Location", &private.url("/metadata")),
    );
    private.route("/metadata", Response::ok("text/plain", "secret"));
    server.route(
        "/v1/chat/completions",
        Response::ok(
            "application/json",
            r#"{"choices":[{"message":{"role":"assistant","content":"模型摘要：<b>要点</b>清晰。"}}]}"#,
        ),
    );
    server.route(
        "/slow-ai/v1/chat/completions",
        Response::ok("application/json", r#"{"choices":[]}"#).delayed(Duration::from_secs(5)),
    );
    server.route("/bad-ai/v1/chat/completions", Response::status(500));
    // A summariser that adds a phishing link, an address and a number to every answer.
    server.route(
        "/hostile-ai/v1/chat/completions",
        Response::ok(
            "application/json",
            r#"{"choices":[{"message":{"role":"assistant","content":"要点清晰。[立即开户](http://phish.example/open) 咨询 vip@phish.example 或 400-820-8820。"}}]}"#,
        ),
    );
}

fn manifests(base: &str, summarizer: &str) -> String {
    let source = |name: &str, kind: &str, path: &str, category: &str, extra: &str| {
        format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata:\n  name: {name}\n  labels: {{desk: test}}\nspec:\n  kind: {kind}\n  url: {base}{path}\n  category: {category}\n{extra}---\n"
        )
    };
    let mut out = String::new();
    out += &source("cls", "feed", "/cls.xml", "A股", "  weight: 1.5\n");
    out += &source("hk", "feed", "/hk.xml", "港股", "");
    out += &source("us", "feed", "/us.json", "美股", "");
    out += &source("fed", "feed", "/fed.rdf", "宏观", "  language: en\n");
    out += &source("industry", "feed", "/industry.xml", "行业", "");
    out += &source(
        "announcements",
        "json",
        "/api/roll?page=1",
        "公告",
        "  json:\n    items: result.data\n    title: title\n    link: url\n    published: ctime\n    summary: intro\n",
    );
    out += &source(
        "stats",
        "html",
        "/stats/",
        "宏观",
        "  html:\n    item: .list-content li\n    link: a\n    published: span\n",
    );
    out += &source("broken", "feed", "/broken.xml", "行业", "");
    out += &source(
        "error",
        "feed",
        "/error",
        "行业",
        "  fetch:\n    timeoutSeconds: 5\n",
    );
    out += &source(
        "slow",
        "feed",
        "/slow",
        "行业",
        "  fetch:\n    timeoutSeconds: 1\n",
    );
    out += &source(
        "huge",
        "feed",
        "/huge.xml",
        "行业",
        "  fetch:\n    maxBodyBytes: 65536\n",
    );
    out += &source(
        "throttled",
        "feed",
        "/throttled.xml",
        "宏观",
        "  fetch:\n    timeoutSeconds: 10\n",
    );
    out += &source("redirect", "feed", "/redirect", "宏观", "");
    out += "apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata:\n  name: zhang-wei\n  labels: {brief: test}\nspec:\n  email: zhang.wei@example.com\n---\n";
    out += &format!(
        "apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata:\n  name: brief\nspec:\n  title: 金融情报日报\n  content:\n    lookbackHours: 48\n    maxItems: 30\n    maxItemsPerSource: 5\n    sectionOrder: [宏观, A股, 港股, 美股, 行业, 公告]\n    watchlist: [\"600519\"]\n{summarizer}  smtp:\n    host: smtp.example.com\n    from: brief@example.com\n"
    );
    out
}

struct Setup {
    dir: tempfile::TempDir,
    server: TestServer,
}

async fn setup(summarizer: impl Fn(&str) -> String) -> Setup {
    let server = TestServer::start().await;
    let private = TestServer::start_on("127.0.0.2:0").await;
    serve_feeds(&server, &private);
    let dir = tempfile::tempdir().unwrap();
    let base = server.url("");
    std::fs::write(
        dir.path().join("all.yaml"),
        manifests(&base, &summarizer(&base)),
    )
    .unwrap();
    Setup { dir, server }
}

fn plan_for(dir: &Path, date: NaiveDate) -> RunPlan {
    let slot = Slot {
        date,
        scheduled_for: six_am(date).fixed_offset(),
        manual: false,
    };
    common::plan_of_brief(dir, slot, &BTreeSet::new())
}

fn options(trusted: &TestServer, now: DateTime<Utc>, output: Option<PathBuf>) -> PipelineOptions {
    PipelineOptions {
        fetch: FetchConfig {
            // Only the test server is trusted: a redirect to another loopback address is
            // refused like any internal address.
            policy: NetworkPolicy::strict(vec![trusted.host_port()]),
            ..Default::default()
        },
        template_dir: None,
        output_dir: output,
        now,
        clock: std::sync::Arc::new(finrep::clock::SystemClock),
        recompose: false,
        lock_wait: std::time::Duration::ZERO,
    }
}

async fn store() -> Store {
    let url = common::scratch_database().await;
    let store = Store::connect(&url, 4, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn source<'a>(o: &'a RunOutcome, name: &str) -> &'a SourceOutcome {
    o.sources.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test]
async fn a_real_report_from_loopback_feeds_survives_failing_sources() {
    let s = setup(|base| {
        format!("    summarizer:\n      endpoint: {base}/v1\n      model: test-model\n      maxCalls: 100\n")
    })
    .await;
    let store = store().await;
    let date = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let out_dir = s.dir.path().join("out");
    let plan = plan_for(s.dir.path(), date);
    let (outcome, composed) = collect_and_compose(
        &plan,
        &store,
        &options(&s.server, six_am(date), Some(out_dir.clone())),
    )
    .await
    .unwrap();

    // Every good source yielded items; every bad one failed with its own kind.
    for ok in [
        "cls",
        "hk",
        "us",
        "fed",
        "industry",
        "announcements",
        "stats",
        "throttled",
    ] {
        let s = source(&outcome, ok);
        assert_eq!(s.status, FetchStatus::Ok, "{ok}: {s:?}");
        assert!(s.items > 0, "{ok} has items");
    }
    let kinds = [
        ("broken", FetchErrorKind::Parse),
        ("error", FetchErrorKind::Http),
        ("slow", FetchErrorKind::Timeout),
        ("huge", FetchErrorKind::TooLarge),
        ("redirect", FetchErrorKind::Blocked),
    ];
    for (name, kind) in kinds {
        assert_eq!(source(&outcome, name).error_kind, Some(kind), "{name}");
    }
    assert_eq!(outcome.sources_failed, 5);
    // 429 then success, after the advertised Retry-After.
    let throttled = s.server.requests("/throttled.xml");
    assert_eq!(throttled.len(), 2);
    assert!(source(&outcome, "throttled").latency_ms >= 1000);
    // 500 is retried, then given up.
    assert_eq!(s.server.requests("/error").len(), 3);

    // The report: Chinese text decoded from GBK, items ranked, duplicates merged.
    let html = &composed.html;
    let text = &composed.text;
    assert!(html.contains("宁德时代"), "GBK feed decoded");
    assert!(text.contains("== 宏观 =="));
    assert!(text.contains("2026年10月份国民经济运行稳中有进"));
    assert!(
        text.contains("https://stats.example") || text.contains("/sj/zxfb/202611/t20261122_1.html")
    );
    assert!(
        !text.contains("三天前的旧闻"),
        "outside the lookback window"
    );
    assert!(!text.contains("无效链接"), "javascript: links dropped");
    assert_eq!(
        text.matches("央行宣布下调存款准备金率0.5个百分点").count(),
        2,
        "the reserve-ratio story appears once in its section and once in 今日要点:\n{text}"
    );
    assert!(text.contains("另见"), "corroborated by the other outlet");
    assert!(
        text.contains("https://www.cls.cn/detail/1001\n"),
        "tracking parameters removed"
    );
    let sections: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(
        sections,
        [
            "== 今日要点 ==",
            "== 宏观 ==",
            "== A股 ==",
            "== 港股 ==",
            "== 美股 ==",
            "== 行业 ==",
            "== 公告 =="
        ]
    );

    // Hostile HTML never reaches the output.
    for bad in [
        "<script",
        "alert(",
        "javascript:",
        "onclick",
        "track.example.com",
        "<iframe",
        "steal()",
    ] {
        assert!(!html.contains(bad), "{bad} in HTML");
        assert!(!text.contains(bad), "{bad} in text");
    }
    assert!(
        html.contains("模型摘要：要点清晰。"),
        "AI summary, its markup stripped"
    );
    let ai = outcome.summarizer.as_ref().unwrap();
    assert!(ai.ok > 0 && !ai.fell_back, "{ai:?}");

    // Stored: the report, one fetch record per source, the chosen articles.
    let pool = store.pool();
    let row = sqlx::query(
        "SELECT html, text_body, article_count, build_version FROM reports WHERE id = $1",
    )
    .bind(outcome.report_id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("html"), *html);
    assert_eq!(
        row.get::<i32, _>("article_count") as usize,
        outcome.articles
    );
    assert_eq!(
        row.get::<String, _>("build_version"),
        env!("CARGO_PKG_VERSION")
    );
    let fetches: i64 = sqlx::query_scalar("SELECT count(*) FROM fetch_log WHERE report_id = $1")
        .bind(outcome.report_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fetches as usize, plan.sources.len());
    let chosen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM report_articles WHERE report_id = $1")
            .bind(outcome.report_id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(chosen as usize, outcome.articles);
    assert!(out_dir.join("report.html").exists() && out_dir.join("report.txt").exists());

    // The next morning: conditional GET answers 304, and nothing reported yesterday is
    // reported again; cached AI summaries are not bought twice.
    let next = date.succ_opt().unwrap();
    let calls_before = s.server.requests("/v1/chat/completions").len();
    let (second, composed2) = collect_and_compose(
        &plan_for(s.dir.path(), next),
        &store,
        &options(&s.server, six_am(next), None),
    )
    .await
    .unwrap();
    assert_eq!(source(&second, "hk").status, FetchStatus::NotModified);
    let hk = s.server.requests("/hk.xml");
    assert_eq!(
        hk.last()
            .unwrap()
            .headers
            .get("if-none-match")
            .map(String::as_str),
        Some("\"hk-v1\"")
    );
    assert!(second.extract.reported_before > 0);
    assert!(
        !composed2
            .text
            .contains("贵州茅台(600519)发布三季度业绩预告"),
        "reported yesterday"
    );
    let calls_after = s.server.requests("/v1/chat/completions").len();
    assert!(
        calls_after - calls_before <= 1 + second.articles,
        "only new items summarised"
    );
}

/// The morning of 2026-11-23 collected and composed with the summariser at `path` of the
/// test server (`extra`: more of its settings, as YAML lines).
async fn morning_with_summariser(
    path: &str,
    extra: &str,
) -> (Store, RunOutcome, finrep::pipeline::report::Composed) {
    let s = setup(|base| {
        format!("    summarizer:\n      endpoint: {base}{path}\n      model: m\n{extra}")
    })
    .await;
    let store = store().await;
    let date = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let (outcome, composed) = collect_and_compose(
        &plan_for(s.dir.path(), date),
        &store,
        &options(&s.server, six_am(date), None),
    )
    .await
    .unwrap();
    (store, outcome, composed)
}

/// A summariser's answer may not add a URL, address or phone number its article did not
/// contain: none reaches the HTML or the text part, and the footer says something was dropped.
#[tokio::test]
async fn a_hostile_summariser_adds_no_link_address_or_number() {
    let (store, outcome, composed) =
        morning_with_summariser("/hostile-ai/v1", "      maxCalls: 40\n").await;
    let ai = outcome.summarizer.unwrap();
    assert!(ai.ok > 0 && ai.ungrounded >= 3 * ai.ok, "{ai:?}");
    for part in [&composed.text, &composed.html] {
        assert!(!part.contains("phish.example"), "{part}");
        assert!(!part.contains("400-820-8820"));
    }
    assert!(
        composed.text.contains("立即开户"),
        "the words stay, the link goes"
    );
    assert!(composed.html.contains("原文未出现的链接、邮箱或电话号码"));
    // Nor does the cache keep them for tomorrow.
    let cached: i64 =
        sqlx::query_scalar("SELECT count(*) FROM article_summaries WHERE summary LIKE '%phish%'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(cached, 0);
}

#[tokio::test]
async fn summariser_timeouts_and_errors_fall_back_to_extractive() {
    for (path, expect) in [("/slow-ai/v1", "timeout"), ("/bad-ai/v1", "error")] {
        let (store, outcome, composed) =
            morning_with_summariser(path, "      timeoutSeconds: 1\n      maxCalls: 10\n").await;
        let ai = outcome.summarizer.unwrap();
        assert!(ai.fell_back, "{path}: {ai:?}");
        assert_eq!(ai.ok, 0);
        // The breaker stops calling after three failures in a row.
        assert!(ai.calls <= 3 + 3, "{path}: {} calls", ai.calls);
        assert!(
            composed.text.contains("中国人民银行决定于11月25日下调"),
            "extractive summary kept"
        );
        assert!(composed.html.contains("AI 摘要服务超时或不可用"));
        let failures: i64 =
            sqlx::query_scalar("SELECT count(*) FROM provider_calls WHERE outcome = $1")
                .bind(expect)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert!(failures >= 1, "{path}: provider failures counted");
        assert!(
            outcome.notes.iter().any(|n| n.contains("AI summaries")),
            "{:?}",
            outcome.notes
        );
    }
}

#[tokio::test]
async fn same_day_rerun_reuses_the_composed_report() {
    let s = setup(|_| String::new()).await;
    let store = store().await;
    let date = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let plan = plan_for(s.dir.path(), date);
    let (first, composed) =
        collect_and_compose(&plan, &store, &options(&s.server, six_am(date), None))
            .await
            .unwrap();
    store
        .set_phase(first.report_id, RunPhase::Sending)
        .await
        .unwrap();
    let (again, recomposed) =
        collect_and_compose(&plan, &store, &options(&s.server, six_am(date), None))
            .await
            .unwrap();
    assert!(again.reused);
    assert_eq!(again.report_id, first.report_id);
    assert_eq!(recomposed.html, composed.html);
}

/// `finrep run --no-send` of the brief for `date` from the manifests in `config`, trusting
/// `feeds`, writing into `out`: its outcome, once it exited 0.
fn run_without_sending(
    config: &Path,
    date: &str,
    feeds: &TestServer,
    out: &Path,
    database_url: &str,
) -> serde_json::Value {
    outcome_of(
        std::process::Command::new(env!("CARGO_BIN_EXE_finrep"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .args(["--report", "brief", "--date", date])
            .args([
                "--trusted-host",
                &feeds.host_port(),
                "--no-send",
                "--output",
            ])
            .arg(out)
            .env("DATABASE_URL", database_url)
            .output()
            .unwrap(),
    )
}

/// The outcome line a run printed, once it exited 0.
fn outcome_of(child: std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&child.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// The feeds and manifests of `setup` (no summariser) and a scratch database, on a runtime
/// that must live while a child process fetches from the feeds.
fn brief_and_database() -> (tokio::runtime::Runtime, Setup, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, url) = rt.block_on(async {
        let s = setup(|_| String::new()).await;
        let url = common::scratch_database().await;
        (s, url)
    });
    (rt, s, url)
}

/// The brief of 2026-11-23 was made, with articles, and written into `out`.
fn assert_brief_written(outcome: &serde_json::Value, out: &Path) {
    assert_eq!(outcome["report"], "brief");
    assert_eq!(outcome["date"], "2026-11-23");
    assert!(outcome["articles"].as_u64().unwrap() > 0);
    assert!(
        std::fs::read_to_string(out.join("report.txt"))
            .unwrap()
            .contains("金融情报日报")
    );
}

#[test]
fn run_command_writes_the_report() {
    let (rt, s, url) = brief_and_database();
    let out = s.dir.path().join("out");
    let outcome = run_without_sending(s.dir.path(), "2026-11-23", &s.server, &out, &url);
    // The test server lived on this runtime while the child ran.
    drop(rt);
    assert_brief_written(&outcome, &out);
}

/// What a report's Job runs: `finrep plan` writes the day's plan gzipped, as the controller
/// mounts it, and the pipeline-only binary runs it to the same report `finrep run` makes.
#[test]
fn the_pipeline_binary_runs_a_plan_written_by_finrep_plan() {
    let (rt, s, url) = brief_and_database();
    let plan = s.dir.path().join("plan.yaml.gz");
    let planned = std::process::Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["plan", "--config"])
        .arg(s.dir.path())
        .args(["--report", "brief", "--date", "2026-11-23", "--output"])
        .arg(&plan)
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        planned.status.success(),
        "{}",
        String::from_utf8_lossy(&planned.stderr)
    );
    let bytes = std::fs::read(&plan).unwrap();
    assert_eq!(bytes[..2], [0x1f, 0x8b], "gzip, as a Job mounts it");
    let read = finrep::plan::RunPlan::from_bytes(&bytes).unwrap();
    assert_eq!(read.report, "brief");
    assert_eq!(read.slot.date.to_string(), "2026-11-23");

    let out = s.dir.path().join("out");
    let outcome = outcome_of(
        std::process::Command::new(env!("CARGO_BIN_EXE_finrep-pipeline"))
            .args(["--log-format", "json", "--plan"])
            .arg(&plan)
            .args([
                "--trusted-host",
                &s.server.host_port(),
                "--no-send",
                "--output",
            ])
            .arg(&out)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap(),
    );
    drop(rt);
    assert_brief_written(&outcome, &out);
}

/// A plan file that is not a plan: the pipeline binary exits with the code of an invalid
/// configuration (a Job does not retry it), naming the problem, before any database is asked.
#[test]
fn the_pipeline_binary_refuses_a_broken_plan() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, "planVersion: 999\nreport: [\n").unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_finrep-pipeline"))
        .arg("--plan")
        .arg(&plan)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(
        child.status.code(),
        Some(i32::from(finrep::run::RunExit::Invalid.code()))
    );
    assert!(String::from_utf8_lossy(&child.stderr).contains("error:"));
}

/// An RSS 2.0 feed of `(title, published)` items, dated by the test rather than by a file.
fn rss_dated(items: &[(&str, DateTime<Utc>)]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\"><channel><title>快讯</title><link>https://news.example.com/</link><description>t</description>\n",
    );
    for (i, (title, published)) in items.iter().enumerate() {
        xml += &format!(
            "<item><title>{title}</title><link>https://news.example.com/{i}</link><pubDate>{}</pubDate><description>{title}。</description></item>\n",
            published.to_rfc2822()
        );
    }
    xml + "</channel></rss>\n"
}

/// `finrep run --date D` for a day three days back makes D's report from the items of the
/// day before it, whatever day the test runs on; today's items are later news for D.
#[test]
fn a_run_for_an_earlier_day_collects_what_that_days_report_would_have_held() {
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let today = Utc::now().with_timezone(&tz).date_naive();
    let day = today - chrono::Days::new(3);
    let local = |date: NaiveDate, hh: u32| {
        date.and_hms_opt(hh, 30, 0)
            .unwrap()
            .and_local_timezone(tz)
            .unwrap()
            .to_utc()
    };
    let before = day - chrono::Days::new(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, url) =
        rt.block_on(async { (TestServer::start().await, common::scratch_database().await) });
    server.route(
        "/dated.xml",
        Response::ok(
            "application/rss+xml",
            rss_dated(&[
                ("前一日午间：沪指震荡", local(before, 12)),
                ("前一日收盘：两市成交额回升", local(before, 15)),
                ("当日清晨：央行公开市场操作", local(day, 5)),
                ("今日新闻：不属于那一天", local(today, 9)),
                ("一周前的旧闻", local(day - chrono::Days::new(7), 9)),
            ]),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata: {{name: dated}}\nspec: {{kind: feed, url: '{}', category: A股}}\n---\n\
             apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata: {{name: reader}}\nspec: {{email: reader@example.com}}\n---\n\
             apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata: {{name: brief}}\nspec:\n  title: 金融情报日报\n  smtp: {{host: smtp.example.com, from: brief@example.com}}\n",
            server.url("/dated.xml")
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let outcome = run_without_sending(dir.path(), &day.to_string(), &server, &out, &url);
    drop(rt);
    assert_eq!(outcome["date"], day.to_string());
    assert_eq!(
        outcome["lookbackEndsAt"],
        format!("{day}T06:00:00+08:00"),
        "{outcome}"
    );
    assert_eq!(outcome["articles"], 3, "{outcome}");
    assert_eq!(outcome["extract"]["too_new"], 1, "{outcome}");
    assert_eq!(outcome["extract"]["too_old"], 1, "{outcome}");
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("前一日收盘：两市成交额回升"), "{text}");
    assert!(!text.contains("今日新闻"), "{text}");
}
