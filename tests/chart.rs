//! The Helm chart, rendered and linted by Helm's own library (helm-python-sdk) for the default
//! values and other combinations; every rendered object validated against the Kubernetes
//! schemas (kubernetes-validate), every pod against the restricted Pod Security Standard, the
//! RBAC against manifests/rbac.yaml, the CRDs and manifests/install/ kept in sync.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use finrep::controller::objects::{Settings, run_job};
use finrep::controller::pod_security;
use finrep::plan::{RunAt, plan_for};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Value, json};

const RELEASE: &str = "finrep";
const NAMESPACE: &str = "finrep-system";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What tests/chart/render.py reports for one set of values.
struct Rendered {
    raw: Value,
}

impl Rendered {
    fn objects(&self) -> Vec<&Value> {
        self.raw["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| &o["object"])
            .collect()
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects()
            .into_iter()
            .filter(|o| o["kind"] == kind)
            .collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.objects()
            .into_iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.objects()
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect()
    }

    /// Lints clean, renders, and every object passes the Kubernetes schemas.
    fn assert_valid(&self, what: &str) {
        assert_eq!(self.raw["schemaError"], Value::Null, "{what}");
        assert_eq!(self.raw["renderError"], Value::Null, "{what}");
        assert_eq!(
            self.raw["lint"]["errors"],
            json!([]),
            "{what}: {}",
            self.raw["lint"]
        );
        let findings: Vec<&Value> = self.raw["lint"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            // 1 is INFO (e.g. "icon is recommended"); warnings and errors fail.
            .filter(|m| m["severity"].as_i64() > Some(1))
            .collect();
        assert!(findings.is_empty(), "{what}: {findings:?}");
        assert_eq!(self.raw["invalid"], json!([]), "{what}");
        assert!(!self.objects().is_empty(), "{what}: nothing rendered");
    }
}

fn render(values: Value) -> Rendered {
    let script = root().join("tests/chart/render.py");
    let out = Command::new(common::smtp::python())
        .arg(script)
        .arg(root().join("charts/finrep"))
        .args([RELEASE, NAMESPACE])
        .arg(values.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Rendered {
        raw: serde_json::from_slice(&out.stdout).unwrap(),
    }
}

/// The pod specs of every workload in `objects`.
fn pods<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Vec<(String, PodSpec)> {
    let mut out = Vec::new();
    for o in objects {
        let name = format!("{} {}", o["kind"], o["metadata"]["name"]);
        let spec = match o["kind"].as_str().unwrap() {
            "Deployment" | "StatefulSet" | "Job" | "DaemonSet" => &o["spec"]["template"]["spec"],
            "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "Pod" => &o["spec"],
            _ => continue,
        };
        out.push((name, serde_json::from_value(spec.clone()).unwrap()));
    }
    out
}

fn assert_restricted(what: &str, pods: &[(String, PodSpec)]) {
    assert!(!pods.is_empty(), "{what}: no pods");
    for (name, spec) in pods {
        assert_eq!(
            pod_security::violations(spec, true),
            Vec::<String>::new(),
            "{what}: {name}"
        );
    }
}

/// Rules as (group, resource, verb) triples, failing on wildcards.
fn rules(objects: &[&Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for o in objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        for rule in o["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                    "{} {} has a wildcard in {field}",
                    o["kind"],
                    o["metadata"]["name"]
                );
            }
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for v in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                            v.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Every name one object gives another resolves within the release: pods' service accounts,
/// bindings' roles and subjects, Services' selectors and the claims pods mount.
fn assert_references_resolve(what: &str, r: &Rendered) {
    let objects = r.objects();
    let exists = |kind: &str, namespace: &Value, name: &Value| {
        objects.iter().any(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == *name
                && (namespace.is_null() || o["metadata"]["namespace"] == *namespace)
        })
    };
    for o in &objects {
        let ns = &o["metadata"]["namespace"];
        let here = format!("{what}: {} {}", o["kind"], o["metadata"]["name"]);
        let template = match o["kind"].as_str().unwrap() {
            "Deployment" | "StatefulSet" | "Job" => Some(&o["spec"]["template"]),
            "CronJob" => Some(&o["spec"]["jobTemplate"]["spec"]["template"]),
            _ => None,
        };
        if let Some(template) = template {
            let account = &template["spec"]["serviceAccountName"];
            if account.is_null() {
                // The namespace's default account (a hook may run before the chart's exist),
                // without its token.
                assert_eq!(
                    template["spec"]["automountServiceAccountToken"], false,
                    "{here}: default service account with a token"
                );
            } else {
                assert!(exists("ServiceAccount", ns, account), "{here}: {account}");
            }
            let claims = template["spec"]["volumes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for claim in claims.iter().filter_map(|v| v.get("persistentVolumeClaim")) {
                assert!(
                    exists("PersistentVolumeClaim", ns, &claim["claimName"]),
                    "{here}: claim {}",
                    claim["claimName"]
                );
            }
        }
        match o["kind"].as_str().unwrap() {
            "RoleBinding" | "ClusterRoleBinding" => {
                let role = &o["roleRef"];
                let role_ns = if role["kind"] == "Role" {
                    ns
                } else {
                    &Value::Null
                };
                assert!(
                    exists(role["kind"].as_str().unwrap(), role_ns, &role["name"]),
                    "{here}: {role}"
                );
                for subject in o["subjects"].as_array().unwrap() {
                    assert!(
                        exists("ServiceAccount", &subject["namespace"], &subject["name"]),
                        "{here}: {subject}"
                    );
                }
            }
            "Service" => {
                let selector = o["spec"]["selector"].as_object().unwrap();
                let selected = objects.iter().any(|w| {
                    let labels = &w["spec"]["template"]["metadata"]["labels"];
                    w["metadata"]["namespace"] == *ns
                        && !labels.is_null()
                        && selector.iter().all(|(k, v)| labels[k] == *v)
                });
                assert!(selected, "{here}: selects no pod template");
            }
            _ => {}
        }
    }
}

fn yaml_docs(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn default_values_render_a_valid_least_privilege_install() {
    let r = render(json!({}));
    assert_references_resolve("defaults", &r);
    r.assert_valid("default values");
    assert_eq!(r.raw["unvalidated"], json!([]));
    assert_eq!(
        r.kinds(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CronJob",
            "CustomResourceDefinition",
            "Deployment",
            "Job",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
        .map(String::from)
        .into()
    );
    // No secret is created (nor has a value) unless asked for.
    assert!(r.of_kind("Secret").is_empty());
    assert_restricted("default values", &pods(r.objects()));

    // The controller: one replica, leader election, probes on the admin port.
    let deployment = r.named("Deployment", "finrep-controller");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in ["DATABASE_URL", "POD_NAME", "POD_NAMESPACE"] {
        assert!(env.contains(&name), "{name} in {env:?}");
    }
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--database-secret=finrep-database/url"));
    assert!(!args.contains(&"--no-leader-election"));

    // Migrations after install (the in-cluster database must exist first), before upgrades.
    let job = r.named("Job", "finrep-migrate");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"],
        "post-install,pre-upgrade"
    );

    // RBAC: the rules of manifests/rbac.yaml, nothing more, no wildcards.
    let manifests: Vec<Value> = yaml_docs(&root().join("manifests/rbac.yaml"));
    assert_eq!(
        rules(&r.objects()),
        rules(&manifests.iter().collect::<Vec<_>>())
    );
}

#[test]
fn crds_are_templated_kept_and_equal_to_the_generated_ones() {
    let r = render(json!({}));
    let crds = r.of_kind("CustomResourceDefinition");
    assert_eq!(crds.len(), 3);
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}"
        );
        let file = root().join("crds").join(format!("{name}.yaml"));
        let generated = &yaml_docs(&file)[0];
        assert_eq!(crd["spec"], generated["spec"], "{name}");
    }
    // The chart's copies are the generated files byte for byte.
    for kind in finrep::api::ResourceKind::ALL {
        let file = finrep::crd::file_name(kind);
        let chart =
            std::fs::read_to_string(root().join("charts/finrep/files/crds").join(&file)).unwrap();
        let generated = finrep::crd::to_yaml(&kind.crd()).unwrap();
        assert_eq!(
            chart, generated,
            "charts/finrep/files/crds/{file} is stale: run `finrep crd --output-dir charts/finrep/files/crds`"
        );
    }
    let off = render(json!({"crds": {"install": false}}));
    off.assert_valid("crds off");
    assert!(off.of_kind("CustomResourceDefinition").is_empty());
}

#[test]
fn other_value_sets_render_valid_restricted_objects() {
    let cases = [
        (
            "external database, secrets created",
            json!({
                "database": {"external": true},
                "secrets": {"create": true, "databaseUrl": "postgres://finrep:pw@db.internal:5432/finrep",
                            "unsubscribeKey": "0123456789abcdef0123456789abcdef"},
                "reportNamespaces": ["desk-a", "desk-b"],
            }),
        ),
        (
            "network policies",
            json!({"networkPolicy": {"enabled": true}}),
        ),
        (
            "monitoring",
            json!({"monitoring": {"serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}}}),
        ),
        ("two controllers", json!({"controller": {"replicas": 2}})),
        (
            "one namespace watched",
            json!({"controller": {"watchNamespace": "desk"}, "reportNamespaces": ["desk"]}),
        ),
        (
            "in-cluster database, secrets created",
            json!({"secrets": {"create": true, "databasePassword": "s3cret/+pw"}}),
        ),
        (
            "the operator's relay",
            json!({
                "networkPolicy": {"enabled": true},
                "reportNamespaces": ["desk-a", "desk-b"],
                "relay": {"enabled": true,
                          "smtp": {"host": "smtp.operator.example", "existingSecret": "operator-smtp",
                                   "senderDomains": ["operator.example"]},
                          "summarizer": {"endpoint": "https://ai.operator.example/v1",
                                         "existingSecret": "operator-ai"}},
            }),
        ),
        (
            "another name, everything on",
            json!({
                "fullnameOverride": "news-desk",
                "networkPolicy": {"enabled": true},
                "monitoring": {"serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true}},
                "controller": {"replicas": 2},
            }),
        ),
    ];
    for (what, values) in cases {
        let r = render(values);
        r.assert_valid(what);
        assert_restricted(what, &pods(r.objects()));
        rules(&r.objects());
        assert_references_resolve(what, &r);
        match what {
            "external database, secrets created" => {
                assert!(
                    r.of_kind("StatefulSet").is_empty(),
                    "no in-cluster database"
                );
                let job = r.named("Job", "finrep-migrate");
                assert_eq!(
                    job["metadata"]["annotations"]["helm.sh/hook"],
                    "pre-install,pre-upgrade"
                );
                let secrets: BTreeSet<String> = r
                    .of_kind("Secret")
                    .iter()
                    .map(|s| {
                        format!(
                            "{}/{}",
                            s["metadata"]["namespace"].as_str().unwrap(),
                            s["metadata"]["name"].as_str().unwrap()
                        )
                    })
                    .collect();
                for expected in [
                    "finrep-system/finrep-database",
                    "desk-b/finrep-unsubscribe",
                    "finrep-system/finrep-unsubscribe",
                ] {
                    assert!(secrets.contains(expected), "{expected} in {secrets:?}");
                }
                // No operator credential is copied into a report namespace: not the SMTP
                // login or summariser key, and not the database URL (each namespace's
                // finrep-database holds its own role, written by the tenant-roles hook Job).
                assert!(
                    secrets
                        .iter()
                        .all(|s| s.starts_with("finrep-system/")
                            || s.ends_with("/finrep-unsubscribe")),
                    "{secrets:?}"
                );
                let hook = r.named("Job", "finrep-tenant-roles");
                assert_eq!(
                    hook["metadata"]["annotations"]["helm.sh/hook"],
                    "post-install,post-upgrade"
                );
                let args = hook["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
                assert!(args.contains("--namespace=desk-a,desk-b"), "{args}");
                assert!(args.contains("--secret=finrep-database/url"), "{args}");
                // A report namespace holds its own derived unsubscribe key, never the master
                // key, and it is the key finrep derives for that namespace.
                let master = b"0123456789abcdef0123456789abcdef";
                for ns in ["desk-a", "desk-b"] {
                    let s = r
                        .of_kind("Secret")
                        .into_iter()
                        .find(|s| {
                            s["metadata"]["namespace"] == ns
                                && s["metadata"]["name"] == "finrep-unsubscribe"
                        })
                        .unwrap();
                    let value = s["stringData"]["key"].as_str().unwrap();
                    let expected = finrep::unsubscribe::Signer::parse(value).unwrap();
                    let derived = finrep::unsubscribe::Signer::for_namespace(master, ns);
                    let token = expected.sign(ns, "brief", 1, "a@example.com").unwrap();
                    assert_eq!(
                        token,
                        derived.sign(ns, "brief", 1, "a@example.com").unwrap()
                    );
                    assert!(!value.contains("0123456789abcdef"), "{value}");
                }
                // Created before the migration hook that reads it.
                let db = r
                    .of_kind("Secret")
                    .into_iter()
                    .find(|s| s["metadata"]["namespace"] == NAMESPACE)
                    .unwrap();
                assert_eq!(db["metadata"]["annotations"]["helm.sh/hook-weight"], "-5");
            }
            "network policies" => {
                let names: BTreeSet<&str> = r
                    .of_kind("NetworkPolicy")
                    .iter()
                    .map(|p| p["metadata"]["name"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    names,
                    [
                        "finrep-controller",
                        "finrep-database-clients",
                        "finrep-tenant-roles",
                        "finrep-pipeline",
                        "finrep-postgresql",
                        "finrep-web"
                    ]
                    .into()
                );
                // The pipeline: DNS anywhere, PostgreSQL only the in-cluster database's pods,
                // mail and the web anywhere but the cluster's pod and Service ranges, the
                // nodes and link-local addresses; never the API server's port.
                let pipeline = r.named("NetworkPolicy", "finrep-pipeline");
                for rule in pipeline["spec"]["egress"].as_array().unwrap() {
                    let ports: BTreeSet<i64> = rule["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["port"].as_i64().unwrap())
                        .collect();
                    assert!(!ports.contains(&6443), "{rule}");
                    if ports.contains(&443) {
                        assert_eq!(
                            rule["to"],
                            json!([
                                {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16", "10.42.0.0/16", "10.43.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]}},
                                {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10", "fc00::/7"]}},
                            ])
                        );
                    } else if ports.contains(&5432) {
                        assert_eq!(
                            rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
                            "database",
                            "{rule}"
                        );
                        assert_eq!(
                            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                            NAMESPACE
                        );
                    } else {
                        assert!(rule["to"].is_null(), "{rule}");
                        assert!(ports.is_subset(&[53, 5432].into()), "{rule}");
                    }
                }
            }
            "monitoring" => {
                assert_eq!(
                    r.raw["unvalidated"],
                    json!([
                        "ServiceMonitor finrep-controller",
                        "ServiceMonitor finrep-web",
                        "PrometheusRule finrep"
                    ])
                );
                let rule = r.named("PrometheusRule", "finrep");
                let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["alert"].as_str().unwrap())
                    .collect();
                for a in [
                    "FinrepReportNotDelivered",
                    "FinrepReportStale",
                    "FinrepControllerDown",
                    "FinrepRunsFailing",
                    "FinrepSmtpDeferrals",
                ] {
                    assert!(alerts.contains(&a), "{a}");
                }
                let monitor = r.named("ServiceMonitor", "finrep-controller");
                assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
            }
            "two controllers" => {
                assert_eq!(
                    r.named("Deployment", "finrep-controller")["spec"]["replicas"],
                    2
                );
            }
            "one namespace watched" => {
                assert!(r.named("Role", "finrep-controller")["metadata"]["namespace"] == "desk");
                assert!(
                    r.of_kind("ClusterRole")
                        .iter()
                        .all(|c| c["metadata"]["name"] == "finrep-controller-crds")
                );
            }
            "the operator's relay" => {
                // The login stays in the release namespace, read by the relay alone.
                let relay = r.named("Deployment", "finrep-relay");
                assert_eq!(relay["metadata"]["namespace"], NAMESPACE);
                let text = relay.to_string();
                assert!(text.contains("operator-smtp") && text.contains("operator-ai"));
                for o in r.objects() {
                    let refers = o.to_string().contains("operator-smtp");
                    assert!(!refers || o["metadata"]["name"] == "finrep-relay", "{o}");
                }
                // Reports reach it: the controller trusts it, their NetworkPolicy admits it.
                let controller = r.named("Deployment", "finrep-controller").to_string();
                assert!(controller.contains("--trusted-host=finrep-relay.finrep-system.svc:2525"));
                for p in r.of_kind("NetworkPolicy") {
                    if p["metadata"]["name"] == "finrep-pipeline" {
                        assert!(
                            p.to_string()
                                .contains("\"app.kubernetes.io/component\":\"relay\""),
                            "{p}"
                        );
                    }
                }
                let ingress = r.named("NetworkPolicy", "finrep-relay").to_string();
                assert!(ingress.contains("desk-a") && ingress.contains("desk-b"));
            }
            "another name, everything on" => {
                let deployment = r.named("Deployment", "news-desk-controller");
                assert_eq!(
                    deployment["spec"]["template"]["spec"]["serviceAccountName"],
                    "news-desk-controller"
                );
                r.named("StatefulSet", "news-desk-postgresql");
                r.named("Job", "news-desk-migrate");
                r.named("ClusterRole", "news-desk-controller-crds");
                r.named("NetworkPolicy", "news-desk-controller");
                r.named("PrometheusRule", "news-desk");
                let owned: Vec<&str> = r
                    .objects()
                    .iter()
                    .filter(|o| o["kind"] != "CustomResourceDefinition")
                    .filter_map(|o| o["metadata"]["name"].as_str())
                    .filter(|n| n.starts_with("finrep-") && !n.starts_with("finrep-pipeline"))
                    .filter(|n| !["finrep-database", "finrep-backups"].contains(n))
                    .collect();
                assert_eq!(owned, Vec::<&str>::new(), "names left on the release name");
            }
            _ => {
                let db = r.named("Secret", "finrep-database");
                let url = db["stringData"]["url"].as_str().unwrap();
                assert_eq!(
                    url,
                    "postgres://finrep:s3cret%2F%2Bpw@finrep-postgresql.finrep-system.svc:5432/finrep",
                    "the password is escaped in the URL"
                );
            }
        }
    }
}

#[test]
fn mistakes_in_values_are_refused_with_a_message() {
    let typo = render(json!({"controler": {"replicas": 2}}));
    let long_name =
        render(json!({"fullnameOverride": "a-name-far-too-long-for-a-pod-of-the-statefulset"}));
    assert!(
        long_name.raw["schemaError"]
            .as_str()
            .is_some_and(|e| e.contains("fullnameOverride")),
        "{}",
        long_name.raw["schemaError"]
    );
    let err = typo.raw["schemaError"].as_str().unwrap_or_default();
    assert!(err.contains("controler"), "{}", typo.raw);
    let wrong_type = render(json!({"controller": {"replicas": "two"}}));
    assert!(
        wrong_type.raw["schemaError"].is_string(),
        "{}",
        wrong_type.raw
    );
    let missing = render(json!({"secrets": {"create": true}}));
    let err = missing.raw["renderError"].as_str().unwrap_or_default();
    assert!(
        err.contains("secrets.databasePassword is required"),
        "{}",
        missing.raw
    );
    // The operator's SMTP login and summariser key are never copied into report namespaces.
    for values in [
        json!({"secrets": {"smtp": {"username": "relay@example.com", "password": "pw"}}}),
        json!({"secrets": {"summarizerApiKey": "sk-operator"}}),
    ] {
        let refused = render(values);
        let err = refused.raw["renderError"].as_str().unwrap_or_default();
        assert!(err.contains("no longer supported"), "{}", refused.raw);
    }
    let two_active = render(json!({"controller": {"replicas": 2, "leaderElection": false}}));
    let err = two_active.raw["renderError"].as_str().unwrap_or_default();
    assert!(err.contains("leaderElection"), "{}", two_active.raw);
}

#[test]
fn no_secret_value_has_a_default() {
    let values = std::fs::read_to_string(root().join("charts/finrep/values.yaml")).unwrap();
    let values: Value = serde_norway::from_str(&values).unwrap();
    let secrets = &values["secrets"];
    assert_eq!(secrets["create"], false);
    for key in [
        "databasePassword",
        "databaseUrl",
        "unsubscribeKey",
        "summarizerApiKey",
    ] {
        assert_eq!(secrets[key], "", "secrets.{key}");
    }
    assert_eq!(secrets["smtp"], json!({"username": "", "password": ""}));
}

/// manifests/install/ is the chart rendered with default values (for `kubectl apply -f`).
#[test]
fn plain_manifests_are_the_chart_rendered() {
    let r = render(json!({}));
    let dir = root().join("manifests/install");
    let mut written: Vec<Value> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run scripts/render-install.sh",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        written.extend(yaml_docs(f));
    }
    let rendered: Vec<Value> = r.objects().into_iter().cloned().collect();
    assert_eq!(
        written, rendered,
        "manifests/install/ is stale: run scripts/render-install.sh"
    );
    let pods_of_files = pods(written.iter());
    assert_restricted("manifests/install", &pods_of_files);
}

/// The pods the controller creates pass the restricted standard, and carry the labels the
/// chart's NetworkPolicy selects them by.
#[test]
fn controller_pods_are_restricted_and_selected_by_the_network_policy() {
    let set = common::operator::examples();
    let plan = plan_for(
        &set,
        "default",
        "morning-brief",
        RunAt::Slot(common::operator::instant("2026-11-22T22:00:00Z")),
        &BTreeSet::new(),
    )
    .unwrap();
    let report = &set.reports[0];
    let now = common::operator::instant("2026-11-22T22:00:00Z");
    let job = run_job(
        report,
        "morning-brief-20261123",
        &plan,
        &Settings::default(),
        now,
        now,
    );
    let mut job = serde_json::to_value(&job).unwrap();
    job["kind"] = json!("Job");
    assert_restricted("the controller's run Job", &pods([&job]));
    let r = render(json!({}));
    let policy = r.named("NetworkPolicy", "finrep-pipeline");
    let selector = policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap();
    let job_pod_labels = &job["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector {
        assert_eq!(&job_pod_labels[k], v, "run pods carry {k}");
    }
    // The database admits run pods by namespace and pod labels, and the chart's backup by its
    // component in the release namespace.
    let database = r.named("NetworkPolicy", "finrep-postgresql");
    let from = database["spec"]["ingress"][0]["from"].as_array().unwrap();
    let run_peer = from
        .iter()
        .find(|p| p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "default")
        .expect("the report namespace is a peer");
    for (k, v) in run_peer["podSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&job_pod_labels[k], v, "run pods carry {k}");
    }
    let backup = r.named("CronJob", "finrep-backup");
    let backup_pod_labels =
        &backup["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
    assert_eq!(backup_pod_labels["app.kubernetes.io/component"], "backup");
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        NAMESPACE
    );
}

/// The chart's README documents every value of values.yaml.
#[test]
fn every_value_is_documented() {
    fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&path, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let values: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("charts/finrep/values.yaml")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(root().join("charts/finrep/README.md")).unwrap();
    let mut paths = Vec::new();
    leaves("", &values, &mut paths);
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !readme.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "values not in charts/finrep/README.md: {missing:?}"
    );
}

/// The memory budget of docs/benchmarks.md states the chart's requests and limits, and what
/// runs at 06:00 (controller, PostgreSQL, one pipeline Job) fits what k3s leaves of 2 GB.
#[test]
fn the_memory_budget_matches_the_chart() {
    fn mib(q: &str) -> u64 {
        let q = q.trim_matches('"');
        if let Some(n) = q.strip_suffix("Mi") {
            n.parse().unwrap()
        } else if let Some(n) = q.strip_suffix("Gi") {
            n.parse::<u64>().unwrap() * 1024
        } else {
            panic!("unexpected quantity {q}")
        }
    }
    let values: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("charts/finrep/values.yaml")).unwrap(),
    )
    .unwrap();
    let docs = std::fs::read_to_string(root().join("docs/benchmarks.md")).unwrap();
    let budget = docs
        .split("## Memory budget of a 2 GB node")
        .nth(1)
        .expect("the budget section");
    let row = |starts: &str| -> String {
        budget
            .lines()
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no row {starts}"))
            .to_string()
    };
    let pipeline = Settings::default().resources;
    let pipeline_request = pipeline.requests.as_ref().unwrap()["memory"].0.clone();
    let pipeline_limit = pipeline.limits.as_ref().unwrap()["memory"].0.clone();
    let mut requested = mib(&pipeline_request);
    for (starts, resources) in [
        ("| controller", &values["controller"]["resources"]),
        (
            "| PostgreSQL",
            &values["database"]["postgresql"]["resources"],
        ),
        ("| web", &values["web"]["resources"]),
    ] {
        let request = resources["requests"]["memory"].as_str().unwrap();
        let limit = resources["limits"]["memory"].as_str().unwrap();
        let line = row(starts);
        assert!(
            line.contains(&format!("| {} MiB |", mib(request))),
            "{line}"
        );
        assert!(line.contains(&format!("| {} MiB |", mib(limit))), "{line}");
        requested += mib(request);
    }
    let line = row("| pipeline Job (W1");
    assert!(
        line.contains(&format!("| {} MiB |", mib(&pipeline_request))),
        "{line}"
    );
    assert!(
        line.contains(&format!("| {} MiB |", mib(&pipeline_limit))),
        "{line}"
    );
    // The pods that do not run at 06:00: the chart's database backup and its migration hook.
    let rendered = render(json!({}));
    let cron = rendered.named("CronJob", "finrep-backup");
    let backup = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    for (starts, resources) in [
        ("| backup pod", &backup["resources"]),
        ("| migration Job", &values["migrations"]["resources"]),
    ] {
        let line = row(starts);
        for quantity in [
            &resources["requests"]["memory"],
            &resources["limits"]["memory"],
        ] {
            let quantity = mib(quantity.as_str().unwrap());
            assert!(line.contains(&format!("| {quantity} MiB |")), "{line}");
        }
    }
    assert!(
        row("| **finrep at 06:00").contains(&format!("**{requested} MiB**")),
        "the total of requests is {requested} MiB"
    );
    assert!(
        requested <= 2048 - 1600,
        "{requested} MiB requested at 06:00"
    );
}

/// `%XX` sequences decoded, as libpq and sqlx read a URL's userinfo.
fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The in-cluster database's URL is built from the password the operator chose, whatever it
/// holds: space, `@`, `/`, `%`, `+` and `:` come back out of the URL as they went in.
#[test]
fn the_database_password_round_trips_through_the_url() {
    let password = "a b@c/d%e+f:g";
    let r = render(json!({"secrets": {"create": true, "databasePassword": password}}));
    r.assert_valid("a password with URL characters");
    let secret = r
        .of_kind("Secret")
        .into_iter()
        .find(|s| {
            s["metadata"]["name"] == "finrep-database" && s["metadata"]["namespace"] == NAMESPACE
        })
        .expect("the database Secret");
    let url = secret["stringData"]["url"].as_str().unwrap();
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(parsed.username(), "finrep");
    assert_eq!(
        percent_decode(parsed.password().unwrap()),
        password,
        "{url}"
    );
    assert_eq!(
        parsed.host_str(),
        Some("finrep-postgresql.finrep-system.svc")
    );
    // sqlx reads it as a valid URL too.
    url.parse::<sqlx::postgres::PgConnectOptions>().unwrap();
}

/// A tenant's report cannot pick the image its pipeline runs in: the controller allows its own
/// repository, and the operator adds others through a value.
#[test]
fn allowed_images_reach_the_controller() {
    let r = render(json!({"controller": {"allowedImages": ["registry.local:5000/desk/*"]}}));
    r.assert_valid("allowed images");
    let args = r.named("Deployment", "finrep-controller")["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .clone();
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--allowed-image=registry.local:5000/desk/*"),
        "{args}"
    );
    let refused = render(json!({"controller": {"allowedImages": ["evil image"]}}));
    assert_ne!(refused.raw["schemaError"], Value::Null, "{}", refused.raw);
}

/// The in-cluster database's application role is no superuser: the chart's init script,
/// taken from the rendered ConfigMap, is run by psql against a PostgreSQL cluster of its own
/// (as the image runs it) and leaves `finrep` owning its database, able to create tables,
/// without SUPERUSER or CREATEDB, and the bootstrap superuser without a password.
#[test]
fn the_in_cluster_database_role_is_not_a_superuser() {
    let r = render(json!({}));
    let statefulset = r.named("StatefulSet", "finrep-postgresql");
    let env = &statefulset["spec"]["template"]["spec"]["containers"][0]["env"];
    let user = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POSTGRES_USER")
        .unwrap();
    assert_eq!(
        user["value"], "postgres",
        "finrep is not the bootstrap superuser"
    );
    let init = r.named("ConfigMap", "finrep-postgresql-initdb");
    let sql = init["data"]["10-finrep-role.sql"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("init.sql");
    std::fs::write(&script, sql).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = format!(
        r#"set -eu
. scripts/lib/postgres.sh
export FINREP_PG_PORT={port}
start_throwaway_postgres
trap stop_throwaway_postgres EXIT
POSTGRES_PASSWORD='p a@s/s%' psql -X -q -v ON_ERROR_STOP=1 "$FINREP_PG_ADMIN_URL" -f '{script}'
psql -X -Atq "$FINREP_PG_ADMIN_URL" -c "select rolname, rolsuper, rolcreatedb, rolcreaterole, rolpassword is not null from pg_authid where rolname in ('finrep', 'postgres') order by 1"
psql -X -Atq "$FINREP_PG_ADMIN_URL" -c "select pg_get_userbyid(datdba) from pg_database where datname = 'finrep'"
psql -X -Atq "postgres://finrep@127.0.0.1:{port}/finrep" -c "create table t (x int)" -c "select 'created'"
# The role migrates and makes a report namespace's role, as the hook Jobs do.
export DATABASE_URL="postgres://finrep@127.0.0.1:{port}/finrep"
'{finrep}' --log-format json migrate >/dev/null
'{finrep}' --log-format json tenant-role --namespace desk-a --output url 2>/dev/null | sed -E 's/:[^:@]*@/:***@/'
"#,
        script = script.display(),
        finrep = env!("CARGO_BIN_EXE_finrep"),
    );
    let out = Command::new("bash")
        .args(["-c", &check])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "finrep|f|f|t|t",
            "postgres|t|t|t|f",
            "finrep",
            "created",
            &format!(
                "postgres://finrep_{}_desk_a:***@127.0.0.1:{port}/finrep",
                md5_tag("finrep")
            ),
        ],
        "{stdout}"
    );
}

/// The first 8 hex digits of md5(`db`): the database tag in namespace role names.
fn md5_tag(db: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.md5(sys.argv[1].encode()).hexdigest()[:8])",
            db,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The controller's work on Jobs, plans, Events and Secrets is granted by Roles in the report
/// namespaces only, and nothing of it cluster-wide (the chart always knows its report
/// namespaces; manifests/rbac.yaml is the ClusterRole of a controller run without them).
#[test]
fn report_namespaces_scope_the_controllers_rbac() {
    let namespaced = ["jobs", "configmaps", "cronjobs", "secrets", "events"];
    let grants = |role: &Value| -> BTreeSet<String> {
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    let r = render(json!({"reportNamespaces": ["desk-a", "desk-b"]}));
    r.assert_valid("two report namespaces");
    for cluster_role in r.of_kind("ClusterRole") {
        let granted = grants(cluster_role);
        for resource in namespaced {
            assert!(
                !granted.contains(resource),
                "{resource} granted cluster-wide: {cluster_role}"
            );
        }
    }
    let roles: Vec<&Value> = r
        .of_kind("Role")
        .into_iter()
        .filter(|role| role["metadata"]["name"] == "finrep-controller")
        .collect();
    let in_namespaces: BTreeSet<&str> = roles
        .iter()
        .map(|role| role["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(in_namespaces, ["desk-a", "desk-b"].into());
    for role in &roles {
        assert_eq!(
            grants(role),
            namespaced.iter().map(|s| s.to_string()).collect()
        );
    }
    let args = r.named("Deployment", "finrep-controller")["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .clone();
    for ns in ["desk-a", "desk-b"] {
        assert!(
            args.as_array()
                .unwrap()
                .iter()
                .any(|a| a == &format!("--report-namespace={ns}")),
            "{args}"
        );
    }
}

#[test]
fn the_web_serves_unsubscribe_publicly_and_the_console_only_when_asked() {
    let plain = render(json!({}));
    plain.assert_valid("web defaults");
    let controller = plain.named("Deployment", "finrep-controller");
    let args = controller["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--public-url=http://finrep-web.finrep-system.svc:8081"),
        "the controller's links default to the web's URL: {args}"
    );
    let web = plain.named("Deployment", "finrep-web");
    let pod = &web["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(plain.of_kind("Ingress").is_empty());

    let values = json!({
        "web": {"ingress": {"enabled": true, "host": "reports.example.com", "tlsSecretName": "reports-tls"}},
        "secrets": {"create": true, "databasePassword": "pw",
                    "unsubscribeKey": "0123456789abcdef0123456789abcdef",
                    "webPasswordHash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"},
    });
    let r = render(values);
    r.assert_valid("web with ingress");
    assert_references_resolve("web with ingress", &r);
    let paths = |r: &Rendered| -> Vec<String> {
        r.named("Ingress", "finrep-web")["spec"]["rules"][0]["http"]["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(paths(&r), vec!["/unsubscribe"]);
    let args = r.named("Deployment", "finrep-controller")["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .to_string();
    assert!(
        args.contains("--public-url=https://reports.example.com"),
        "{args}"
    );
    let env =
        r.named("Deployment", "finrep-web")["spec"]["template"]["spec"]["containers"][0]["env"]
            .to_string();
    for name in [
        "FINREP_WEB_PASSWORD_HASH",
        "FINREP_UNSUBSCRIBE_KEY",
        "DATABASE_URL",
    ] {
        assert!(env.contains(name), "{name} in {env}");
    }
    let policy = r.named("NetworkPolicy", "finrep-web");
    assert!(
        policy["spec"]["ingress"]
            .to_string()
            .contains("kube-system")
    );
    let db = r.named("NetworkPolicy", "finrep-postgresql").to_string();
    assert!(db.contains("\"web\""), "the web reaches the database: {db}");

    let exposed = render(
        json!({"web": {"ingress": {"enabled": true, "host": "r.example.com", "exposeConsole": true}}}),
    );
    assert_eq!(
        paths(&exposed),
        vec!["/unsubscribe", "/console", "/login", "/logout", "/static"]
    );
    let off = render(json!({"web": {"enabled": false}}));
    off.assert_valid("web off");
    assert!(
        !off.named("Deployment", "finrep-controller")["spec"]["template"]["spec"]["containers"][0]
            ["args"]
            .to_string()
            .contains("--public-url")
    );
    let dashboard = render(json!({"monitoring": {"grafanaDashboard": {"enabled": true}}}));
    let cm = dashboard.named("ConfigMap", "finrep-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(cm["data"]["finrep.json"].as_str().unwrap()).unwrap();
    assert!(json["panels"].as_array().unwrap().len() >= 5);
}

/// The chart's alert rules through promtool: `check rules` on them as rendered, and
/// tests/chart/alerts_test.yaml (a report that delivers, one that fails, one that stopped,
/// the controller gone; the console's verdict going to "missed" and back, "needs a check")
/// through `test rules`.
#[test]
fn alert_rules_pass_promtool() {
    let promtool = std::env::var("FINREP_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let r = render(json!({"monitoring": {"prometheusRule": {"enabled": true}}}));
    let spec = r.named("PrometheusRule", "finrep")["spec"].clone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_norway::to_string(&spec).unwrap(),
    )
    .unwrap();
    // Without annotations for `test rules`: it compares them whole, and their wording is
    // not what is tested here (check rules validates their templates).
    let mut bare = spec.clone();
    for group in bare["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            rule.as_object_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(
        dir.path().join("bare.yaml"),
        serde_norway::to_string(&bare).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/chart/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("{promtool}: {e} (scripts/test.sh installs Debian's prometheus package, which has promtool)")
            });
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
