//! Optional AI summaries from an OpenAI-compatible chat-completions endpoint, and the
//! summarise step of a run.
//!
//! Summaries are cached per namespace by a hash of exactly what the model is given (the
//! prompt: title and the text sent), so a retried run or the next day never pays twice for
//! the same article, and no namespace sees another's. A call budget, a per-call timeout, an
//! overall deadline, a cap on the response size and a breaker (three failures in a row stop
//! further calls) bound what a slow or failing provider can cost; whatever is not summarised
//! by the model keeps its extractive summary, and the run outcome says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::warn;

use super::Attempt;
use super::compose::HIGHLIGHTS;
use super::extract::Candidate;
use super::text::{normalise_for_matching, to_plain_text, truncate};
use crate::api::SummarizerSpec;
use crate::guard::{GuardedResolver, NetworkPolicy};
use crate::plan::RunPlan;
use crate::run::{ErrorCategory, ProviderOutcome, SummarizerOutcome};
use crate::store::{ProviderCall, StoreError};
use crate::untrusted::{self, MAX_ERROR_CHARS};

/// Calls in flight at once.
const CONCURRENCY: usize = 4;
/// Consecutive failures that stop further calls in a run.
const BREAKER: u32 = 3;
/// Largest response body read from the provider; a chat completion of a few hundred
/// characters is a few kB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest extractive summary, in characters.
const EXTRACTIVE_CHARS: usize = 120;
/// Time allowed for all AI summaries of a run.
const SUMMARY_DEADLINE: Duration = Duration::from_secs(90);
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
    /// What is stored in `provider_calls.outcome`.
    pub fn kind(&self) -> ProviderOutcome {
        match self {
            Self::Ok(_) => ProviderOutcome::Ok,
            Self::Timeout => ProviderOutcome::Timeout,
            Self::RateLimited => ProviderOutcome::RateLimited,
            Self::Error(_) => ProviderOutcome::Error,
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
            let mut resp = req.send().await.map_err(ReadError::Http)?;
            let status = resp.status().as_u16();
            // Read while counting: an endless or huge body stops at the cap.
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ReadError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        })
        .await;
        let (outcome, http_status) = match result {
            Err(_) => (CallOutcome::Timeout, None),
            Ok(Err(ReadError::Http(e))) if e.is_timeout() => (CallOutcome::Timeout, None),
            // Connection-level detail only: the request carried the API key.
            Ok(Err(ReadError::Http(e))) => (
                CallOutcome::Error(untrusted::clean(
                    &format!("request failed: {}", e.without_url()),
                    MAX_ERROR_CHARS,
                )),
                None,
            ),
            Ok(Err(ReadError::TooLarge)) => (
                CallOutcome::Error(format!("response larger than {MAX_RESPONSE_BYTES} bytes")),
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

    /// The prompt that summarises one item: all the model is given of it, so also what its
    /// cached summary is keyed by.
    pub fn item_prompt(title: &str, text: &str) -> String {
        format!(
            "用不超过60个字概括这条新闻的要点：\n标题：{title}\n内容：{}",
            truncate(text, 800)
        )
    }

    /// Summaries of `prompts` (from `item_prompt`) in order, calling at most `CONCURRENCY`
    /// at a time and starting no call after `deadline`. `None` where no summary was made.
    pub async fn summarise_items(
        self: &Arc<Self>,
        prompts: Vec<String>,
        deadline: Instant,
    ) -> Vec<Option<CallRecord>> {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, prompt) in prompts.into_iter().enumerate() {
            let this = Arc::clone(self);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                if Instant::now() >= deadline || !this.take_call() {
                    return Some((i, None));
                }
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

/// Why reading a response stopped.
enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

/// The cache key of a prompt.
fn input_hash(prompt: &str) -> Vec<u8> {
    Sha256::digest(prompt.as_bytes()).to_vec()
}

/// Why the summarise step could not finish (a provider's failure never stops it).
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SummarizeError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Store(_) => ErrorCategory::Database,
        }
    }
}

/// What the summarise step gives the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summaries {
    /// One per selected item, in selection order: the model's or an extractive one.
    pub items: Vec<String>,
    /// The 今日要点 overview, when the model wrote one.
    pub overview: Option<String>,
}

/// The extractive summary of an item: the start of its text, unless that only repeats the
/// title.
pub fn extractive(c: &Candidate) -> String {
    let summary = c.summary.trim();
    if summary.is_empty() || normalise_for_matching(summary) == normalise_for_matching(&c.title) {
        return String::new();
    }
    truncate(summary, EXTRACTIVE_CHARS)
}

/// The summarise step: extractive summaries, replaced by cached or new model summaries when
/// the report has a summariser.
pub(crate) async fn summarise(
    attempt: &mut Attempt<'_>,
    selected: &[Candidate],
) -> Result<Summaries, SummarizeError> {
    let mut out = Summaries {
        items: selected.iter().map(extractive).collect(),
        overview: None,
    };
    let Some(spec) = &attempt.plan.content.summarizer else {
        return Ok(out);
    };
    let summarizer = match open(spec, &attempt.opts.fetch.policy) {
        Ok(s) => Arc::new(s),
        Err(note) => {
            attempt.outcome.notes.push(note);
            attempt.outcome.summarizer = Some(SummarizerOutcome {
                provider: provider_of(&spec.endpoint),
                model: spec.model.clone(),
                extractive: selected.len(),
                fell_back: true,
                ..Default::default()
            });
            return Ok(out);
        }
    };
    let mut stats = SummarizerOutcome {
        provider: summarizer.provider().to_string(),
        model: summarizer.model().to_string(),
        ..Default::default()
    };
    let mut records: Vec<CallRecord> = Vec::new();
    out.overview = overview(&summarizer, selected, &mut records, &mut stats).await;
    let prompts: Vec<String> = selected
        .iter()
        .map(|c| Summarizer::item_prompt(&c.title, &c.summary))
        .collect();
    let uncached = apply_cache(attempt, &summarizer, &prompts, &mut out, &mut stats).await?;
    let to_call: Vec<String> = uncached.iter().map(|&i| prompts[i].clone()).collect();
    let results = summarizer
        .summarise_items(to_call, Instant::now() + SUMMARY_DEADLINE)
        .await;
    for (k, &i) in uncached.iter().enumerate() {
        let Some(rec) = results.get(k).cloned().flatten() else {
            stats.extractive += 1;
            continue;
        };
        match &rec.outcome {
            CallOutcome::Ok(text) => {
                let text = grounded(text, &prompts[i], &mut stats);
                let ns = &attempt.plan.namespace;
                let (provider, model) = (summarizer.provider(), summarizer.model());
                let key = input_hash(&prompts[i]);
                attempt
                    .store
                    .store_summary(ns, &key, provider, model, &text)
                    .await?;
                out.items[i] = text;
            }
            _ => stats.extractive += 1,
        }
        records.push(rec);
    }
    record_calls(attempt, &summarizer, &records, &mut stats).await?;
    stats.fell_back = stats.timeouts + stats.rate_limited + stats.errors > 0
        || summarizer.breaker_open()
        || stats.extractive > 0;
    if stats.fell_back {
        attempt.outcome.notes.push(format!(
            "AI summaries: {} from the model, {} cached, {} extractive ({} timeouts, {} rate-limited, {} errors)",
            stats.ok, stats.cached, stats.extractive, stats.timeouts, stats.rate_limited, stats.errors
        ));
    }
    attempt.outcome.summarizer = Some(stats);
    Ok(out)
}

/// The answer without what its input did not say (see `grounding`), counted in `stats`.
fn grounded(answer: &str, input: &str, stats: &mut SummarizerOutcome) -> String {
    let g = crate::grounding::ground(answer, input);
    stats.ungrounded += g.dropped;
    g.text
}

fn provider_of(endpoint: &str) -> String {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// The configured summariser, or the note saying why extractive summaries are used.
fn open(spec: &SummarizerSpec, policy: &NetworkPolicy) -> Result<Summarizer, String> {
    let api_key = match &spec.api_key_secret_ref {
        None => None,
        Some(r) => Some(
            RunPlan::secret_value(r)
                .map_err(|e| format!("summarizer API key: {e}; extractive summaries were used"))?,
        ),
    };
    Summarizer::new(spec, api_key, policy.clone())
        .map_err(|e| format!("summarizer unavailable ({e}); extractive summaries were used"))
}

/// The overview from the day's top titles, when the budget allows, saying only what they say.
async fn overview(
    summarizer: &Summarizer,
    selected: &[Candidate],
    records: &mut Vec<CallRecord>,
    stats: &mut SummarizerOutcome,
) -> Option<String> {
    let top: Vec<String> = selected
        .iter()
        .take(HIGHLIGHTS * 2)
        .map(|c| c.title.to_string())
        .collect();
    let rec = summarizer.overview(&top).await?;
    let text = match &rec.outcome {
        CallOutcome::Ok(t) => Some(grounded(t, &top.join("\n"), stats)),
        _ => None,
    };
    records.push(rec);
    text
}

/// Fills in cached summaries — through the grounding rule too, as one cached before the rule
/// may carry a link — and returns the indexes still to summarise.
async fn apply_cache(
    attempt: &Attempt<'_>,
    summarizer: &Summarizer,
    prompts: &[String],
    out: &mut Summaries,
    stats: &mut SummarizerOutcome,
) -> Result<Vec<usize>, StoreError> {
    let keys: Vec<Vec<u8>> = prompts.iter().map(|p| input_hash(p)).collect();
    let cached = attempt
        .store
        .cached_summaries(
            &attempt.plan.namespace,
            summarizer.provider(),
            summarizer.model(),
            &keys,
        )
        .await?;
    let mut uncached = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match cached.get(key) {
            Some(s) => {
                out.items[i] = grounded(s, &prompts[i], stats);
                stats.cached += 1;
            }
            None => uncached.push(i),
        }
    }
    Ok(uncached)
}

/// Counts the calls and stores them for the console's provider statistics.
async fn record_calls(
    attempt: &Attempt<'_>,
    summarizer: &Summarizer,
    records: &[CallRecord],
    stats: &mut SummarizerOutcome,
) -> Result<(), StoreError> {
    for rec in records {
        stats.calls += 1;
        match &rec.outcome {
            CallOutcome::Ok(_) => stats.ok += 1,
            CallOutcome::Timeout => stats.timeouts += 1,
            CallOutcome::RateLimited => stats.rate_limited += 1,
            CallOutcome::Error(e) => {
                warn!(error = %e, "summarizer call failed");
                stats.errors += 1
            }
        }
        attempt
            .store
            .record_provider_call(&ProviderCall {
                report_id: attempt.report_id,
                provider: summarizer.provider(),
                model: summarizer.model(),
                purpose: rec.purpose,
                outcome: rec.outcome.kind(),
                latency_ms: rec.latency.as_millis().min(i32::MAX as u128) as i32,
                http_status: rec.http_status.map(i32::from),
            })
            .await?;
    }
    Ok(())
}
