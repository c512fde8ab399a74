//! The checks only code can do, over typed resources: cron expressions, time zones, the mail
//! window against the schedule, selectors, charsets, CSS selectors, JSON paths, regular
//! expressions, and cross-resource rules (duplicate addresses, selectors that match nothing).
//!
//! Pure: `finrep validate`, standalone mode and the controller's status conditions all call
//! these functions, so every entry point refuses the same things with the same words.

mod rules;

pub use rules::{
    check_content, check_daily_report, check_mail_window, check_recipient, check_smtp,
    check_source, reserved_secret_problems,
};

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use crate::api::selector::Selectable;
use crate::api::{
    DailyReport, Recipient, RecipientSpec, ResourceKind, Source, SourceSpec, selector,
};

/// How serious a finding is: errors refuse the resource, warnings only inform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem with one field of one resource spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub severity: Severity,
    /// Dotted path from the object root, e.g. `spec.mailWindow.start`.
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A problem found across resources, naming the resource it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: ResourceKind,
    pub namespace: String,
    pub name: String,
    pub problem: FieldProblem,
}

/// A set of resources as one namespace-aware configuration (a directory of manifests, or
/// what the controller's caches hold).
#[derive(Clone, Debug, Default)]
pub struct ResourceSet {
    pub sources: Vec<Source>,
    pub recipients: Vec<Recipient>,
    pub reports: Vec<DailyReport>,
}

fn namespace_of<K: kube::Resource>(obj: &K) -> String {
    obj.namespace().unwrap_or_else(|| "default".to_string())
}

/// Rules that need more than one resource: names and e-mail addresses unique per namespace
/// and, when `complete` (the set holds every resource of its namespaces), selectors that
/// select something.
pub fn check_set(set: &ResourceSet, complete: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    duplicate_names(
        ResourceKind::Source,
        set.sources.iter().map(|s| (namespace_of(s), s.name_any())),
        &mut findings,
    );
    duplicate_names(
        ResourceKind::Recipient,
        set.recipients
            .iter()
            .map(|r| (namespace_of(r), r.name_any())),
        &mut findings,
    );
    duplicate_names(
        ResourceKind::DailyReport,
        set.reports.iter().map(|r| (namespace_of(r), r.name_any())),
        &mut findings,
    );

    let mut emails: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in &set.recipients {
        let name = r.name_any();
        // A chat group's address is its own name: never a duplicate of another's.
        let Some(email) = &r.spec.email else { continue };
        let key = (namespace_of(r), r.spec.address(&name));
        match emails.get(&key) {
            Some(first) if *first != name => findings.push(Finding {
                kind: ResourceKind::Recipient,
                namespace: key.0.clone(),
                name,
                problem: FieldProblem::error(
                    "spec.email",
                    format!(
                        "{} is already the address of Recipient {first}; one address is one Recipient (give it several labels to subscribe it to several reports)",
                        email
                    ),
                ),
            }),
            Some(_) => {}
            None => {
                emails.insert(key, name);
            }
        }
    }

    if complete {
        for report in &set.reports {
            findings.extend(selection_findings(set, report));
        }
    }
    findings
}

fn duplicate_names(
    kind: ResourceKind,
    names: impl Iterator<Item = (String, String)>,
    findings: &mut Vec<Finding>,
) {
    let mut seen = BTreeSet::new();
    for (namespace, name) in names {
        if !seen.insert((namespace.clone(), name.clone())) {
            findings.push(Finding {
                kind,
                namespace,
                name: name.clone(),
                problem: FieldProblem::error(
                    "metadata.name",
                    format!("{kind} {name} is defined more than once in this namespace; names must be unique"),
                ),
            });
        }
    }
}

fn selection_findings(set: &ResourceSet, report: &DailyReport) -> Vec<Finding> {
    let namespace = namespace_of(report);
    let in_namespace = |ns: String| ns == namespace;
    selection_problems(
        report,
        set.sources
            .iter()
            .filter(|s| in_namespace(namespace_of(*s))),
        set.recipients
            .iter()
            .filter(|r| in_namespace(namespace_of(*r))),
    )
    .into_iter()
    .map(|problem| Finding {
        kind: ResourceKind::DailyReport,
        namespace: namespace.clone(),
        name: report.name_any(),
        problem,
    })
    .collect()
}

/// What a report's selectors select among the Sources and Recipients of its namespace: an
/// error when nothing, a warning when only disabled ones or when a section has no source.
/// The controller calls it over its caches, `finrep validate` over a directory.
pub fn selection_problems<'a, S, R>(
    report: &DailyReport,
    sources_of_namespace: impl IntoIterator<Item = &'a S>,
    recipients_of_namespace: impl IntoIterator<Item = &'a R>,
) -> Vec<FieldProblem>
where
    S: Selectable<Spec = SourceSpec> + 'a,
    R: Selectable<Spec = RecipientSpec> + 'a,
{
    let namespace = namespace_of(report);
    let mut out = Vec::new();

    let sources: Vec<&SourceSpec> = sources_of_namespace
        .into_iter()
        .filter(|s| selector::selects(report.spec.source_selector.as_ref(), *s))
        .map(|s| s.spec())
        .collect();
    if sources.is_empty() {
        out.push(FieldProblem::error(
            "spec.sourceSelector",
            format!("selects no Source in namespace {namespace}; add matching labels to Sources or change the selector"),
        ));
    } else if !sources.iter().any(|s| s.enabled) {
        out.push(FieldProblem::warning(
            "spec.sourceSelector",
            "every selected Source is disabled; the report will be empty",
        ));
    }

    let mut selected = 0usize;
    let mut enabled = 0usize;
    let mut mailed = Vec::new();
    for r in recipients_of_namespace
        .into_iter()
        .filter(|r| selector::selects(report.spec.recipient_selector.as_ref(), *r))
    {
        selected += 1;
        enabled += usize::from(r.spec().enabled);
        if let Some(email) = r.spec().email.as_deref().filter(|_| r.spec().enabled) {
            mailed.push(email.to_string());
        }
    }
    if report.spec.smtp.is_none() && !mailed.is_empty() {
        mailed.sort();
        out.push(FieldProblem::error(
            "spec.smtp",
            format!(
                "the report selects e-mail Recipients ({}) but has no smtp section; add spec.smtp, or select chat groups only",
                mailed.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if selected == 0 {
        out.push(FieldProblem::error(
            "spec.recipientSelector",
            format!("selects no Recipient in namespace {namespace}; add matching labels to Recipients or change the selector"),
        ));
    } else if enabled == 0 {
        out.push(FieldProblem::warning(
            "spec.recipientSelector",
            "every selected Recipient is disabled; nobody will receive the report",
        ));
    }

    let categories: BTreeSet<&str> = sources.iter().map(|s| s.category.as_str()).collect();
    for (i, cat) in report.spec.content.section_order.iter().enumerate() {
        if !categories.contains(cat.as_str()) {
            out.push(FieldProblem::warning(
                format!("spec.content.sectionOrder[{i}]"),
                format!("no selected Source has category {cat:?}; the section will stay empty"),
            ));
        }
    }
    out
}
