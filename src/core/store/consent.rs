//! Consent: unsubscribes, which outrank every other blacklist reason and cover an address's
//! `+tag` variants, and the only two ways one is lifted (the recipient's own re-subscribe
//! link, or an operator's recorded action). A bounce's unblock never lifts an unsubscribe.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError};
use crate::run::BlacklistReason;
use crate::unsubscribe::address_key;

/// How an unsubscribe was lifted: by the recipient or by a named operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resubscriber {
    /// The recipient, through the signed re-subscribe link of their unsubscribe page.
    Recipient,
    /// An operator (`finrep resubscribe --by NAME`, or the console with its account).
    Operator,
}

impl Resubscriber {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recipient => "recipient",
            Self::Operator => "operator",
        }
    }
}

/// One recorded lifting of an unsubscribe.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Resubscription {
    pub by: Resubscriber,
    /// The operator's name or console account (none for the recipient).
    pub actor: Option<String>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// The delivery a v2 unsubscribe link points at: whose it is and which report carried it.
#[derive(Clone, Debug, PartialEq)]
pub struct UnsubscribeTarget {
    pub namespace: String,
    pub report: String,
    /// The report's title as its mail said it (for the page), when recorded.
    pub title: Option<String>,
    /// Who sent it: the report's `From` as its run's plan recorded it.
    pub sender: Option<String>,
    pub email: String,
}

/// What an unsubscribe request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsubscribeOutcome {
    /// Newly unsubscribed (also when the address was blacklisted for a bounce before).
    Done,
    /// It already was.
    Already,
}

impl Store {
    /// The delivery row a v2 token names (its MAC is checked against what this returns).
    pub async fn unsubscribe_target(
        &self,
        delivery_id: i64,
    ) -> Result<Option<UnsubscribeTarget>, StoreError> {
        let row = sqlx::query(
            "SELECT r.namespace, r.report, r.title, r.plan #>> '{smtp,from}' AS sender, d.email
               FROM delivery_log d JOIN reports r ON r.id = d.report_id
              WHERE d.id = $1",
        )
        .bind(delivery_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(UnsubscribeTarget {
                namespace: r.try_get("namespace")?,
                report: r.try_get("report")?,
                title: r.try_get("title")?,
                sender: r.try_get("sender")?,
                email: r.try_get("email")?,
            })
        })
        .transpose()
        .map_err(StoreError::Query)
    }

    /// Unsubscribes the identity of `email` (lower case, no `+tag`) from every report of
    /// `namespace`. A blacklist entry for another reason becomes an unsubscribe: a bounce
    /// lifted later must not mail a person who asked to leave.
    pub async fn unsubscribe(
        &self,
        namespace: &str,
        email: &str,
        via: &str,
        report: Option<&str>,
    ) -> Result<UnsubscribeOutcome, StoreError> {
        let key = address_key(email);
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "INSERT INTO blacklist (namespace, email, reason, via) VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, email) DO UPDATE
                SET reason = EXCLUDED.reason, via = EXCLUDED.via, created_at = now()
              WHERE blacklist.reason <> EXCLUDED.reason",
        )
        .bind(namespace)
        .bind(&key)
        .bind(BlacklistReason::Unsubscribe.as_str())
        .bind(via)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(UnsubscribeOutcome::Already);
        }
        sqlx::query(
            "INSERT INTO consent_log (namespace, address_key, action, via, report)
             VALUES ($1, $2, 'unsubscribe', $3, $4)",
        )
        .bind(namespace)
        .bind(&key)
        .bind(via)
        .bind(report)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(UnsubscribeOutcome::Done)
    }

    /// Whether `email` may not be mailed in `namespace`, and why: an unsubscribe of its
    /// identity first, then an entry of the exact address.
    pub async fn blacklist_reason(
        &self,
        namespace: &str,
        email: &str,
    ) -> Result<Option<BlacklistReason>, StoreError> {
        let reason: Option<String> = sqlx::query_scalar(
            "SELECT reason FROM blacklist WHERE namespace = $1 AND email IN (lower($2), $3)
             ORDER BY (reason = $4) DESC LIMIT 1",
        )
        .bind(namespace)
        .bind(email)
        .bind(address_key(email))
        .bind(BlacklistReason::Unsubscribe.as_str())
        .fetch_optional(self.pool())
        .await?;
        reason
            .map(|s| s.parse())
            .transpose()
            .map_err(|e| StoreError::Query(sqlx::Error::Decode(Box::new(e))))
    }

    /// Lifts the bounce (or manual) entry of `email` in `namespace` — never an unsubscribe;
    /// true when there was one.
    pub async fn unblock(&self, namespace: &str, email: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM blacklist WHERE namespace = $1 AND email = lower($2) AND reason <> $3",
        )
        .bind(namespace)
        .bind(email)
        .bind(BlacklistReason::Unsubscribe.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Lifts the unsubscribe of `email`'s identity in `namespace`, recording who did and why;
    /// true when there was one.
    pub async fn resubscribe(
        &self,
        namespace: &str,
        email: &str,
        by: Resubscriber,
        actor: Option<&str>,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let key = address_key(email);
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "DELETE FROM blacklist WHERE namespace = $1 AND email = $2 AND reason = $3",
        )
        .bind(namespace)
        .bind(&key)
        .bind(BlacklistReason::Unsubscribe.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO consent_log (namespace, address_key, action, via, actor, reason)
             VALUES ($1, $2, 'resubscribe', $3, $4, $5)",
        )
        .bind(namespace)
        .bind(&key)
        .bind(by.as_str())
        .bind(actor)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The latest lifting of each identity's unsubscribe in `namespace` that no later
    /// unsubscribe undid, by identity.
    pub async fn resubscriptions_in(
        &self,
        namespace: &str,
    ) -> Result<std::collections::HashMap<String, Resubscription>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (address_key) address_key, action, via, actor, reason, at
               FROM consent_log WHERE namespace = $1
              ORDER BY address_key, at DESC, id DESC",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            let action: String = r.try_get("action")?;
            if action != "resubscribe" {
                continue;
            }
            let via: String = r.try_get("via")?;
            let by = if via == Resubscriber::Recipient.as_str() {
                Resubscriber::Recipient
            } else {
                Resubscriber::Operator
            };
            out.insert(
                r.try_get("address_key")?,
                Resubscription {
                    by,
                    actor: r.try_get("actor")?,
                    reason: r.try_get("reason")?,
                    at: r.try_get("at")?,
                },
            );
        }
        Ok(out)
    }
}
