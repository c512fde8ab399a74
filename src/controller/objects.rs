//! The objects a DailyReport owns, built by pure functions from the report, the run plan and
//! the operator's settings: the plan ConfigMap and the Job of each run. (The database's backup
//! is the operator's, a CronJob of the chart in its own namespace: no report makes one.)
//! Applying them is the reconciler's business; what they look like is decided here
//! and tested directly.
//!
//! Every pod passes the restricted Pod Security Standard with a read-only root filesystem
//! (`pod_security`), gets no service-account token, and reads secrets only through
//! `secretKeyRef` environment variables: no secret value is ever in an object built here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::DailyReport;
use crate::plan::{PLAN_FILE, PlanPurpose, RunPlan};
use crate::run::RunExit;

/// Labels on everything finrep creates.
pub mod labels {
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const REPORT: &str = "finrep.io/report";
    pub const RUN_DATE: &str = "finrep.io/run-date";
    pub const MANUAL: &str = "finrep.io/manual";
    /// Annotation on a run's Job and plan: the slot it was started for (RFC 3339).
    pub const SCHEDULED_FOR: &str = "finrep.io/scheduled-for";
    /// On a preview's or test send's Job and plan: which it is (runs carry no such label).
    pub const PURPOSE: &str = "finrep.io/purpose";
    /// Annotation on a preview's or test send's Job: the annotation value that asked for it.
    pub const REQUEST: &str = "finrep.io/request";
}

/// The pipeline container's name (podFailurePolicy rules name it).
pub const PIPELINE_CONTAINER: &str = "pipeline";
/// What a run's container executes: the pipeline-only binary of the image, which maps a
/// fraction of `finrep`'s code (docs/benchmarks.md, W1).
pub const PIPELINE_PROGRAM: &str = "finrep-pipeline";
/// Where the plan is mounted.
pub const PLAN_DIR: &str = "/etc/finrep/plan";
/// Where a report's template ConfigMap is mounted.
pub const TEMPLATE_DIR: &str = "/etc/finrep/templates";
/// Time a run's Job may run past the end of its mail window (a late-delivery report keeps
/// sending; a stuck pod is stopped).
pub const PAST_WINDOW_SECONDS: i64 = 2 * 3600;
/// Run Jobs at once by default, from the 2 GB node's budget (docs/benchmarks.md): k3s leaves
/// 448 MiB, the controller, PostgreSQL and the web request 176 MiB, each run Job 96 MiB — two
/// fit, a third would wait for memory unscheduled and unexplained.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 2;
/// The one non-root user finrep's image runs as.
pub const RUN_AS_USER: i64 = 65532;

/// A key of a Secret, by reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
}

/// The operator's settings for the objects it creates (its flags and Helm values).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// finrep's image, for pipeline Jobs without `spec.job.image`.
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// A service account with no API permissions.
    pub pipeline_service_account: String,
    /// Resources of pipeline containers without `spec.job.resources`.
    pub resources: ResourceRequirements,
    /// `DATABASE_URL` of every pod.
    pub database_url: SecretRef,
    /// `FINREP_UNSUBSCRIBE_KEY`, when one-click unsubscribe is on.
    pub unsubscribe_key: Option<SecretRef>,
    /// Public URL of the console (`FINREP_PUBLIC_URL`).
    pub public_url: Option<String>,
    /// Hosts the pipeline trusts (`FINREP_TRUSTED_HOSTS`), e.g. an in-cluster mail relay.
    pub trusted_hosts: Vec<String>,
    /// Hosts the pipeline may post chat webhooks to besides the platforms' own
    /// (`FINREP_TRUSTED_WEBHOOK_HOSTS`).
    pub trusted_webhook_hosts: Vec<String>,
    /// Repositories `spec.job.image` may name (`registry/team/*` for a prefix); empty: only
    /// `image`'s repository.
    pub allowed_images: Vec<String>,
    /// The namespaces whose reports this controller runs (its Roles are granted there only);
    /// empty: every namespace (a ClusterRole).
    pub report_namespaces: Vec<String>,
    /// The clock file the controller reads (tests and demos on one host), handed to the runs
    /// as `FINREP_CLOCK_FILE` so that what they record is on the controller's clock.
    pub clock_file: Option<String>,
    /// Most run Jobs at once across every served namespace (0: no bound); later ones wait
    /// their turn (`run_queue`).
    pub max_concurrent_runs: usize,
}

impl Settings {
    /// Whether reports of `namespace` are this controller's to run.
    pub fn serves(&self, namespace: &str) -> bool {
        self.report_namespaces.is_empty() || self.report_namespaces.iter().any(|n| n == namespace)
    }

    /// Repositories a report's `spec.job.image` may name.
    pub fn allowed_images(&self) -> Vec<String> {
        if self.allowed_images.is_empty() {
            vec![super::image_policy::repository(&self.image).to_string()]
        } else {
            self.allowed_images.clone()
        }
    }

    /// Secrets no resource may name: the fixed ones, and those this controller hands its
    /// pods (the database URL, the unsubscribe key), whatever they are called.
    pub fn reserved_secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = crate::api::RESERVED_SECRET_NAMES
            .iter()
            .map(ToString::to_string)
            .collect();
        names.push(self.database_url.name.clone());
        names.extend(self.unsubscribe_key.iter().map(|k| k.name.clone()));
        names.sort();
        names.dedup();
        names
    }
}

fn quantity(q: &str) -> Quantity {
    Quantity(q.to_string())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image: format!("ghcr.io/finrep/finrep:{}", crate::build::VERSION),
            image_pull_policy: None,
            pipeline_service_account: "finrep-pipeline".to_string(),
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), quantity("100m")),
                    ("memory".to_string(), quantity("96Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_string(), quantity("256Mi"))])),
                ..Default::default()
            },
            database_url: SecretRef {
                name: "finrep-database".to_string(),
                key: "url".to_string(),
            },
            unsubscribe_key: None,
            public_url: None,
            trusted_hosts: Vec::new(),
            trusted_webhook_hosts: Vec::new(),
            allowed_images: Vec::new(),
            report_namespaces: Vec::new(),
            clock_file: None,
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
        }
    }
}

fn owner(report: &DailyReport) -> Vec<OwnerReference> {
    report.controller_owner_ref(&()).into_iter().collect()
}

fn base_labels(report: &DailyReport, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), "finrep".to_string()),
        (labels::COMPONENT.to_string(), component.to_string()),
        (
            labels::MANAGED_BY.to_string(),
            "finrep-controller".to_string(),
        ),
        (labels::REPORT.to_string(), report.name_any()),
    ])
}

fn run_labels(report: &DailyReport, plan: &RunPlan) -> BTreeMap<String, String> {
    // Every pipeline pod is a run to the network policies (the database, SMTP, the sources),
    // whatever its purpose; the purpose label tells previews and test sends apart.
    let purpose = purpose_label(&plan.purpose);
    let mut l = base_labels(report, "run");
    l.insert(labels::RUN_DATE.to_string(), plan.slot.date.to_string());
    l.insert(labels::MANUAL.to_string(), plan.slot.manual.to_string());
    if let Some(purpose) = purpose {
        l.insert(labels::PURPOSE.to_string(), purpose.to_string());
    }
    l
}

/// The `finrep.io/purpose` label of a plan's objects: `None` for a run, which carries none
/// (so every run Job ever made stays a run).
pub fn purpose_label(purpose: &PlanPurpose) -> Option<&'static str> {
    match purpose {
        PlanPurpose::Run => None,
        PlanPurpose::Preview { .. } => Some(purposes::PREVIEW),
        PlanPurpose::TestSend { .. } => Some(purposes::TEST_SEND),
    }
}

/// Values of the `finrep.io/purpose` label.
pub mod purposes {
    pub const PREVIEW: &str = "preview";
    pub const TEST_SEND: &str = "test-send";
}

fn meta(report: &DailyReport, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: report.namespace(),
        labels: Some(labels),
        owner_references: Some(owner(report)),
        ..Default::default()
    }
}

fn run_meta(report: &DailyReport, name: &str, plan: &RunPlan) -> ObjectMeta {
    let mut annotations = BTreeMap::from([(
        labels::SCHEDULED_FOR.to_string(),
        plan.slot.scheduled_for.to_rfc3339(),
    )]);
    match &plan.purpose {
        PlanPurpose::Run => {}
        PlanPurpose::Preview { request, .. } | PlanPurpose::TestSend { request, .. } => {
            annotations.insert(labels::REQUEST.to_string(), request.clone());
        }
    }
    ObjectMeta {
        annotations: Some(annotations),
        ..meta(report, name, run_labels(report, plan))
    }
}

/// The ConfigMap holding a run's plan, compressed (`plan.yaml.gz` in `binaryData`).
pub fn plan_config_map(
    report: &DailyReport,
    run_name: &str,
    plan: &RunPlan,
    plan_gz: Vec<u8>,
) -> ConfigMap {
    ConfigMap {
        metadata: run_meta(report, run_name, plan),
        binary_data: Some(BTreeMap::from([(
            PLAN_FILE.to_string(),
            ByteString(plan_gz),
        )])),
        immutable: Some(true),
        ..Default::default()
    }
}

fn secret_env(name: &str, r: &SecretRef, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

/// The environment of a pipeline container: settings, and every secret the plan names, by
/// reference.
fn pipeline_env(plan: &RunPlan, settings: &Settings) -> Vec<EnvVar> {
    let mut env = vec![
        secret_env("DATABASE_URL", &settings.database_url, false),
        plain_env("FINREP_LOG_FORMAT", "json"),
        plain_env("TMPDIR", "/tmp"),
    ];
    if let Some(k) = &settings.unsubscribe_key {
        env.push(secret_env("FINREP_UNSUBSCRIBE_KEY", k, false));
    }
    if let Some(url) = &settings.public_url {
        env.push(plain_env("FINREP_PUBLIC_URL", url));
    }
    if !settings.trusted_hosts.is_empty() {
        env.push(plain_env(
            "FINREP_TRUSTED_HOSTS",
            &settings.trusted_hosts.join(","),
        ));
    }
    if !settings.trusted_webhook_hosts.is_empty() {
        env.push(plain_env(
            "FINREP_TRUSTED_WEBHOOK_HOSTS",
            &settings.trusted_webhook_hosts.join(","),
        ));
    }
    if let Some(path) = &settings.clock_file {
        env.push(plain_env("FINREP_CLOCK_FILE", path));
    }
    for s in &plan.secrets {
        let r = SecretRef {
            name: s.secret.clone(),
            key: s.key.clone(),
        };
        env.push(secret_env(&s.env, &r, false));
    }
    env
}

/// Non-root, no privilege escalation, every capability dropped, read-only root.
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_security(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Scratch space for a read-only root filesystem.
fn scratch() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "tmp".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(quantity("64Mi")),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".to_string(),
            mount_path: "/tmp".to_string(),
            ..Default::default()
        },
    )
}

fn config_map_volume(
    name: &str,
    config_map: &str,
    items: Option<Vec<KeyToPath>>,
    optional: bool,
) -> Volume {
    Volume {
        name: name.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            items,
            optional: optional.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The exit codes of `finrep::run::RunExit` as Job policy: an invalid plan (1) and a run done
/// with recorded failures (2) fail the Job at once — retrying cannot help, and would not
/// re-send anything anyway; "retry me" (75) and crashes count against `backoffLimit`; a pod
/// evicted or preempted does not count at all.
pub fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(PIPELINE_CONTAINER.to_string()),
                    operator: "In".to_string(),
                    values: [RunExit::Invalid, RunExit::DoneWithFailures]
                        .iter()
                        .map(|e| i32::from(e.code()))
                        .collect(),
                }),
                ..Default::default()
            },
            PodFailurePolicyRule {
                action: "Ignore".to_string(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_string(),
                    status: "True".to_string(),
                }]),
                ..Default::default()
            },
        ],
    }
}

/// The pipeline's volumes, their mounts and its arguments: the plan, scratch space, and the
/// report's templates when it names a ConfigMap.
fn pipeline_files(run_name: &str, plan: &RunPlan) -> (Vec<Volume>, Vec<VolumeMount>, Vec<String>) {
    let (tmp_volume, tmp_mount) = scratch();
    let plan_item = KeyToPath {
        key: PLAN_FILE.to_string(),
        path: PLAN_FILE.to_string(),
        ..Default::default()
    };
    let mut volumes = vec![
        config_map_volume("plan", run_name, Some(vec![plan_item]), false),
        tmp_volume,
    ];
    let mut mounts = vec![mount("plan", PLAN_DIR), tmp_mount];
    let mut args = vec!["--plan".to_string(), format!("{PLAN_DIR}/{PLAN_FILE}")];
    if let Some(t) = &plan.content.template {
        volumes.push(config_map_volume(
            "templates",
            &t.config_map_name,
            None,
            true,
        ));
        mounts.push(mount("templates", TEMPLATE_DIR));
        args.extend(["--template-dir".to_string(), TEMPLATE_DIR.to_string()]);
    }
    (volumes, mounts, args)
}

/// The Job of one run. `active_deadline` is when the Job must be over: past the end of its
/// mail window (`PAST_WINDOW_SECONDS` after it), counted from `now`.
pub fn run_job(
    report: &DailyReport,
    run_name: &str,
    plan: &RunPlan,
    settings: &Settings,
    window_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Job {
    let (volumes, mounts, args) = pipeline_files(run_name, plan);
    let spec = &report.spec.job;
    let container = Container {
        name: PIPELINE_CONTAINER.to_string(),
        image: Some(spec.image.clone().unwrap_or_else(|| settings.image.clone())),
        image_pull_policy: settings.image_pull_policy.clone(),
        command: Some(vec![PIPELINE_PROGRAM.to_string()]),
        args: Some(args),
        env: Some(pipeline_env(plan, settings)),
        resources: Some(
            spec.resources
                .clone()
                .unwrap_or_else(|| settings.resources.clone()),
        ),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let deadline = (window_end - now).num_seconds().max(0) + PAST_WINDOW_SECONDS;
    let labels = run_labels(report, plan);
    Job {
        metadata: run_meta(report, run_name, plan),
        spec: Some(JobSpec {
            backoff_limit: Some(i32::try_from(spec.backoff_limit).unwrap_or(3)),
            active_deadline_seconds: Some(deadline),
            pod_failure_policy: Some(pod_failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_string()),
                    service_account_name: Some(settings.pipeline_service_account.clone()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security(RUN_AS_USER)),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The name of the backup CronJob earlier versions made for each report (the database's backup
/// is now the operator's alone): what the controller removes when it owns it.
pub fn legacy_backup_name(report: &DailyReport) -> String {
    let name = report.name_any();
    // CronJob names are at most 52 characters (their Jobs add a suffix).
    let keep: String = name.chars().take(52 - "-backup".len()).collect();
    format!("{}-backup", keep.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_security;
    use chrono::NaiveDate;
    use std::collections::BTreeSet;

    fn report() -> DailyReport {
        let mut r: DailyReport = serde_norway::from_str(
            r#"
apiVersion: finrep.io/v1alpha1
kind: DailyReport
metadata: {name: morning-brief, namespace: desk, uid: 0b6e3c1e-1111-2222-3333-444455556666}
spec:
  title: 金融情报日报
  content:
    summarizer: {endpoint: "https://api.example.com/v1", model: m, apiKeySecretRef: {name: ai, key: api-key}}
    template: {configMapName: brief-templates}
  smtp: {host: smtp.example.com, from: a@example.com, credentialsSecretRef: {name: smtp}}
  backup: {retentionDays: 7}
"#,
        )
        .unwrap();
        r.metadata.resource_version = Some("1".into());
        r
    }

    fn plan(r: &DailyReport) -> RunPlan {
        let date = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let slot = crate::plan::manual_slot(r, date).unwrap();
        crate::plan::build_plan(r, &[], &[], &BTreeSet::new(), slot)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_run_job_is_restricted_owned_and_holds_no_secret() {
        let r = report();
        let p = plan(&r);
        let name = crate::run::run_name("morning-brief", p.slot.date, None);
        let job = run_job(
            &r,
            &name,
            &p,
            &Settings::default(),
            at("2026-11-22T22:20:00Z"),
            at("2026-11-22T22:00:00Z"),
        );
        assert_eq!(job.metadata.name.as_deref(), Some("morning-brief-20261123"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("desk"));
        let owners = job.metadata.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "DailyReport");
        assert_eq!(owners[0].controller, Some(true));
        let spec = job.spec.clone().unwrap();
        assert_eq!(spec.backoff_limit, Some(3));
        assert_eq!(
            spec.active_deadline_seconds,
            Some(20 * 60 + PAST_WINDOW_SECONDS)
        );
        let rules = spec.pod_failure_policy.unwrap().rules;
        assert_eq!(rules[0].on_exit_codes.as_ref().unwrap().values, [1, 2]);
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod_security::violations(&pod, true), Vec::<String>::new());
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.service_account_name.as_deref(), Some("finrep-pipeline"));
        let c = &pod.containers[0];
        let env: BTreeMap<String, EnvVar> = c
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        for secret in [
            "DATABASE_URL",
            "FINREP_SECRET_AI_API_KEY",
            "FINREP_SECRET_SMTP_USERNAME",
            "FINREP_SECRET_SMTP_PASSWORD",
        ] {
            let e = &env[secret];
            assert!(
                e.value.is_none() && e.value_from.as_ref().unwrap().secret_key_ref.is_some(),
                "{secret}"
            );
        }
        assert_eq!(c.command, Some(vec!["finrep-pipeline".to_string()]));
        let args = c.args.clone().unwrap();
        assert_eq!(args[..2], ["--plan", "/etc/finrep/plan/plan.yaml.gz"]);
        assert!(args.contains(&"--template-dir".to_string()));
        let json = serde_json::to_string(&job).unwrap();
        assert!(!json.contains("value\":\"s3cret"), "no secret values");
    }

    #[test]
    fn the_plan_config_map_is_immutable_and_owned() {
        let r = report();
        let p = plan(&r);
        let cm = plan_config_map(&r, "morning-brief-20261123", &p, p.to_gzip().unwrap());
        assert_eq!(cm.immutable, Some(true));
        let bytes = &cm.binary_data.as_ref().unwrap()[PLAN_FILE].0;
        assert_eq!(RunPlan::from_bytes(bytes).unwrap(), p);
        assert_eq!(cm.metadata.labels.unwrap()[labels::RUN_DATE], "2026-11-23");
    }
}
