//! A platform's answer to a post, read as the platform documents it: HTTP status,
//! `Retry-After`, and the JSON reply code (`errcode` for WeCom and DingTalk, `code` — or the
//! older `StatusCode` — for Feishu/Lark).

use std::time::Duration;

use super::MAX_UNSCRUBBED_CHARS;
use super::{dingtalk, feishu, refused, wecom};
use crate::api::ChatPlatform;
use crate::guard::find_blocked;
use crate::outcome::{Outcome, Reply};
use crate::untrusted;

/// The most of a platform's answer read.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// A request that got no HTTP answer. Before the request went out (no connection) it is
/// safe to try again; after, the group may have the message.
pub(super) fn failure(e: &reqwest::Error, timeout: Duration) -> Outcome {
    if let Some(blocked) = find_blocked(e) {
        return refused(
            None,
            format!("webhook refused by the network guard: {}", blocked.0),
        );
    }
    let text = untrusted::clean(&e_text(e), MAX_UNSCRUBBED_CHARS);
    if e.is_connect() {
        Outcome::Deferred {
            reply: Reply::new(None, text),
            retry_after: None,
            answered: false,
        }
    } else if e.is_timeout() {
        Outcome::Uncertain(Reply::new(
            None,
            format!("no answer within {timeout:?}: the group may or may not have the message"),
        ))
    } else {
        Outcome::Uncertain(Reply::new(None, text))
    }
}

/// An error's words without its URL (a credential).
fn e_text(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.source();
    text.push_str(if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    });
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cur = c.source();
    }
    text
}

/// Reads the platform's answer.
pub(super) async fn answer(platform: ChatPlatform, mut resp: reqwest::Response) -> Outcome {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Answers are small: reading stops past 64 KiB, which is not one of theirs.
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(_)) => {
                bytes.clear();
                break;
            }
            Ok(None) => break,
            Err(_) => {
                return Outcome::Uncertain(Reply::new(
                    Some(i32::from(status.as_u16())),
                    format!("HTTP {status}, and the answer broke off"),
                ));
            }
        }
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    read_answer(platform, status.as_u16(), retry_after, json.as_ref())
}

/// The outcome of an HTTP answer: status, `Retry-After`, the JSON body if any.
pub fn read_answer(
    platform: ChatPlatform,
    status: u16,
    retry_after: Option<Duration>,
    json: Option<&serde_json::Value>,
) -> Outcome {
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| json.and_then(|j| j.get(*n)))
            .cloned()
    };
    let code = field(&["errcode", "code", "StatusCode"]).and_then(|c| c.as_i64());
    let message = field(&["errmsg", "msg", "StatusMessage"])
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_default();
    let text = untrusted::clean(
        &format!(
            "HTTP {status}{}{message}",
            if message.is_empty() { "" } else { ": " }
        ),
        MAX_UNSCRUBBED_CHARS,
    );
    let reply = Reply::new(code.and_then(|c| i32::try_from(c).ok()), text);
    if status == 429 || (500..600).contains(&status) {
        return Outcome::Deferred {
            reply,
            retry_after: retry_after.or((status == 429).then_some(Duration::from_secs(60))),
            answered: true,
        };
    }
    let Some(code) = code else {
        return Outcome::Refused {
            reply,
            recipient_gone: status == 404,
        };
    };
    let verdict = match platform {
        ChatPlatform::Wecom => wecom::verdict(code),
        ChatPlatform::Dingtalk => dingtalk::verdict(code),
        ChatPlatform::Feishu | ChatPlatform::Lark => feishu::verdict(code),
    };
    verdict.outcome(reply, true, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use ChatPlatform::*;

    fn read(p: ChatPlatform, status: u16, body: serde_json::Value) -> Outcome {
        read_answer(p, status, None, Some(&body))
    }

    #[test]
    fn wecom_and_dingtalk_codes_read_as_documented() {
        assert!(matches!(
            read(Wecom, 200, json!({"errcode": 0, "errmsg": "ok"})),
            Outcome::Accepted(_)
        ));
        assert!(matches!(
            read(Wecom, 200, json!({"errcode": 45009, "errmsg": "api freq out of limit"})),
            Outcome::Deferred { retry_after: Some(d), .. } if d == Duration::from_secs(60)
        ));
        assert!(matches!(
            read(
                Wecom,
                200,
                json!({"errcode": 93000, "errmsg": "invalid webhook url"})
            ),
            Outcome::Refused {
                recipient_gone: true,
                ..
            }
        ));
        assert!(matches!(
            read(Dingtalk, 200, json!({"errcode": 410100, "errmsg": "send too fast"})),
            Outcome::Deferred { retry_after: Some(d), .. } if d == Duration::from_secs(600)
        ));
        assert!(matches!(
            read(
                Dingtalk,
                200,
                json!({"errcode": 310000, "errmsg": "sign not match"})
            ),
            Outcome::Refused {
                recipient_gone: true,
                ..
            }
        ));
    }

    #[test]
    fn feishu_and_lark_codes_read_as_documented() {
        assert!(matches!(
            read(Feishu, 200, json!({"code": 0, "msg": "success"})),
            Outcome::Accepted(_)
        ));
        assert!(matches!(
            read(Lark, 200, json!({"StatusCode": 0})),
            Outcome::Accepted(_)
        ));
        assert!(matches!(
            read(
                Feishu,
                400,
                json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"})
            ),
            Outcome::Refused {
                recipient_gone: true,
                ..
            }
        ));
        assert!(matches!(
            read(
                Feishu,
                400,
                json!({"code": 11232, "msg": "frequency limited"})
            ),
            Outcome::Deferred { .. }
        ));
        assert!(matches!(
            read(Feishu, 400, json!({"code": 9499, "msg": "Bad Request"})),
            Outcome::Refused {
                recipient_gone: false,
                ..
            }
        ));
    }

    #[test]
    fn http_statuses_and_answers_without_a_code() {
        assert!(matches!(
            read(Wecom, 503, json!({})),
            Outcome::Deferred { answered: true, .. }
        ));
        assert!(matches!(
            read_answer(Wecom, 429, Some(Duration::from_secs(7)), None),
            Outcome::Deferred { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            read_answer(Wecom, 200, None, None),
            Outcome::Refused {
                recipient_gone: false,
                ..
            }
        ));
    }
}
