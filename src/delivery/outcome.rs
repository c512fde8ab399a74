//! What a transport's answer means, and what the loop does next: the decisions of delivery,
//! as pure functions over values (no I/O), so every rule is tested directly.

use std::time::Duration;

use crate::run::{Channel, DeliveryStatus};
use crate::window::{Gate, WindowMode};

/// The transport's own words: SMTP's reply code and text, or a platform's errcode and errmsg.
/// Stored and shown, so always cleaned network text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub code: Option<i32>,
    pub text: String,
}

impl Reply {
    pub fn new(code: Option<i32>, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

/// How one request of a transport ended. Every transport answers with one of these and
/// nothing else, so the loop never learns what SMTP or a webhook is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server or platform took the copy.
    Accepted(Reply),
    /// Not taken this time; worth trying again (a 4xx, a throttled bot, a dropped
    /// connection). `retry_after` is the wait the other side asked for; `answered` is false when
    /// the server gave no answer at all (no connection, a dropped one), which counts towards
    /// "unreachable".
    Deferred {
        reply: Reply,
        retry_after: Option<Duration>,
        answered: bool,
    },
    /// Refused for good. `recipient_gone`: the address or bot itself is refused (a mailbox that
    /// does not exist, a removed bot, a wrong key or signature) — it is blacklisted in its
    /// namespace, like a hard bounce; otherwise only this copy is refused (too big, policy).
    Refused { reply: Reply, recipient_gone: bool },
    /// The request went out and no answer came back: the copy may or may not have arrived.
    Uncertain(Reply),
}

impl Outcome {
    pub fn reply(&self) -> &Reply {
        match self {
            Self::Accepted(r) | Self::Uncertain(r) => r,
            Self::Deferred { reply, .. } | Self::Refused { reply, .. } => reply,
        }
    }
}

/// What a reply code means, as each transport reads its own codes (SMTP's, each platform's
/// errcode): one of four things, whatever the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Try again, after the wait the transport's documentation gives, if any.
    Deferred(Option<Duration>),
    /// The address or bot is refused for good: blacklist it.
    RecipientGone,
    /// This copy is refused for good; the address or bot is kept.
    Refused,
}

impl Verdict {
    /// The outcome of a reply meaning this. `answered`: the server gave a reply at all;
    /// `asked_wait` (a `Retry-After`) wins over the documented wait.
    pub fn outcome(self, reply: Reply, answered: bool, asked_wait: Option<Duration>) -> Outcome {
        match self {
            Self::Accepted => Outcome::Accepted(reply),
            Self::Deferred(wait) => Outcome::Deferred {
                reply,
                retry_after: asked_wait.or(wait),
                answered,
            },
            Self::RecipientGone => Outcome::Refused {
                reply,
                recipient_gone: true,
            },
            Self::Refused => Outcome::Refused {
                reply,
                recipient_gone: false,
            },
        }
    }
}

/// What the loop does after an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Record the delivery in this state (and blacklist the address when `blacklist`).
    Record {
        status: DeliveryStatus,
        blacklist: bool,
    },
    /// Ask again after this long.
    RetryAfter(Duration),
}

/// The decision after one request: `backoff` is the next wait of the retry schedule (`None`
/// once the tries are spent), `window_open` whether deliveries may still start.
pub fn settle(outcome: &Outcome, backoff: Option<Duration>, window_open: bool) -> Next {
    let record = |status| Next::Record {
        status,
        blacklist: false,
    };
    match outcome {
        Outcome::Accepted(_) => record(DeliveryStatus::Sent),
        Outcome::Refused {
            recipient_gone: true,
            ..
        } => Next::Record {
            status: DeliveryStatus::Bounced,
            blacklist: true,
        },
        Outcome::Refused { .. } => record(DeliveryStatus::Failed),
        Outcome::Uncertain(_) => record(DeliveryStatus::Uncertain),
        Outcome::Deferred { retry_after, .. } => match (window_open, backoff) {
            (false, _) => record(DeliveryStatus::Deferred),
            (true, None) => record(DeliveryStatus::Failed),
            // The other side's wait wins over a shorter backoff.
            (true, Some(wait)) => Next::RetryAfter(retry_after.map_or(wait, |a| a.max(wait))),
        },
    }
}

/// The rows an attempt may claim on `channel`. A scheduled run retried by its Job resumes
/// pending rows and — on e-mail — interrupted ones (resent with their Message-ID); a chat
/// post left uncertain is not posted again unless asked (`resend_uncertain_posts`), as a
/// webhook has no idempotency key. A manual run (today's run, started by a person) also picks
/// up what the scheduled run deferred or failed; past the window, `lateDelivery: send` sends
/// what was deferred.
pub fn claimable_states(
    channel: Channel,
    gate: Gate,
    mode: WindowMode,
    manual: bool,
    resend_uncertain_posts: bool,
) -> Vec<DeliveryStatus> {
    let mut claimable = vec![DeliveryStatus::Pending];
    if channel.resends_uncertain() || resend_uncertain_posts {
        claimable.push(DeliveryStatus::Uncertain);
    }
    if mode == WindowMode::Ignore || manual {
        claimable.extend([DeliveryStatus::Deferred, DeliveryStatus::Failed]);
    }
    if let Gate::Closed { send_late: true } = gate
        && !claimable.contains(&DeliveryStatus::Deferred)
    {
        claimable.push(DeliveryStatus::Deferred);
    }
    claimable
}

/// Connection failures in a row after which a transport's server counts as unreachable.
pub const UNREACHABLE_AFTER: u32 = 3;

/// Counts requests that reached nobody in a row; true once the server counts as unreachable
/// (the rest of that transport's rows stay pending for the retried run).
pub fn unreachable_after(failures_in_a_row: u32, outcome: &Outcome) -> (u32, bool) {
    match outcome {
        Outcome::Deferred {
            answered: false, ..
        } => {
            let n = failures_in_a_row + 1;
            (n, n >= UNREACHABLE_AFTER)
        }
        _ => (0, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deferred(retry_after: Option<u64>) -> Outcome {
        Outcome::Deferred {
            reply: Reply::new(Some(451), "later"),
            retry_after: retry_after.map(Duration::from_secs),
            answered: true,
        }
    }

    #[test]
    fn outcomes_settle_into_states() {
        let secs = |s| Some(Duration::from_secs(s));
        let ok = Outcome::Accepted(Reply::new(Some(250), "ok"));
        assert_eq!(
            settle(&ok, secs(2), true),
            Next::Record {
                status: DeliveryStatus::Sent,
                blacklist: false
            }
        );
        let gone = Outcome::Refused {
            reply: Reply::new(Some(93000), "invalid webhook url"),
            recipient_gone: true,
        };
        assert_eq!(
            settle(&gone, secs(2), true),
            Next::Record {
                status: DeliveryStatus::Bounced,
                blacklist: true
            }
        );
        let too_big = Outcome::Refused {
            reply: Reply::new(Some(552), "too big"),
            recipient_gone: false,
        };
        assert!(matches!(
            settle(&too_big, secs(2), true),
            Next::Record {
                status: DeliveryStatus::Failed,
                ..
            }
        ));
        let lost = Outcome::Uncertain(Reply::new(None, "no answer"));
        assert!(matches!(
            settle(&lost, secs(2), true),
            Next::Record {
                status: DeliveryStatus::Uncertain,
                ..
            }
        ));
        // Deferred: retried inside the window, the platform's wait honoured.
        assert_eq!(
            settle(&deferred(None), secs(2), true),
            Next::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            settle(&deferred(Some(600)), secs(2), true),
            Next::RetryAfter(Duration::from_secs(600))
        );
        assert!(matches!(
            settle(&deferred(None), secs(2), false),
            Next::Record {
                status: DeliveryStatus::Deferred,
                ..
            }
        ));
        assert!(matches!(
            settle(&deferred(None), None, true),
            Next::Record {
                status: DeliveryStatus::Failed,
                ..
            }
        ));
    }

    #[test]
    fn uncertain_posts_wait_for_a_person_uncertain_mail_is_resent() {
        let gate = Gate::Open;
        let mail = claimable_states(Channel::Email, gate, WindowMode::Respect, false, false);
        assert!(mail.contains(&DeliveryStatus::Uncertain));
        for chat in [
            Channel::Wecom,
            Channel::Dingtalk,
            Channel::Feishu,
            Channel::Lark,
        ] {
            let states = claimable_states(chat, gate, WindowMode::Respect, false, false);
            assert_eq!(states, [DeliveryStatus::Pending]);
            let asked = claimable_states(chat, gate, WindowMode::Respect, true, true);
            assert!(asked.contains(&DeliveryStatus::Uncertain));
            assert!(asked.contains(&DeliveryStatus::Deferred));
        }
        let late = claimable_states(
            Channel::Wecom,
            Gate::Closed { send_late: true },
            WindowMode::Respect,
            false,
            false,
        );
        assert_eq!(late, [DeliveryStatus::Pending, DeliveryStatus::Deferred]);
    }

    #[test]
    fn three_unanswered_connections_in_a_row_mean_unreachable() {
        let nobody = Outcome::Deferred {
            reply: Reply::new(None, "connection refused"),
            retry_after: None,
            answered: false,
        };
        let (n, gone) = unreachable_after(0, &nobody);
        assert_eq!((n, gone), (1, false));
        let (n, gone) = unreachable_after(n, &nobody);
        assert_eq!((n, gone), (2, false));
        assert_eq!(unreachable_after(n, &deferred(None)), (0, false));
        assert_eq!(unreachable_after(2, &nobody), (3, true));
    }
}
