//! Local stand-ins of the three group-bot platforms, on one loopback port, each checking a
//! post as its platform documents it and keeping the group's own record of what it showed:
//!
//! - WeCom `POST /cgi-bin/webhook/send?key=K`: a known key (else 93000), a markdown message
//!   whose content is at most 4096 bytes (else 40058), 20 a minute per bot (else 45009).
//! - DingTalk `POST /robot/send?access_token=T[&timestamp&sign]`: a known token (else 300001),
//!   the signature HMAC-SHA256(secret, timestamp + "\n" + secret) with a timestamp (ms) within an
//!   hour (else 310000), the keyword in the message (else 310000), a body of at most 20,000
//!   bytes, 20 a minute per bot (else 410100, and blocked for 10 minutes).
//! - Feishu/Lark `POST /open-apis/bot/v2/hook/T`: a known token (else 19001), the signature
//!   HMAC-SHA256 keyed by timestamp + "\n" + secret over nothing, timestamp (s) within an hour
//!   (else 19021), the keyword (else 19024), a body of at most 20 KB (else 9499), 5 a second and
//!   100 a minute per bot (else 11232).
//!
//! On demand a bot answers its platform's throttling code the next N times, is removed (its
//! token no longer known), or hangs (never answers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Wecom,
    Dingtalk,
    Feishu,
    Lark,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Self::Wecom => "wecom",
            Self::Dingtalk => "dingtalk",
            Self::Feishu => "feishu",
            Self::Lark => "lark",
        }
    }
}

/// A bot as its platform knows it.
#[derive(Clone, Debug, Default)]
struct Bot {
    platform: Option<Platform>,
    secret: Option<String>,
    keyword: Option<String>,
    throttle_next: u32,
    removed: bool,
    hang: bool,
    blocked_until: Option<Instant>,
    recent: Vec<Instant>,
    /// What the group shows: every accepted message's body.
    shown: Vec<Value>,
    /// Every refusal, as (code, message).
    refusals: Vec<(i64, String)>,
}

#[derive(Clone, Default)]
pub struct ChatPlatforms {
    pub port: u16,
    bots: Arc<Mutex<HashMap<String, Bot>>>,
    /// How long every answer takes (a platform on a slow day).
    delay: Arc<Mutex<Duration>>,
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(msg);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

impl ChatPlatforms {
    /// Starts the stand-ins on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = Self {
            port,
            ..Self::default()
        };
        let app = Router::new()
            .route("/cgi-bin/webhook/send", post(wecom))
            .route("/robot/send", post(dingtalk))
            .route("/open-apis/bot/v2/hook/{token}", post(feishu))
            .with_state(me.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        me
    }

    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a bot; returns its webhook URL (what a user puts in the Secret).
    pub fn add_bot(
        &self,
        platform: Platform,
        token: &str,
        secret: Option<&str>,
        keyword: Option<&str>,
    ) -> String {
        self.bots.lock().unwrap().insert(
            token.to_string(),
            Bot {
                platform: Some(platform),
                secret: secret.map(String::from),
                keyword: keyword.map(String::from),
                ..Bot::default()
            },
        );
        let base = format!("http://127.0.0.1:{}", self.port);
        match platform {
            Platform::Wecom => format!("{base}/cgi-bin/webhook/send?key={token}"),
            Platform::Dingtalk => format!("{base}/robot/send?access_token={token}"),
            Platform::Feishu | Platform::Lark => format!("{base}/open-apis/bot/v2/hook/{token}"),
        }
    }

    fn with_bot<T>(&self, token: &str, f: impl FnOnce(&mut Bot) -> T) -> T {
        f(self
            .bots
            .lock()
            .unwrap()
            .entry(token.to_string())
            .or_default())
    }

    pub fn throttle_next(&self, token: &str, n: u32) {
        self.with_bot(token, |b| b.throttle_next = n);
    }

    pub fn remove_bot(&self, token: &str) {
        self.with_bot(token, |b| b.removed = true);
    }

    pub fn hang(&self, token: &str) {
        self.with_bot(token, |b| b.hang = true);
    }

    /// Every answer from now on takes `d` after the post is shown.
    pub fn slow_down(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }

    /// Messages shown in all groups together.
    pub fn shown_total(&self) -> usize {
        self.bots
            .lock()
            .unwrap()
            .values()
            .map(|b| b.shown.len())
            .sum()
    }

    pub fn hang_no_more(&self, token: &str) {
        self.with_bot(token, |b| b.hang = false);
    }

    /// The messages the group shows.
    pub fn shown(&self, token: &str) -> Vec<Value> {
        self.with_bot(token, |b| b.shown.clone())
    }

    pub fn refusals(&self, token: &str) -> Vec<(i64, String)> {
        self.with_bot(token, |b| b.refusals.clone())
    }

    /// The markdown of every message the group shows.
    pub fn texts(&self, token: &str) -> Vec<String> {
        self.shown(token)
            .iter()
            .map(|m| {
                [
                    &m["markdown"]["content"],
                    &m["markdown"]["text"],
                    &m["card"]["elements"][0]["content"],
                ]
                .iter()
                .find_map(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
            })
            .collect()
    }

    /// Runs the platform's checks on one post; the answer as the platform gives it.
    async fn handle(
        &self,
        platform: Platform,
        token: &str,
        body: &Bytes,
        check: impl FnOnce(&Bot, &Value) -> Result<(), (i64, String)>,
    ) -> Response {
        let hang = self.with_bot(token, |b| b.hang);
        if hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let answer = self.with_bot(token, |bot| {
            let known = bot.platform == Some(platform) && !bot.removed;
            if !known {
                return Err(gone(platform));
            }
            check(bot, &parsed)?;
            throttled(platform, bot)?;
            bot.shown.push(parsed.clone());
            Ok(())
        });
        // The group shows the message before the answer is on its way back, as a platform's.
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        match answer {
            Ok(()) => reply(platform, 0, "ok"),
            Err((code, msg)) => {
                self.with_bot(token, |b| b.refusals.push((code, msg.clone())));
                reply(platform, code, &msg)
            }
        }
    }
}

fn gone(platform: Platform) -> (i64, String) {
    match platform {
        Platform::Wecom => (93000, "invalid webhook url, hint: [stand-in]".into()),
        Platform::Dingtalk => (300001, "token is not exist".into()),
        Platform::Feishu | Platform::Lark => (
            19001,
            "param invalid: incoming webhook access token invalid".into(),
        ),
    }
}

/// The platform's rate limits, and the throttling asked for on demand.
fn throttled(platform: Platform, bot: &mut Bot) -> Result<(), (i64, String)> {
    let now = Instant::now();
    let code = match platform {
        Platform::Wecom => (45009, "api freq out of limit".to_string()),
        Platform::Dingtalk => (
            410100,
            "send too fast, exceed 20 times per minute".to_string(),
        ),
        Platform::Feishu | Platform::Lark => (11232, "frequency limited".to_string()),
    };
    if bot.throttle_next > 0 {
        bot.throttle_next -= 1;
        return Err(code);
    }
    if bot.blocked_until.is_some_and(|t| t > now) {
        return Err(code);
    }
    bot.recent
        .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
    let last_second = bot
        .recent
        .iter()
        .filter(|t| now.duration_since(**t) < Duration::from_secs(1))
        .count();
    let over = match platform {
        Platform::Wecom | Platform::Dingtalk => bot.recent.len() >= 20,
        Platform::Feishu | Platform::Lark => bot.recent.len() >= 100 || last_second >= 5,
    };
    if over {
        if platform == Platform::Dingtalk {
            bot.blocked_until = Some(now + Duration::from_secs(600));
        }
        return Err(code);
    }
    bot.recent.push(now);
    Ok(())
}

fn reply(platform: Platform, code: i64, msg: &str) -> Response {
    match platform {
        Platform::Wecom | Platform::Dingtalk => {
            json_response(StatusCode::OK, &json!({"errcode": code, "errmsg": msg}))
        }
        Platform::Feishu | Platform::Lark => {
            let status = if code == 0 {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = json!({"code": code, "msg": msg, "data": {}});
            json_response(status, &body)
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let headers = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (status, headers, body.to_string()).into_response()
}

fn within_an_hour(then_ms: i64) -> bool {
    let now = chrono::Utc::now().timestamp_millis();
    (now - then_ms).abs() < 3_600_000
}

async fn wecom(
    State(p): State<ChatPlatforms>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let token = q.get("key").cloned().unwrap_or_default();
    p.handle(Platform::Wecom, &token, &body, |_, m| {
        if m["msgtype"] != "markdown" {
            return Err((40008, "invalid message type".into()));
        }
        let content = m["markdown"]["content"].as_str().unwrap_or_default();
        if content.len() > 4096 {
            return Err((
                40058,
                format!(
                    "markdown.content exceed max length 4096, got {}",
                    content.len()
                ),
            ));
        }
        Ok(())
    })
    .await
}

async fn dingtalk(
    State(p): State<ChatPlatforms>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    let size = body.len();
    p.handle(Platform::Dingtalk, &token, &body, |bot, m| {
        if let Some(secret) = &bot.secret {
            let ts = q.get("timestamp").cloned().unwrap_or_default();
            let expected = hmac_b64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes());
            let fresh = ts.parse::<i64>().is_ok_and(within_an_hour);
            if !fresh || q.get("sign") != Some(&expected) {
                return Err((310000, "sign not match".into()));
            }
        }
        if size > 20_000 {
            return Err((460101, "message too large".into()));
        }
        if m["msgtype"] != "markdown" || m["markdown"]["title"].as_str().is_none() {
            return Err((40035, "缺少参数 markdown.title".into()));
        }
        let text = format!("{}{}", m["markdown"]["title"], m["markdown"]["text"]);
        if let Some(k) = &bot.keyword
            && !text.contains(k.as_str())
        {
            return Err((310000, "keywords not in content".into()));
        }
        Ok(())
    })
    .await
}

async fn feishu(
    State(p): State<ChatPlatforms>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let platform = p.with_bot(&token, |b| b.platform.unwrap_or(Platform::Feishu));
    let size = body.len();
    p.handle(platform, &token, &body, |bot, m| {
        if size > 20 * 1024 {
            return Err((9499, "Bad Request: request body too large".into()));
        }
        if let Some(secret) = &bot.secret {
            let ts = m["timestamp"].as_str().unwrap_or_default().to_string();
            let expected = hmac_b64(format!("{ts}\n{secret}").as_bytes(), b"");
            let fresh = ts.parse::<i64>().is_ok_and(|s| within_an_hour(s * 1000));
            if !fresh || m["sign"].as_str() != Some(expected.as_str()) {
                return Err((
                    19021,
                    "sign match fail or timestamp is not within one hour from current time".into(),
                ));
            }
        }
        let text = m["card"]["elements"][0]["content"]
            .as_str()
            .unwrap_or_default();
        if m["msg_type"] != "interactive" || text.is_empty() {
            return Err((9499, "Bad Request".into()));
        }
        if let Some(k) = &bot.keyword
            && !format!("{}{text}", m["card"]["header"]).contains(k.as_str())
        {
            return Err((19024, "Key Words Not Found".into()));
        }
        Ok(())
    })
    .await
}
