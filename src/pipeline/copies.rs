//! Each recipient's copy of the composed report, rendered before any transport sees it: the
//! e-mail (HTML and text from the report's templates, with the recipient's sections, name and
//! unsubscribe link) or the chat message (the report at chat size for the group's platform).

use super::report::Composed;
use crate::delivery::chat::{self, Digest, DigestItem, DigestSection};
use crate::delivery::letter::{self, LetterBody, Letterhead};
use crate::delivery::{Copy, DeliveryError, DeliveryOptions, Render, Unsubscribe};
use crate::plan::{PlannedRecipient, RunPlan};

/// Headlines per section in a chat message: the top of each, so every section shows.
const CHAT_ITEMS_PER_SECTION: usize = 5;

/// One recipient's copy as a person reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadableCopy {
    Letter {
        subject: String,
        html: String,
        text: String,
    },
    Chat {
        platform: crate::api::ChatPlatform,
        markdown: String,
    },
}

/// The renderer of one run's copies.
pub struct Copies<'a> {
    plan: &'a RunPlan,
    composed: &'a Composed,
    /// From, Reply-To and the Message-ID domain; `None` for a report of chat groups only.
    letterhead: Option<Letterhead>,
    unsubscribe: Option<&'a Unsubscribe>,
    console_url: Option<&'a str>,
}

impl<'a> Copies<'a> {
    pub fn new(
        plan: &'a RunPlan,
        composed: &'a Composed,
        opts: &'a DeliveryOptions,
    ) -> Result<Self, DeliveryError> {
        Ok(Self {
            plan,
            composed,
            letterhead: plan
                .smtp
                .is_some()
                .then(|| Letterhead::of(plan))
                .transpose()?,
            unsubscribe: opts.unsubscribe.as_ref(),
            console_url: opts
                .console_url
                .as_deref()
                .or(opts.unsubscribe.as_ref().map(|u| u.public_url.as_str())),
        })
    }

    /// The copy `r` gets as a person reads it (a preview of it): the e-mail's subject, HTML
    /// and text, or the chat message in its platform's markup. No unsubscribe link is signed:
    /// no delivery stands behind it.
    pub fn readable(&self, r: &PlannedRecipient) -> Result<ReadableCopy, String> {
        match &r.chat {
            None => {
                let body = self.body(r, None)?;
                Ok(ReadableCopy::Letter {
                    subject: body.subject,
                    html: body.html,
                    text: body.text,
                })
            }
            Some(bot) => {
                let Copy::Post(post) = self.post(r, bot)? else {
                    return Err("a chat group's copy is a post".to_string());
                };
                Ok(ReadableCopy::Chat {
                    platform: bot.platform,
                    markdown: post.message.markdown,
                })
            }
        }
    }

    fn body(
        &self,
        r: &PlannedRecipient,
        unsubscribe_url: Option<String>,
    ) -> Result<LetterBody, String> {
        let view = self.composed.view.for_recipient(
            &r.categories,
            r.display_name.as_deref(),
            unsubscribe_url.clone(),
        );
        let (html, text) = self
            .composed
            .templates
            .render(&view)
            .map_err(|e| e.to_string())?;
        Ok(LetterBody {
            subject: self.composed.subject.clone(),
            html,
            text,
            unsubscribe_url,
        })
    }

    fn letter(&self, r: &PlannedRecipient, id: &str, row: i64) -> Result<Copy, String> {
        let unsubscribe_url = self.unsubscribe.and_then(|u| {
            u.signer
                .sign(&self.plan.namespace, &self.plan.report, row, &r.address)
                .ok()
                .map(|t| {
                    format!(
                        "{}/unsubscribe?token={t}",
                        u.public_url.trim_end_matches('/')
                    )
                })
        });
        let body = self.body(r, unsubscribe_url)?;
        let letterhead = self
            .letterhead
            .as_ref()
            .ok_or("an e-mail recipient in a report without spec.smtp")?;
        letter::letter(letterhead, r, id, body).map(Copy::Letter)
    }

    fn post(&self, r: &PlannedRecipient, bot: &crate::api::ChatGroup) -> Result<Copy, String> {
        let digest = self.digest(&r.categories);
        chat::compose(&self.composed.chat_templates, &digest, bot)
            .map(Copy::Post)
            .map_err(|e| e.to_string())
    }

    /// The report at chat size for a group that wants `categories` (all when empty).
    fn digest(&self, categories: &[String]) -> Digest {
        let view = self.composed.view.for_recipient(categories, None, None);
        let mut left_out = 0;
        let sections = view
            .sections
            .iter()
            .map(|s| {
                left_out += s.items.len().saturating_sub(CHAT_ITEMS_PER_SECTION);
                DigestSection {
                    name: s.name.clone(),
                    items: s
                        .items
                        .iter()
                        .take(CHAT_ITEMS_PER_SECTION)
                        .map(|i| DigestItem {
                            title: i.title.clone(),
                            url: i.url.clone(),
                            source: i.source.clone(),
                            tickers: i.tickers.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        Digest {
            title: view.title.clone(),
            date: view.date.clone(),
            date_display: view.date_display.clone(),
            sections,
            full_report_url: self.console_url.map(|url| {
                format!(
                    "{}/console/{}",
                    url.trim_end_matches('/'),
                    self.composed.console_path
                )
            }),
            left_out,
        }
    }
}

/// The delivery-id domain of a report without a mail server.
const CHAT_ONLY_DOMAIN: &str = "chat.finrep.invalid";

impl Render for Copies<'_> {
    fn delivery_id(&self, r: &PlannedRecipient) -> String {
        // A chat post's id needs a domain only to look like the e-mails'.
        let domain = self
            .letterhead
            .as_ref()
            .map_or(CHAT_ONLY_DOMAIN, |l| l.domain.as_str());
        letter::message_id(self.plan, &r.address, domain)
    }

    fn render(&self, r: &PlannedRecipient, id: &str, row: i64) -> Result<Copy, String> {
        match &r.chat {
            None => self.letter(r, id, row),
            Some(bot) => self.post(r, bot),
        }
    }
}
