//! Which part may know which (the design's dependency table): the controller, the run's
//! vocabulary, the schedule, the plan, the store, validation and the resource types never
//! use the pipeline; the pure parts never touch the network, the database or the clock's
//! I/O. Checked on the source text, so a new `use` that breaks the rule fails here.

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
        "guard.rs",
        "run.rs",
        "plan.rs",
        "schedule.rs",
        "window.rs",
        "store",
        "api",
        "validation",
        "matching.rs",
        "untrusted.rs",
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
        "run.rs",
        "plan.rs",
        "schedule.rs",
        "window.rs",
        "api",
        "validation",
        "matching.rs",
        "untrusted.rs",
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
    for part in ["delivery/lane.rs", "delivery/outcome.rs", "delivery/mod.rs"] {
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
