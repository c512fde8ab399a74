//! `kubectl finrep`'s arguments and output against golden files (tests/golden/kubectl-finrep;
//! rewrite them with `FINREP_BLESS=1 cargo test --test kubectl_finrep` and read the diff):
//! usage errors exit 2 with kubectl-like messages, `status` of a morning that went wrong reads
//! the same every time, for people and as JSON, and `logs` says when a Job is no longer kept.
//! The objects are built here as the controller writes them, in the in-memory API.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::kube_api::FakeApi;
use serde_json::{Value, json};

const NS: &str = "desk";

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/kubectl-finrep")
        .join(name)
}

/// `actual` equals the golden file `name` (or becomes it, with FINREP_BLESS).
fn assert_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("FINREP_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with FINREP_BLESS=1 cargo test --test kubectl_finrep",
            path.display()
        )
    });
    assert_eq!(actual, expected, "{} differs", path.display());
}

fn plugin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-finrep"));
    c.env_remove("KUBECONFIG").env("NO_COLOR", "1");
    c
}

fn transcript(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn usage_mistakes_exit_2_and_say_what_is_missing() {
    for (name, args) in [
        ("usage-no-command.txt", vec![]),
        ("usage-preview-no-report.txt", vec!["preview"]),
        ("usage-test-send-no-to.txt", vec!["test-send", "brief"]),
        (
            "usage-logs-preview-and-date.txt",
            vec!["logs", "brief", "--preview", "--date", "2026-12-05"],
        ),
        ("usage-output-xml.txt", vec!["status", "-o", "xml"]),
    ] {
        let out = plugin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", transcript(&out));
        assert_golden(name, &transcript(&out));
    }
    let help = plugin().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert_golden("help.txt", &transcript(&help));
}

// ---- a morning that went wrong, as the controller wrote it --------------------------------

fn daily_report() -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport",
        "metadata": {"name": "brief", "namespace": NS},
        "spec": {
            "title": "晨间要闻", "schedule": "0 6 * * 1-5", "timeZone": "Asia/Shanghai",
            "smtp": {"host": "smtp.example.com", "from": "brief@example.com"},
        },
    })
}

fn report_status() -> Value {
    json!({
        "lastScheduleTime": "2026-12-04T06:00:00+08:00",
        "nextScheduleTime": "2026-12-07T06:00:00+08:00",
        "lastRun": {
            "date": "2026-12-04", "job": "brief-20261204", "phase": "PartiallyDelivered",
            "started": "2026-12-03T22:00:02+00:00", "finished": "2026-12-03T22:12:40+00:00",
            "articles": 18, "recipients": 5, "delivered": 4, "failed": 1, "deferred": 0,
            "channels": [
                {"channel": "email", "delivered": 3, "failed": 1, "deferred": 0},
                {"channel": "wecom", "delivered": 1, "failed": 0, "deferred": 0},
            ],
        },
        "preview": {
            "request": "20261204T090000.000Z", "phase": "Ready", "date": "2026-12-07",
            "job": "brief-preview-1a2b3c4d", "articles": 17,
            "sourcesFailing": [{"source": "gone", "error": "http: HTTP 404"}],
            "configMap": "brief-preview",
        },
        "testSend": {
            "request": "alice#20261204T091000.000Z", "recipient": "alice", "phase": "Sent",
            "copyOf": "preview of 2026-12-07", "message": "250 2.0.0 queued",
        },
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Valid", "message": "",
             "lastTransitionTime": "2026-12-01T00:00:00Z"},
        ],
    })
}

fn source(name: &str, failures: u32, error: Option<&str>) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Source",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"kind": "feed", "url": format!("https://{name}.example.com/rss"), "category": "宏观"},
        "status": {"consecutiveFailures": failures, "lastError": error},
    })
}

fn recipient(name: &str, deliverable: (&str, &str), blacklist: Option<(&str, &str)>) -> Value {
    json!({
        "apiVersion": "finrep.io/v1alpha1", "kind": "Recipient",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"email": format!("{name}@example.com")},
        "status": {
            "blacklisted": blacklist.is_some(),
            "blacklistReason": blacklist.map(|b| b.0),
            "blacklistedSince": blacklist.map(|b| b.1),
            "conditions": [{
                "type": "Deliverable",
                "status": if deliverable.0 == "Deliverable" { "True" } else { "False" },
                "reason": deliverable.0, "message": deliverable.1,
                "lastTransitionTime": "2026-12-04T00:00:00Z",
            }],
        },
    })
}

fn warning(reason: &str, note: &str, at: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": format!("brief.{reason}"), "namespace": NS},
        "eventTime": at, "reportingController": "finrep.io/controller",
        "reportingInstance": "finrep-controller-0", "action": "Reconcile",
        "type": "Warning", "reason": reason, "note": note,
        "regarding": {"apiVersion": "finrep.io/v1alpha1", "kind": "DailyReport", "name": "brief", "namespace": NS},
    })
}

fn pod(name: &str, job: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"job-name": job},
                     "creationTimestamp": "2026-12-03T22:00:01Z"},
        "spec": {"containers": [{"name": "pipeline", "image": "finrep"}]},
    })
    .as_object()
    .cloned()
    .map(|mut o| {
        o.insert("status".into(), json!({"phase": phase}));
        Value::Object(o)
    })
    .unwrap()
}

async fn morning_that_went_wrong() -> (FakeApi, tempfile::TempDir) {
    let api = FakeApi::start().await;
    api.install_crds();
    api.put(&daily_report());
    api.set_status("finrep.io", "dailyreports", NS, "brief", report_status());
    for s in [
        source("news", 0, None),
        source("gone", 3, Some("http: HTTP 404 Not Found")),
    ] {
        let status = s["status"].clone();
        api.put(&s);
        let name = s["metadata"]["name"].as_str().unwrap().to_string();
        api.set_status("finrep.io", "sources", NS, &name, status);
    }
    for r in [
        recipient("alice", ("Deliverable", "reports are delivered"), None),
        recipient(
            "bob",
            (
                "Blacklisted",
                "blacklisted (bounce: 550 5.1.1 no such user)",
            ),
            Some(("550 5.1.1 no such user", "2026-12-04T06:07:00+08:00")),
        ),
        recipient(
            "carol",
            ("Unsubscribed", "the recipient unsubscribed on 2026-12-01"),
            Some(("unsubscribe", "2026-12-01T08:00:00+08:00")),
        ),
    ] {
        let status = r["status"].clone();
        api.put(&r);
        let name = r["metadata"]["name"].as_str().unwrap().to_string();
        api.set_status("finrep.io", "recipients", NS, &name, status);
    }
    api.put(&warning(
        "RunPartiallyDelivered",
        "the run of 2026-12-04 delivered 4, failed 1",
        "2026-12-03T22:12:41.000000Z",
    ));
    let p = pod("brief-20261204-0", "brief-20261204", "Succeeded");
    let status = p["status"].clone();
    api.put(&p);
    api.set_status("", "pods", NS, "brief-20261204-0", status);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), api.kubeconfig()).unwrap();
    (api, dir)
}

fn in_cluster(dir: &tempfile::TempDir, args: &[&str]) -> Output {
    plugin()
        .args(args)
        .args(["-n", NS, "--kubeconfig"])
        .arg(dir.path().join("kubeconfig"))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_morning_that_went_wrong() {
    let (_api, dir) = morning_that_went_wrong().await;
    let out = tokio::task::block_in_place(|| in_cluster(&dir, &["status", "brief"]));
    assert_eq!(out.status.code(), Some(3), "{}", transcript(&out));
    assert_golden("status-partly-failed.txt", &transcript(&out));
    let out = tokio::task::block_in_place(|| in_cluster(&dir, &["status", "-o", "json"]));
    assert_eq!(out.status.code(), Some(3), "{}", transcript(&out));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed[0]["verdict"], "NeedsAttention");
    assert_eq!(parsed[0]["sourcesFailing"][0]["name"], "gone");
    assert_eq!(
        parsed[0]["recipientsNotMailed"].as_array().unwrap().len(),
        2
    );
    assert_golden(
        "status-partly-failed.json",
        &String::from_utf8_lossy(&out.stdout),
    );
    let out = tokio::task::block_in_place(|| in_cluster(&dir, &["status", "-o", "yaml"]));
    let from_yaml: Value = serde_norway::from_slice(&out.stdout).unwrap();
    assert_eq!(from_yaml, parsed, "yaml and json say the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_job_no_longer_kept_say_so() {
    let (_api, dir) = morning_that_went_wrong().await;
    let out = tokio::task::block_in_place(|| in_cluster(&dir, &["logs", "brief"]));
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert_golden("logs-job-gone.txt", &transcript(&out));
    let out = tokio::task::block_in_place(|| in_cluster(&dir, &["status", "nothere"]));
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert_golden("status-no-such-report.txt", &transcript(&out));
}

#[test]
fn the_k9s_shortcuts_call_commands_the_plugin_has() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/k9s/plugins.yaml");
    let file: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let plugins = file["plugins"].as_object().unwrap();
    let mut commands = Vec::new();
    for (name, p) in plugins {
        assert_eq!(p["scopes"], json!(["dailyreports"]), "{name}");
        let line: Vec<String> = std::iter::once(p["command"].as_str().unwrap().to_string())
            .chain(
                p["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string()),
            )
            .collect();
        let line = line.join(" ");
        let sub = line
            .split("finrep ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{name}: {line}"));
        // Each is a command of the plugin: its help answers.
        let help = plugin().args([sub, "--help"]).output().unwrap();
        assert!(help.status.success(), "{name}: kubectl finrep {sub}");
        assert!(
            line.contains("$NAMESPACE") && line.contains("$CONTEXT"),
            "{name}"
        );
        commands.push(sub.to_string());
    }
    commands.sort();
    assert_eq!(commands, ["preview", "run-now", "status"]);
}
