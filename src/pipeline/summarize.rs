//! Optional AI summaries from an OpenAI-compatible chat-completions endpoint.
//!
//! Summaries are cached by article content hash, so a retried run or the next day never pays
//! twice for the same article. A call budget, a per-call timeout, an overall deadline and a
//! breaker (three failures in a row stop further calls) bound what a slow or failing provider
//! can cost; whatever is not summarised by the model keeps its extractive summary, and the
//! run outcome says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::guard::{GuardedResolver, NetworkPolicy};
use super::text::{to_plain_text, truncate};
use crate::api::SummarizerSpec;

/// Calls in flight at once.
const CONCURRENCY: usize = 4;
/// Consecutive failures that stop further calls in a run.
const BREAKER: u32 = 3;
const SYSTEM_PROMPT: &str = "你是金融资讯编辑。请用简体中文写客观、准确、简洁的摘要，不添加原文没有的信息，不使用Markdown。";

/// How one call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Ok(String),
    Timeout,
    RateLimited,
    Error(String),
}

impl CallOutcome {
    /// The name stored in `provider_calls.outcome`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ok(_) => "ok",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate-limited",
            Self::Error(_) => "error",
        }
    }
}

/// One finished call, for the provider statistics.
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub purpose: &'static str,
    pub outcome: CallOutcome,
    pub latency: Duration,
    pub http_status: Option<u16>,
}

/// A configured chat-completions client with its per-run budget.
pub struct Summarizer {
    client: reqwest::Client,
    url: String,
    model: String,
    provider: String,
    api_key: Option<String>,
    timeout: Duration,
    budget: AtomicU32,
    failures_in_a_row: AtomicU32,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}
#[derive(Deserialize)]
struct Choice {
    message: Message,
}
#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

impl Summarizer {
    pub fn new(
        spec: &SummarizerSpec,
        api_key: Option<String>,
        policy: NetworkPolicy,
    ) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        let base = spec.endpoint.trim_end_matches('/');
        let url = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        let parsed = url::Url::parse(&url).map_err(|e| format!("summarizer endpoint: {e}"))?;
        policy
            .check_url(&parsed)
            .map_err(|b| format!("summarizer endpoint {}", b))?;
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver::new(policy))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            provider: parsed.host_str().unwrap_or("unknown").to_string(),
            url,
            model: spec.model.clone(),
            api_key,
            timeout: Duration::from_secs(u64::from(spec.timeout_seconds)),
            budget: AtomicU32::new(spec.max_calls),
            failures_in_a_row: AtomicU32::new(0),
        })
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Takes one call from the budget unless it is spent or the breaker is open.
    fn take_call(&self) -> bool {
        if self.failures_in_a_row.load(Ordering::Relaxed) >= BREAKER {
            return false;
        }
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok()
    }

    /// Whether the breaker stopped calls in this run.
    pub fn breaker_open(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) >= BREAKER
    }

    async fn call(&self, purpose: &'static str, prompt: String, max_chars: usize) -> CallRecord {
        let started = Instant::now();
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0.2,
            "max_tokens": 400,
        });
        let mut req = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let result = tokio::time::timeout(self.timeout, async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        })
        .await;
        let (outcome, http_status) = match result {
            Err(_) => (CallOutcome::Timeout, None),
            Ok(Err(e)) if e.is_timeout() => (CallOutcome::Timeout, None),
            // Connection-level detail only: the request carried the API key.
            Ok(Err(e)) => (
                CallOutcome::Error(format!("request failed: {}", e.without_url())),
                None,
            ),
            Ok(Ok((429, _))) => (CallOutcome::RateLimited, Some(429)),
            Ok(Ok((status, _))) if !(200..300).contains(&status) => {
                (CallOutcome::Error(format!("HTTP {status}")), Some(status))
            }
            Ok(Ok((status, text))) => {
                let content = serde_json::from_str::<ChatResponse>(&text)
                    .ok()
                    .and_then(|r| r.choices.into_iter().next())
                    .and_then(|c| c.message.content)
                    .map(|c| truncate(&to_plain_text(&c), max_chars))
                    .filter(|c| !c.is_empty());
                match content {
                    Some(c) => (CallOutcome::Ok(c), Some(status)),
                    None => (
                        CallOutcome::Error("response has no message content".to_string()),
                        Some(status),
                    ),
                }
            }
        };
        if matches!(outcome, CallOutcome::Ok(_)) {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        } else {
            self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
        }
        CallRecord {
            purpose,
            outcome,
            latency: started.elapsed(),
            http_status,
        }
    }

    /// The 今日要点 overview from the day's top titles, if the budget allows.
    pub async fn overview(&self, titles: &[String]) -> Option<CallRecord> {
        if titles.is_empty() || !self.take_call() {
            return None;
        }
        let list: String = titles
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{}. {t}\n", i + 1))
            .collect();
        let prompt = format!(
            "以下是今天最重要的几条金融新闻标题。请用2到3句话（不超过150字）写出今日要点综述：\n{list}"
        );
        Some(self.call("overview", prompt, 300).await)
    }

    /// Summaries of `items` (title, text) in order, calling at most `CONCURRENCY` at a time
    /// and starting no call after `deadline`. `None` where no summary was made.
    pub async fn summarise_items(
        self: &Arc<Self>,
        items: Vec<(String, String)>,
        deadline: Instant,
    ) -> Vec<Option<CallRecord>> {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (title, text)) in items.into_iter().enumerate() {
            let this = Arc::clone(self);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                if Instant::now() >= deadline || !this.take_call() {
                    return Some((i, None));
                }
                let prompt = format!(
                    "用不超过60个字概括这条新闻的要点：\n标题：{title}\n内容：{}",
                    truncate(&text, 800)
                );
                Some((i, Some(this.call("item", prompt, 160).await)))
            });
        }
        let mut out: Vec<Option<CallRecord>> = Vec::new();
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Some(r)) = joined {
                results.push(r);
            }
        }
        results.sort_by_key(|(i, _)| *i);
        for (i, r) in results {
            if out.len() <= i {
                out.resize(i + 1, None);
            }
            out[i] = r;
        }
        out
    }
}
