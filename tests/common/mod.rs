//! Shared helpers of the integration tests: scratch databases on the PostgreSQL that
//! `scripts/test.sh` provides.
#![allow(dead_code)]

pub mod chat_platforms;
pub mod fake_clock;
pub mod fill;
pub mod http;
pub mod job_runner;
pub mod kube_api;
pub mod operator;
pub mod process_stats;
pub mod smtp;
pub mod tcp_proxy;

use std::sync::atomic::{AtomicU32, Ordering};

use std::collections::BTreeSet;
use std::path::Path;

use finrep::manifest::{self, LoadOptions};
use finrep::plan::{RunPlan, Slot, build_plan};
use kube::ResourceExt;
use sqlx::Connection;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The admin URL exported by `scripts/test.sh`. Database tests fail without it rather than
/// pass without having run.
pub fn admin_url() -> String {
    std::env::var("FINREP_PG_ADMIN_URL").unwrap_or_else(|_| {
        panic!(
            "FINREP_PG_ADMIN_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL, \
             or point FINREP_PG_ADMIN_URL at a superuser URL such as postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

/// Creates an empty database and returns its URL.
pub async fn scratch_database() -> String {
    let admin = admin_url();
    // The pid alone is not unique across suites sharing one server (pids are reused).
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "finrep_t_{}_{nonce:x}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to the admin database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create scratch database");
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&name);
    url.to_string()
}

/// The run plan of the DailyReport `brief` in the manifests under `dir`.
pub fn plan_of_brief(dir: &Path, slot: Slot, blacklist: &BTreeSet<String>) -> RunPlan {
    let loaded = manifest::load_valid(&[dir.to_path_buf()], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let set = loaded.set;
    let report = set
        .reports
        .iter()
        .find(|r| r.name_any() == "brief")
        .expect("a DailyReport named brief");
    build_plan(report, &set.sources, &set.recipients, blacklist, slot)
}

/// Verbs by `group/resource` granted by the (Cluster)Roles named `role_prefix…` of a YAML
/// list of objects.
pub fn granted(
    yaml: &str,
    role_prefix: &str,
) -> std::collections::BTreeSet<(String, String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for doc in serde_norway::Deserializer::from_str(yaml) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if !matches!(v["kind"].as_str(), Some("ClusterRole" | "Role"))
            || !v["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(role_prefix))
        {
            continue;
        }
        for rule in v["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let (g, r, vb) = (
                            group.as_str().unwrap(),
                            resource.as_str().unwrap(),
                            verb.as_str().unwrap(),
                        );
                        assert!(g != "*" && r != "*" && vb != "*", "no wildcards: {rule}");
                        out.insert((g.to_string(), r.to_string(), vb.to_string()));
                    }
                }
            }
        }
    }
    out
}
