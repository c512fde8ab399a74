//! `finrep relay` between a report and the operator's servers: the report names the relay
//! with no credential at all; the relay logs in to the operator's SMTP server and calls the
//! operator's summariser with the operator's key, and the report's run — bounces included —
//! behaves as if it had talked to them itself. Nothing of the operator's login is in the
//! plan, the pipeline's environment or the run's records.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use finrep::guard::NetworkPolicy;

use common::http::{Response, TestServer};
use common::smtp::{SmtpServer, free_port};

const OPERATOR_USER: &str = "relay@finrep.example";
const OPERATOR_PASSWORD: &str = "the-operators-smtp-password";
const OPERATOR_KEY: &str = "sk-the-operators-summariser-key";

const FEED: &str = r#"<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>
<item><title>央行开展5000亿元MLF操作</title><link>https://e.example.com/mlf</link><description>利率持平，市场流动性合理充裕。</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
</channel></rss>"#;

struct RelayProcess {
    child: Child,
    smtp_port: u16,
    http_port: u16,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_relay(upstream_smtp: u16, summarizer: &str) -> RelayProcess {
    let (smtp_port, http_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_finrep"))
        .args(["relay", "--smtp-listen", &format!("127.0.0.1:{smtp_port}")])
        .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
        .args([
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &upstream_smtp.to_string(),
        ])
        .args(["--smtp-tls", "none", "--sender-domain", "finrep.example"])
        .args([
            "--summarizer-endpoint",
            summarizer,
            "--summarizer-model",
            "operator-model",
        ])
        .env("FINREP_RELAY_SMTP_USERNAME", OPERATOR_USER)
        .env("FINREP_RELAY_SMTP_PASSWORD", OPERATOR_PASSWORD)
        .env("FINREP_RELAY_SUMMARIZER_API_KEY", OPERATOR_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", smtp_port)).is_ok()
            && TcpStream::connect(("127.0.0.1", http_port)).is_ok()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    RelayProcess {
        child,
        smtp_port,
        http_port,
    }
}

#[tokio::test]
async fn a_report_sends_and_summarises_through_the_operators_login_without_holding_it() {
    let upstream = SmtpServer::start(serde_json::json!({
        "reject": ["gone@example.com"],
        "auth": {"user": OPERATOR_USER, "password": OPERATOR_PASSWORD},
    }));
    let servers = TestServer::start().await;
    servers.route("/rss.xml", Response::ok("application/rss+xml", FEED));
    servers.route(
        "/v1/chat/completions",
        Response::ok(
            "application/json",
            r#"{"choices":[{"message":{"role":"assistant","content":"央行开展MLF操作，利率持平。"}}]}"#,
        ),
    );
    let relay = start_relay(upstream.port, &servers.url("/v1"));

    // The tenant's report names the relay: no credentials, no key.
    let dir = tempfile::tempdir().unwrap();
    let yaml = common::fill::desk_yaml(&servers.url("/rss.xml"), relay.smtp_port)
        + &format!(
            "  content:\n    summarizer:\n      endpoint: http://127.0.0.1:{}/v1\n      model: tenant-model\n",
            relay.http_port
        );
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let (plan, store, opts, _url) =
        common::fill::prepare(dir.path(), NetworkPolicy::permissive()).await;
    assert!(
        plan.secrets.is_empty(),
        "the plan names no Secret: {:?}",
        plan.secrets
    );
    let delivery = common::fill::deliver_at_once();
    let outcome = finrep::pipeline::run(&plan, &store, &opts, Some(&delivery))
        .await
        .unwrap();

    // Delivered by the operator's login; the upstream's bounce reached the run as a bounce.
    let d = outcome.delivery.unwrap();
    assert_eq!((d.sent, d.bounced), (2, 1), "{d:?}");
    let messages = upstream.messages();
    assert_eq!(messages.len(), 2);
    assert!(
        messages.iter().all(|m| m["auth_user"] == OPERATOR_USER),
        "{messages:?}"
    );
    assert_eq!(
        store
            .blacklist_reason("default", "gone@example.com")
            .await
            .unwrap(),
        Some(finrep::run::BlacklistReason::Bounce)
    );
    let reply: String =
        sqlx::query_scalar("SELECT smtp_reply FROM delivery_log WHERE email = 'gone@example.com'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(
        reply.contains("User unknown"),
        "the upstream's own words: {reply}"
    );

    // Summarised by the operator's key and model.
    let ai = outcome.summarizer.unwrap();
    assert!(ai.ok > 0, "{ai:?}");
    let calls = servers.requests("/v1/chat/completions");
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(
            call.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {OPERATOR_KEY}").as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body["model"], "operator-model");
    }

    // Nothing of the operator's login in what the run stored.
    let stored: String = sqlx::query_scalar(
        "SELECT coalesce(plan::text, '') || coalesce(outcome::text, '') FROM reports",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(!stored.contains(OPERATOR_PASSWORD) && !stored.contains(OPERATOR_KEY));
}

/// The relay sends only as the operator's sender domains and offers no login of its own.
#[tokio::test]
async fn the_relay_refuses_foreign_senders_and_logins() {
    let upstream = SmtpServer::start(serde_json::json!({
        "auth": {"user": OPERATOR_USER, "password": OPERATOR_PASSWORD},
    }));
    let relay = start_relay(upstream.port, "http://127.0.0.1:9/v1");
    let stream = TcpStream::connect(("127.0.0.1", relay.smtp_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220"), "{greeting}");
    let mut say = |line: &str| -> String {
        writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = String::new();
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            let last = l.as_bytes().get(3) != Some(&b'-');
            reply += &l;
            if last {
                return reply;
            }
        }
    };
    assert!(say("EHLO tenant").starts_with("250"));
    assert!(say("AUTH PLAIN AHJlbGF5AHB3").starts_with("502"));
    assert!(say("MAIL FROM:<ceo@bank.example>").starts_with("550"));
    assert!(say("MAIL FROM:<brief@finrep.example>").starts_with("250"));
    assert!(say("QUIT").starts_with("221"));
    assert!(upstream.messages().is_empty());
}
