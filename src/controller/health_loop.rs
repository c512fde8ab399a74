//! The loop that keeps Sources' and Recipients' statuses: an object is reconciled when it
//! changes (a burst of changes while it waits is one reconcile, and never two of one object
//! at once), every object again each `REFRESH`, a failed one again after its back-off, at
//! most `concurrency` at a time — what kube-runtime's `Controller` does for the reports.
//! Here it is a loop of its own because that `Controller`'s scheduler keeps its hash maps and
//! delay queue at the size of their largest burst for good: 3.5 MB after the first pass over
//! 5,000 Recipients (docs/benchmarks.md). The work waiting here is in ordered sets, which
//! give their memory back as they empty.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::ReconcileError;
use crate::api::{CatalogEntry, StatusMemory};

/// An object by namespace and name.
pub type ObjectKey = (String, String);

fn key_of<K: StatusMemory<DynamicType = ()> + 'static>(entry: &CatalogEntry<K>) -> ObjectKey {
    (entry.namespace().to_string(), entry.name().to_string())
}

/// What is to be reconciled and when: the decisions of the loop, without its I/O.
#[derive(Debug, Default)]
pub struct WorkQueue {
    /// Due now; a key is here at most once.
    due: BTreeSet<ObjectKey>,
    /// Retries, by the time they fall due; at most one per key (`retry_of`).
    retries: BTreeSet<(Instant, ObjectKey)>,
    retry_of: BTreeMap<ObjectKey, Instant>,
    /// Being reconciled: a key that changes meanwhile waits in `due` until it is done.
    running: BTreeSet<ObjectKey>,
}

impl WorkQueue {
    /// The object changed, or is due again: a retry it waited for is taken by this.
    pub fn due(&mut self, key: ObjectKey) {
        if let Some(at) = self.retry_of.remove(&key) {
            self.retries.remove(&(at, key.clone()));
        }
        self.due.insert(key);
    }

    /// The object failed: due again at `at`, or earlier if a retry was already set earlier.
    pub fn retry_at(&mut self, key: ObjectKey, at: Instant) {
        match self.retry_of.get(&key) {
            Some(set) if *set <= at => {}
            set => {
                if let Some(set) = set.copied() {
                    self.retries.remove(&(set, key.clone()));
                }
                self.retry_of.insert(key.clone(), at);
                self.retries.insert((at, key));
            }
        }
    }

    /// Makes the retries that fall due by `now` due.
    pub fn promote(&mut self, now: Instant) {
        while self.retries.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, key)) = self.retries.pop_first() {
                self.retry_of.remove(&key);
                self.due.insert(key);
            }
        }
    }

    /// When the next retry falls due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.first().map(|(at, _)| *at)
    }

    /// The next object to reconcile, unless `limit` are being reconciled: a due one that is
    /// not being reconciled already.
    pub fn start(&mut self, limit: usize) -> Option<ObjectKey> {
        if self.running.len() >= limit {
            return None;
        }
        let key = self
            .due
            .iter()
            .find(|k| !self.running.contains(*k))?
            .clone();
        self.due.remove(&key);
        self.running.insert(key.clone());
        Some(key)
    }

    /// The object's reconcile ended.
    pub fn finished(&mut self, key: &ObjectKey) {
        self.running.remove(key);
    }

    /// Whether any reconcile is running.
    pub fn is_running(&self) -> bool {
        !self.running.is_empty()
    }
}

/// How the loop reconciles its kind.
pub struct HealthLoop<K: StatusMemory<DynamicType = ()> + 'static, R, P> {
    /// The cache of the kind (shared with the reports' controller).
    pub store: Store<CatalogEntry<K>>,
    /// Every object is reconciled again this often.
    pub refresh: Duration,
    /// At most this many reconciles at once.
    pub concurrency: u16,
    /// One reconcile.
    pub reconcile: R,
    /// How long after a failed reconcile to try again.
    pub retry_after: P,
    /// Namespaces whose objects are reconciled again now (a run there just ended).
    pub refresh_namespaces: tokio::sync::broadcast::Receiver<String>,
}

impl<K, R, F, P> HealthLoop<K, R, P>
where
    K: StatusMemory<DynamicType = ()> + 'static,
    R: Fn(Arc<CatalogEntry<K>>) -> F,
    F: Future<Output = Result<(), ReconcileError>>,
    P: Fn(Arc<CatalogEntry<K>>, &ReconcileError) -> Duration,
{
    /// Runs until `stop` (letting the running reconciles finish) or until `changes` ends.
    pub async fn run(
        mut self,
        changes: impl Stream<Item = Arc<CatalogEntry<K>>>,
        stop: CancellationToken,
    ) {
        let mut changes = std::pin::pin!(changes);
        let mut nudged = true;
        let mut queue = WorkQueue::default();
        let mut running = FuturesUnordered::new();
        let mut next_refresh = Instant::now() + self.refresh;
        loop {
            while let Some(key) = queue.start(usize::from(self.concurrency.max(1))) {
                // Deleted since it changed: nothing to do.
                let Some(object) = self.store.get(&ObjectRef::new(&key.1).within(&key.0)) else {
                    queue.finished(&key);
                    continue;
                };
                let work = (self.reconcile)(object.clone());
                running.push(async move { (key, object, work.await) });
            }
            let wake = queue
                .next_retry()
                .map_or(next_refresh, |r| r.min(next_refresh));
            tokio::select! {
                () = stop.cancelled() => break,
                change = changes.next() => match change {
                    Some(object) => queue.due(key_of(&object)),
                    None => break,
                },
                refresh = self.refresh_namespaces.recv(), if nudged => match refresh {
                    Ok(ns) => {
                        for object in self.store.state().into_iter().filter(|o| o.namespace() == ns) {
                            queue.due(key_of(&object));
                        }
                    }
                    // Missed some: every object, once.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for object in self.store.state() {
                            queue.due(key_of(&object));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => nudged = false,
                },
                Some((key, object, result)) = running.next(), if queue.is_running() => {
                    queue.finished(&key);
                    if let Err(error) = result {
                        queue.retry_at(key, Instant::now() + (self.retry_after)(object, &error));
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= next_refresh {
                        for object in self.store.state() {
                            queue.due(key_of(&object));
                        }
                        next_refresh = now + self.refresh;
                    }
                    queue.promote(now);
                }
            }
        }
        while running.next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Recipient;
    use kube::runtime::{reflector, watcher};
    use std::sync::Mutex;

    fn key(name: &str) -> ObjectKey {
        ("desk".to_string(), name.to_string())
    }

    #[test]
    fn a_burst_of_changes_is_one_reconcile_and_never_two_at_once() {
        let mut q = WorkQueue::default();
        q.due(key("a"));
        q.due(key("a"));
        assert_eq!(q.start(4), Some(key("a")));
        assert_eq!(q.start(4), None, "one reconcile for the burst");
        // Changed while being reconciled: again once this one ends, not beside it.
        q.due(key("a"));
        assert_eq!(q.start(4), None);
        q.finished(&key("a"));
        assert_eq!(q.start(4), Some(key("a")));
    }

    #[test]
    fn no_more_than_the_limit_run_at_once() {
        let mut q = WorkQueue::default();
        for name in ["a", "b", "c"] {
            q.due(key(name));
        }
        assert_eq!(q.start(2), Some(key("a")));
        assert_eq!(q.start(2), Some(key("b")));
        assert_eq!(q.start(2), None);
        q.finished(&key("a"));
        assert_eq!(q.start(2), Some(key("c")));
        assert!(q.is_running());
    }

    #[test]
    fn a_retry_falls_due_at_its_time_and_not_before() {
        let now = Instant::now();
        let mut q = WorkQueue::default();
        q.retry_at(key("b"), now + Duration::from_secs(30));
        q.retry_at(key("a"), now + Duration::from_secs(10));
        assert_eq!(q.next_retry(), Some(now + Duration::from_secs(10)));
        q.promote(now + Duration::from_secs(9));
        assert_eq!(q.start(4), None);
        q.promote(now + Duration::from_secs(10));
        assert_eq!(q.start(4), Some(key("a")));
        assert_eq!(q.start(4), None);
        assert_eq!(q.next_retry(), Some(now + Duration::from_secs(30)));
    }

    #[test]
    fn one_retry_per_object_and_a_change_takes_its_place() {
        let now = Instant::now();
        let mut q = WorkQueue::default();
        q.retry_at(key("a"), now + Duration::from_secs(10));
        q.retry_at(key("a"), now + Duration::from_secs(60));
        q.retry_at(key("a"), now + Duration::from_secs(5));
        assert_eq!(q.retries.len(), 1, "the earliest is kept");
        assert_eq!(q.next_retry(), Some(now + Duration::from_secs(5)));
        q.due(key("a"));
        assert_eq!(q.next_retry(), None, "the change is reconciled now instead");
        assert_eq!(q.start(4), Some(key("a")));
    }

    fn entry(name: &str) -> Arc<CatalogEntry<Recipient>> {
        let recipient: Recipient = serde_json::from_value(serde_json::json!({
            "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
            "metadata": {"name": name, "namespace": "desk"},
            "spec": {"email": format!("{name}@example.com")},
        }))
        .unwrap();
        Arc::new(CatalogEntry::new(recipient))
    }

    /// Through the loop with a real cache: every change reconciled, a failure retried after
    /// its back-off, a deleted object skipped, and `stop` ends it.
    #[tokio::test]
    async fn changes_are_reconciled_failures_retried_and_stop_ends_the_loop() {
        let (store, mut writer) = reflector::store::<CatalogEntry<Recipient>>();
        for name in ["a", "b"] {
            writer.apply_watcher_event(&watcher::Event::Apply((*entry(name)).clone()));
        }
        let calls = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = calls.clone();
        let nudges = tokio::sync::broadcast::channel(4).0;
        let health = HealthLoop {
            store,
            refresh: Duration::from_secs(3600),
            concurrency: 2,
            reconcile: move |r: Arc<CatalogEntry<Recipient>>| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap();
                    seen.push(r.name().to_string());
                    let first_of_b =
                        r.name() == "b" && seen.iter().filter(|n| *n == "b").count() == 1;
                    if first_of_b {
                        return Err(ReconcileError::PlanTooLarge {
                            run: "not yet".into(),
                            bytes: 1,
                            max: 0,
                        });
                    }
                    Ok(())
                }
            },
            retry_after: |_: Arc<CatalogEntry<Recipient>>, _: &ReconcileError| {
                Duration::from_millis(20)
            },
            refresh_namespaces: nudges.subscribe(),
        };
        // "gone" changed, then was deleted before its turn: it is not in the cache.
        let changes = futures_util::stream::iter(["a", "b", "gone"].map(entry))
            .chain(futures_util::stream::pending());
        let stop = CancellationToken::new();
        let running = tokio::spawn(health.run(changes, stop.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A run of the namespace ended: every object of it again, once; another's, not.
        nudges.send("elsewhere".to_string()).unwrap();
        nudges.send(entry("a").namespace().to_string()).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("stop ends the loop")
            .unwrap();
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.iter().filter(|n| *n == "a").count(), 2, "{calls:?}");
        assert_eq!(
            calls.iter().filter(|n| *n == "b").count(),
            3,
            "retried once, then nudged: {calls:?}"
        );
        assert!(
            !calls.contains(&"gone".to_string()),
            "not in the cache: {calls:?}"
        );
    }
}
