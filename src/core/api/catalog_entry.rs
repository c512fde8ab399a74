//! A Source or Recipient as the controller keeps it in its caches: what `lean::lean_catalog`
//! leaves of the object, with its labels moved out of `ObjectMeta` into one compact buffer
//! and its status out of the object, reduced to what the next reconcile reads
//! (`StatusMemory`, `KeptStatus`).
//!
//! Labels are what reports select by, so every cached object keeps them, but as a
//! `BTreeMap<String, String>` five labels cost a whole eleven-slot B-tree node and ten
//! separate strings — about 860 bytes, a quarter of what a cached Recipient held at W2
//! (docs/benchmarks.md). Here they cost two allocations.
//!
//! An entry gives its metadata without labels (`Resource::meta`), its spec
//! (`Selectable::spec`), the status as a reconcile reads it (`previous_status`), or the whole
//! object with its labels put back (`to_object`); selecting goes through `Selectable`, so
//! code that selects cannot read the emptied label map by mistake.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize};

use super::selector::{LabelLookup, Selectable, SelectedKind};
use super::{
    Condition, Recipient, RecipientSpec, RecipientStatus, Source, SourceSpec, SourceStatus,
};

/// Label keys and values in one buffer: `text` holds them back to back (key, value, key,
/// value … in key order) and `ends` where each one ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactLabels {
    text: Box<str>,
    ends: Box<[u32]>,
}

impl CompactLabels {
    /// The labels of `map`. `lean` bounds a kept object's labels to 16 KiB, far below what
    /// the `u32` offsets hold; a longer set (never kept) is cut to what fits.
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        let mut text = String::with_capacity(map.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(map.len() * 2);
        for (k, v) in map {
            let (Ok(key_end), Ok(value_end)) = (
                u32::try_from(text.len() + k.len()),
                u32::try_from(text.len() + k.len() + v.len()),
            ) else {
                break;
            };
            text.push_str(k);
            text.push_str(v);
            ends.extend([key_end, value_end]);
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The labels as (key, value), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0usize;
        self.ends.chunks_exact(2).map(move |pair| {
            let (key_end, value_end) = (pair[0] as usize, pair[1] as usize);
            let key = &self.text[start..key_end];
            let value = &self.text[key_end..value_end];
            start = value_end;
            (key, value)
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl LabelLookup for CompactLabels {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// A cached Source or Recipient (see the module's comment): the object's metadata and spec
/// as parts, so that the typed object's inline status (208 bytes of a Recipient, empty once
/// `kept` has what is read of it) is not held by every entry.
#[derive(Debug)]
pub struct CatalogEntry<K: StatusMemory> {
    /// Without labels (`labels` has them).
    meta: ObjectMeta,
    spec: K::Spec,
    /// The status as the watch read it, until the entry is compacted.
    read_status: Option<Box<K::Status>>,
    labels: CompactLabels,
    /// What the next reconcile reads of the status; `None` when the object has none.
    kept: Option<KeptStatus>,
    /// A digest of the status as the API server holds it (`StatusMemory`); `None` until the
    /// entry is compacted.
    written_status: Option<u64>,
}

/// What the controller keeps of a status it wrote: the next reconcile reads only condition
/// types, states and transition times (and a Recipient's handled unblock value), and compares
/// the status it computes with the one written — which a digest answers. Messages, reasons,
/// counts and dates are most of a cached status's strings, and the typed status's own layout
/// (five strings and a vector per condition) most of the rest.
pub trait StatusMemory: SelectedKind + Sized {
    type Status: Serialize + Clone + std::fmt::Debug;

    /// The object as metadata, spec and status.
    fn into_parts(self) -> (ObjectMeta, Self::Spec, Option<Self::Status>);

    /// The object of `meta` and `spec`, without status.
    fn from_parts(meta: ObjectMeta, spec: Self::Spec) -> Self;

    /// What the next reconcile reads of `status`.
    fn keep(status: &Self::Status) -> KeptStatus;

    /// A status holding only what `kept` holds: what the reconcile that reads it sees.
    fn thin_status(kept: &KeptStatus) -> Self::Status;
}

/// A digest of a status as written: equal statuses have equal digests.
pub fn status_digest<S: Serialize>(status: Option<&S>) -> u64 {
    let mut hasher = DefaultHasher::new();
    // serde_json fails only on maps with non-string keys, which no status type has.
    serde_json::to_vec(&status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// The part of a status a reconcile reads: its conditions' types, states and transition
/// times, and a Recipient's handled unblock value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeptStatus {
    conditions: Box<[KeptCondition]>,
    handled_unblock: Option<Box<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct KeptCondition {
    type_: Cow<'static, str>,
    status: Cow<'static, str>,
    last_transition_time: Time,
}

/// The words conditions are made of, shared instead of copied into every cached object.
const CONDITION_WORDS: [&str; 6] = [
    super::conditions::READY,
    super::conditions::DELIVERABLE,
    super::conditions::LAST_RUN_SUCCEEDED,
    "True",
    "False",
    "Unknown",
];

fn shared_word(word: &str) -> Cow<'static, str> {
    match CONDITION_WORDS.iter().find(|w| **w == word) {
        Some(w) => Cow::Borrowed(w),
        None => Cow::Owned(word.to_string()),
    }
}

impl KeptStatus {
    fn new(conditions: &[Condition], handled_unblock: Option<&str>) -> Self {
        Self {
            conditions: conditions
                .iter()
                .map(|c| KeptCondition {
                    type_: shared_word(&c.type_),
                    status: shared_word(&c.status),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect(),
            handled_unblock: handled_unblock.map(Box::from),
        }
    }

    /// The conditions as `status::condition` reads them: type, state, transition time.
    fn conditions(&self) -> Vec<Condition> {
        self.conditions
            .iter()
            .map(|c| Condition {
                type_: c.type_.to_string(),
                status: c.status.to_string(),
                last_transition_time: c.last_transition_time.clone(),
                reason: String::new(),
                message: String::new(),
                observed_generation: None,
            })
            .collect()
    }
}

impl StatusMemory for Source {
    type Status = SourceStatus;

    fn into_parts(self) -> (ObjectMeta, SourceSpec, Option<SourceStatus>) {
        (self.metadata, self.spec, self.status)
    }

    fn from_parts(metadata: ObjectMeta, spec: SourceSpec) -> Self {
        Self {
            metadata,
            spec,
            status: None,
        }
    }

    fn keep(status: &SourceStatus) -> KeptStatus {
        KeptStatus::new(&status.conditions, None)
    }

    fn thin_status(kept: &KeptStatus) -> SourceStatus {
        SourceStatus {
            conditions: kept.conditions(),
            ..SourceStatus::default()
        }
    }
}

impl StatusMemory for Recipient {
    type Status = RecipientStatus;

    fn into_parts(self) -> (ObjectMeta, RecipientSpec, Option<RecipientStatus>) {
        (self.metadata, self.spec, self.status)
    }

    fn from_parts(metadata: ObjectMeta, spec: RecipientSpec) -> Self {
        Self {
            metadata,
            spec,
            status: None,
        }
    }

    fn keep(status: &RecipientStatus) -> KeptStatus {
        KeptStatus::new(&status.conditions, status.handled_unblock.as_deref())
    }

    fn thin_status(kept: &KeptStatus) -> RecipientStatus {
        RecipientStatus {
            conditions: kept.conditions(),
            handled_unblock: kept.handled_unblock.as_deref().map(String::from),
            ..RecipientStatus::default()
        }
    }
}

// By hand: a derived `Clone` would ask `K: Clone` of the kind, whose object is not held.
impl<K: StatusMemory> Clone for CatalogEntry<K> {
    fn clone(&self) -> Self {
        Self {
            meta: self.meta.clone(),
            spec: self.spec.clone(),
            read_status: self.read_status.clone(),
            labels: self.labels.clone(),
            kept: self.kept.clone(),
            written_status: self.written_status,
        }
    }
}

impl<K: StatusMemory> CatalogEntry<K> {
    /// Keeps `object` as the caches do: leaned, its labels compacted, its status reduced.
    pub fn new(object: K) -> Self {
        let mut entry = Self::read(object);
        entry.compact();
        entry
    }

    /// The entry of `object` as the watch read it, not yet compacted.
    fn read(object: K) -> Self {
        let (meta, spec, status) = object.into_parts();
        Self {
            meta,
            spec,
            read_status: status.map(Box::new),
            labels: CompactLabels::default(),
            kept: None,
            written_status: None,
        }
    }

    /// Leans the metadata, moves its labels into the compact form and reduces the status to
    /// what is kept of it; once (a compacted entry stays as it is).
    pub fn compact(&mut self) {
        if self.written_status.is_some() {
            return;
        }
        super::lean::lean_catalog(self);
        if let Some(map) = self.meta.labels.take() {
            self.labels = CompactLabels::from_map(&map);
        }
        let status = self.read_status.take();
        self.written_status = Some(status_digest(status.as_deref()));
        self.kept = status.as_deref().map(K::keep);
    }

    /// The status as the next reconcile reads it: conditions' types, states and transition
    /// times (and a Recipient's handled unblock value), nothing else.
    pub fn previous_status(&self) -> Option<K::Status> {
        self.kept.as_ref().map(K::thin_status)
    }

    /// Whether `status` is the one the API server holds (no write needed).
    pub fn status_is<S: Serialize>(&self, status: &S) -> bool {
        self.written_status == Some(status_digest(Some(status)))
    }

    pub fn labels(&self) -> &CompactLabels {
        &self.labels
    }

    /// The object with its labels back in place and without status, for code that takes
    /// whole objects (a plan; nothing there reads a status).
    pub fn to_object(&self) -> K {
        let mut meta = self.meta.clone();
        if !self.labels.is_empty() {
            meta.labels = Some(self.labels.to_map());
        }
        K::from_parts(meta, self.spec.clone())
    }

    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or("default")
    }
}

/// The watch reads an entry straight from the API's JSON, whole: `compact` (the watch's
/// `modify`) then makes it what the cache keeps. (Compacting inside deserialisation, while
/// the rest of a page of bloated objects is still being read, left glibc's heap fragmented:
/// 9 MiB more resident over 650 objects with 250 kB annotations.)
impl<'de, K: StatusMemory + Deserialize<'de>> Deserialize<'de> for CatalogEntry<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(deserializer).map(Self::read)
    }
}

impl<K: StatusMemory> Resource for CatalogEntry<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// A cached object selects by its compact labels (its metadata holds none).
impl<K: StatusMemory> Selectable for CatalogEntry<K> {
    type Spec = K::Spec;

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.label(key)
    }

    fn spec(&self) -> &K::Spec {
        &self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::selector::matches;
    use proptest::prelude::*;

    fn recipient(labels: serde_json::Value) -> Recipient {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
            "metadata": {"name": "r", "namespace": "desk", "uid": "u-1", "labels": labels,
                         "annotations": {"tenant/blob": "x"}},
            "spec": {"email": "a@example.com"},
        }))
        .unwrap()
    }

    #[test]
    fn an_entry_selects_as_its_object_did_and_gives_the_object_back() {
        let r = recipient(serde_json::json!({"brief": "morning", "desk": "macro", "tier": ""}));
        let mut entry: CatalogEntry<Recipient> =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        entry.compact();
        assert!(entry.meta().labels.is_none());
        assert!(entry.meta().uid.is_none());
        assert_eq!(entry.labels().len(), 3);
        assert_eq!(entry.label("desk"), Some("macro"));
        assert_eq!(entry.label("tier"), Some(""));
        assert_eq!(entry.label("nope"), None);
        assert_eq!((entry.name(), entry.namespace()), ("r", "desk"));
        let back = entry.to_object();
        assert_eq!(back.metadata.labels, r.metadata.labels);
        assert!(back.metadata.annotations.is_none());
        assert_eq!(back.spec, r.spec);
    }

    #[test]
    fn labels_over_the_bound_stay_the_marker_that_nothing_selects() {
        let many: serde_json::Map<_, _> = (0..100)
            .map(|i| (format!("k{i}"), serde_json::json!("v")))
            .collect();
        let entry = CatalogEntry::new(recipient(serde_json::Value::Object(many)));
        assert_eq!(entry.labels().len(), 1);
        assert!(!matches(None, entry.labels()));
        assert!(crate::api::lean::label_problem(entry.labels()).is_some());
    }

    #[test]
    fn the_kept_status_gives_back_conditions_and_the_unblock_value_and_nothing_else() {
        let mut r = recipient(serde_json::json!({}));
        let since = |s: &str| Time(s.parse().unwrap());
        let condition = |type_: &str, status: &str, at: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: since(at),
            reason: "Why".into(),
            message: "a long message".into(),
            observed_generation: Some(3),
        };
        r.status = Some(RecipientStatus {
            delivered_count: 12,
            handled_unblock: Some("2026-11-23".into()),
            conditions: vec![
                condition("Deliverable", "True", "2026-11-20T06:00:00Z"),
                // Written by somebody else: kept as it is, not only the words finrep uses.
                condition("Audited", "Maybe", "2026-11-21T06:00:00Z"),
            ],
            ..RecipientStatus::default()
        });
        let whole = r.status.clone();
        let entry = CatalogEntry::new(r);
        assert!(entry.status_is(whole.as_ref().unwrap()));
        let previous = entry.previous_status().unwrap();
        assert_eq!(previous.delivered_count, 0);
        assert_eq!(previous.handled_unblock.as_deref(), Some("2026-11-23"));
        let kept: Vec<_> = previous
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.last_transition_time.clone(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            [
                ("Deliverable", "True", since("2026-11-20T06:00:00Z")),
                ("Audited", "Maybe", since("2026-11-21T06:00:00Z")),
            ]
        );
        assert!(previous.conditions.iter().all(|c| c.message.is_empty()));
        assert!(
            CatalogEntry::new(recipient(serde_json::json!({})))
                .previous_status()
                .is_none()
        );
    }

    proptest! {
        #[test]
        fn compact_labels_hold_exactly_the_map(
            map in proptest::collection::btree_map("[a-z./-]{0,12}", "[a-zA-Z0-9 é中-]{0,12}", 0..12),
            probe in "[a-z./-]{0,12}",
        ) {
            let compact = CompactLabels::from_map(&map);
            prop_assert_eq!(compact.to_map(), map.clone());
            prop_assert_eq!(compact.len(), map.len());
            prop_assert_eq!(compact.label(&probe), map.get(&probe).map(String::as_str));
        }
    }
}
