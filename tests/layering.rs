//! Which part may know which (the design's dependency table): the controller, the run's
//! vocabulary, the schedule, the plan, the store, validation and the resource types never
//! use the pipeline; the pure parts never touch the network, the database or the clock's
//! I/O. Checked on the source text, so a new `use` that breaks the rule fails here; between the
//! parts' crates, the manifests say it and the compiler holds them to it.

use std::path::{Path, PathBuf};

fn sources(rel: &str) -> Vec<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel);
    if path.is_file() {
        return vec![path];
    }
    let mut out = Vec::new();
    let mut stack = vec![path];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out
}

fn uses(paths: &[PathBuf], needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).unwrap();
        // Unit tests at the end of a file may do what the code may not.
        for (i, line) in text
            .lines()
            .enumerate()
            .take_while(|(_, l)| !l.starts_with("#[cfg(test)]"))
        {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(needle) {
                found.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn nothing_below_the_pipeline_uses_it() {
    for part in [
        "controller",
        "delivery",
        "relay",
        "core/guard.rs",
        "core/run.rs",
        "core/plan.rs",
        "core/schedule.rs",
        "core/window.rs",
        "core/store",
        "core/api",
        "core/validation",
        "core/matching.rs",
        "core/untrusted.rs",
    ] {
        let hits = uses(&sources(part), "pipeline::");
        assert!(
            hits.is_empty(),
            "{part} uses the pipeline:\n{}",
            hits.join("\n")
        );
    }
}

#[test]
fn pure_parts_do_no_io() {
    for part in [
        "core/run.rs",
        "core/plan.rs",
        "core/schedule.rs",
        "core/window.rs",
        "core/api",
        "core/validation",
        "core/matching.rs",
        "core/untrusted.rs",
        "controller/desired.rs",
        "controller/health.rs",
        "controller/history.rs",
        "controller/objects.rs",
        "controller/observed.rs",
        "controller/pod_security.rs",
        "controller/status.rs",
        "delivery/outcome.rs",
        "delivery/chat/wecom.rs",
        "delivery/chat/dingtalk.rs",
        "delivery/chat/feishu.rs",
    ] {
        for needle in [
            "sqlx", "reqwest", "lettre", "tokio::", "std::fs", "Utc::now",
        ] {
            let hits = uses(&sources(part), needle);
            assert!(
                hits.is_empty(),
                "{part} uses {needle}:\n{}",
                hits.join("\n")
            );
        }
    }
}

/// The delivery loop owns claim → window → pacing → send → record → retry for every channel
/// and knows no transport: neither SMTP's library nor HTTP's, nor a reply code of either.
/// No file of the delivery path grows past about 400 lines.
#[test]
fn the_delivery_loop_knows_no_transport() {
    for part in ["delivery/lane.rs", "delivery/outcome.rs", "delivery/lib.rs"] {
        for needle in ["lettre", "reqwest", "smtp_code", "errcode", "AsyncSmtp"] {
            let hits = uses(&sources(part), needle);
            assert!(
                hits.is_empty(),
                "{part} uses {needle}:\n{}",
                hits.join("\n")
            );
        }
    }
    for path in sources("delivery")
        .into_iter()
        .chain(sources("pipeline/copies.rs"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count();
        assert!(lines <= 420, "{} has {lines} lines", path.display());
    }
}

/// The parts' crates and which of finrep's crates each may depend on: the compiler then
/// holds every part to its place (the controller links neither the pipeline nor delivery nor
/// the console). A new dependency between parts is a change to this table.
#[test]
fn crates_depend_only_on_the_parts_below() {
    let allowed: [(&str, &[&str]); 6] = [
        ("core", &[]),
        ("controller", &["finrep-core"]),
        ("delivery", &["finrep-core"]),
        ("pipeline", &["finrep-core", "finrep-delivery"]),
        ("web", &["finrep-core"]),
        (
            "standalone",
            &["finrep-core", "finrep-delivery", "finrep-pipeline"],
        ),
    ];
    for (part, expected) in allowed {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(part)
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let found: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| name.starts_with("finrep-") && !name.contains('='))
            .filter(|name| text.contains(&format!("{name} = {{ path")))
            .collect();
        assert_eq!(found, expected, "{}", manifest.display());
    }
}
