//! What every reconcile shares: the API client, PostgreSQL, the operator's settings, the
//! clock, the caches of Sources and Recipients, the Event recorder, metrics and the failure
//! counts the error policy backs off on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::ResourceExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

use super::objects::Settings;
use crate::api::{CatalogEntry, Recipient, Source, StatusMemory};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{RecipientDeliveries, SourceHealthRow, StoreError};

/// The controller's name as Events and field managers show it.
pub const CONTROLLER_NAME: &str = "finrep-controller";

/// The cached Sources and Recipients (shared with their own controllers), as `CatalogEntry`s.
#[derive(Clone)]
pub struct Catalog {
    pub sources: Store<CatalogEntry<Source>>,
    pub recipients: Store<CatalogEntry<Recipient>>,
}

impl Catalog {
    /// A catalog holding fixed objects (tests, one-off checks), not fed by a watch.
    pub fn from_objects(sources: Vec<Source>, recipients: Vec<Recipient>) -> Self {
        Self {
            sources: fixed_store(sources),
            recipients: fixed_store(recipients),
        }
    }

    pub fn sources_of(&self, namespace: &str) -> Vec<Arc<CatalogEntry<Source>>> {
        of_namespace(&self.sources, namespace)
    }

    pub fn recipients_of(&self, namespace: &str) -> Vec<Arc<CatalogEntry<Recipient>>> {
        of_namespace(&self.recipients, namespace)
    }
}

fn fixed_store<K>(objects: Vec<K>) -> Store<CatalogEntry<K>>
where
    K: StatusMemory<DynamicType = ()> + 'static,
{
    let (store, mut writer) = reflector::store();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(CatalogEntry::new(object)));
    }
    store
}

fn of_namespace<K>(store: &Store<CatalogEntry<K>>, namespace: &str) -> Vec<Arc<CatalogEntry<K>>>
where
    K: StatusMemory<DynamicType = ()> + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace() == namespace)
        .collect()
}

type Cached<T> = Arc<tokio::sync::Mutex<HashMap<String, (Instant, Arc<T>)>>>;

/// Fetch and delivery records of a namespace, read once for all its Sources and Recipients and
/// reused for a while: a resync of 5,000 Recipients is one query, not 5,000. A namespace's
/// records are dropped once they are too old to be reused, rather than held until the next
/// burst of reconciles ten minutes later (5,000 addresses' records are about a megabyte).
pub struct HealthSnapshots {
    ttl: Duration,
    sources: Cached<HashMap<String, SourceHealthRow>>,
    recipients: Cached<HashMap<String, RecipientDeliveries>>,
}

/// How long a namespace's records are reused: statuses are refreshed every ten minutes, so a
/// few seconds of staleness is invisible, and a burst of reconciles shares one read.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(10);

impl HealthSnapshots {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sources: Default::default(),
            recipients: Default::default(),
        }
    }

    /// The namespace's entry, loaded when missing or older than the TTL; one load at a time
    /// (reconciles waiting for it share its result).
    async fn cached<T, F>(
        &self,
        map: &Cached<T>,
        namespace: &str,
        load: F,
    ) -> Result<Arc<T>, StoreError>
    where
        T: Send + Sync + 'static,
        F: Future<Output = Result<T, StoreError>>,
    {
        let mut guard = map.lock().await;
        if let Some((_, value)) = guard
            .get(namespace)
            .filter(|(at, _)| at.elapsed() < self.ttl)
        {
            return Ok(value.clone());
        }
        let value = Arc::new(load.await?);
        let loaded = Instant::now();
        guard.insert(namespace.to_string(), (loaded, value.clone()));
        drop(guard);
        tokio::spawn(expire(map.clone(), namespace.to_string(), loaded, self.ttl));
        Ok(value)
    }

    /// Drops the namespace's records, so the next read sees what a run just recorded.
    pub async fn forget(&self, namespace: &str) {
        self.sources.lock().await.remove(namespace);
        self.recipients.lock().await.remove(namespace);
    }

    /// Fetch health of the namespace's sources, by name.
    pub async fn sources(
        &self,
        store: &crate::store::Store,
        namespace: &str,
    ) -> Result<Arc<HashMap<String, SourceHealthRow>>, StoreError> {
        self.cached(&self.sources, namespace, async {
            Ok(store
                .source_health(Some(namespace))
                .await?
                .into_iter()
                .map(|row| (row.source.clone(), row))
                .collect())
        })
        .await
    }

    /// Deliveries and blacklist entries of the namespace's addresses.
    pub async fn recipients(
        &self,
        store: &crate::store::Store,
        namespace: &str,
    ) -> Result<Arc<HashMap<String, RecipientDeliveries>>, StoreError> {
        self.cached(
            &self.recipients,
            namespace,
            store.recipient_deliveries_in(namespace),
        )
        .await
    }

    /// Drops the namespace's delivery records (after lifting a blacklist entry).
    pub async fn forget_recipients(&self, namespace: &str) {
        self.recipients.lock().await.remove(namespace);
    }
}

/// Drops `namespace`'s records loaded at `loaded` once they are `ttl` old (records loaded
/// again since stay).
async fn expire<T>(map: Cached<T>, namespace: String, loaded: Instant, ttl: Duration) {
    tokio::time::sleep(ttl).await;
    let mut guard = map.lock().await;
    if guard.get(&namespace).is_some_and(|(at, _)| *at == loaded) {
        guard.remove(&namespace);
    }
}

/// The shared state of every reconcile.
pub struct Context {
    pub client: Client,
    pub store: crate::store::Store,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub catalog: Catalog,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub snapshots: HealthSnapshots,
    /// The run Jobs running and the runs waiting for a place.
    pub runs: super::run_queue::RunQueue,
    /// Namespaces where a run just ended: their Sources' and Recipients' status is written
    /// again now, not at the next ten-minute refresh (the operator looks at 06:21).
    pub runs_ended: tokio::sync::broadcast::Sender<String>,
    failures: Mutex<HashMap<String, u32>>,
    /// Reports (by uid) this process has looked at once (for once-only clean-ups).
    seen: Mutex<std::collections::HashSet<String>>,
}

impl Context {
    pub fn new(
        client: Client,
        store: crate::store::Store,
        settings: Settings,
        clock: Arc<dyn Clock>,
        catalog: Catalog,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let max_runs = settings.max_concurrent_runs;
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            store,
            settings,
            clock,
            catalog,
            metrics,
            snapshots: HealthSnapshots::new(SNAPSHOT_TTL),
            runs: super::run_queue::RunQueue::new(max_runs),
            runs_ended: tokio::sync::broadcast::channel(64).0,
            failures: Mutex::new(HashMap::new()),
            seen: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The same context reading fetch and delivery records afresh after `ttl` (tests that
    /// record and check in one breath use zero).
    /// A run of `namespace` ended: its records changed, and its health is written again.
    pub async fn run_ended(&self, namespace: &str) {
        self.snapshots.forget(namespace).await;
        // Nobody listening (no health loop in this process) is fine.
        let _ = self.runs_ended.send(namespace.to_string());
    }

    pub fn with_snapshot_ttl(mut self, ttl: Duration) -> Self {
        self.snapshots.ttl = ttl;
        self
    }

    /// Counts a failure of `key`; the number of failures in a row.
    pub fn failed(&self, key: &str) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// True the first time this process asks about `uid`.
    pub fn first_look(&self, uid: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(uid.to_string())
    }

    /// Asks again next time (the first look failed).
    pub fn forget_look(&self, uid: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(uid);
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

/// The failure-count key of an object.
pub fn object_key(kind: &str, obj: &impl ResourceExt) -> String {
    format!(
        "{kind}/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records are reused while fresh, and dropped once too old to be reused: a namespace's
    /// snapshot is not held between bursts of reconciles.
    #[tokio::test]
    async fn a_snapshot_is_reused_while_fresh_and_then_dropped() {
        let snapshots = HealthSnapshots::new(Duration::from_millis(200));
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(HashMap::<String, SourceHealthRow>::new())
        };
        let first = snapshots
            .cached(&snapshots.sources, "desk", load())
            .await
            .unwrap();
        let again = snapshots
            .cached(&snapshots.sources, "desk", load())
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(snapshots.sources.lock().await.contains_key("desk"));

        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            snapshots.sources.lock().await.is_empty(),
            "dropped when stale"
        );
        let fresh = snapshots
            .cached(&snapshots.sources, "desk", load())
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
