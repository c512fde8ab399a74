//! `finrep web` over real HTTP against a database one real run filled: unsubscribe from a
//! delivered message, tokens that must not work, the console with and without a session,
//! CSRF, login limits, pagination bounds and hostile feed text.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, NaiveDate};
use finrep::delivery::{DeliveryOptions, Unsubscribe};
use finrep::guard::NetworkPolicy;
use finrep::plan::Slot;
use finrep::store::Store;
use finrep::web::{Account, AppState, WebSettings};
use finrep::window::WindowMode;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use common::http::{Response, TestServer};
use common::smtp::SmtpServer;

const KEY: &[u8] = b"web-test-signing-key-0123456789";
/// A key rotated out, kept by the web so that links signed with it still work.
const OLD_KEY: &[u8] = b"the-previous-signing-key-0123456789";
const PASSWORD: &str = "a long console password";
const HOSTILE_TITLE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>央行降准";

fn feed() -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>
<item><title>央行开展5000亿元MLF操作</title><link>https://e.example.com/mlf</link><description>利率持平。</description><pubDate>Sun, 22 Nov 2026 21:00:00 GMT</pubDate></item>
<item><title>{}</title><link>https://e.example.com/hostile?x=%22%3E%3Cscript%3E</link><description>&lt;a href="javascript:alert(4)"&gt;点此&lt;/a&gt;</description><pubDate>Sun, 22 Nov 2026 20:30:00 GMT</pubDate></item>
<item><title>贵州茅台(600519)三季度净利润预增</title><link>https://e.example.com/moutai</link><description>公告。</description><pubDate>Sun, 22 Nov 2026 20:00:00 GMT</pubDate></item>
</channel></rss>"#,
        HOSTILE_TITLE
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    )
}

/// The hash is slow to make: once per test binary.
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| finrep::web::hash_password(PASSWORD).unwrap())
}

struct Site {
    base: String,
    store: Store,
    smtp: SmtpServer,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    _feeds: TestServer,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(self.url(path));
        if let Some(c) = cookie {
            r = r.header(COOKIE, c);
        }
        r.send().await.unwrap()
    }

    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(form));
        if let Some(c) = cookie {
            r = r.header(COOKIE, c);
        }
        r.send().await.unwrap()
    }

    /// The page at `path` for the session of `cookie`, as text.
    async fn html(&self, path: &str, cookie: &str) -> String {
        self.get(path, Some(cookie)).await.text().await.unwrap()
    }

    /// Logs in; the session cookie.
    async fn login(&self) -> String {
        let (csrf, cookie) = self.login_form().await;
        let r = self
            .post(
                "/login",
                Some(&cookie),
                &[("user", "admin"), ("password", PASSWORD), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        set_cookie(&r, "finrep_session").expect("a session cookie")
    }

    /// The login form's CSRF token and its cookie.
    async fn login_form(&self) -> (String, String) {
        let r = self.get("/login", None).await;
        let cookie = set_cookie(&r, "finrep_login_csrf").unwrap();
        let body = r.text().await.unwrap();
        (hidden(&body, "csrf"), cookie)
    }

    async fn blacklist(&self) -> Vec<(String, String)> {
        self.store
            .blacklist()
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.email, b.reason))
            .collect()
    }

    /// The delivery row of `email` in the run.
    async fn row_of(&self, email: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM delivery_log WHERE email = $1")
            .bind(email)
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    /// POSTs a form to `/unsubscribe?token=…` and returns the outcome the page states.
    async fn post_unsubscribe(&self, token: &str, form: &[(&str, &str)]) -> String {
        let r = self
            .http
            .post(self.url(&format!("/unsubscribe?token={token}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(form))
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        let marker = "data-outcome=\"";
        let start = body.find(marker).expect("an outcome") + marker.len();
        body[start..][..body[start..].find('"').unwrap()].to_string()
    }

    async fn unsubscribed(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .blacklist()
            .await
            .into_iter()
            .filter(|(_, reason)| reason == "unsubscribe")
            .map(|(email, _)| email)
            .collect();
        out.sort();
        out
    }
}

fn encode(form: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

/// `name=value` of a Set-Cookie header, as a Cookie header sends it back.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?;
        let (k, val) = pair.split_once('=')?;
        assert!(
            v.contains("HttpOnly") && v.contains("Secure") && v.contains("SameSite=Strict"),
            "{v}"
        );
        (k == name && !val.is_empty()).then(|| pair.to_string())
    })
}

/// The value of a hidden input of a page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
        + marker.len();
    body[start..][..body[start..].find('"').unwrap()].to_string()
}

/// A site over a database holding one real run whose messages carry unsubscribe links to it.
async fn site(account: bool) -> Site {
    site_with(account, |_| {}).await
}

/// A site whose web settings `tweak` changes.
async fn site_with(account: bool, tweak: impl FnOnce(&mut WebSettings)) -> Site {
    let feeds = TestServer::start().await;
    feeds.route("/rss.xml", Response::ok("application/rss+xml", feed()));
    let smtp = SmtpServer::start(serde_json::json!({"reject": ["gone@example.com"]}));
    let dir = tempfile::tempdir().unwrap();
    let yaml = common::fill::desk_yaml(&feeds.url("/rss.xml"), smtp.port);
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let (plan, store, opts, _url) =
        common::fill::prepare(dir.path(), NetworkPolicy::permissive()).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let settings = WebSettings {
        // The current key and a previous one, whose links must keep working.
        unsubscribe_keys: finrep::unsubscribe::KeyRing::new([KEY, OLD_KEY]).unwrap(),
        account: account.then(|| Account {
            user: "admin".into(),
            password_hash: password_hash().to_string(),
        }),
        manage_subscriptions: true,
        ..Default::default()
    };
    let mut settings = settings;
    tweak(&mut settings);
    let state = AppState::new(store.clone(), settings).unwrap();
    tokio::spawn(finrep::web::serve(
        listener,
        state,
        tokio_util::sync::CancellationToken::new(),
    ));

    let delivery = DeliveryOptions {
        mode: WindowMode::Ignore,
        network: NetworkPolicy::permissive(),
        retry_base: Duration::from_millis(10),
        unsubscribe: Some(Unsubscribe {
            // What a pipeline pod of the namespace holds: the namespace's derived key only.
            signer: finrep::unsubscribe::Signer::for_namespace(KEY, "default"),
            public_url: base.clone(),
        }),
        ..Default::default()
    };
    let outcome = finrep::pipeline::run(&plan, &store, &opts, Some(&delivery))
        .await
        .unwrap();
    assert_eq!(outcome.delivery.unwrap().sent, 2);
    Site {
        base,
        store,
        smtp,
        dir,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _feeds: feeds,
    }
}

/// The one-click URL of the message delivered to `email`, from its List-Unsubscribe header.
fn link_for(smtp: &SmtpServer, email: &str) -> (String, serde_json::Value) {
    let m = smtp
        .messages()
        .into_iter()
        .find(|m| m["rcpt"][0] == email)
        .unwrap_or_else(|| panic!("no message for {email}"));
    assert_eq!(m["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    let header = m["list_unsubscribe"].as_str().unwrap();
    let url = header
        .split(',')
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|p| p.starts_with("http"))
        .unwrap()
        .to_string();
    (url, m)
}

fn path_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}?{}", u.path(), u.query().unwrap_or_default())
}

#[tokio::test]
async fn a_recipient_unsubscribes_from_a_delivered_message_and_leaves_the_next_plan() {
    let site = site(false).await;
    let (url, message) = link_for(&site.smtp, "a@example.com");
    assert!(url.starts_with(&site.base), "{url}");
    // The footer shows the same link.
    assert!(
        message["text"].as_str().unwrap().contains(&url),
        "{}",
        message["text"]
    );

    // A person (or a link scanner) opens it: a confirmation, nothing changed.
    let page = site.get(&path_of(&url), None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(body.contains("data-outcome=\"confirm\""), "{body}");
    assert!(body.contains("a***@example.com"));
    assert!(!body.contains("b@example.com") && !body.contains("b***@"));
    assert!(
        site.unsubscribed().await.is_empty(),
        "a GET changes nothing"
    );

    // The mail client's one-click POST (RFC 8058): 200 at once, and again.
    for outcome in ["done", "already"] {
        let r = site
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.text().await.unwrap();
        assert!(
            body.contains(&format!("data-outcome=\"{outcome}\"")),
            "{body}"
        );
    }
    assert_eq!(site.unsubscribed().await, vec!["a@example.com"]);

    // The next plan leaves the address out.
    let blacklist = site.store.blacklisted_emails("default").await.unwrap();
    let plan = common::plan_of_brief(
        site.dir.path(),
        Slot {
            date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            scheduled_for: DateTime::parse_from_rfc3339("2026-11-24T06:00:00+08:00").unwrap(),
            manual: false,
        },
        &blacklist,
    );
    assert!(plan.recipients.iter().all(|r| r.address != "a@example.com"));
    assert_eq!(plan.excluded_recipients, vec!["r0", "r2"], "r2 bounced");
    // A multipart one-click body works too (RFC 8058 allows it).
    let (url_b, _) = link_for(&site.smtp, "b@example.com");
    let r = site
        .http
        .post(&url_b)
        .header("content-type", "multipart/form-data; boundary=b0")
        .body("--b0\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b0--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        site.unsubscribed().await,
        vec!["a@example.com", "b@example.com"]
    );
}

#[tokio::test]
async fn forged_truncated_and_retargeted_tokens_change_nothing() {
    let site = site(false).await;
    let (url, _) = link_for(&site.smtp, "a@example.com");
    let token = url.split("token=").nth(1).unwrap().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts[0], "v2");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // This MAC on another delivery row (b's), and a v1 token built from a's MAC.
    let b_row = site.row_of("b@example.com").await;
    let retargeted = format!("v2.{}.{b_row}.{}", parts[1], parts[3]);
    let as_v1 = format!(
        "v1.{}.{}.{}",
        b64.encode("default"),
        b64.encode("b@example.com"),
        parts[3]
    );
    // Another key; another namespace's derived key used on this namespace's row.
    let forged = finrep::unsubscribe::Signer::Master(b"some-other-key-0123456789".to_vec())
        .sign("default", "brief", b_row, "b@example.com")
        .unwrap();
    let other_namespace = finrep::unsubscribe::Signer::Namespace {
        key_id: finrep::unsubscribe::key_id(KEY),
        namespace: None,
        key: finrep::unsubscribe::namespace_key(KEY, "other"),
    }
    .sign("default", "brief", b_row, "b@example.com")
    .unwrap();
    let v1_forged =
        finrep::unsubscribe::sign_v1(b"some-other-key-0123456789", "default", "b@example.com")
            .unwrap();
    let truncated = token[..token.len() - 5].to_string();
    for bad in [
        retargeted,
        as_v1,
        forged,
        other_namespace,
        v1_forged,
        truncated,
        String::new(),
        "x".repeat(5000),
    ] {
        let path = format!("/unsubscribe?token={bad}");
        let get = site.get(&path, None).await;
        assert_eq!(get.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body = get.text().await.unwrap();
        assert!(body.contains("data-outcome=\"invalid\""));
        assert!(
            !body.contains("example.com"),
            "no address on an invalid link's page"
        );
        let post = site
            .http
            .post(site.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[("List-Unsubscribe", "One-Click")]))
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::BAD_REQUEST);
    }
    // A POST without the one-click field (a scanner, a stray form) does nothing either.
    let r = site.http.post(&url).body("").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(site.unsubscribed().await.is_empty());
}

/// Consent in every order: an unsubscribe outranks a bounce, survives the bounce's unblock,
/// covers the address's `+tag` variants, and is lifted only by the recipient's own link or an
/// operator's recorded action; links signed with a rotated-out key (v1 too) still work.
#[tokio::test]
async fn an_unsubscribe_outranks_a_bounce_and_only_its_owner_or_a_recorded_operator_lifts_it() {
    let site = site(false).await;
    assert_eq!(
        site.blacklist().await,
        vec![("gone@example.com".to_string(), "bounce".to_string())]
    );
    // The bounced address's own link: the unsubscribe is recorded as one, not "already".
    let signer = finrep::unsubscribe::Signer::for_namespace(KEY, "default");
    let gone_row = site.row_of("gone@example.com").await;
    let gone = signer
        .sign("default", "brief", gone_row, "gone@example.com")
        .unwrap();
    let one_click = [("List-Unsubscribe", "One-Click")];
    assert_eq!(site.post_unsubscribe(&gone, &one_click).await, "done");
    assert_eq!(site.unsubscribed().await, vec!["gone@example.com"]);
    // Lifting "the bounce" (the annotation, the console's unblock) leaves the unsubscribe.
    assert!(
        !site
            .store
            .unblock("default", "gone@example.com")
            .await
            .unwrap()
    );
    assert_eq!(
        site.store
            .blacklist_reason("default", "gone@example.com")
            .await
            .unwrap(),
        Some(finrep::run::BlacklistReason::Unsubscribe)
    );
    // A `+tag` variant of an unsubscribed address is unsubscribed too, in any case.
    assert_eq!(
        site.store
            .blacklist_reason("default", "Gone+Again@Example.com")
            .await
            .unwrap(),
        Some(finrep::run::BlacklistReason::Unsubscribe)
    );
    // A bounce after the unsubscribe does not replace it.
    site.store
        .blacklist_bounce("gone@example.com", Some(550), Some("no such user"), 1)
        .await
        .unwrap();
    assert_eq!(site.unsubscribed().await, vec!["gone@example.com"]);

    // The recipient takes it back with the same link.
    assert_eq!(
        site.post_unsubscribe(&gone, &[("action", "resubscribe")])
            .await,
        "resubscribed"
    );
    assert!(site.unsubscribed().await.is_empty());
    let lifted = site.store.resubscriptions_in("default").await.unwrap();
    assert_eq!(
        lifted["gone@example.com"].by,
        finrep::store::Resubscriber::Recipient
    );

    // A link signed with the previous key (v2, and a v1 link of before) still works.
    let b_row = site.row_of("b@example.com").await;
    let old = finrep::unsubscribe::Signer::Master(OLD_KEY.to_vec())
        .sign("default", "brief", b_row, "b@example.com")
        .unwrap();
    let page = site.get(&format!("/unsubscribe?token={old}"), None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(body.contains("data-outcome=\"confirm\""), "{body}");
    // The page names the report by its title and its sender, never the namespace or the
    // whole address, and says the unsubscribe covers every report of that sender.
    assert!(
        body.contains("<strong class=\"report-name\" translate=\"no\">日报</strong>")
            && body.contains(
                "<strong class=\"sender\" translate=\"no\">brief@finrep.example</strong>"
            )
            && body.contains("它发送的其他所有日报")
            && !body.contains("b@example.com")
            && !body.contains("命名空间")
            && !body.contains("default"),
        "{body}"
    );
    let v1 = finrep::unsubscribe::sign_v1(OLD_KEY, "default", "b@example.com").unwrap();
    assert_eq!(site.post_unsubscribe(&v1, &one_click).await, "done");

    // An operator lifts it only with a name and a reason, which the Recipient's status shows.
    assert!(
        site.store
            .resubscribe(
                "default",
                "B+news@example.com",
                finrep::store::Resubscriber::Operator,
                Some("wang.fang"),
                Some("asked by phone on 2026-12-05"),
            )
            .await
            .unwrap()
    );
    let records = site.store.recipient_deliveries_in("default").await.unwrap();
    let record = finrep::controller::health::DeliveryRecord::of(&records, "b@example.com");
    let status = finrep::controller::health::recipient_status(
        None,
        Some(1),
        true,
        &record,
        &[],
        chrono::Utc::now(),
    );
    assert_eq!(status.conditions[1].status, "True");
    assert!(
        status.conditions[1].message.contains("operator wang.fang")
            && status.conditions[1].message.contains("asked by phone"),
        "{:?}",
        status.conditions[1]
    );
}

const CONSOLE_PAGES: &[&str] = &[
    "/console",
    "/console/reports",
    "/console/reports/1",
    "/console/reports/1/deliveries",
    "/console/reports/1/view",
    "/console/reports/1/report.html",
    "/console/reports/1/report.eml",
    "/console/recipients",
    "/console/sources",
];

#[tokio::test]
async fn the_console_needs_a_session_and_a_csrf_token() {
    let site = site(true).await;
    for page in CONSOLE_PAGES {
        let r = site.get(page, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(r.headers()[LOCATION], "/login");
        let forged = site.get(page, Some("finrep_session=forged")).await;
        assert_eq!(forged.status(), StatusCode::SEE_OTHER, "{page}");
    }
    let form = [
        ("csrf", "x"),
        ("namespace", "default"),
        ("email", "gone@example.com"),
    ];
    let r = site
        .post("/console/recipients/resubscribe", None, &form)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let session = site.login().await;
    for page in CONSOLE_PAGES {
        let r = site.get(page, Some(&session)).await;
        assert_eq!(r.status(), StatusCode::OK, "{page}");
    }
    // Forms need this session's token: missing or another's is refused, nothing changes.
    for csrf in ["", "not-the-token"] {
        let form = [
            ("csrf", csrf),
            ("namespace", "default"),
            ("email", "gone@example.com"),
        ];
        let r = site
            .post("/console/recipients/resubscribe", Some(&session), &form)
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = site
            .post("/logout", Some(&session), &[("csrf", csrf)])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        site.blacklist().await,
        vec![("gone@example.com".to_string(), "bounce".to_string())]
    );
    let page = site.html("/console/recipients", &session).await;
    let csrf = hidden(&page, "csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("namespace", "default"),
        ("email", "gone@example.com"),
    ];
    let r = site
        .post("/console/recipients/resubscribe", Some(&session), &form)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        site.blacklist().await.is_empty(),
        "lifted with the right token"
    );

    // Logout ends the session in the database too.
    let r = site
        .post("/logout", Some(&session), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        site.get("/console", Some(&session)).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn logins_are_checked_and_limited() {
    let site = site(true).await;
    // Without the login form's cookie and token: refused before any password is looked at.
    let r = site
        .post("/login", None, &[("user", "admin"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (csrf, cookie) = site.login_form().await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = site
            .post(
                "/login",
                Some(&cookie),
                &[("user", "admin"), ("password", "wrong"), ("csrf", &csrf)],
            )
            .await;
        statuses.push(r.status());
    }
    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    // Even the right password waits now.
    let r = site
        .post(
            "/login",
            Some(&cookie),
            &[("user", "admin"), ("password", PASSWORD), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // One client over its limit does not lock the account: the operator, from another
    // address, logs in (and right passwords never count against anybody).
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..3 {
        let form = elsewhere.get(site.url("/login")).send().await.unwrap();
        let cookie = set_cookie(&form, "finrep_login_csrf").unwrap();
        let csrf = hidden(&form.text().await.unwrap(), "csrf");
        let r = elsewhere
            .post(site.url("/login"))
            .header(COOKIE, cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("user", "admin"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
}

/// A session ends when the credential changes, when it sits unused, and on revoke-sessions.
#[tokio::test]
async fn sessions_end_with_their_credential_idleness_or_a_revoke() {
    let site = site(true).await;
    let session = site.login().await;
    assert_eq!(
        site.get("/console", Some(&session)).await.status(),
        StatusCode::OK
    );
    // The same database served with a new password: the old session is over.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let changed = WebSettings {
        account: Some(Account {
            user: "admin".into(),
            password_hash: finrep::web::hash_password("a new console password").unwrap(),
        }),
        ..Default::default()
    };
    tokio::spawn(finrep::web::serve(
        listener,
        AppState::new(site.store.clone(), changed).unwrap(),
        tokio_util::sync::CancellationToken::new(),
    ));
    let r = site
        .http
        .get(format!("{base}/console"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the old credential's session"
    );
    // Unused past the idle limit: over, though not expired.
    let idle = site.login().await;
    sqlx::query("UPDATE web_sessions SET last_seen_at = now() - interval '2 hours'")
        .execute(site.store.pool())
        .await
        .unwrap();
    assert_eq!(
        site.get("/console", Some(&idle)).await.status(),
        StatusCode::SEE_OTHER
    );
    // In use, it lives on: a page seen 20 minutes after the last one moves its last sight
    // (written once a minute at most, not on every page).
    let used = site.login().await;
    // The server's clock, not the database's (the date-sensitive run moves only the former).
    sqlx::query("UPDATE web_sessions SET last_seen_at = $1")
        .bind(chrono::Utc::now() - chrono::Duration::minutes(20))
        .execute(site.store.pool())
        .await
        .unwrap();
    assert_eq!(
        site.get("/console", Some(&used)).await.status(),
        StatusCode::OK
    );
    let newest: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(last_seen_at) FROM web_sessions")
            .fetch_one(site.store.pool())
            .await
            .unwrap();
    assert!(
        newest > chrono::Utc::now() - chrono::Duration::minutes(1),
        "{newest}"
    );
    // revoke-sessions ends every one.
    let fresh = site.login().await;
    assert!(site.store.revoke_sessions().await.unwrap() >= 1);
    assert_eq!(
        site.get("/console", Some(&fresh)).await.status(),
        StatusCode::SEE_OTHER
    );
}

/// Half-sent headers and idle connections are closed, and connections past the cap are closed
/// on arrival.
#[tokio::test]
async fn half_open_connections_are_closed_and_capped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let site = site_with(false, |s| {
        s.header_read_timeout = Duration::from_millis(500);
        s.max_connections = 8;
    })
    .await;
    let addr = site
        .base
        .trim_start_matches("http://localhost:")
        .to_string();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{addr}").parse().unwrap();
    // Eight half-sent requests fill the cap; a ninth connection is closed at once.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ninth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), ninth.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection past the cap is closed");
    // The half-sent ones are closed after the header read timeout (a 408 or nothing).
    for mut s in held {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed by the server")
            .ok();
        let text = String::from_utf8_lossy(&rest);
        assert!(rest.is_empty() || text.contains("408"), "{text}");
    }
    // An idle keep-alive connection after a full request is closed too.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .ok();
    assert!(String::from_utf8_lossy(&rest).contains("200 OK"));
    // And the server still answers.
    assert_eq!(site.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn pages_are_bounded_and_hostile_text_is_inert() {
    let site = site(true).await;
    let session = site.login().await;
    for (path, status) in [
        ("/console/reports?page=0&size=100000", StatusCode::OK),
        ("/console/reports?page=4294967295", StatusCode::OK),
        ("/console/reports?page=-1", StatusCode::BAD_REQUEST),
        ("/console/reports/1/deliveries?status=sent", StatusCode::OK),
        (
            "/console/reports/1/deliveries?status=bogus",
            StatusCode::BAD_REQUEST,
        ),
        ("/console/reports/999999", StatusCode::NOT_FOUND),
        ("/console/reports/abc", StatusCode::BAD_REQUEST),
        ("/console/recipients?size=1&page=2", StatusCode::OK),
    ] {
        let r = site.get(path, Some(&session)).await;
        assert_eq!(r.status(), status, "{path}");
    }
    let sent = site
        .html("/console/reports/1/deliveries?status=sent", &session)
        .await;
    assert!(sent.contains("a@example.com") && !sent.contains("gone@example.com"));
    let bounced = site
        .get(
            "/console/reports/1/deliveries?status=bounced",
            Some(&session),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        bounced.contains("gone@example.com") && bounced.contains("550"),
        "{bounced}"
    );
    let one = site.html("/console/recipients?size=1", &session).await;
    assert!(one.contains("rel=\"next\""));

    // Every page: feed text shows as text, never as markup.
    for page in [
        "/console",
        "/console/reports",
        "/console/reports/1",
        "/console/sources",
    ] {
        let r = site.get(page, Some(&session)).await;
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let body = r.text().await.unwrap();
        for raw in ["<script", "onerror=alert", "href=\"javascript:"] {
            assert!(!body.contains(raw), "{page} holds {raw}");
        }
    }
    let report = site.html("/console/reports/1", &session).await;
    // The hostile item made it in, its markup cleaned away by the pipeline and whatever is
    // left escaped by the page.
    assert!(
        report.contains("央行降准") && !report.contains("alert("),
        "{report}"
    );
    // The report as sent is framed under a sandbox that runs nothing.
    let view = site.get("/console/reports/1/view", Some(&session)).await;
    let csp = view.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("sandbox;") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = view.text().await.unwrap();
    assert!(!html.contains("<script") && !html.contains("href=\"javascript:"));
    let eml = site
        .get("/console/reports/1/report.eml", Some(&session))
        .await;
    assert_eq!(eml.headers()["content-type"], "message/rfc822");
    let eml = eml.text().await.unwrap();
    assert!(eml.contains("multipart/alternative") && eml.contains("From: brief@finrep.example"));
}

#[tokio::test]
async fn probes_and_metrics() {
    let site = site(false).await;
    assert_eq!(site.get("/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(site.get("/readyz", None).await.status(), StatusCode::OK);
    // The console is off without a password hash: the login page says so.
    let login = site.get("/login", None).await.text().await.unwrap();
    assert!(login.contains("hash-password"), "{login}");
    let _ = site.get("/unsubscribe?token=bad", None).await;
    let text = site.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains("finrep_web_requests_total{route=\"/unsubscribe\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("finrep_web_unsubscribes_total{outcome=\"invalid\"} 1"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn each_reports_last_delivery_is_a_gauge_of_its_own() {
    let site = site(false).await;
    let rows = site.store.report_freshness().await.unwrap();
    assert_eq!(rows.len(), 1);
    let brief = &rows[0];
    assert_eq!(
        (brief.namespace.as_str(), brief.report.as_str()),
        ("default", "brief")
    );
    let delivered = brief.last_delivered_at.expect("the run delivered");
    let slot = brief.last_slot.expect("the run had a slot");
    assert!(delivered > slot, "{delivered} after {slot}");
    let metrics = finrep::metrics::Metrics::new();
    metrics.report_freshness(&rows);
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            "finrep_report_last_delivered_timestamp_seconds{{namespace=\"default\",report=\"brief\"}} {}",
            delivered.timestamp()
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "finrep_report_last_slot_timestamp_seconds{{namespace=\"default\",report=\"brief\"}} {}",
        slot.timestamp()
    )));
}

#[tokio::test]
async fn previews_and_test_copies_are_shown_beside_the_archive_marked_as_such() {
    use finrep::run::{Channel, CopyOf, TestSendState};
    use finrep::store::{PreviewResult, PreviewStart, TestSendClaim};
    let site = site(true).await;
    let session = site.login().await;
    let at = chrono::Utc::now();
    let date = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    let id = site
        .store
        .begin_preview(&PreviewStart {
            namespace: "default",
            report: "brief",
            request: "p1",
            date,
            recipient: None,
            at,
        })
        .await
        .unwrap();
    let mut outcome = finrep::run::RunOutcome::new("default", "brief", date, true);
    outcome.sources.push(finrep::run::SourceOutcome {
        name: "gone".into(),
        status: finrep::run::FetchStatus::Failed,
        http_status: Some(404),
        items: 0,
        latency_ms: 3,
        error_kind: None,
        error: Some("<script>alert(1)</script> HTTP 404".into()),
    });
    let outcome = serde_json::to_value(&outcome).unwrap();
    site.store
        .finish_preview(
            id,
            &PreviewResult {
                subject: "<b>晨间要闻</b> · 2026-12-07",
                html: "<html><body><h1>晨间要闻</h1><script>alert(1)</script></body></html>",
                text: "晨间要闻 text version",
                chat: None,
                articles: 1,
                view: serde_json::json!({}),
                outcome,
                at,
            },
        )
        .await
        .unwrap();
    let claim = TestSendClaim {
        namespace: "default",
        report: "brief",
        request: "alice#1",
        recipient: "alice",
        address: "a@example.com",
        channel: Channel::Email,
        copy_of: Some((CopyOf::Preview, date)),
        at,
    };
    let test = site.store.claim_test_send(&claim).await.unwrap().unwrap();
    site.store
        .finish_test_send(test, TestSendState::Sent, Some("250 ok"), None, at)
        .await
        .unwrap();

    let archive = site.html("/console/reports", &session).await;
    assert!(archive.contains("预览与测试副本"), "{archive}");
    assert!(archive.contains(&format!("/console/previews/{id}")));
    assert!(archive.contains("测试副本") && archive.contains("alice"));
    let page = site
        .get(&format!("/console/previews/{id}"), Some(&session))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("未发送给任何人"), "{page}");
    assert!(
        page.contains("gone") && !page.contains("<script>alert"),
        "inert: {page}"
    );
    assert!(
        page.contains("&lt;b&gt;晨间要闻"),
        "the subject is text: {page}"
    );
    let view = site
        .get(&format!("/console/previews/{id}/view"), Some(&session))
        .await;
    let csp = view.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'none'") || csp.contains("default-src 'none'"),
        "{csp}"
    );
    for path in [
        format!("/console/previews/{id}"),
        format!("/console/previews/{id}/view"),
    ] {
        assert_eq!(
            site.get(&path, None).await.status(),
            StatusCode::SEE_OTHER,
            "{path}: a session first"
        );
    }
    assert_eq!(
        site.get("/console/previews/999999", Some(&session))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// What a page says in its own words: its text and the text of its attributes a person
/// reads (placeholder, aria-label, title), outside elements marked `translate="no"` — the
/// data (names, addresses, subjects, feed titles, server replies) — and outside `<style>`.
fn interface_text(html: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let mut out = String::new();
    for node in doc.root_element().descendants() {
        let data = node.ancestors().chain(std::iter::once(node)).any(|a| {
            scraper::ElementRef::wrap(a).is_some_and(|e| {
                // A page's <title> names what it shows (a report, a date): data.
                e.value().attr("translate") == Some("no")
                    || matches!(e.value().name(), "style" | "title")
            })
        });
        if data {
            continue;
        }
        if let Some(text) = node.value().as_text() {
            out.push_str(text);
            out.push(' ');
        }
        if let Some(e) = scraper::ElementRef::wrap(node) {
            for attr in ["placeholder", "aria-label", "title"] {
                if let Some(v) = e.value().attr(attr) {
                    out.push_str(v);
                    out.push(' ');
                }
            }
        }
    }
    out
}

/// Words in Latin letters: in a Chinese page, the interface's English left untranslated.
fn latin_words(text: &str) -> Vec<String> {
    // The product's name, the other language's name on the switch, and units and file types.
    const SAME_IN_BOTH: &[&str] = &["finrep", "English", "ms", "html", "eml", "B"];
    let mut words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty() && !SAME_IN_BOTH.contains(w))
        .map(str::to_string)
        .collect();
    words.sort();
    words.dedup();
    words
}

#[tokio::test]
async fn every_page_speaks_one_language_whole() {
    let site = site(true).await;
    let session = site.login().await;
    let pages = [
        "/console",
        "/console/reports",
        "/console/reports/1",
        "/console/reports/1/deliveries",
        "/console/reports/1/deliveries?status=bounced",
        "/console/recipients",
        "/console/sources",
        "/console/deliveries",
        "/console/deliveries?from=2000-01-01&status=failed",
        "/console/reports/999999",
        "/console/reports/abc",
        "/console/reports?page=-1",
        "/console/nowhere",
    ];
    for lang in ["zh", "en"] {
        for path in pages {
            let sep = if path.contains('?') { '&' } else { '?' };
            let r = site
                .get(&format!("{path}{sep}lang={lang}"), Some(&session))
                .await;
            let status = r.status();
            let html = r.text().await.unwrap();
            assert!(
                html.starts_with("<!doctype html>"),
                "{path}: a page ({status})"
            );
            let text = interface_text(&html);
            match lang {
                "zh" => {
                    let english = latin_words(&text);
                    assert!(
                        english.is_empty(),
                        "{path} ({status}) in Chinese says {english:?}"
                    );
                }
                _ => {
                    let chinese: String = text
                        .chars()
                        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
                        .collect();
                    assert!(
                        chinese.chars().all(|c| "中文".contains(c)),
                        "{path} ({status}) in English says {chinese:?}"
                    );
                }
            }
        }
    }
    // Pages without a session: the login page, a form that did not come from the console.
    for lang in ["zh", "en"] {
        let login = site
            .get(&format!("/login?lang={lang}"), None)
            .await
            .text()
            .await
            .unwrap();
        let forged = site
            .post(
                &format!("/logout?lang={lang}"),
                Some(&session),
                &[("csrf", "forged")],
            )
            .await;
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let forged = forged.text().await.unwrap();
        for html in [login, forged] {
            let text = interface_text(&html);
            if lang == "zh" {
                assert!(
                    latin_words(&text).is_empty(),
                    "{:?}: {html}",
                    latin_words(&text)
                );
            }
        }
    }
}

#[tokio::test]
async fn the_dashboard_opens_with_each_reports_verdict_and_links_behind_its_numbers() {
    let site = site(true).await;
    let session = site.login().await;
    // A second report whose slot the scheduler recorded, and that never ran.
    site.store
        .record_next_slot(
            "default",
            "close",
            Some(chrono::Utc::now() - chrono::Duration::hours(2)),
        )
        .await
        .unwrap();
    let html = site.html("/console", &session).await;
    let doc = scraper::Html::parse_document(&html);
    let sel = |s: &str| scraper::Selector::parse(s).unwrap();
    let cards: Vec<String> = doc
        .select(&sel("#glance article"))
        .map(|a| a.value().attr("id").unwrap_or_default().to_string())
        .collect();
    // What needs attention first: the slot that passed with no run, the run with a bounce.
    assert_eq!(
        cards,
        ["card-default-brief", "card-default-close"],
        "{html}"
    );
    let brief = doc.select(&sel("#card-default-brief")).next().unwrap();
    let text: String = brief.text().collect();
    assert!(
        text.contains("需要处理") && text.contains("1 份失败"),
        "{text}"
    );
    let links: Vec<&str> = brief
        .select(&sel("a"))
        .filter_map(|a| a.value().attr("href"))
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.ends_with("/deliveries?status=failed")),
        "{links:?}"
    );
    assert!(
        links.iter().any(|l| l.ends_with("/deliveries?status=sent")),
        "{links:?}"
    );
    let month = brief.select(&sel("svg.times.month rect")).count();
    assert_eq!(month, 30, "a month of the brief, a cell a day");
    let close: String = doc
        .select(&sel("#card-default-close"))
        .next()
        .unwrap()
        .text()
        .collect();
    assert!(
        close.contains("未运行") && close.contains("时段已到"),
        "{close}"
    );
    // The alerts read the same verdict: the gauge the admin port exports from PostgreSQL.
    let metrics = finrep::metrics::Metrics::new();
    let records = site.store.report_records().await.unwrap();
    metrics.report_health(&finrep::glance::cards(&records, chrono::Utc::now()));
    let text = metrics.encode();
    for (report, health) in [("brief", "failed"), ("close", "missed")] {
        let line = format!(
            "finrep_report_health{{namespace=\"default\",report=\"{report}\",health=\"{health}\"}} 1"
        );
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(
        text.contains(
            "finrep_report_health{namespace=\"default\",report=\"close\",health=\"ok\"} 0"
        ),
        "{text}"
    );
    // One counting rule, stated on the page: the runs of the period's report dates, their
    // steps, calls and deliveries alike — and the run that bounced a copy is a failed send.
    assert!(doc.select(&sel("#counting-rule")).next().is_some());
    let date: chrono::NaiveDate = sqlx::query_scalar("SELECT report_date FROM reports")
        .fetch_one(site.store.pool())
        .await
        .unwrap();
    let figures = site.store.period_figures(date).await.unwrap();
    let runs: i64 = figures.runs.iter().map(|r| r.runs).sum();
    let send = figures.steps.iter().find(|s| s.step == "send").unwrap();
    assert_eq!(
        (runs, send.total, send.failed),
        (1, 1, 1),
        "{:?}",
        figures.steps
    );
    let later = site
        .store
        .period_figures(date.succ_opt().unwrap())
        .await
        .unwrap();
    assert!(later.runs.is_empty() && later.steps.is_empty() && later.providers.is_empty());

    // Deliveries per day as a picture drawn on the server, with its numbers for screen readers.
    for (query, bars) in [("", 30), ("?days=90", 90), ("?days=7", 30)] {
        let html = site.html(&format!("/console{query}"), &session).await;
        let doc = scraper::Html::parse_document(&html);
        let svg = doc
            .select(&sel("#deliveries-per-day svg[role=img]"))
            .next()
            .unwrap();
        assert!(svg.select(&sel("title")).next().is_some());
        assert!(svg.select(&sel("desc")).next().is_some());
        let rects = svg.select(&sel("rect")).count();
        let in_range = (chrono::Utc::now().date_naive() - date).num_days() < bars;
        assert_eq!(rects > 0, in_range, "{query}: {rects} segments");
        let rows: Vec<String> = doc
            .select(&sel("#deliveries-per-day-table tbody tr"))
            .map(|tr| tr.text().collect::<String>())
            .collect();
        if in_range {
            assert!(
                rows.iter().any(|r| r.contains(&date.to_string())),
                "{rows:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_delivery_log_puts_failures_first_counts_filters_and_searches() {
    let site = site(true).await;
    let session = site.login().await;
    for name in ["reader100", "reader10", "reader9"] {
        sqlx::query(
            "INSERT INTO delivery_log (report_id, recipient, email, status, channel)
             VALUES (1, $1, $2, 'sent', 'email')",
        )
        .bind(name)
        .bind(format!("{name}@example.com"))
        .execute(site.store.pool())
        .await
        .unwrap();
    }
    let page = |query: &str| {
        let path = format!("/console/reports/1/deliveries{query}");
        let session = session.clone();
        let site = &site;
        async move {
            let html = site.html(&path, &session).await;
            let doc = scraper::Html::parse_document(&html);
            let sel = scraper::Selector::parse("#deliveries tbody tr td:nth-child(2)").unwrap();
            let emails: Vec<String> = doc.select(&sel).map(|td| td.text().collect()).collect();
            let total = scraper::Selector::parse("#total").unwrap();
            let total: String = doc.select(&total).next().unwrap().text().collect();
            (emails, total)
        }
    };
    let (emails, total) = page("").await;
    assert_eq!(
        emails[0], "gone@example.com",
        "the bounce first: {emails:?}"
    );
    let readers: Vec<&String> = emails.iter().filter(|e| e.starts_with("reader")).collect();
    assert_eq!(
        readers,
        [
            "reader9@example.com",
            "reader10@example.com",
            "reader100@example.com"
        ],
        "numbers in order"
    );
    assert_eq!(total, format!("共 {} 条", emails.len()));
    let (emails, total) = page("?q=READER1").await;
    assert_eq!(emails, ["reader10@example.com", "reader100@example.com"]);
    assert_eq!(total, "共 2 条");
    // A search's own wildcards are text, not patterns.
    let (emails, _) = page("?q=%25").await;
    assert!(emails.is_empty(), "{emails:?}");
    let (emails, total) = page("?channel=wecom").await;
    assert!(emails.is_empty() && total == "共 0 条");
    let (emails, _) = page("?status=bounced&q=gone").await;
    assert_eq!(emails, ["gone@example.com"]);
    let r = site
        .get("/console/reports/1/deliveries?channel=fax", Some(&session))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The pager keeps the filter.
    let html = site
        .get(
            "/console/reports/1/deliveries?size=1&q=reader",
            Some(&session),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("q=reader"), "{html}");
}

/// A run of `namespace/report` on `date` with one copy per `(address, status)`; its row id.
async fn add_run(
    site: &Site,
    namespace: &str,
    report: &str,
    date: chrono::NaiveDate,
    copies: &[(&str, &str)],
) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO reports (namespace, report, report_date, time_zone, manual, phase, title,
                              subject, html, text_body, article_count, recipient_count, plan)
         VALUES ($1, $2, $3, 'Asia/Shanghai', false, 'Succeeded', 'T', 'S', '<p>x</p>', 'x', 1, $4,
                 '{}'::jsonb)
         RETURNING id",
    )
    .bind(namespace)
    .bind(report)
    .bind(date)
    .bind(copies.len() as i32)
    .fetch_one(site.store.pool())
    .await
    .unwrap();
    for (address, status) in copies {
        sqlx::query(
            "INSERT INTO delivery_log (report_id, recipient, email, status, channel)
             VALUES ($1, 'r', $2, $3, 'email')",
        )
        .bind(id)
        .bind(*address)
        .bind(*status)
        .execute(site.store.pool())
        .await
        .unwrap();
    }
    id
}

/// A settled run's counts are kept, a change to its deliveries is seen at once, and a run
/// still changing is counted afresh each time.
#[tokio::test]
async fn kept_delivery_counts_follow_every_change() {
    let site = site(false).await;
    let store = &site.store;
    let sent = |counts: &[finrep::store::RunCounts]| -> i64 {
        counts[0]
            .rows
            .iter()
            .filter(|r| r.status == finrep::run::DeliveryStatus::Sent)
            .map(|r| r.n)
            .sum()
    };
    let exec = |sql: &'static str| async move {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    };
    exec(
        "INSERT INTO delivery_log (report_id, recipient, email, status, channel)
          SELECT 1, 'reader' || i, 'reader' || i || '@example.com', 'sent', 'email'
          FROM generate_series(1, 5) i",
    )
    .await;
    // Still changing (written just now): counted afresh, so a silent edit shows.
    let before = sent(&store.run_counts_of(&[1]).await.unwrap());
    exec("UPDATE delivery_log SET status = 'failed' WHERE report_id = 1 AND status = 'sent' AND id = (SELECT min(id) FROM delivery_log WHERE report_id = 1 AND status = 'sent')").await;
    assert_eq!(sent(&store.run_counts_of(&[1]).await.unwrap()), before - 1);
    // Settled an hour ago: kept. An edit that does not touch updated_at (no finrep write does
    // that) is not seen — which shows the counts came from memory.
    exec("UPDATE delivery_log SET updated_at = now() - interval '1 hour' WHERE report_id = 1")
        .await;
    let kept = sent(&store.run_counts_of(&[1]).await.unwrap());
    exec("UPDATE delivery_log SET status = 'deferred' WHERE report_id = 1 AND id = (SELECT min(id) FROM delivery_log WHERE report_id = 1 AND status = 'sent')").await;
    assert_eq!(sent(&store.run_counts_of(&[1]).await.unwrap()), kept);
    // A real change (updated_at moves, even backwards within the settled past) is seen.
    exec("UPDATE delivery_log SET status = 'failed', updated_at = now() - interval '50 minutes' WHERE report_id = 1 AND id = (SELECT min(id) FROM delivery_log WHERE report_id = 1 AND status = 'sent')").await;
    let actual: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_log WHERE report_id = 1 AND status = 'sent'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(sent(&store.run_counts_of(&[1]).await.unwrap()), actual);
    // The dashboard's per-day figures read the same counts.
    let date: chrono::NaiveDate =
        sqlx::query_scalar("SELECT report_date FROM reports WHERE id = 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let days = store.deliveries_per_day(date).await.unwrap();
    assert_eq!(days[0].delivered, actual);
}

/// "Did reader97 get the brief this fortnight?" — the delivery log across runs, by report,
/// period, status and address, newest first, failures first within a run, counted; a period
/// longer than a month is cut to its last month and the page says so.
#[tokio::test]
async fn the_delivery_log_across_runs_finds_an_address_by_report_and_period() {
    let site = site(true).await;
    let session = site.login().await;
    let d0: chrono::NaiveDate = sqlx::query_scalar("SELECT report_date FROM reports WHERE id = 1")
        .fetch_one(site.store.pool())
        .await
        .unwrap();
    let day = |n: i64| d0 - chrono::Duration::days(n);
    let copies = [
        ("reader97@example.com", "sent"),
        ("reader970@example.com", "failed"),
        ("reader10@example.com", "sent"),
    ];
    add_run(&site, "default", "brief", day(1), &copies).await;
    add_run(&site, "default", "brief", day(10), &copies).await;
    add_run(&site, "default", "brief", day(40), &copies).await;
    add_run(&site, "other", "wire", day(1), &copies[..1]).await;
    let found = |query: String| {
        let session = session.clone();
        let site = &site;
        async move {
            let html = site
                .html(&format!("/console/deliveries{query}"), &session)
                .await;
            let doc = scraper::Html::parse_document(&html);
            let cell = |n: usize| {
                scraper::Selector::parse(&format!("#deliveries tbody tr td:nth-child({n})"))
                    .unwrap()
            };
            let text = |n: usize| -> Vec<String> {
                doc.select(&cell(n))
                    .map(|td| td.text().collect::<String>().trim().to_string())
                    .collect()
            };
            let rows: Vec<String> = text(1)
                .iter()
                .zip(text(2))
                .zip(text(3))
                .map(|((date, report), email)| format!("{date} {report} {email}"))
                .collect();
            let total: String = doc
                .select(&scraper::Selector::parse("#total").unwrap())
                .next()
                .unwrap()
                .text()
                .collect();
            let adjusted = doc
                .select(&scraper::Selector::parse("#period-adjusted").unwrap())
                .next()
                .is_some();
            (rows, total, adjusted, html)
        }
    };
    let (rows, total, adjusted, html) =
        found(format!("?q=READER97&from={}&to={d0}", day(14))).await;
    assert_eq!(
        rows,
        [
            format!("{} default/brief reader970@example.com", day(1)),
            format!("{} default/brief reader97@example.com", day(1)),
            format!("{} other/wire reader97@example.com", day(1)),
            format!("{} default/brief reader970@example.com", day(10)),
            format!("{} default/brief reader97@example.com", day(10)),
        ],
        "{html}"
    );
    assert_eq!(total, "共 5 条");
    assert!(!adjusted);
    // Each date links to its run's own log.
    assert!(html.contains("/deliveries\">"), "{html}");
    let (rows, _, _, _) = found(format!("?report=other/wire&from={}&to={d0}", day(14))).await;
    assert_eq!(
        rows,
        [format!("{} other/wire reader97@example.com", day(1))]
    );
    let (rows, total, _, _) = found(format!("?status=failed&from={}&to={d0}", day(14))).await;
    assert!(
        rows.iter().all(|r| r.ends_with("reader970@example.com")),
        "{rows:?}"
    );
    assert_eq!(total, "共 2 条");
    // A year asked for: the last month searched, and said.
    let (rows, _, adjusted, html) = found(format!("?q=reader97@&from={}&to={d0}", day(365))).await;
    assert!(adjusted, "{html}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        !rows.iter().any(|r| r.starts_with(&day(40).to_string())),
        "{rows:?}"
    );
    // The pager keeps the filter and the period searched.
    let (_, _, _, html) = found(format!("?size=1&q=reader&from={}&to={d0}", day(14))).await;
    assert!(
        html.contains("q=reader") && html.contains(&format!("from={}", day(14))),
        "{html}"
    );
    for bad in [
        "?report=nonsense",
        "?from=yesterday",
        "?status=lost",
        "?channel=fax",
    ] {
        let r = site
            .get(&format!("/console/deliveries{bad}"), Some(&session))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // An address on the recipients page opens its deliveries.
    let html = site.html("/console/recipients", &session).await;
    assert!(
        html.contains("/console/deliveries?q=gone%40example.com"),
        "{html}"
    );
}

#[tokio::test]
async fn recipients_not_mailed_come_first_and_are_found_by_address() {
    let site = site(true).await;
    let session = site.login().await;
    let html = site.html("/console/recipients", &session).await;
    let doc = scraper::Html::parse_document(&html);
    let sel = scraper::Selector::parse("#recipients tbody tr td:nth-child(3)").unwrap();
    let emails: Vec<String> = doc.select(&sel).map(|td| td.text().collect()).collect();
    assert_eq!(
        emails.first().map(String::as_str),
        Some("gone@example.com"),
        "{emails:?}"
    );
    let total = scraper::Selector::parse("#total").unwrap();
    let total: String = doc.select(&total).next().unwrap().text().collect();
    assert_eq!(total, format!("共 {} 条", emails.len()));
    let html = site.html("/console/recipients?q=GONE", &session).await;
    let doc = scraper::Html::parse_document(&html);
    let found: Vec<String> = doc.select(&sel).map(|td| td.text().collect()).collect();
    assert_eq!(found, ["gone@example.com"]);
}

#[tokio::test]
async fn the_archive_jumps_to_a_date_and_counts_its_runs() {
    let site = site(true).await;
    let session = site.login().await;
    let date: chrono::NaiveDate = sqlx::query_scalar("SELECT report_date FROM reports")
        .fetch_one(site.store.pool())
        .await
        .unwrap();
    let rows = |html: &str| -> usize {
        let doc = scraper::Html::parse_document(html);
        let sel = scraper::Selector::parse("#archive tbody tr td[data-label]").unwrap();
        doc.select(&sel).count()
    };
    for (day, found) in [(date, true), (date.pred_opt().unwrap(), false)] {
        let html = site
            .html(&format!("/console/reports?date={day}"), &session)
            .await;
        assert_eq!(rows(&html) > 0, found, "{day}");
        assert!(html.contains("共 1 次运行"), "the whole archive's count");
    }
    let r = site.get("/console/reports?date=soon", Some(&session)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn each_source_has_a_month_of_health_as_a_strip() {
    let site = site(true).await;
    let session = site.login().await;
    let html = site.html("/console/sources", &session).await;
    let doc = scraper::Html::parse_document(&html);
    let sel = |s: &str| scraper::Selector::parse(s).unwrap();
    let rows = doc.select(&sel("#sources tbody tr")).count();
    let strips: Vec<_> = doc.select(&sel("#sources svg.strip[role=img]")).collect();
    assert!(
        rows > 0 && strips.len() == rows,
        "{rows} rows, {} strips",
        strips.len()
    );
    for s in &strips {
        assert_eq!(s.select(&sel("rect")).count(), 30);
        assert!(
            s.value()
                .attr("aria-label")
                .is_some_and(|l| l.contains("30 天"))
        );
        // Today was fetched: the last cell says how.
        let last = s.select(&sel("rect")).last().unwrap();
        assert_ne!(last.value().attr("class"), Some("day-none"), "{html}");
    }
}
