//! Source and Recipient status from what PostgreSQL recorded, through the in-memory API:
//! failing fetches, a blacklisted address, `finrep.io/unblock` acted on once per value.

mod common;

use common::operator::{Cluster, TestClock, database, instant};
use finrep::api::{CatalogEntry, annotations};
use finrep::controller::health_reconciler::{reconcile_recipient_status, reconcile_source_status};
use finrep::run::{FetchErrorKind, RunPhase};
use finrep::store::{FetchRecord, RunKey, RunStart, Store};

const NOW: &str = "2026-11-24T07:00:00+08:00";

fn ready(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> (String, String, String) {
    let c = conditions.iter().find(|c| c.type_ == t).unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn fetch(store: &Store, source: &str, error: Option<FetchErrorKind>) {
    store
        .record_fetch(&FetchRecord {
            report_id: None,
            namespace: "default",
            source,
            url: "https://www.pbc.gov.cn/feed".into(),
            started_at: instant(NOW),
            latency_ms: 120,
            http_status: Some(if error.is_some() { 503 } else { 200 }),
            items: if error.is_some() { 0 } else { 12 },
            not_modified: false,
            error_kind: error,
            error: error.map(|_| "HTTP 503 Service Unavailable".to_string()),
            etag: None,
            last_modified: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_source_failing_three_times_in_a_row_is_not_ready_until_it_recovers() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let ctx = cluster.context(&store, TestClock::at(NOW));
    for _ in 0..3 {
        fetch(&store, "pbc-news", Some(FetchErrorKind::Http)).await;
    }
    assert!(
        reconcile_source_status(&CatalogEntry::new(cluster.source("pbc-news")), &ctx)
            .await
            .unwrap()
    );
    let status = cluster.source("pbc-news").status.unwrap();
    let (ok, reason, message) = ready(&status.conditions, "Ready");
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "FetchFailing"));
    assert!(message.contains("(http)"), "{message}");

    // Unchanged: no write.
    cluster.api.clear_calls();
    assert!(
        !reconcile_source_status(&CatalogEntry::new(cluster.source("pbc-news")), &ctx)
            .await
            .unwrap()
    );
    assert!(cluster.api.writes().is_empty());

    fetch(&store, "pbc-news", None).await;
    reconcile_source_status(&CatalogEntry::new(cluster.source("pbc-news")), &ctx)
        .await
        .unwrap();
    let status = cluster.source("pbc-news").status.unwrap();
    assert_eq!(ready(&status.conditions, "Ready").0, "True");
}

async fn blacklist(store: &Store, email: &str) {
    let run = store
        .begin_run(&RunStart {
            key: RunKey {
                namespace: "default",
                report: "morning-brief",
                date: "2026-11-24".parse().unwrap(),
            },
            time_zone: "Asia/Shanghai",
            scheduled_for: instant("2026-11-24T06:00:00+08:00"),
            manual: false,
            plan: serde_json::json!({}),
            at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    store
        .blacklist_bounce(email, Some(550), Some("5.1.1 user unknown"), run.id)
        .await
        .unwrap();
    store
        .finish_run(
            run.id,
            RunPhase::Succeeded,
            &serde_json::json!({}),
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn unblock_lifts_a_blacklisted_address_once_per_value() {
    let cluster = Cluster::examples().await;
    let store = database().await;
    let ctx = cluster.context(&store, TestClock::at(NOW));
    blacklist(&store, "zhang.wei@example.com").await;
    reconcile_recipient_status(&CatalogEntry::new(cluster.recipient("zhang-wei")), &ctx)
        .await
        .unwrap();
    let status = cluster.recipient("zhang-wei").status.unwrap();
    assert_eq!(ready(&status.conditions, "Deliverable").1, "Blacklisted");

    let mut recipient = cluster.recipient("zhang-wei");
    recipient
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(annotations::UNBLOCK.to_string(), "ticket-42".to_string());
    cluster.api.put(&recipient);
    reconcile_recipient_status(&CatalogEntry::new(cluster.recipient("zhang-wei")), &ctx)
        .await
        .unwrap();
    let status = cluster.recipient("zhang-wei").status.unwrap();
    assert_eq!(status.handled_unblock.as_deref(), Some("ticket-42"));
    assert_eq!(ready(&status.conditions, "Deliverable").0, "True");
    assert!(
        store
            .blacklisted_emails("default")
            .await
            .unwrap()
            .is_empty()
    );

    // Bounced again later: the old value does not lift it a second time.
    blacklist(&store, "zhang.wei@example.com").await;
    reconcile_recipient_status(&CatalogEntry::new(cluster.recipient("zhang-wei")), &ctx)
        .await
        .unwrap();
    assert_eq!(store.blacklisted_emails("default").await.unwrap().len(), 1);
    let status = cluster.recipient("zhang-wei").status.unwrap();
    assert_eq!(ready(&status.conditions, "Deliverable").1, "Blacklisted");
}
