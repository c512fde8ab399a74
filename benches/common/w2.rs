//! W2's resources (../shared/BENCHMARKS.md): 50 DailyReports, 500 Sources, 5,000 Recipients
//! in one namespace, shared by the plan and controller benchmarks.
#![allow(dead_code)]

use finrep::api::{DailyReport, Recipient, Source};
use finrep::validation::ResourceSet;

const CATEGORIES: [&str; 6] = ["宏观", "A股", "港股", "美股", "行业", "公告"];

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_norway::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// W2's resources: each report selects the sources of its desk (one of ten) and the
/// recipients subscribed to it (each recipient subscribes to about five reports).
pub fn resources(reports: usize, sources: usize, recipients: usize) -> ResourceSet {
    let source = |i: usize| -> Source {
        yaml(&format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Source\nmetadata: {{name: src-{i:04}, labels: {{desk: d{}}}}}\nspec: {{kind: feed, url: 'https://feeds{}.example.com/{i}.xml', category: {}, weight: 1.0}}\n",
            i % 10,
            i % 37,
            CATEGORIES[i % 6]
        ))
    };
    let recipient = |i: usize| -> Recipient {
        let labels: Vec<String> = (0..5)
            .map(|k| format!("r{}: 'yes'", (i + k * 7) % reports))
            .collect();
        yaml(&format!(
            "apiVersion: finrep.io/v1alpha1\nkind: Recipient\nmetadata: {{name: rcpt-{i:05}, labels: {{{}}}}}\nspec: {{email: 'reader{i:05}@desk.example.com', displayName: '读者{i}', categories: [{}]}}\n",
            labels.join(", "),
            CATEGORIES[i % 4]
        ))
    };
    let report = |i: usize| -> DailyReport {
        yaml(&format!(
            "apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata: {{name: report-{i:02}}}\nspec:\n  title: 日报{i}\n  sourceSelector: {{matchLabels: {{desk: d{}}}}}\n  recipientSelector: {{matchLabels: {{r{i}: 'yes'}}}}\n  smtp: {{host: smtp.example.com, from: brief@example.com, credentialsSecretRef: {{name: smtp}}}}\n",
            i % 10
        ))
    };
    ResourceSet {
        sources: (0..sources).map(source).collect(),
        recipients: (0..recipients).map(recipient).collect(),
        reports: (0..reports).map(report).collect(),
    }
}

/// What a careless or hostile tenant adds: to the first `recipients` Recipients and `sources`
/// Sources, one annotation of `bytes` bytes and `labels` extra labels of the longest form
/// Kubernetes allows (a 253-byte prefix, 63-byte names and values).
pub fn bloat(
    set: &mut ResourceSet,
    recipients: usize,
    sources: usize,
    bytes: usize,
    labels: usize,
) {
    let blob = "x".repeat(bytes);
    let prefix = format!("{}.example.com", "t".repeat(241));
    let add = |meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        if bytes > 0 {
            meta.annotations
                .get_or_insert_default()
                .insert("tenant.example.com/blob".into(), blob.clone());
        }
        let l = meta.labels.get_or_insert_default();
        for k in 0..labels {
            l.insert(format!("{prefix}/{k:0>63}"), format!("{k:v>63}"));
        }
    };
    set.recipients
        .iter_mut()
        .take(recipients)
        .for_each(|r| add(&mut r.metadata));
    set.sources
        .iter_mut()
        .take(sources)
        .for_each(|s| add(&mut s.metadata));
}
