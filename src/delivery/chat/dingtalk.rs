//! DingTalk (钉钉) custom bots: `POST https://oapi.dingtalk.com/robot/send?access_token=…`,
//! signed (加签) by `timestamp` (ms) and `sign` = Base64(HMAC-SHA256(secret, timestamp + "\n" +
//! secret)) on the URL; a `markdown` message with a title; custom keywords must appear in the
//! message; 20 messages per minute per bot, after which the bot is throttled for 10 minutes.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Verdict, hmac_base64};

pub const HOSTS: &[&str] = &["oapi.dingtalk.com"];

/// The request body's bytes (the platform refuses bodies over 20,000 bytes).
pub const LIMIT: usize = 20_000;

pub const PER_MINUTE: u32 = 20;

/// The wait after being throttled: the bot is blocked for 10 minutes.
const BLOCKED_SECS: u64 = 600;

pub fn body(title: &str, text: &str) -> Value {
    json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
}

pub fn size(title: &str, text: &str) -> usize {
    body(title, text).to_string().len()
}

/// The URL's signature parameters for `timestamp_ms`.
pub fn sign(secret: &str, timestamp_ms: i64) -> Vec<(&'static str, String)> {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    vec![
        ("timestamp", timestamp_ms.to_string()),
        (
            "sign",
            hmac_base64(secret.as_bytes(), string_to_sign.as_bytes()),
        ),
    ]
}

/// `errcode`: 0 sent; 410100 and 130101 "send too fast" (blocked 10 minutes); 300001 (token
/// does not exist), 310000 (signature, keyword or IP check failed), 400101/400102 (bot missing
/// or stopped) refuse the group for good; anything else refuses this message.
pub fn verdict(errcode: i64) -> Verdict {
    match errcode {
        0 => Verdict::Accepted,
        410100 | 130101 => Verdict::Deferred(Some(Duration::from_secs(BLOCKED_SECS))),
        300001 | 310000 | 400101 | 400102 => Verdict::RecipientGone,
        _ => Verdict::Refused,
    }
}
