//! A kubelet and Job controller for the in-memory API, so the controller's tests go past the
//! Job it creates: for each run Job, the real `finrep-pipeline` runs as the Job's pod would —
//! its plan ConfigMap written where the pod mounts it, its environment resolved from the
//! Secrets the Job names (a missing one keeps the pod from starting, as kubelet's
//! CreateContainerConfigError does), no other environment — and the Job's status is written
//! back as the Job controller writes it: `startTime` and `active`, then `Complete`, or
//! `Failed` with `BackoffLimitExceeded`, `DeadlineExceeded` (activeDeadlineSeconds on the
//! runner's clock) or `PodFailurePolicy` (the Job's own rules). A pod that exits otherwise is
//! started again while `backoffLimit` allows. Tests can SIGKILL a Job's pod when a condition
//! holds (mid-delivery, say), as an OOM kill or a node failure would.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use finrep::clock::Clock;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::process::{Child, Command};

/// How often the runner looks at Jobs and pods.
const POLL: Duration = Duration::from_millis(100);

/// A condition under which a Job's running pod is killed (once).
pub type KillWhen = Box<dyn Fn() -> bool + Send + Sync>;

/// What happened to each Job, for the test's assertions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRecord {
    /// Pods started (a retried Job has more than one).
    pub pods: u32,
    /// Exit codes of the pods that ended (`None`: killed by a signal).
    pub exits: Vec<Option<i32>>,
    /// `Complete`, or the `Failed` condition's reason.
    pub ended: Option<String>,
    /// Why the pod could not start yet (a Secret or ConfigMap missing), if it could not.
    pub waiting: Option<String>,
}

#[derive(Default)]
struct Shared {
    records: BTreeMap<(String, String), JobRecord>,
    kills: Vec<(String, KillWhen)>,
    paused: bool,
    /// The most pods running at once so far.
    peak_pods: usize,
}

/// The runner, running until dropped.
pub struct JobRunner {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct RunnerOptions {
    pub client: kube::Client,
    pub namespaces: Vec<String>,
    /// The `finrep-pipeline` binary the pod's container runs.
    pub program: PathBuf,
    /// The clock Job deadlines are measured on (the controller's).
    pub clock: Arc<dyn Clock>,
    /// Where pods' files and logs go.
    pub dir: PathBuf,
}

impl JobRunner {
    pub fn start(opts: RunnerOptions) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = Runner {
            opts,
            shared: shared.clone(),
            pods: HashMap::new(),
        };
        let task = tokio::spawn(state.run());
        Self { shared, task }
    }

    /// What happened to every Job so far, by (namespace, name).
    /// The most pods that ran at once (the node's bound on run Jobs holds when this does).
    pub fn peak_pods(&self) -> usize {
        self.shared.lock().unwrap().peak_pods
    }

    pub fn records(&self) -> BTreeMap<(String, String), JobRecord> {
        self.shared.lock().unwrap().records.clone()
    }

    pub fn record(&self, namespace: &str, job: &str) -> Option<JobRecord> {
        self.records()
            .get(&(namespace.to_string(), job.to_string()))
            .cloned()
    }

    /// Kills the pod of `job` (SIGKILL) once `when` holds while it runs.
    pub fn kill_when(&self, job: &str, when: KillWhen) {
        self.shared
            .lock()
            .unwrap()
            .kills
            .push((job.to_string(), when));
    }

    /// Stops starting new pods (a node that is down); running ones go on.
    pub fn pause(&self, paused: bool) {
        self.shared.lock().unwrap().paused = paused;
    }
}

/// One pod of a Job, running.
struct Pod {
    child: Child,
    started: DateTime<Utc>,
    /// Its Pod object in the API (`kubectl finrep logs` reads its log through it).
    name: String,
    _dir: tempfile::TempDir,
}

struct Runner {
    opts: RunnerOptions,
    shared: Arc<Mutex<Shared>>,
    /// Running pods by (namespace, Job name).
    pods: HashMap<(String, String), Pod>,
}

/// How a Job's pod ended, as its Job controller sees it.
enum PodEnd {
    Succeeded,
    Failed(Option<i32>),
}

impl Runner {
    async fn run(mut self) {
        loop {
            for ns in self.opts.namespaces.clone() {
                if let Err(e) = self.pass(&ns).await {
                    eprintln!("job runner: {ns}: {e}");
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn pass(&mut self, ns: &str) -> Result<(), kube::Error> {
        let jobs: Api<Job> = Api::namespaced(self.opts.client.clone(), ns);
        let listed = jobs.list(&ListParams::default()).await?.items;
        let names: Vec<String> = listed.iter().map(ResourceExt::name_any).collect();
        // A Job deleted (pruned, or by a person) takes its pod with it.
        let gone: Vec<(String, String)> = self
            .pods
            .keys()
            .filter(|(n, j)| n == ns && !names.contains(j))
            .cloned()
            .collect();
        for key in gone {
            if let Some(mut pod) = self.pods.remove(&key) {
                let _ = pod.child.kill().await;
            }
        }
        for job in listed {
            if finished(&job) {
                continue;
            }
            self.tend(&jobs, ns, &job).await?;
        }
        Ok(())
    }

    /// One look at an unfinished Job: start its pod, or see how the running one is doing.
    async fn tend(&mut self, jobs: &Api<Job>, ns: &str, job: &Job) -> Result<(), kube::Error> {
        let key = (ns.to_string(), job.name_any());
        if !self.pods.contains_key(&key) {
            if self.shared.lock().unwrap().paused {
                return Ok(());
            }
            return self.start_pod(jobs, ns, job).await;
        }
        if self.past_deadline(job, &key) {
            self.kill(&key).await;
            return self.fail(jobs, &key, "DeadlineExceeded").await;
        }
        self.maybe_kill(&key).await;
        let Some(pod) = self.pods.get_mut(&key) else {
            return Ok(());
        };
        let Ok(Some(status)) = pod.child.try_wait() else {
            return Ok(());
        };
        let Some(pod) = self.pods.remove(&key) else {
            return Ok(());
        };
        let end = if status.success() {
            PodEnd::Succeeded
        } else {
            PodEnd::Failed(status.code())
        };
        self.pod_phase(ns, &pod.name, &end).await?;
        self.pod_ended(jobs, &key, job, end).await
    }

    /// The Job's pod as the Job controller makes it: labelled with the Job's name, owned by
    /// it, its log readable through the API.
    async fn create_pod(
        &self,
        ns: &str,
        job: &Job,
        name: &str,
        log: &Path,
    ) -> Result<(), kube::Error> {
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.opts.client.clone(), ns);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": ns,
                "labels": {"job-name": job.name_any(), "batch.kubernetes.io/job-name": job.name_any()},
                "annotations": {super::kube_api::POD_LOG_ANNOTATION: log.to_string_lossy()},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job.name_any(),
                                     "uid": job.uid().unwrap_or_default(), "controller": true}],
            },
            "spec": {"containers": [{"name": "pipeline", "image": "finrep"}]},
        });
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).expect("a pod");
        pods.create(&Default::default(), &pod).await?;
        let status = json!({"status": {"phase": "Running"}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map(|_| ())
    }

    async fn pod_phase(&self, ns: &str, name: &str, end: &PodEnd) -> Result<(), kube::Error> {
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.opts.client.clone(), ns);
        let status = match end {
            PodEnd::Succeeded => json!({"status": {"phase": "Succeeded"}}),
            PodEnd::Failed(Some(code)) => {
                json!({"status": {"phase": "Failed", "reason": format!("exit code {code}")}})
            }
            PodEnd::Failed(None) => json!({"status": {"phase": "Failed", "reason": "Killed"}}),
        };
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map(|_| ())
    }

    async fn pod_ended(
        &mut self,
        jobs: &Api<Job>,
        key: &(String, String),
        job: &Job,
        end: PodEnd,
    ) -> Result<(), kube::Error> {
        let failures = {
            let mut shared = self.shared.lock().unwrap();
            let record = shared.records.entry(key.clone()).or_default();
            record.exits.push(match end {
                PodEnd::Succeeded => Some(0),
                PodEnd::Failed(code) => code,
            });
            record.exits.iter().filter(|c| *c != &Some(0)).count() as i32
        };
        match end {
            PodEnd::Succeeded => self.complete(jobs, key).await,
            PodEnd::Failed(Some(code)) if fails_job_at_once(job, code) => {
                self.fail(jobs, key, "PodFailurePolicy").await
            }
            PodEnd::Failed(_) => {
                let limit = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
                if failures > limit {
                    self.fail(jobs, key, "BackoffLimitExceeded").await
                } else {
                    let status = json!({"status": {"failed": failures, "active": 0}});
                    patch_status(jobs, &key.1, status).await
                }
            }
        }
    }

    fn past_deadline(&self, job: &Job, key: &(String, String)) -> bool {
        let Some(seconds) = job.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
            return false;
        };
        let start = self
            .pods
            .get(key)
            .map(|p| p.started)
            .unwrap_or_else(|| self.opts.clock.now());
        let first = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or(start))
            .unwrap_or(start);
        self.opts.clock.now() > first + chrono::Duration::seconds(seconds)
    }

    async fn maybe_kill(&mut self, key: &(String, String)) {
        let due = {
            let mut shared = self.shared.lock().unwrap();
            let index = shared
                .kills
                .iter()
                .position(|(job, when)| *job == key.1 && when());
            index.map(|i| shared.kills.remove(i))
        };
        if due.is_some() {
            // Its end is seen right after, as a death by signal.
            self.kill(key).await;
        }
    }

    /// SIGKILLs the Job's pod and waits for it to die (the pod stays, to be seen as ended).
    async fn kill(&mut self, key: &(String, String)) {
        if let Some(pod) = self.pods.get_mut(key) {
            let _ = pod.child.start_kill();
            let _ = pod.child.wait().await;
        }
    }

    async fn complete(
        &mut self,
        jobs: &Api<Job>,
        key: &(String, String),
    ) -> Result<(), kube::Error> {
        self.ended(key, "Complete");
        let now = self.opts.clock.now().to_rfc3339();
        let status = json!({"status": {
        "active": 0, "succeeded": 1, "completionTime": now,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now},
        ]}});
        patch_status(jobs, &key.1, status).await
    }

    async fn fail(
        &mut self,
        jobs: &Api<Job>,
        key: &(String, String),
        reason: &str,
    ) -> Result<(), kube::Error> {
        if let Some(mut pod) = self.pods.remove(key) {
            let _ = pod.child.kill().await;
        }
        self.ended(key, reason);
        let now = self.opts.clock.now().to_rfc3339();
        let status = json!({"status": {
        "active": 0,
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": reason, "lastTransitionTime": now},
            {"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": now},
        ]}});
        patch_status(jobs, &key.1, status).await
    }

    fn ended(&self, key: &(String, String), how: &str) {
        let mut shared = self.shared.lock().unwrap();
        shared.records.entry(key.clone()).or_default().ended = Some(how.to_string());
    }

    /// Starts the Job's pod, or notes why it cannot start yet.
    async fn start_pod(&mut self, jobs: &Api<Job>, ns: &str, job: &Job) -> Result<(), kube::Error> {
        let key = (ns.to_string(), job.name_any());
        let dir = tempfile::tempdir_in(&self.opts.dir).expect("a pod directory");
        let prepared = self.prepare(ns, job, dir.path()).await?;
        let (container, env, mounts) = match prepared {
            Ok(p) => p,
            Err(waiting) => {
                let mut shared = self.shared.lock().unwrap();
                shared.records.entry(key).or_default().waiting = Some(waiting);
                return Ok(());
            }
        };
        let args: Vec<String> = container
            .args
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|a| remount(&a, &mounts))
            .collect();
        let pod_name = {
            let shared = self.shared.lock().unwrap();
            let n = shared.records.get(&key).map_or(0, |r| r.pods);
            format!("{}-{n}", key.1)
        };
        // The log outlives the pod's directory, as a kept Job's pod log does.
        let log_path = self.opts.dir.join(format!("{ns}.{pod_name}.log"));
        self.create_pod(ns, job, &pod_name, &log_path).await?;
        let log = std::fs::File::create(&log_path).expect("pod log");
        let child = Command::new(&self.opts.program)
            .args(&args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start finrep-pipeline");
        let started = self.opts.clock.now();
        {
            let mut shared = self.shared.lock().unwrap();
            let record = shared.records.entry(key.clone()).or_default();
            record.pods += 1;
            record.waiting = None;
        }
        let first_start = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .is_none();
        self.pods.insert(
            key.clone(),
            Pod {
                child,
                started,
                name: pod_name,
                _dir: dir,
            },
        );
        {
            let mut shared = self.shared.lock().unwrap();
            shared.peak_pods = shared.peak_pods.max(self.pods.len());
        }
        let mut status = json!({"status": {"active": 1}});
        if first_start {
            status["status"]["startTime"] = json!(started.to_rfc3339());
        }
        patch_status(jobs, &key.1, status).await
    }

    /// The container, its environment and its mounts (mount path → local directory), or why
    /// the pod cannot start.
    async fn prepare(
        &self,
        ns: &str,
        job: &Job,
        dir: &Path,
    ) -> Result<
        Result<(Container, Vec<(String, String)>, Vec<(String, PathBuf)>), String>,
        kube::Error,
    > {
        let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
            return Ok(Err("no pod template".into()));
        };
        let Some(container) = pod.containers.first().cloned() else {
            return Ok(Err("no container".into()));
        };
        let env = match self
            .environment(ns, container.env.as_deref().unwrap_or_default())
            .await?
        {
            Ok(env) => env,
            Err(e) => return Ok(Err(e)),
        };
        let mut local: HashMap<String, PathBuf> = HashMap::new();
        for volume in pod.volumes.as_deref().unwrap_or_default() {
            let path = dir.join(&volume.name);
            std::fs::create_dir_all(&path).expect("volume dir");
            if let Some(cm) = &volume.config_map {
                let api: Api<ConfigMap> = Api::namespaced(self.opts.client.clone(), ns);
                match api.get_opt(&cm.name).await? {
                    Some(map) => write_config_map(&map, cm.items.as_deref(), &path),
                    None if cm.optional == Some(true) => {}
                    None => return Ok(Err(format!("configmap {:?} not found", cm.name))),
                }
            }
            local.insert(volume.name.clone(), path);
        }
        let mounts = container
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|m| Some((m.mount_path.clone(), local.get(&m.name)?.clone())))
            .collect();
        Ok(Ok((container, env, mounts)))
    }

    async fn environment(
        &self,
        ns: &str,
        vars: &[EnvVar],
    ) -> Result<Result<Vec<(String, String)>, String>, kube::Error> {
        let secrets: Api<Secret> = Api::namespaced(self.opts.client.clone(), ns);
        let mut env = Vec::new();
        for var in vars {
            if let Some(value) = &var.value {
                env.push((var.name.clone(), value.clone()));
                continue;
            }
            let Some(r) = var
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
            else {
                continue;
            };
            let optional = r.optional == Some(true);
            let value = secrets
                .get_opt(&r.name)
                .await?
                .and_then(|s| s.data)
                .and_then(|d| d.get(&r.key).cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            match value {
                Some(v) => env.push((var.name.clone(), v)),
                None if optional => {}
                None => {
                    return Ok(Err(format!(
                        "secret {:?} key {:?} not found (CreateContainerConfigError)",
                        r.name, r.key
                    )));
                }
            }
        }
        Ok(Ok(env))
    }
}

fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// Whether the Job's podFailurePolicy fails it at once on `code`.
fn fails_job_at_once(job: &Job, code: i32) -> bool {
    let rules = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
        .map(|p| p.rules.clone())
        .unwrap_or_default();
    rules.iter().any(|r| {
        r.action == "FailJob"
            && r.on_exit_codes.as_ref().is_some_and(|e| {
                let listed = e.values.contains(&code);
                if e.operator == "In" { listed } else { !listed }
            })
    })
}

fn write_config_map(
    map: &ConfigMap,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    dir: &Path,
) {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in map.data.clone().unwrap_or_default() {
        files.insert(k, v.into_bytes());
    }
    for (k, v) in map.binary_data.clone().unwrap_or_default() {
        files.insert(k, v.0);
    }
    match items {
        Some(items) => {
            for item in items {
                if let Some(bytes) = files.get(&item.key) {
                    std::fs::write(dir.join(&item.path), bytes).expect("write a mounted key");
                }
            }
        }
        None => {
            for (k, bytes) in files {
                std::fs::write(dir.join(k), bytes).expect("write a mounted key");
            }
        }
    }
}

/// An argument naming a file under a mount path, pointed at the local directory instead.
fn remount(arg: &str, mounts: &[(String, PathBuf)]) -> String {
    for (path, local) in mounts {
        if let Some(rest) = arg.strip_prefix(path.as_str()) {
            return format!("{}{rest}", local.display());
        }
    }
    arg.to_string()
}

async fn patch_status(
    jobs: &Api<Job>,
    name: &str,
    status: serde_json::Value,
) -> Result<(), kube::Error> {
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map(|_| ())
}
