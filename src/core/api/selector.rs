//! Label selectors as Kubernetes evaluates them, for resolving a report's sources and
//! recipients without an API server.

use std::collections::BTreeMap;

use super::LabelSelector;

/// The label a kept object carries in place of more labels than finrep keeps (`api::lean`):
/// such an object is selected by nothing.
pub const LABELS_OVER_LIMIT: &str = "finrep.io/labels-over-limit";

/// Labels looked up by key: an object's label map, or a cached object's compact labels.
pub trait LabelLookup {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// What a report selects by its labels and reads the spec of: a Source or Recipient as
/// manifests hold it, or as the controller caches it (`CatalogEntry`).
pub trait Selectable {
    type Spec;
    fn label(&self, key: &str) -> Option<&str>;
    fn spec(&self) -> &Self::Spec;
}

/// The kinds reports select (Source, Recipient), with their spec.
pub trait SelectedKind: kube::Resource {
    type Spec: Clone + std::fmt::Debug;
    fn spec_of(&self) -> &Self::Spec;
}

impl SelectedKind for super::Source {
    type Spec = super::SourceSpec;

    fn spec_of(&self) -> &Self::Spec {
        &self.spec
    }
}

impl SelectedKind for super::Recipient {
    type Spec = super::RecipientSpec;

    fn spec_of(&self) -> &Self::Spec {
        &self.spec
    }
}

/// A whole object selects by the labels in its metadata.
impl<K: SelectedKind> Selectable for K {
    type Spec = K::Spec;

    fn label(&self, key: &str) -> Option<&str> {
        self.meta().labels.as_ref()?.label(key)
    }

    fn spec(&self) -> &Self::Spec {
        self.spec_of()
    }
}

/// Lets `matches` take a `Selectable` object's labels.
pub struct LabelsOf<'a, S: ?Sized>(pub &'a S);

impl<S: Selectable + ?Sized> LabelLookup for LabelsOf<'_, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.0.label(key)
    }
}

/// True when `selector` selects `object`.
pub fn selects<S: Selectable + ?Sized>(selector: Option<&LabelSelector>, object: &S) -> bool {
    matches(selector, &LabelsOf(object))
}

/// True when `labels` satisfy `selector`; an absent or empty selector selects everything
/// except an object whose labels were over the controller's bound.
///
/// An invalid requirement (unknown operator) selects nothing, as the API server would refuse
/// such a selector outright; `selector_problems` reports it.
pub fn matches<L: LabelLookup + ?Sized>(selector: Option<&LabelSelector>, labels: &L) -> bool {
    let over_limit = || labels.label(LABELS_OVER_LIMIT).is_some();
    let Some(selector) = selector else {
        return !over_limit();
    };
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.label(k) == Some(v.as_str()));
    if !labels_match {
        return false;
    }
    let expressions_match = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.label(&req.key);
        let listed = |v: &str| values.iter().any(|x| x == v);
        match req.operator.as_str() {
            "In" => value.is_some_and(listed),
            "NotIn" => value.is_none_or(|v| !listed(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    // The marker last: most objects a selector meets do not match it at all.
    expressions_match && !over_limit()
}

/// Problems with a selector, as (field path relative to the selector, message).
pub fn selector_problems(selector: &LabelSelector) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        if let Some(msg) = label_key_problem(k) {
            problems.push((format!("matchLabels.{k}"), msg));
        }
        if let Some(msg) = label_value_problem(v) {
            problems.push((format!("matchLabels.{k}"), msg));
        }
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let field = format!("matchExpressions[{i}]");
        if let Some(msg) = label_key_problem(&req.key) {
            problems.push((format!("{field}.key"), msg));
        }
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    problems.push((
                        format!("{field}.values"),
                        format!("operator {} needs at least one value", req.operator),
                    ));
                }
                for v in values {
                    if let Some(msg) = label_value_problem(v) {
                        problems.push((format!("{field}.values"), msg));
                    }
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    problems.push((
                        format!("{field}.values"),
                        format!("operator {} takes no values; remove them", req.operator),
                    ));
                }
            }
            other => problems.push((
                format!("{field}.operator"),
                format!("unknown operator {other:?}; use In, NotIn, Exists or DoesNotExist"),
            )),
        }
    }
    problems
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_` and `.`, beginning and ending alphanumeric.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || prefix.len() > 253 || !is_dns_subdomain(prefix))
    {
        return Some(format!(
            "label key {key:?} has an invalid prefix; it must be a DNS subdomain such as example.com"
        ));
    }
    if name.is_empty() || name.len() > 63 || !is_label_token(name) {
        return Some(format!(
            "label key {key:?} is invalid; use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    None
}

/// Checks a label value: empty, or like a label name.
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() || (value.len() <= 63 && is_label_token(value)) {
        None
    } else {
        Some(format!(
            "label value {value:?} is invalid; use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, starting and ending
/// alphanumeric, at most 253 characters. Resource names follow the same rule.
pub fn is_dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn empty_selects_all() {
        assert!(matches(None, &labels(&[])));
        assert!(matches(
            Some(&LabelSelector::default()),
            &labels(&[("a", "b")])
        ));
    }

    #[test]
    fn labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("team", "macro")])),
            match_expressions: Some(vec![
                req("tier", "In", &["gold", "silver"]),
                req("paused", "DoesNotExist", &[]),
            ]),
        };
        assert!(matches(
            Some(&sel),
            &labels(&[("team", "macro"), ("tier", "gold")])
        ));
        assert!(!matches(
            Some(&sel),
            &labels(&[("team", "macro"), ("tier", "bronze")])
        ));
        assert!(!matches(
            Some(&sel),
            &labels(&[("team", "macro"), ("tier", "gold"), ("paused", "yes")])
        ));
        let notin = LabelSelector {
            match_expressions: Some(vec![req("tier", "NotIn", &["gold"])]),
            ..Default::default()
        };
        assert!(matches(Some(&notin), &labels(&[])));
    }

    #[test]
    fn reports_bad_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("bad key!", "ok")])),
            match_expressions: Some(vec![req("k", "Equals", &["x"]), req("k", "In", &[])]),
        };
        let fields: Vec<String> = selector_problems(&sel).into_iter().map(|p| p.0).collect();
        assert_eq!(
            fields,
            vec![
                "matchLabels.bad key!",
                "matchExpressions[0].operator",
                "matchExpressions[1].values"
            ]
        );
    }
}
