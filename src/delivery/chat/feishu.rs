//! Feishu (飞书) and Lark custom bots: `POST https://open.feishu.cn/open-apis/bot/v2/hook/…`
//! (Lark: open.larksuite.com) with an interactive card holding a markdown element; signed
//! (签名校验) by `timestamp` (s) and `sign` = Base64(HMAC-SHA256 keyed by timestamp + "\n" +
//! secret over an empty message) in the body; the request body at most 20 KB; 100 messages
//! per minute and 5 per second per bot.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Verdict, hmac_base64};

pub const FEISHU_HOSTS: &[&str] = &["open.feishu.cn"];
pub const LARK_HOSTS: &[&str] = &["open.larksuite.com"];

/// The request body's bytes: 20 KB.
pub const LIMIT: usize = 20 * 1024;

pub const PER_MINUTE: u32 = 100;
pub const PER_SECOND: u32 = 5;

pub fn body(title: &str, text: &str, signature: Option<(i64, String)>) -> Value {
    let mut body = json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {"title": {"tag": "plain_text", "content": title}},
            "elements": [{"tag": "markdown", "content": text}],
        },
    });
    if let Some((timestamp, sign)) = signature {
        body["timestamp"] = json!(timestamp.to_string());
        body["sign"] = json!(sign);
    }
    body
}

/// The body's size with a signature's worth of bytes counted, signed or not.
pub fn size(title: &str, text: &str) -> usize {
    let longest_sign = "A".repeat(44);
    body(title, text, Some((9_999_999_999, longest_sign)))
        .to_string()
        .len()
}

/// The signature of `timestamp_s`.
pub fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    hmac_base64(key.as_bytes(), b"")
}

/// `code` (older answers: `StatusCode`): 0 sent; 11232 frequency limited (a few seconds);
/// 19021 (signature), 19022 (IP not allowed), 19024 (keyword missing) and 19001 (webhook token
/// invalid: bot removed) refuse the group for good; anything else refuses this message.
pub fn verdict(code: i64) -> Verdict {
    match code {
        0 => Verdict::Accepted,
        11232 => Verdict::Deferred(Some(Duration::from_secs(5))),
        19001 | 19021 | 19022 | 19024 => Verdict::RecipientGone,
        _ => Verdict::Refused,
    }
}
