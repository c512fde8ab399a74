//! WeCom (企业微信) group bots: `POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`
//! with a `markdown` message whose `content` is at most 4096 bytes (UTF-8); no signing, no
//! keywords; 20 messages per minute per bot (docs/delivery.md cites the platform's page).

use std::time::Duration;

use serde_json::{Value, json};

use super::Verdict;

pub const HOSTS: &[&str] = &["qyapi.weixin.qq.com"];

/// `markdown.content` at most 4096 bytes.
pub const LIMIT: usize = 4096;

pub const PER_MINUTE: u32 = 20;

/// What the limit counts: the content field's bytes.
pub fn size(_title: &str, text: &str) -> usize {
    text.len()
}

pub fn body(text: &str) -> Value {
    json!({"msgtype": "markdown", "markdown": {"content": text}})
}

/// `errcode` as the platform documents it: 0 sent; 45009 over the bot's rate (the minute
/// passes); 93000 invalid webhook (wrong key, bot removed) and 93004 (bot disabled) refuse
/// the group for good; anything else refuses this message.
pub fn verdict(errcode: i64) -> Verdict {
    match errcode {
        0 => Verdict::Accepted,
        45009 => Verdict::Deferred(Some(Duration::from_secs(60))),
        93000 | 93004 => Verdict::RecipientGone,
        _ => Verdict::Refused,
    }
}
