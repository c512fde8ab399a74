//! What the controller reads from PostgreSQL for status, on a database filled by a real run:
//! the report's runs, its sources' fetch health, a recipient's deliveries and blacklist
//! entry, and lifting that entry — turned into status by the controller's pure functions.

mod common;

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use finrep::controller::health::{self, DeliveryRecord, FetchState};
use finrep::controller::status::RunRecord;
use finrep::run::{DeliveryStatus, RunPhase};
use finrep::store::{RecipientDeliveries, Store};

#[tokio::test]
async fn status_inputs_come_from_the_runs_record() {
    let url = common::fill::filled_database().await;
    let store = Store::connect(&url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    let now = Utc::now();

    let runs = store
        .runs_of(
            "default",
            "brief",
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    let record = RunRecord::from(&runs[0]);
    assert_eq!(record.phase, RunPhase::PartiallyDelivered);
    assert_eq!((record.deliveries.sent, record.deliveries.bounced), (2, 1));
    assert!(record.articles >= 2);

    let sources = store.source_health(Some("default")).await.unwrap();
    assert_eq!(sources.len(), 1);
    let status = health::source_status(
        None,
        Some(1),
        Some(&FetchState::from(&sources[0])),
        &[],
        now,
    );
    assert_eq!(status.conditions[0].status, "True");
    assert_eq!(status.items_in_last_fetch, Some(2));

    let gone = deliveries(&store, "default", "gone@example.com").await;
    let d = DeliveryRecord::from(&gone);
    assert_eq!(d.last.as_ref().map(|l| l.2), Some(DeliveryStatus::Bounced));
    assert_eq!((d.delivered, d.bounced), (0, 1));
    let st = health::recipient_status(None, Some(1), true, &d, &[], now);
    assert!(st.blacklisted);
    assert_eq!(st.conditions[1].status, "False");
    let ok = deliveries(&store, "default", "a@example.com").await;
    assert_eq!(ok.delivered, 1);
    assert!(ok.blacklisted.is_none());
    // Another namespace knows nothing of these deliveries.
    let elsewhere = deliveries(&store, "other", "gone@example.com").await;
    assert!(elsewhere.last.is_none() && elsewhere.blacklisted.is_none());

    assert!(store.unblock("default", "gone@example.com").await.unwrap());
    assert!(!store.unblock("default", "gone@example.com").await.unwrap());
    let lifted = deliveries(&store, "default", "gone@example.com").await;
    let st = health::recipient_status(
        Some(&st),
        Some(1),
        true,
        &DeliveryRecord::from(&lifted),
        &[],
        now,
    );
    assert_eq!(st.conditions[1].status, "True");
}

/// The record of one address as the controller reads it (absent: nothing recorded).
async fn deliveries(store: &Store, namespace: &str, email: &str) -> RecipientDeliveries {
    store
        .recipient_deliveries_in(namespace)
        .await
        .unwrap()
        .remove(email)
        .unwrap_or_else(|| RecipientDeliveries {
            email: email.to_string(),
            last: None,
            delivered: 0,
            bounced: 0,
            blacklisted: None,
            resubscribed: None,
        })
}
