//! What finrep keeps of an object it holds for long: the controller's caches and standalone
//! mode's loaded configuration. Tenants write those objects, so whatever finrep does not read
//! is dropped before an object is kept: `managedFields`,
//! `kubectl.kubernetes.io/last-applied-configuration` and every annotation outside
//! `finrep.io/`, and a `finrep.io/` annotation whose value is longer than any finrep acts on.
//! A 250 kB annotation on 600 Recipients then costs the cache nothing (the watch still reads
//! each object once as it arrives).
//!
//! Labels are what reports select by, so they stay — up to a bound: an object with more than
//! `MAX_LABELS` labels or `MAX_LABEL_BYTES` of them is cached with one label instead,
//! `LABELS_OVER_LIMIT`, which no report selects and which its status reports (`label_problem`;
//! standalone mode refuses such a configuration). Whatever a tenant writes, a kept object
//! costs a bounded number of bytes.

use std::collections::BTreeMap;

use kube::Resource;

use super::selector::LabelLookup;
use crate::validation::FieldProblem;

/// The longest `finrep.io/` annotation value kept (`run-now` and `unblock` values are
/// timestamps or short tokens); a longer one is dropped, as if it were not set.
pub const MAX_ANNOTATION_VALUE: usize = 256;

/// The most labels a selectable object may carry.
pub const MAX_LABELS: usize = 64;

/// The most bytes of label keys and values a selectable object may carry.
pub const MAX_LABEL_BYTES: usize = 16 * 1024;

/// The label an object over the label bound is cached with instead of its own; its value is
/// how many labels it had. No report selects such an object (`selector::matches`).
pub const LABELS_OVER_LIMIT: &str = super::selector::LABELS_OVER_LIMIT;

/// Strips what finrep never reads from `obj`.
pub fn lean<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, v| k.starts_with("finrep.io/") && v.len() <= MAX_ANNOTATION_VALUE);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    if let Some(labels) = meta.labels.as_mut()
        && over_label_bound(labels)
    {
        let count = labels.len();
        *labels = BTreeMap::from([(LABELS_OVER_LIMIT.to_string(), count.to_string())]);
    }
}

/// `lean`, and for objects finrep only reads (Sources and Recipients: nothing is ever owned
/// by one or written back with a precondition) also the identity the API server stamps on
/// them: uid, resourceVersion and creation time. The controller's watch reads resource
/// versions before this runs, so it resumes where it left off all the same; what goes is
/// three strings per object, and the cache's index would otherwise copy two of them again.
pub fn lean_catalog<K: Resource>(obj: &mut K) {
    lean(obj);
    let meta = obj.meta_mut();
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
}

fn over_label_bound(labels: &BTreeMap<String, String>) -> bool {
    labels.len() > MAX_LABELS
        || labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_LABEL_BYTES
}

/// The problem a cached object has when its labels were over the bound: the object is selected
/// by no report until labels are removed.
pub fn label_problem<L: LabelLookup + ?Sized>(labels: &L) -> Option<FieldProblem> {
    let count = labels.label(LABELS_OVER_LIMIT)?;
    Some(FieldProblem::error(
        "metadata.labels",
        format!(
            "{count} labels: finrep selects objects by at most {MAX_LABELS} labels of \
             {} KiB in all, so no report selects this one; remove the labels no selector uses",
            MAX_LABEL_BYTES / 1024
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Recipient;
    use kube::ResourceExt;

    #[test]
    fn only_finrep_annotations_of_a_sane_size_stay() {
        let big = "x".repeat(250_000);
        let mut r: Recipient = serde_json::from_value(serde_json::json!({
            "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
            "metadata": {
                "name": "r", "namespace": "desk", "labels": {"brief": "morning"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": big,
                    "tenant/blob": big,
                    "finrep.io/unblock": "2026-11-26",
                    "finrep.io/run-now": big,
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"email": "a@example.com"},
        }))
        .unwrap();
        lean(&mut r);
        let kept = serde_json::to_string(&r).unwrap();
        assert!(kept.len() < 1_000, "{} bytes kept", kept.len());
        let a = r.metadata.annotations.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a["finrep.io/unblock"], "2026-11-26");
        assert!(r.metadata.managed_fields.is_none());
        assert_eq!(r.metadata.labels.unwrap()["brief"], "morning");
    }

    fn with_labels(labels: BTreeMap<String, String>) -> Recipient {
        let mut r: Recipient = serde_json::from_value(serde_json::json!({
            "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
            "metadata": {"name": "r", "namespace": "desk"},
            "spec": {"email": "a@example.com"},
        }))
        .unwrap();
        r.metadata.labels = Some(labels);
        r
    }

    #[test]
    fn labels_over_the_bound_leave_one_marker_that_nothing_selects() {
        let at_bound: BTreeMap<String, String> = (0..MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let mut r = with_labels(at_bound.clone());
        lean(&mut r);
        assert_eq!(r.metadata.labels.as_ref(), Some(&at_bound));
        assert!(label_problem(r.labels()).is_none());

        let long = "v".repeat(63);
        for labels in [
            (0..=MAX_LABELS)
                .map(|i| (format!("k{i}"), "v".to_string()))
                .collect(),
            (0..60)
                .map(|i| {
                    (
                        format!("{}.example.com/k{i:0>60}", "p".repeat(240)),
                        long.clone(),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        ] {
            let mut r = with_labels(labels.clone());
            lean(&mut r);
            let kept = r.metadata.labels.clone().unwrap();
            assert_eq!(kept.len(), 1);
            assert_eq!(kept[LABELS_OVER_LIMIT], labels.len().to_string());
            let problem = label_problem(r.labels()).unwrap();
            assert_eq!(problem.field, "metadata.labels");
            assert!(
                problem.message.contains("no report selects"),
                "{}",
                problem.message
            );
            assert!(!crate::api::selector::matches(None, &kept));
        }
    }

    #[test]
    fn catalog_objects_keep_what_plans_and_statuses_read_and_not_their_identity() {
        let mut r: Recipient = serde_json::from_value(serde_json::json!({
            "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
            "metadata": {
                "name": "r", "namespace": "desk", "generation": 3, "labels": {"brief": "morning"},
                "uid": "0f7c6c52-7a3e-4c43-9d0c-6a4f3f1b2c11", "resourceVersion": "48213",
                "creationTimestamp": "2026-11-26T06:00:00Z",
                "annotations": {"finrep.io/unblock": "1", "tenant/blob": "x"},
            },
            "spec": {"email": "a@example.com"},
            "status": {"deliveredCount": 4},
        }))
        .unwrap();
        lean_catalog(&mut r);
        let m = &r.metadata;
        assert_eq!((m.uid.as_ref(), m.resource_version.as_ref()), (None, None));
        assert!(m.creation_timestamp.is_none());
        assert_eq!(m.name.as_deref(), Some("r"));
        assert_eq!(m.namespace.as_deref(), Some("desk"));
        assert_eq!(m.generation, Some(3));
        assert_eq!(m.labels.as_ref().unwrap()["brief"], "morning");
        assert_eq!(m.annotations.as_ref().unwrap().len(), 1);
        assert_eq!(r.status.unwrap().delivered_count, 4);
    }
}
