//! The chat transport: one HTTPS POST per group to its bot's webhook (WeCom, DingTalk,
//! Feishu/Lark), signed where the bot asks for it, paced per bot at the platform's rate, and
//! each answer turned into an [`Outcome`] by the platform's own reply codes.
//!
//! The webhook URL and the signing secret are credentials: they come from the environment
//! (Secrets of the report's namespace, by the plan's references), are never logged, stored or
//! put in an error, and the platform's words are cleaned of them before being recorded. Only
//! the platforms' documented hosts over https, or a host the operator trusts, are posted to,
//! and the network guard checks every address.

pub mod dingtalk;
pub mod escape;
pub mod feishu;
pub mod markup;
mod reply;
pub mod wecom;

use std::num::NonZeroU32;
use std::time::Duration;

use base64::Engine;
use governor::{Quota, RateLimiter};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use url::Url;

pub use markup::{ChatMessage, ChatRenderError, ChatTemplates, Digest, DigestItem, DigestSection};

pub use super::outcome::Verdict;
use super::outcome::{Outcome, Reply};
use crate::api::{ChatGroup, ChatPlatform};
use crate::guard::{GuardedResolver, NetworkPolicy};
use crate::plan::RunPlan;
use crate::untrusted::{self, MAX_ERROR_CHARS};

/// How much of a platform's words is kept until the bot's credentials are scrubbed from them:
/// the cut to [`MAX_ERROR_CHARS`] comes after, so no cut-off prefix of a token survives.
pub(crate) const MAX_UNSCRUBBED_CHARS: usize = 8 * MAX_ERROR_CHARS;

pub(crate) fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The copy for one chat group.
#[derive(Clone, Debug)]
pub struct Post {
    pub bot: ChatGroup,
    pub message: ChatMessage,
}

impl Post {
    /// Which bot the post goes to, as the pace shared by every run knows it: the SHA-256 of
    /// its webhook URL (never the URL, which holds the bot's key). `None` when the webhook
    /// cannot be read (the send refuses it).
    pub fn bot_key(&self) -> Option<String> {
        use sha2::Digest as _;
        let webhook = Secrets::of(&self.bot).ok()?.webhook;
        let digest = Sha256::digest(webhook.trim().as_bytes());
        Some(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The spacing of posts to one bot that keeps its platform's rate a minute.
    pub fn spacing(&self) -> Duration {
        Duration::from_secs(60) / rates(self.bot.platform).0.max(1)
    }
}

/// A platform's posts per bot a minute and, where it has one, a second.
fn rates(platform: ChatPlatform) -> (u32, Option<u32>) {
    match platform {
        ChatPlatform::Wecom => (wecom::PER_MINUTE, None),
        ChatPlatform::Dingtalk => (dingtalk::PER_MINUTE, None),
        ChatPlatform::Feishu | ChatPlatform::Lark => (feishu::PER_MINUTE, Some(feishu::PER_SECOND)),
    }
}

/// What a platform's limit counts for a message (title, markdown), and the limit.
pub fn budget(platform: ChatPlatform) -> (fn(&str, &str) -> usize, usize) {
    match platform {
        ChatPlatform::Wecom => (wecom::size, wecom::LIMIT),
        ChatPlatform::Dingtalk => (dingtalk::size, dingtalk::LIMIT),
        ChatPlatform::Feishu | ChatPlatform::Lark => (feishu::size, feishu::LIMIT),
    }
}

/// Renders the digest for one group: its language, its keyword, its platform's limit.
pub fn compose(
    templates: &ChatTemplates,
    digest: &Digest,
    bot: &ChatGroup,
) -> Result<Post, ChatRenderError> {
    let (size, limit) = budget(bot.platform);
    let message = templates.render(digest, bot.language, bot.keyword.as_deref(), &size, limit)?;
    Ok(Post {
        bot: bot.clone(),
        message,
    })
}

/// The hosts a platform's webhooks live on.
pub fn documented_hosts(platform: ChatPlatform) -> &'static [&'static str] {
    match platform {
        ChatPlatform::Wecom => wecom::HOSTS,
        ChatPlatform::Dingtalk => dingtalk::HOSTS,
        ChatPlatform::Feishu => feishu::FEISHU_HOSTS,
        ChatPlatform::Lark => feishu::LARK_HOSTS,
    }
}

/// Whether a webhook URL may be posted to: the platform's documented host over https, or a
/// host the operator trusts *for webhooks* (an in-cluster relay, a test stand-in; over https
/// unless its entry says `http://`) — never a host trusted only for feeds. Says why not,
/// without the URL (it is a credential).
pub fn webhook_problem(
    platform: ChatPlatform,
    url: &Url,
    network: &NetworkPolicy,
) -> Option<String> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(0);
    let documented = documented_hosts(platform).contains(&host) && url.scheme() == "https";
    if !documented && !network.trusts_webhook(url.scheme(), host, port) {
        return Some(format!(
            "the webhook must be an https URL on {} (or a host the operator trusts for webhooks: --trusted-webhook-host), not {}://{host}",
            documented_hosts(platform).join(", "),
            url.scheme()
        ));
    }
    network.for_webhooks().check_url(url).err().map(|b| b.0)
}

/// Rates per bot: WeCom and DingTalk 20 a minute; Feishu/Lark 100 a minute and 5 a second.
struct Pacing {
    per_minute: RateLimiter<
        String,
        governor::state::keyed::HashMapStateStore<String>,
        governor::clock::DefaultClock,
    >,
    per_second: Option<
        RateLimiter<
            String,
            governor::state::keyed::HashMapStateStore<String>,
            governor::clock::DefaultClock,
        >,
    >,
}

impl Pacing {
    fn of(platform: ChatPlatform) -> Self {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        let (minute, second) = rates(platform);
        Self {
            per_minute: RateLimiter::hashmap(Quota::per_minute(n(minute))),
            per_second: second.map(|s| RateLimiter::hashmap(Quota::per_second(n(s)))),
        }
    }
}

/// The chat transport of one run.
pub struct ChatTransport {
    client: reqwest::Client,
    network: NetworkPolicy,
    timeout: Duration,
    pacing: [Pacing; 4],
    pub(super) concurrency: usize,
}

impl ChatTransport {
    pub fn new(network: NetworkPolicy, timeout: Duration) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        // Resolved addresses are checked against the hosts trusted for webhooks, never the
        // feeds' trusted hosts.
        let network = network.for_webhooks();
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver::new(network.clone()))
            .no_proxy()
            // A webhook that redirects is not the platform's.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Self {
            client,
            network,
            timeout,
            pacing: [
                Pacing::of(ChatPlatform::Wecom),
                Pacing::of(ChatPlatform::Dingtalk),
                Pacing::of(ChatPlatform::Feishu),
                Pacing::of(ChatPlatform::Lark),
            ],
            concurrency: 4,
        })
    }

    /// Waits for the bot's rate.
    pub async fn pace(&self, platform: ChatPlatform, address: &str) {
        let pacing = &self.pacing[platform as usize];
        let key = address.to_string();
        pacing.per_minute.until_key_ready(&key).await;
        if let Some(s) = &pacing.per_second {
            s.until_key_ready(&key).await;
        }
    }

    /// One POST to the group's bot.
    pub async fn send(&self, post: &Post) -> Outcome {
        let secrets = match Secrets::of(&post.bot) {
            Ok(s) => s,
            Err(reason) => return refused(None, reason),
        };
        let url = match Url::parse(secrets.webhook.trim()) {
            Ok(u) => u,
            Err(e) => {
                return refused(
                    None,
                    format!("the webhook in the Secret is not a URL ({e})"),
                );
            }
        };
        if let Some(problem) = webhook_problem(post.bot.platform, &url, &self.network) {
            return refused(None, problem);
        }
        let (url, body) = request(post, url, secrets.signing.as_deref(), chrono::Utc::now());
        let sent = self
            .client
            .post(url)
            .json(&body)
            .timeout(self.timeout)
            .send()
            .await;
        let outcome = match sent {
            Ok(resp) => reply::answer(post.bot.platform, resp).await,
            Err(e) => reply::failure(&e, self.timeout),
        };
        secrets.scrub(outcome)
    }
}

/// The credentials of one bot, read from the environment.
struct Secrets {
    webhook: String,
    signing: Option<String>,
}

impl Secrets {
    fn of(bot: &ChatGroup) -> Result<Self, String> {
        let read = |r: &crate::api::SecretKeyRef| match RunPlan::secret_value(r) {
            Ok(v) if !v.trim().is_empty() => Ok(v),
            Ok(_) => Err(format!(
                "chat group: the Secret {}, key {}, is empty",
                r.name, r.key
            )),
            Err(e) => Err(format!("chat group: {e}")),
        };
        Ok(Self {
            webhook: read(&bot.webhook_secret_ref)?,
            signing: bot.signing_secret_ref.as_ref().map(read).transpose()?,
        })
    }

    /// The platform's words without the credentials, should it echo them.
    fn scrub(&self, outcome: Outcome) -> Outcome {
        let clean = |mut r: Reply| {
            let mut secrets = vec![self.webhook.trim().to_string()];
            if let Ok(u) = Url::parse(self.webhook.trim()) {
                secrets.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
                secrets.extend(u.path_segments().into_iter().flatten().map(String::from));
            }
            secrets.extend(self.signing.iter().cloned());
            for s in secrets.iter().filter(|s| s.len() >= 8) {
                r.text = r.text.replace(s.as_str(), "[redacted]");
            }
            r.text = untrusted::clean(&r.text, MAX_ERROR_CHARS);
            r
        };
        match outcome {
            Outcome::Accepted(r) => Outcome::Accepted(clean(r)),
            Outcome::Uncertain(r) => Outcome::Uncertain(clean(r)),
            Outcome::Deferred {
                reply,
                retry_after,
                answered,
            } => Outcome::Deferred {
                reply: clean(reply),
                retry_after,
                answered,
            },
            Outcome::Refused {
                reply,
                recipient_gone,
            } => Outcome::Refused {
                reply: clean(reply),
                recipient_gone,
            },
        }
    }
}

/// The URL (with DingTalk's signature) and body (with Feishu/Lark's) of one post at `now`.
pub fn request(
    post: &Post,
    mut url: Url,
    signing: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> (Url, serde_json::Value) {
    let m = &post.message;
    let body = match post.bot.platform {
        ChatPlatform::Wecom => wecom::body(&m.markdown),
        ChatPlatform::Dingtalk => {
            if let Some(secret) = signing {
                let params = dingtalk::sign(secret, now.timestamp_millis());
                url.query_pairs_mut().extend_pairs(params);
            }
            dingtalk::body(&m.title, &m.markdown)
        }
        ChatPlatform::Feishu | ChatPlatform::Lark => {
            let signature = signing.map(|s| (now.timestamp(), feishu::sign(s, now.timestamp())));
            feishu::body(&m.title, &m.markdown, signature)
        }
    };
    (url, body)
}

pub(super) fn refused(code: Option<i32>, text: String) -> Outcome {
    Outcome::Refused {
        reply: Reply::new(code, untrusted::clean(&text, MAX_UNSCRUBBED_CHARS)),
        recipient_gone: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_the_platforms_own() {
        // DingTalk: HMAC-SHA256 keyed by the secret over "timestamp\nsecret".
        let params = dingtalk::sign("SECabc", 1_700_000_000_000);
        assert_eq!(params[0], ("timestamp", "1700000000000".to_string()));
        assert_eq!(
            params[1].1,
            hmac_base64(b"SECabc", b"1700000000000\nSECabc")
        );
        // Feishu/Lark: keyed by "timestamp\nsecret" over nothing.
        assert_eq!(
            feishu::sign("s3cret", 1_700_000_000),
            hmac_base64(b"1700000000\ns3cret", b"")
        );
        // A known vector (RFC 4231 case 2 key and data), as Base64.
        assert_eq!(
            hmac_base64(b"Jefe", b"what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn a_platforms_words_are_scrubbed_before_they_are_cut() {
        let token = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";
        let secrets = Secrets {
            webhook: format!("https://oapi.dingtalk.com/robot/send?access_token={token}"),
            signing: Some("SECsigning0123456789".into()),
        };
        // The token straddles the cut: its prefix would survive a cut made first.
        for lead in [480, 490, 495, 499] {
            let text = format!("{} access_token={token} invalid", "x".repeat(lead));
            let Outcome::Refused { reply, .. } = secrets.scrub(refused(Some(300005), text)) else {
                panic!("still refused");
            };
            assert!(reply.text.chars().count() <= MAX_ERROR_CHARS);
            assert!(!reply.text.contains(&token[..6]), "{}", reply.text);
        }
    }

    #[test]
    fn only_the_platforms_hosts_over_https_or_hosts_trusted_for_webhooks() {
        // Trusted for feeds only: no webhook may go there, over http or https.
        let feeds_only = NetworkPolicy::strict(vec!["127.0.0.1:8099".into()]);
        for u in [
            "http://127.0.0.1:8099/robot/send?access_token=t",
            "https://127.0.0.1:8099/robot/send?access_token=t",
        ] {
            let u = Url::parse(u).unwrap();
            assert!(webhook_problem(ChatPlatform::Dingtalk, &u, &feeds_only).is_some());
        }
        // Trusted for webhooks over https only: plain http is refused.
        let https_only = NetworkPolicy::with_hosts(false, &[], &["127.0.0.1:8099".into()]);
        let plain = Url::parse("http://127.0.0.1:8099/robot/send").unwrap();
        assert!(webhook_problem(ChatPlatform::Dingtalk, &plain, &https_only).is_some());
        // --allow-private-networks keeps the hosts trusted for webhooks.
        let private = NetworkPolicy::with_hosts(true, &[], &["http://127.0.0.1:8099".into()]);
        assert_eq!(
            webhook_problem(ChatPlatform::Dingtalk, &plain, &private),
            None
        );
        let elsewhere = Url::parse("http://127.0.0.1:8100/robot/send").unwrap();
        assert!(webhook_problem(ChatPlatform::Dingtalk, &elsewhere, &private).is_some());
        let strict = NetworkPolicy::with_hosts(false, &[], &["http://127.0.0.1:8099".into()]);
        let url = |u: &str| Url::parse(u).unwrap();
        let ok = url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k");
        assert_eq!(webhook_problem(ChatPlatform::Wecom, &ok, &strict), None);
        let plain = url("http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k");
        assert!(webhook_problem(ChatPlatform::Wecom, &plain, &strict).is_some());
        let other = url("https://oapi.dingtalk.com/robot/send?access_token=t");
        let p = webhook_problem(ChatPlatform::Wecom, &other, &strict).unwrap();
        assert!(!p.contains("access_token"), "{p}");
        let metadata = url("http://169.254.169.254/latest/meta-data");
        assert!(webhook_problem(ChatPlatform::Feishu, &metadata, &strict).is_some());
        let stand_in = url("http://127.0.0.1:8099/cgi-bin/webhook/send?key=k");
        assert_eq!(
            webhook_problem(ChatPlatform::Wecom, &stand_in, &strict),
            None
        );
    }
}
