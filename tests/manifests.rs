//! `finrep validate`, the examples, the invalid fixtures and the generated CRDs.

use std::path::{Path, PathBuf};
use std::process::Command;

use finrep::api::{DailyReport, LateDelivery, ResourceKind, SourceKind};
use finrep::manifest::{self, LoadOptions};
use finrep::validation::Severity;
use kube::ResourceExt;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &Path) -> manifest::Loaded {
    manifest::load(&[path.to_path_buf()], &LoadOptions::default()).expect("fixture readable")
}

#[test]
fn examples_are_valid_and_realistic() {
    let loaded = load(&root().join("manifests/examples"));
    let listing: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(loaded.errors(), 0, "{listing:#?}");
    assert_eq!(loaded.warnings(), 0, "{listing:#?}");

    let set = &loaded.set;
    assert!(set.sources.len() >= 8, "at least eight sources");
    for kind in [SourceKind::Feed, SourceKind::Json, SourceKind::Html] {
        assert!(
            set.sources.iter().any(|s| s.spec.kind == kind),
            "a {kind:?} source"
        );
    }
    for category in ["宏观", "A股", "港股", "美股", "行业", "公告"] {
        assert!(
            set.sources.iter().any(|s| s.spec.category == category),
            "a source in {category}"
        );
    }
    let (chat, mail): (Vec<_>, Vec<_>) = set.recipients.iter().partition(|r| r.spec.chat.is_some());
    assert_eq!(mail.len(), 4);
    let mut platforms: Vec<_> = chat
        .iter()
        .filter_map(|r| r.spec.chat.as_ref())
        .map(|c| c.platform.as_str())
        .collect();
    platforms.sort();
    assert_eq!(
        platforms,
        ["dingtalk", "feishu", "lark", "wecom"],
        "an example per platform"
    );

    let brief: &DailyReport = set
        .reports
        .iter()
        .find(|r| r.name_any() == "morning-brief")
        .expect("morning-brief");
    assert_eq!(brief.spec.schedule, "0 6 * * *");
    assert_eq!(brief.spec.time_zone, "Asia/Shanghai");
    assert_eq!(brief.spec.mail_window.start, "06:05");
    assert_eq!(brief.spec.mail_window.end, "06:20");
    assert_eq!(brief.spec.mail_window.late_delivery, LateDelivery::Skip);
    assert_eq!(
        brief.spec.backup, None,
        "the installation backs up, not a report"
    );
}

#[test]
fn defaults_fill_a_minimal_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.yaml");
    std::fs::write(
        &file,
        "apiVersion: finrep.io/v1alpha1\nkind: DailyReport\nmetadata:\n  name: brief\nspec:\n  title: 日报\n  smtp:\n    host: smtp.example.com\n    from: brief@example.com\n",
    )
    .unwrap();
    let loaded = load(&file);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    let spec = &loaded.set.reports[0].spec;
    assert_eq!(spec.schedule, "0 6 * * *");
    assert_eq!(spec.time_zone, "Asia/Shanghai");
    assert_eq!(
        (
            spec.mail_window.start.as_str(),
            spec.mail_window.end.as_str()
        ),
        ("06:05", "06:20")
    );
    assert_eq!(spec.backup, None);
    assert_eq!(spec.smtp.as_ref().map(|s| s.port), Some(587));
}

/// Every fixture names what it expects in its first line: `# expect-field: <path>` (an
/// error must name that field) or `# expect-message: <text>`.
#[test]
fn invalid_fixtures_are_refused_naming_the_field() {
    let dir = root().join("tests/fixtures/invalid");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in entries {
        let first_file = if path.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            inner.sort();
            inner[0].clone()
        } else {
            path.clone()
        };
        let text = std::fs::read_to_string(&first_file).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let loaded = load(&path);
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.problem.severity == Severity::Error)
            .collect();
        let ok = if let Some(field) = first.strip_prefix("# expect-field: ") {
            errors
                .iter()
                .any(|d| d.problem.field == field.trim() && !d.problem.message.is_empty())
        } else if let Some(msg) = first.strip_prefix("# expect-message: ") {
            errors
                .iter()
                .any(|d| d.problem.message.contains(msg.trim()))
        } else {
            panic!("{} has no expectation line", path.display());
        };
        if !ok {
            failures.push(format!("{}: {first}\n  got: {errors:#?}", path.display()));
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} invalid fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn validate_command_exit_codes_and_output() {
    let bin = env!("CARGO_BIN_EXE_finrep");
    let ok = Command::new(bin)
        .args(["validate", "-f"])
        .arg(root().join("manifests/examples"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let bad = Command::new(bin)
        .args(["validate", "-f"])
        .arg(root().join("tests/fixtures/invalid/window-end-before-start.yaml"))
        .arg(root().join("tests/fixtures/invalid/ftp-url.yaml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains(
            "window-end-before-start.yaml (document 1) DailyReport/a spec.mailWindow.end:"
        ),
        "{out}"
    );
    assert!(
        out.contains("ftp-url.yaml (document 1) Source/s spec.url:"),
        "{out}"
    );
    assert!(out.contains("2 error(s)"), "{out}");
}

#[test]
fn crds_directory_matches_the_generator() {
    for kind in ResourceKind::ALL {
        let path = root().join("crds").join(finrep::crd::file_name(kind));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = finrep::crd::to_yaml(&kind.crd()).unwrap();
        assert!(
            on_disk == generated,
            "{} is stale; regenerate with: cargo run -- crd --output-dir crds",
            path.display()
        );
    }
}

#[test]
fn crds_have_columns_short_names_status_and_descriptions() {
    let expected = [
        (
            ResourceKind::Source,
            "src",
            vec![
                "Kind",
                "Category",
                "Enabled",
                "Items",
                "Last-Fetch",
                "Ready",
                "Age",
            ],
        ),
        (
            ResourceKind::Recipient,
            "rcpt",
            vec![
                "Email",
                "Chat",
                "Enabled",
                "Last-Delivered",
                "Deliverable",
                "Age",
            ],
        ),
        (
            ResourceKind::DailyReport,
            "dr",
            vec![
                "Schedule",
                "Last-Run",
                "Phase",
                "Delivered",
                "Failed",
                "Next",
                "Age",
            ],
        ),
    ];
    for (kind, short, columns) in expected {
        let crd = kind.crd();
        assert_eq!(crd.spec.group, "finrep.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["finrep".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind} has a status subresource"
        );
        let names: Vec<String> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.to_uppercase())
            .collect();
        let want: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
        assert_eq!(names, want, "{kind} printer columns");

        let schema = finrep::crd::openapi_schema(kind);
        let mut missing = Vec::new();
        undocumented(&schema["properties"]["spec"], "spec", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind} fields without description: {missing:?}"
        );
        let status = &schema["properties"]["status"]["properties"];
        assert!(
            status.get("observedGeneration").is_some(),
            "{kind} observedGeneration"
        );
        assert!(status.get("conditions").is_some(), "{kind} conditions");
    }
}

fn undocumented(node: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            let child = format!("{path}.{k}");
            if v.get("description")
                .and_then(|d| d.as_str())
                .is_none_or(str::is_empty)
            {
                out.push(child.clone());
            }
            // Kubernetes' own types (selectors, resources) document themselves.
            if !matches!(
                k.as_str(),
                "sourceSelector" | "recipientSelector" | "resources"
            ) {
                undocumented(v, &child, out);
            }
        }
    }
    if let Some(items) = node.get("items") {
        undocumented(items, path, out);
    }
}

#[test]
fn cel_rules_compile_and_run_offline() {
    // Each rule is evaluated by the same CEL engine `validate` uses; a rule that does not
    // compile would surface as a CompilationFailure on any object.
    let checker = finrep::manifest::SchemaChecker::new().unwrap();
    let report = serde_json::json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport",
        "metadata": {"name": "x"},
        "spec": {
            "title": "T",
            "mailWindow": {"start": "06:05", "end": "06:20"},
            "content": {"summarizer": {"endpoint": "https://api.example.com/v1", "model": "m"}},
            "smtp": {"host": "smtp.example.com", "from": "A <a@example.com>", "replyTo": "b@example.com"}
        }
    });
    assert_eq!(checker.check(ResourceKind::DailyReport, &report), vec![]);
    let source = serde_json::json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Source", "metadata": {"name": "x"},
        "spec": {"kind": "html", "url": "https://example.com", "category": "A股", "html": {"item": "li"}}
    });
    assert_eq!(checker.check(ResourceKind::Source, &source), vec![]);
    let recipient = serde_json::json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient", "metadata": {"name": "x"},
        "spec": {"email": "zhang.wei@example.com"}
    });
    assert_eq!(checker.check(ResourceKind::Recipient, &recipient), vec![]);
}

/// A file that is not text is that file's error; the other manifests are still checked and
/// loaded.
#[test]
fn a_binary_file_does_not_stop_validation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.yaml"), b"\xff\xfe\x00\x01").unwrap();
    std::fs::copy(
        root().join("manifests/examples/sources.yaml"),
        dir.path().join("sources.yaml"),
    )
    .unwrap();
    let loaded = manifest::load(
        &[dir.path().to_path_buf()],
        &LoadOptions {
            complete: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(loaded.errors(), 1, "{:#?}", loaded.diagnostics);
    assert!(loaded.diagnostics[0].problem.message.contains("not UTF-8"));
    assert!(!loaded.set.sources.is_empty());
}

/// Standalone mode holds its loaded configuration for as long as it runs: a manifest directory
/// whose objects carry huge annotations loads into the same few bytes per object, and an
/// object with more labels than a report may select by is refused, naming the count.
#[test]
fn huge_annotations_are_not_kept_and_label_floods_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let examples = load(&root().join("manifests/examples")).set;
    let set = &examples;
    let blob = "x".repeat(250_000);
    let mut docs = Vec::new();
    let mut push = |value: serde_json::Value| docs.push(serde_json::to_string(&value).unwrap());
    for mut s in set.sources.clone() {
        s.metadata
            .annotations
            .get_or_insert_default()
            .insert("tenant.example.com/blob".into(), blob.clone());
        push(serde_json::to_value(&s).unwrap());
    }
    for mut r in set.recipients.clone() {
        r.metadata
            .annotations
            .get_or_insert_default()
            .insert("tenant.example.com/blob".into(), blob.clone());
        push(serde_json::to_value(&r).unwrap());
    }
    for r in &set.reports {
        push(serde_json::to_value(r).unwrap());
    }
    std::fs::write(dir.path().join("bloated.yaml"), docs.join("\n---\n")).unwrap();
    let loaded = load(dir.path());
    let listing: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(loaded.errors(), 0, "{listing:#?}");
    let kept = serde_json::to_string(&loaded.set.sources).unwrap().len()
        + serde_json::to_string(&loaded.set.recipients).unwrap().len();
    let plain = serde_json::to_string(&examples.sources).unwrap().len()
        + serde_json::to_string(&examples.recipients).unwrap().len();
    assert!(
        kept <= plain,
        "loaded objects hold {kept} bytes, the same objects without annotations {plain}"
    );

    // One Source with 100 labels more: refused, and the message says why.
    let mut flooded = set.sources[0].clone();
    let labels = flooded.metadata.labels.get_or_insert_default();
    for i in 0..100 {
        labels.insert(format!("tenant.example.com/l{i}"), "x".into());
    }
    std::fs::write(
        dir.path().join("flooded.yaml"),
        serde_json::to_string(&flooded).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("bloated.yaml")).unwrap();
    let loaded = load(dir.path());
    let problem = loaded
        .diagnostics
        .iter()
        .find(|d| d.problem.field == "metadata.labels")
        .expect("a label problem");
    assert_eq!(problem.problem.severity, Severity::Error);
    assert!(
        problem.problem.message.contains("labels") && problem.problem.message.contains("64"),
        "{}",
        problem.problem.message
    );
}
