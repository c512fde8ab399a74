//! What the controller keeps of a watched object. Tenants write the objects the controller
//! caches, so whatever the controller does not read is dropped before an object enters a
//! cache: `managedFields`, `kubectl.kubernetes.io/last-applied-configuration` and every
//! annotation outside `finrep.io/`, and a `finrep.io/` annotation whose value is longer than
//! any the controller acts on. A 250 kB annotation on 600 Recipients then costs the cache
//! nothing (the watch still reads each object once as it arrives).

use kube::Resource;

/// The longest `finrep.io/` annotation value kept (`run-now` and `unblock` values are
/// timestamps or short tokens); a longer one is dropped, as if it were not set.
pub const MAX_ANNOTATION_VALUE: usize = 256;

/// Strips what the controller never reads from `obj`.
pub fn lean<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, v| k.starts_with("finrep.io/") && v.len() <= MAX_ANNOTATION_VALUE);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Recipient;

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
}
