//! The delivery log: one row per report and recipient address (an e-mail address or a chat
//! group), claimed before the transport's request and marked after it (docs/delivery.md has
//! the state machine).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError};
use crate::run::{BlacklistReason, Channel, DeliveryCounts, DeliveryStatus};

/// The stored names of `states`, for `= ANY($n)`.
fn names(states: &[DeliveryStatus]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

fn status_of(row: &sqlx::postgres::PgRow) -> Result<DeliveryStatus, sqlx::Error> {
    super::state_column(row, "status")
}

/// A delivery still to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub recipient: String,
    /// The e-mail address, or `<platform>:<name>` of a chat group.
    pub address: String,
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub attempts: i32,
}

/// A delivery a run owes: the Recipient, its address and the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwedDelivery {
    pub recipient: String,
    pub address: String,
    pub channel: Channel,
}

/// How a delivery ended.
#[derive(Clone, Debug)]
pub struct DeliveryResult<'a> {
    pub status: DeliveryStatus,
    /// The transport's reply code: SMTP's, or the chat platform's errcode.
    pub reply_code: Option<i32>,
    /// The transport's reply text.
    pub reply: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub error: Option<&'a str>,
    /// When it ended, on the run's clock (`sent_at` of a sent copy).
    pub at: DateTime<Utc>,
}

impl Store {
    /// Creates the pending rows of a run's recipients (existing rows are kept as they are).
    pub async fn ensure_deliveries(
        &self,
        report_id: i64,
        owed: &[OwedDelivery],
    ) -> Result<(), StoreError> {
        let names: Vec<&str> = owed.iter().map(|r| r.recipient.as_str()).collect();
        let addresses: Vec<&str> = owed.iter().map(|r| r.address.as_str()).collect();
        let channels: Vec<&str> = owed.iter().map(|r| r.channel.as_str()).collect();
        sqlx::query(
            "INSERT INTO delivery_log (report_id, recipient, email, channel)
             SELECT $1, r, e, c FROM UNNEST($2::text[], $3::text[], $4::text[]) AS u(r, e, c)
             ON CONFLICT (report_id, email) DO NOTHING",
        )
        .bind(report_id)
        .bind(&names)
        .bind(&addresses)
        .bind(&channels)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Rows left in `sending` by an attempt that died become `uncertain` (since `at`, on the
    /// run's clock).
    pub async fn mark_interrupted(
        &self,
        report_id: i64,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE delivery_log SET status = $2, uncertain_at = $4, updated_at = now()
             WHERE report_id = $1 AND status = $3",
        )
        .bind(report_id)
        .bind(DeliveryStatus::Uncertain.as_str())
        .bind(DeliveryStatus::Sending.as_str())
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Rows in the given states, in recipient order.
    pub async fn deliveries_in(
        &self,
        report_id: i64,
        states: &[DeliveryStatus],
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, recipient, email, channel, status, attempts FROM delivery_log
             WHERE report_id = $1 AND status = ANY($2) ORDER BY recipient, id",
        )
        .bind(report_id)
        .bind(names(states))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeliveryRow {
                    id: r.try_get("id")?,
                    recipient: r.try_get("recipient")?,
                    address: r.try_get("email")?,
                    channel: super::state_column(&r, "channel")?,
                    status: status_of(&r)?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Claims a row for one request of its transport (an SMTP transaction, a webhook POST): only from one of `from` states, and never for an
    /// address blacklisted in the report's namespace. False when another attempt got there
    /// first or the address is blacklisted.
    ///
    /// `again`: this attempt asked before and lost the answer (the connection broke after the
    /// update may have been made); a row already `sending` with this attempt's Message-ID is
    /// then its own claim. Only the run's lock holder claims, so nobody else can have made it.
    pub async fn claim_delivery(
        &self,
        id: i64,
        from: &[DeliveryStatus],
        message_id: &str,
        again: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE delivery_log d SET status = $4, attempts = attempts + 1, claimed_at = $5,
                    message_id = $3, updated_at = now()
             WHERE id = $1 AND status = ANY($2)
               AND NOT EXISTS (SELECT 1 FROM blacklist b JOIN reports r ON r.namespace = b.namespace
                               WHERE r.id = d.report_id
                                 AND b.email IN (d.email, finrep_address_key(d.email)))",
        )
        .bind(id)
        .bind(names(from))
        .bind(message_id)
        .bind(DeliveryStatus::Sending.as_str())
        .bind(at)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 1 || !again {
            return Ok(done.rows_affected() == 1);
        }
        let mine: Option<bool> = sqlx::query_scalar(
            "SELECT status = $2 AND message_id = $3 FROM delivery_log WHERE id = $1",
        )
        .bind(id)
        .bind(DeliveryStatus::Sending.as_str())
        .bind(message_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(mine == Some(true))
    }

    /// Gives a claimed row back (to pending, with the refusal it waits on as its last error)
    /// while its attempt waits to retry: a process killed in the wait leaves nothing
    /// `sending`. Only the claim of message `message_id` is given back.
    pub async fn release_delivery(
        &self,
        id: i64,
        message_id: &str,
        refusal: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE delivery_log SET status = $3, last_error = $4, updated_at = now()
             WHERE id = $1 AND status = $5 AND message_id = $2",
        )
        .bind(id)
        .bind(message_id)
        .bind(DeliveryStatus::Pending.as_str())
        .bind(refusal)
        .bind(DeliveryStatus::Sending.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records how a claimed delivery ended.
    pub async fn finish_delivery(&self, id: i64, r: &DeliveryResult<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE delivery_log SET status = $2, smtp_code = $3, smtp_reply = $4,
                    message_id = COALESCE($5, message_id), last_error = $6,
                    sent_at = CASE WHEN $2 = $7 THEN $8 ELSE sent_at END,
                    uncertain_at = CASE WHEN $2 = $9 THEN COALESCE(uncertain_at, $8) ELSE uncertain_at END,
                    updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(r.status.as_str())
        .bind(r.reply_code)
        .bind(r.reply)
        .bind(r.message_id)
        .bind(r.error)
        .bind(DeliveryStatus::Sent.as_str())
        .bind(r.at)
        .bind(DeliveryStatus::Uncertain.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Moves every row on one of `channels` in one of `from` to `to` (e.g. pending → deferred
    /// at the window end).
    pub async fn move_deliveries(
        &self,
        report_id: i64,
        from: &[DeliveryStatus],
        channels: &[Channel],
        to: DeliveryStatus,
    ) -> Result<u64, StoreError> {
        let channels: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
        let done = sqlx::query(
            "UPDATE delivery_log SET status = $3, updated_at = now()
             WHERE report_id = $1 AND status = ANY($2) AND channel = ANY($4)",
        )
        .bind(report_id)
        .bind(names(from))
        .bind(to.as_str())
        .bind(&channels)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Blacklists an address in the report's namespace after a permanent rejection (first
    /// reason wins).
    pub async fn blacklist_bounce(
        &self,
        email: &str,
        code: Option<i32>,
        reply: Option<&str>,
        report_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO blacklist (namespace, email, reason, smtp_code, smtp_reply, report_id)
             SELECT r.namespace, $1, $5, $2, $3, r.id FROM reports r WHERE r.id = $4
             ON CONFLICT (namespace, email) DO NOTHING",
        )
        .bind(email)
        .bind(code)
        .bind(reply)
        .bind(report_id)
        .bind(BlacklistReason::Bounce.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delivery_counts(&self, report_id: i64) -> Result<DeliveryCounts, StoreError> {
        let rows = sqlx::query(
            "SELECT status, count(*) AS n, count(uncertain_at) AS resent FROM delivery_log
             WHERE report_id = $1 GROUP BY status",
        )
        .bind(report_id)
        .fetch_all(self.pool())
        .await?;
        let mut c = DeliveryCounts::default();
        for r in rows {
            c.add(status_of(&r)?, r.try_get("n")?, r.try_get("resent")?);
        }
        Ok(c)
    }

    /// The counts of report `report_id`'s deliveries on each channel it used.
    pub async fn delivery_counts_by_channel(
        &self,
        report_id: i64,
    ) -> Result<Vec<(Channel, DeliveryCounts)>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, status, count(*) AS n, count(uncertain_at) AS resent FROM delivery_log
             WHERE report_id = $1 GROUP BY channel, status",
        )
        .bind(report_id)
        .fetch_all(self.pool())
        .await?;
        let mut by: std::collections::BTreeMap<usize, DeliveryCounts> = Default::default();
        for r in rows {
            let channel: Channel = super::state_column(&r, "channel")?;
            let at = Channel::ALL.iter().position(|c| *c == channel).unwrap_or(0);
            by.entry(at)
                .or_default()
                .add(status_of(&r)?, r.try_get("n")?, r.try_get("resent")?);
        }
        Ok(by.into_iter().map(|(i, c)| (Channel::ALL[i], c)).collect())
    }
}

/// An address on a namespace's blacklist.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlacklistEntry {
    pub namespace: String,
    pub email: String,
    pub reason: String,
    pub smtp_code: Option<i32>,
    pub since: chrono::DateTime<chrono::Utc>,
}

impl Store {
    /// Every blacklisted address, newest first.
    pub async fn blacklist(&self) -> Result<Vec<BlacklistEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, email, reason, smtp_code, created_at FROM blacklist
             ORDER BY created_at DESC, namespace, email",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(BlacklistEntry {
                    namespace: r.try_get("namespace")?,
                    email: r.try_get("email")?,
                    reason: r.try_get("reason")?,
                    smtp_code: r.try_get("smtp_code")?,
                    since: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}

/// Why and since when an address (or chat group) is on its namespace's blacklist.
#[derive(Clone, Debug, PartialEq)]
pub struct BlacklistMark {
    /// `bounce`, `unsubscribe` or `manual`.
    pub reason: String,
    pub since: chrono::DateTime<chrono::Utc>,
    /// The refusal's reply code and words: SMTP's, or the chat platform's errcode and errmsg.
    pub code: Option<i32>,
    pub reply: Option<String>,
}

/// A recipient address's deliveries and blacklist entry in one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct RecipientDeliveries {
    pub email: String,
    /// The latest delivery: local date, report, state.
    pub last: Option<(chrono::NaiveDate, String, DeliveryStatus)>,
    pub delivered: i64,
    pub bounced: i64,
    /// The blacklist entry.
    pub blacklisted: Option<BlacklistMark>,
    /// The latest lifting of this identity's unsubscribe, when no unsubscribe followed it.
    pub resubscribed: Option<super::Resubscription>,
}

impl Store {
    /// Deliveries and blacklist entries of every address of `namespace` that has any, by
    /// address (lower-cased). One query: the controller refreshes every Recipient's status
    /// from it.
    pub async fn recipient_deliveries_in(
        &self,
        namespace: &str,
    ) -> Result<std::collections::HashMap<String, RecipientDeliveries>, StoreError> {
        let rows = sqlx::query(
            "WITH d AS (
                 SELECT d.email, d.status, d.updated_at, r.report_date, r.report
                 FROM delivery_log d JOIN reports r ON r.id = d.report_id
                 WHERE r.namespace = $1),
             c AS (
                 SELECT email, count(*) FILTER (WHERE status = $2) AS delivered,
                        count(*) FILTER (WHERE status = $3) AS bounced
                 FROM d GROUP BY email),
             l AS (
                 SELECT DISTINCT ON (email) email, report_date, report, status
                 FROM d ORDER BY email, report_date DESC, updated_at DESC),
             b AS (SELECT email, reason, created_at, smtp_code, smtp_reply FROM blacklist
                   WHERE namespace = $1)
             SELECT email, c.delivered, c.bounced, l.report_date, l.report, l.status,
                    b.reason AS blacklist_reason, b.created_at AS blacklisted_at,
                    b.smtp_code AS blacklist_code, b.smtp_reply AS blacklist_reply
             FROM c JOIN l USING (email) FULL JOIN b USING (email)",
        )
        .bind(namespace)
        .bind(DeliveryStatus::Sent.as_str())
        .bind(DeliveryStatus::Bounced.as_str())
        .fetch_all(self.pool())
        .await?;
        let mut out = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let email: String = row.try_get("email")?;
            let last = match row.try_get::<Option<chrono::NaiveDate>, _>("report_date")? {
                Some(date) => Some((date, row.try_get("report")?, status_of(&row)?)),
                None => None,
            };
            let blacklisted = match row.try_get::<Option<String>, _>("blacklist_reason")? {
                Some(reason) => Some(BlacklistMark {
                    reason,
                    since: row.try_get("blacklisted_at")?,
                    code: row.try_get("blacklist_code")?,
                    reply: row.try_get("blacklist_reply")?,
                }),
                None => None,
            };
            out.insert(
                email.clone(),
                RecipientDeliveries {
                    email,
                    last,
                    delivered: row.try_get::<Option<i64>, _>("delivered")?.unwrap_or(0),
                    bounced: row.try_get::<Option<i64>, _>("bounced")?.unwrap_or(0),
                    blacklisted,
                    resubscribed: None,
                },
            );
        }
        let resubscriptions = self.resubscriptions_in(namespace).await?;
        if !resubscriptions.is_empty() {
            for (email, entry) in &mut out {
                entry.resubscribed = resubscriptions
                    .get(&crate::unsubscribe::address_key(email))
                    .cloned();
            }
        }
        Ok(out)
    }
}

/// A chat group's delivery in the latest run of its report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatPostRow {
    pub namespace: String,
    pub report: String,
    pub date: chrono::NaiveDate,
    /// `<platform>:<Recipient name>`.
    pub address: String,
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub reply_code: Option<i32>,
    pub reply: Option<String>,
    /// Since when its post is uncertain (on the run's clock), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncertain_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Every chat group's delivery in the latest run of each report.
    pub async fn latest_chat_posts(&self) -> Result<Vec<ChatPostRow>, StoreError> {
        let rows = sqlx::query(
            "WITH latest AS (
                 SELECT DISTINCT ON (namespace, report) id, namespace, report, report_date
                 FROM reports ORDER BY namespace, report, report_date DESC)
             SELECT l.namespace, l.report, l.report_date, d.email, d.channel, d.status,
                    d.smtp_code, d.smtp_reply, d.uncertain_at
             FROM latest l JOIN delivery_log d ON d.report_id = l.id
             WHERE d.channel <> $1
             ORDER BY l.namespace, l.report, d.email",
        )
        .bind(Channel::Email.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ChatPostRow {
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    date: r.try_get("report_date")?,
                    address: r.try_get("email")?,
                    channel: super::state_column(&r, "channel")?,
                    status: status_of(&r)?,
                    reply_code: r.try_get("smtp_code")?,
                    reply: r.try_get("smtp_reply")?,
                    uncertain_at: r.try_get("uncertain_at")?,
                })
            })
            .collect()
    }
}

/// How many deliveries of a report's latest run are in one state on one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelDeliveries {
    pub namespace: String,
    pub report: String,
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub count: i64,
}

impl Store {
    /// The deliveries of each report's latest run, by channel and state.
    pub async fn latest_channel_deliveries(&self) -> Result<Vec<ChannelDeliveries>, StoreError> {
        let rows = sqlx::query(
            "WITH latest AS (
                 SELECT DISTINCT ON (namespace, report) id, namespace, report
                 FROM reports ORDER BY namespace, report, report_date DESC)
             SELECT l.namespace, l.report, d.channel, d.status, count(*) AS n
             FROM latest l JOIN delivery_log d ON d.report_id = l.id
             GROUP BY l.namespace, l.report, d.channel, d.status",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ChannelDeliveries {
                    namespace: r.try_get("namespace")?,
                    report: r.try_get("report")?,
                    channel: super::state_column(&r, "channel")?,
                    status: status_of(&r)?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// Reserves the next turn to post to chat bot `bot` (a hash of its webhook) of `namespace`:
    /// the later of `now` and the turn after the last reservation, which then moves on by
    /// `interval`. Every run posting to the bot asks here, so together they keep its rate.
    pub async fn reserve_chat_turn(
        &self,
        namespace: &str,
        bot: &str,
        now: DateTime<Utc>,
        interval: std::time::Duration,
    ) -> Result<DateTime<Utc>, StoreError> {
        let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::zero());
        let next: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO chat_pace (namespace, bot, next_at) VALUES ($1, $2, $3 + $4)
             ON CONFLICT (namespace, bot) DO UPDATE
                SET next_at = GREATEST(chat_pace.next_at, EXCLUDED.next_at - $4) + $4
             RETURNING next_at",
        )
        .bind(namespace)
        .bind(bot)
        .bind(now)
        .bind(interval)
        .fetch_one(self.pool())
        .await?;
        Ok(next - interval)
    }
}
