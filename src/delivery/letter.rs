//! An e-mail copy: the rendered HTML and text of one recipient wrapped in a message with its
//! headers (From, To, a deterministic Message-ID, List-Id, one-click List-Unsubscribe).

use lettre::Message;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

use super::DeliveryError;
use crate::api::MailFormat;
use crate::plan::{PlannedRecipient, RunPlan};
use crate::untrusted;

/// An e-mail ready for the SMTP transport.
pub type Letter = Message;

/// A deterministic Message-ID per report, date and recipient, so a copy re-sent after a crash
/// carries the same id and receiving systems can tell it is one message.
pub fn message_id(plan: &RunPlan, address: &str, domain: &str) -> String {
    let digest = Sha256::digest(
        format!(
            "{}\0{}\0{}\0{}",
            plan.namespace, plan.report, plan.slot.date, address
        )
        .as_bytes(),
    );
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "<{}.{}.{}.{short}@{domain}>",
        plan.slot.date, plan.report, plan.namespace
    )
}

macro_rules! text_header {
    ($name:ident, $header:literal) => {
        #[derive(Clone, Debug)]
        struct $name(String);

        impl Header for $name {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($header)
            }

            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_string()))
            }

            fn display(&self) -> HeaderValue {
                // Values are built here from validated parts; line breaks never pass.
                HeaderValue::new(Self::name(), self.0.replace(['\r', '\n'], " "))
            }
        }
    };
}

text_header!(ListId, "List-Id");
text_header!(ListUnsubscribe, "List-Unsubscribe");
text_header!(ListUnsubscribePost, "List-Unsubscribe-Post");

/// What every letter of a run shares: sender, reply address, list identity.
#[derive(Clone, Debug)]
pub struct Letterhead {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// The sender's domain, which Message-IDs are made in.
    pub domain: String,
    pub list_id: String,
}

impl Letterhead {
    pub fn of(plan: &RunPlan) -> Result<Self, DeliveryError> {
        let mailbox = |field: &str, value: &str| {
            value
                .parse::<Mailbox>()
                .map_err(|e| DeliveryError::Config(format!("smtp.{field} {value:?}: {e}")))
        };
        let smtp = plan.smtp.as_ref().ok_or_else(|| {
            DeliveryError::Config(
                "the report has e-mail recipients but no spec.smtp to send them through"
                    .to_string(),
            )
        })?;
        let from = mailbox("from", &smtp.from)?;
        let reply_to = smtp
            .reply_to
            .as_deref()
            .map(|r| mailbox("replyTo", r))
            .transpose()?;
        let domain = from.email.domain().to_string();
        Ok(Self {
            list_id: format!(
                "{} <{}.{}.{domain}>",
                untrusted::clean(&plan.title, 200),
                plan.report,
                plan.namespace
            ),
            from,
            reply_to,
            domain,
        })
    }
}

/// One recipient's rendered report.
#[derive(Clone, Debug)]
pub struct LetterBody {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The signed one-click unsubscribe URL, when the run has a key and a public URL.
    pub unsubscribe_url: Option<String>,
}

/// Wraps a rendered copy in its message.
pub fn letter(
    head: &Letterhead,
    r: &PlannedRecipient,
    id: &str,
    body: LetterBody,
) -> Result<Message, String> {
    let address = r
        .address
        .parse()
        .map_err(|e| format!("address {:?}: {e}", r.address))?;
    // Validated when the plan was loaded; cleaned again because a header is no place to find
    // out otherwise.
    let name = r
        .display_name
        .as_deref()
        .map(|n| untrusted::clean(n, 200))
        .filter(|n| !n.is_empty());
    let mailto = format!("<mailto:{}?subject=unsubscribe>", head.from.email);
    let list_unsubscribe = match &body.unsubscribe_url {
        Some(url) => format!("<{url}>, {mailto}"),
        None => mailto,
    };
    let mut builder = Message::builder()
        .from(head.from.clone())
        .to(Mailbox::new(name, address))
        .subject(untrusted::clean(&body.subject, 400))
        .message_id(Some(id.to_string()))
        .header(ListId(head.list_id.clone()))
        .header(ListUnsubscribe(list_unsubscribe));
    if body.unsubscribe_url.is_some() {
        builder = builder.header(ListUnsubscribePost("List-Unsubscribe=One-Click".into()));
    }
    if let Some(reply_to) = &head.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    let message = match r.format {
        MailFormat::Html => {
            builder.multipart(MultiPart::alternative_plain_html(body.text, body.html))
        }
        MailFormat::Text => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body.text),
        ),
    };
    message.map_err(|e| e.to_string())
}
