//! The plugin's way to the cluster: kubectl's kubeconfig, context and namespace, annotations
//! set with a merge patch (the verb `patch`, nothing else of the object is written), and
//! polling until the controller answers.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Cli;

/// The plugin's User-Agent.
pub const USER_AGENT: &str = "kubectl-finrep";

/// How often the controller's answer is looked for.
const POLL: Duration = Duration::from_millis(500);

/// A client and the namespace the command works in.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl Cluster {
    pub async fn connect(cli: &Cli) -> anyhow::Result<Self> {
        finrep_core::tls::install_crypto_provider();
        let options = KubeConfigOptions {
            context: cli.context.clone(),
            cluster: None,
            user: None,
        };
        let config = match &cli.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .context("loading the kubeconfig (use --kubeconfig or --context)")?;
        let mut config = config;
        // Who wrote an annotation, in the API server's audit log.
        if let Ok(agent) =
            http::HeaderValue::from_str(&format!("{USER_AGENT}/{}", finrep_core::build::VERSION))
        {
            config.headers.push((http::header::USER_AGENT, agent));
        }
        let namespace = cli
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok(Self {
            client: Client::try_from(config)?,
            namespace,
        })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The object, or an error that says which and where.
    pub async fn get<K>(&self, kind: &str, name: &str) -> anyhow::Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .with_context(|| format!("reading {kind} {name}"))?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no {kind} {name} in namespace {} (kubectl get {} -n {})",
                    self.namespace,
                    kind.to_lowercase() + "s",
                    self.namespace
                )
            })
    }

    /// Sets (or, for `None`, removes) annotations with one merge patch.
    pub async fn annotate<K>(
        &self,
        name: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> anyhow::Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let values: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, |v| json!(v))))
            .collect();
        let patch = json!({"metadata": {"annotations": values}});
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("annotating {name}"))?;
        Ok(())
    }
}

/// Polls `check` until it answers `Some`, printing each new progress line it gives on
/// stderr; `None` when `timeout` passes first.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Progress<T>>>,
{
    let started = Instant::now();
    let mut said = String::new();
    loop {
        match check().await? {
            Progress::Done(t) => return Ok(Some(t)),
            Progress::Waiting(line) => {
                if line != said {
                    eprintln!("… {line}");
                    said = line;
                }
            }
        }
        if started.elapsed() >= timeout {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An answer so far.
pub enum Progress<T> {
    Done(T),
    Waiting(String),
}

/// A fresh annotation value: the moment it was asked for, so each request is new.
pub fn request_value() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string()
}
