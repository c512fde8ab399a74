//! Hostile feeds served on loopback to a whole run (collect → extract → compose → send to a
//! real SMTP server): one source of each format serves damaged or hostile content, generated
//! from a seed; one honest source serves a good feed. The run must finish, deliver the honest
//! source's items, and record each bad source with a readable reason — never a panic, never
//! a NUL in the database.

mod common;

use common::http::{Response, TestServer};
use common::smtp::SmtpServer;
use finrep::delivery::DeliveryOptions;
use finrep::guard::NetworkPolicy;
use finrep::pipeline::run;
use finrep::run::{FetchStatus, RunPhase};
use finrep::window::WindowMode;
use rand::{Rng, SeedableRng};

const HONEST_TITLE: &str = "央行开展5000亿元MLF操作";

fn honest_feed() -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>ok</title>
<item><title>{HONEST_TITLE}</title><link>https://honest.example.com/mlf</link><description>中期借贷便利操作利率持平。</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
<item><title>贵州茅台（６００５１９）三季度净利润预增</title><link>https://honest.example.com/moutai</link><description>公司公告称净利润预增。</description><pubDate>Sun, 22 Nov 2026 20:00:00 GMT</pubDate></item>
</channel></rss>"#
    )
}

/// Random bytes, a truncated or corrupted copy of a real document, or text made of the
/// characters feeds get wrong — one per format, from a seed.
fn damaged(rng: &mut rand::rngs::StdRng, base: &[u8]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    match rng.random_range(0..3) {
        0 => (0..rng.random_range(0..2048))
            .map(|_| rng.random())
            .collect(),
        1 => {
            for _ in 0..rng.random_range(1..40) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            bytes
        }
        _ => {
            bytes.truncate(rng.random_range(0..bytes.len()));
            bytes
        }
    }
}

fn hostile_documents() -> Vec<(&'static str, &'static str, String, Vec<u8>)> {
    let huge = "长".repeat(100_000);
    let nasty = "\u{202e}txt.exe\u{2066} 宁德时代（３００７５０．ＳＺ）\u{0301}\u{200f}";
    vec![
        // The JSON Feed whose version holds a NUL: its parse error quotes it.
        (
            "nul-json-feed",
            "application/feed+json",
            String::new(),
            br#"{"version":"\u0000","title":"t","items":[{"id":"1","title":"x","url":"https://e.example.com/1"}]}"#.to_vec(),
        ),
        // Character references to NUL and controls, a 100 kB title, bidirectional overrides.
        (
            "control-rss",
            "application/rss+xml",
            String::new(),
            format!(
                r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>a&#0;b&#7;c</title><link>https://e.example.com/a</link><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
<item><title>{huge}</title><link>https://e.example.com/huge</link><description>{huge}</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
<item><title>{nasty}</title><link>https://e.example.com/rtl</link><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
</channel></rss>"#
            )
            .into_bytes(),
        ),
        // Deep nesting in Atom.
        (
            "deep-atom",
            "application/atom+xml",
            String::new(),
            format!(
                "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title><entry><title>{}x{}</title><id>1</id><link href=\"https://e.example.com/deep\"/><updated>2026-11-22T21:00:00Z</updated></entry></feed>",
                "<div>".repeat(20_000),
                "</div>".repeat(20_000)
            )
            .into_bytes(),
        ),
        // A JSON API answering lone surrogates and NUL escapes.
        (
            "surrogate-api",
            "application/json",
            "  json: {items: '$.data', title: title, link: url}\n".to_string(),
            br#"{"data":[{"title":"\ud800\u0000bad","url":"/1"},{"title":"ok \u202e title","url":"/2"}]}"#.to_vec(),
        ),
        // An HTML page with giant attributes and script.
        (
            "giant-html",
            "text/html",
            "  html: {item: li, link: a}\n".to_string(),
            format!(
                "<ul><li><a href=\"/{}\" onclick=\"x()\">{}<script>alert(1)</script></a></li></ul>",
                "x".repeat(300_000),
                huge
            )
            .into_bytes(),
        ),
    ]
}

#[tokio::test]
async fn a_run_survives_hostile_feeds_and_delivers_the_honest_ones() {
    let server = TestServer::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    let honest = honest_feed();
    server.route(
        "/honest.xml",
        Response::ok("application/rss+xml", honest.clone()),
    );
    let mut sources = String::new();
    let source = |name: &str, kind: &str, extra: &str| {
        format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata:\n  name: {name}\nspec:\n  kind: {kind}\n  url: {}\n  category: 宏观\n{extra}---\n",
            server.url(&format!("/{name}"))
        )
    };
    sources += &source("honest.xml", "feed", "");
    for (name, content_type, extra, body) in hostile_documents() {
        server.route(&format!("/{name}"), Response::ok(content_type, body));
        let kind = if extra.contains("json:") {
            "json"
        } else if extra.contains("html:") {
            "html"
        } else {
            "feed"
        };
        sources += &source(name, kind, &extra);
    }
    // Seeded damage of the honest document, served as each format.
    for (i, content_type) in [
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("damaged-{i}");
        server.route(
            &format!("/{name}"),
            Response::ok(content_type, damaged(&mut rng, honest.as_bytes())),
        );
        sources += &source(&name, "feed", "");
    }

    let smtp = SmtpServer::start(serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        format!(
            "{sources}apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata:\n  name: reader\nspec:\n  email: reader@example.com\n  displayName: 读者\n---\napiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata:\n  name: brief\nspec:\n  title: 金融情报日报\n  content:\n    watchlist: ['600519']\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    from: brief@finrep.example\n",
            smtp.port
        ),
    )
    .unwrap();
    let (plan, store, opts, _) =
        common::fill::prepare(dir.path(), NetworkPolicy::strict(vec![server.host_port()])).await;
    let delivery = DeliveryOptions {
        mode: WindowMode::Ignore,
        network: NetworkPolicy::strict(vec![format!("127.0.0.1:{}", smtp.port)]),
        ..Default::default()
    };
    let outcome = run(&plan, &store, &opts, Some(&delivery))
        .await
        .unwrap_or_else(|e| panic!("the run finishes: {e}"));

    assert_eq!(outcome.phase, RunPhase::Succeeded, "{outcome:#?}");
    assert_eq!(outcome.extract.failed, 0, "no item panicked");
    let honest = outcome
        .sources
        .iter()
        .find(|s| s.name == "honest.xml")
        .unwrap();
    assert_eq!(honest.status, FetchStatus::Ok);
    for s in &outcome.sources {
        if let Some(e) = &s.error {
            assert!(!e.contains('\0') && !e.contains('\n'), "{}: {e:?}", s.name);
            assert!(e.chars().count() <= finrep::untrusted::MAX_ERROR_CHARS);
        }
        if s.status == FetchStatus::Failed {
            assert!(
                s.error_kind.is_some() && s.error.as_ref().is_some_and(|e| !e.is_empty()),
                "{s:?}"
            );
        }
    }
    let nul = outcome
        .sources
        .iter()
        .find(|s| s.name == "nul-json-feed")
        .unwrap();
    assert_eq!(nul.status, FetchStatus::Failed, "{nul:?}");

    // What the recipient reads, from the SMTP server's own record.
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let text = messages[0]["text"].as_str().unwrap();
    assert!(text.contains(HONEST_TITLE), "{text}");
    assert!(
        text.contains("600519.SH"),
        "fullwidth code recognised: {text}"
    );
    assert!(!text.contains('\u{202e}') && !text.contains('\0'), "{text}");

    // Every failure is in the fetch log, readable.
    let logged: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT source, error_kind, error FROM fetch_log ORDER BY source")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(logged.len(), outcome.sources.len());
}

mod redirects {
    use super::common::http::{Response, TestServer};
    use finrep::guard::NetworkPolicy;
    use finrep::pipeline::fetch::{FetchConfig, FetchError, FetchRequest, Fetcher};
    use std::time::Duration;

    fn request(url: String, carries_secrets: bool) -> FetchRequest {
        FetchRequest {
            url,
            timeout: Duration::from_secs(5),
            max_body_bytes: 1 << 20,
            headers: vec![("X-Api-Key".into(), "s3cret-key".into())],
            carries_secrets,
            ..Default::default()
        }
    }

    /// A request carrying a key from a Secret follows a same-origin redirect, never one to
    /// another origin (where the key would go with it).
    #[tokio::test]
    async fn secret_headers_never_follow_a_redirect_to_another_origin() {
        let api = TestServer::start().await;
        let elsewhere = TestServer::start().await;
        api.route(
            "/away",
            Response::status(302).header("Location", &elsewhere.url("/collect")),
        );
        api.route(
            "/moved",
            Response::status(301).header("Location", &api.url("/v2")),
        );
        api.route("/v2", Response::ok("application/json", "{}"));
        elsewhere.route("/collect", Response::ok("application/json", "{}"));
        let fetcher = Fetcher::new(FetchConfig {
            policy: NetworkPolicy::permissive(),
            ..Default::default()
        })
        .unwrap();
        let err = fetcher
            .fetch(&request(api.url("/away"), true))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Blocked(_)), "{err}");
        assert!(err.to_string().contains("another origin"), "{err}");
        assert!(
            elsewhere.requests("/collect").is_empty(),
            "the key never left"
        );
        assert!(
            fetcher
                .fetch(&request(api.url("/moved"), true))
                .await
                .is_ok()
        );
        // Without secret headers the same redirect is followed (the guard still checks it).
        assert!(
            fetcher
                .fetch(&request(api.url("/away"), false))
                .await
                .is_ok()
        );
        assert_eq!(elsewhere.requests("/collect").len(), 1);
    }

    /// A trusted host (an in-cluster mirror) is trusted as the address a Source names, not
    /// as where another host's redirect points, and only on its own port.
    #[tokio::test]
    async fn trusted_hosts_are_not_redirect_targets() {
        let outside = TestServer::start_on("127.0.0.3:0").await;
        let mirror = TestServer::start().await;
        mirror.route("/feed", Response::ok("application/rss+xml", "<rss/>"));
        outside.route(
            "/r",
            Response::status(302).header("Location", &mirror.url("/feed")),
        );
        let fetcher = Fetcher::new(FetchConfig {
            policy: NetworkPolicy::strict(vec![mirror.host_port(), outside.host_port()]),
            ..Default::default()
        })
        .unwrap();
        let err = fetcher
            .fetch(&request(outside.url("/r"), false))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("trusted host"), "{err}");
        assert!(mirror.requests("/feed").is_empty());
        assert!(
            fetcher
                .fetch(&request(mirror.url("/feed"), false))
                .await
                .is_ok()
        );
        // The mirror's host on another port is not trusted.
        let other_port = mirror.url("/feed").replace(
            &mirror.host_port(),
            &format!("127.0.0.1:{}", common_free_port()),
        );
        let err = fetcher
            .fetch(&request(other_port, false))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("trusted on port"), "{err}");
    }

    fn common_free_port() -> u16 {
        super::common::smtp::free_port()
    }
}

/// The SMTP host passes the network guard: a mail server on a private address is refused
/// unless trusted, with a message saying how to allow it.
#[tokio::test]
async fn the_smtp_host_is_behind_the_network_guard() {
    let server = TestServer::start().await;
    server.route(
        "/honest.xml",
        Response::ok("application/rss+xml", honest_feed()),
    );
    let smtp = SmtpServer::start(serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata:\n  name: honest\nspec:\n  kind: feed\n  url: {}\n  category: 宏观\n---\napiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata:\n  name: reader\nspec:\n  email: reader@example.com\n---\napiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata:\n  name: brief\nspec:\n  title: 日报\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    from: brief@finrep.example\n",
            server.url("/honest.xml"),
            smtp.port
        ),
    )
    .unwrap();
    let (plan, store, opts, _) =
        common::fill::prepare(dir.path(), NetworkPolicy::strict(vec![server.host_port()])).await;
    let guarded = DeliveryOptions {
        mode: WindowMode::Ignore,
        network: NetworkPolicy::strict(vec![server.host_port()]),
        ..Default::default()
    };
    let err = run(&plan, &store, &opts, Some(&guarded)).await.unwrap_err();
    assert!(
        !err.is_transient(),
        "a refused host is a setting to fix: {err}"
    );
    assert!(err.to_string().contains("not a public address"), "{err}");
    assert!(smtp.messages().is_empty());
    let trusted = DeliveryOptions {
        network: NetworkPolicy::strict(vec![format!("127.0.0.1:{}", smtp.port)]),
        ..guarded
    };
    let outcome = run(&plan, &store, &opts, Some(&trusted)).await.unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 1);
}
