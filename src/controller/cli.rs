//! The command line of `finrep controller` (also the `finrep-controller` binary, which links
//! the controller alone): flags, settings, and running until SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::objects::{SecretRef, Settings};
use super::runtime::{ControllerOptions, LeaseOptions};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = "FINREP_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    admin_listen: std::net::SocketAddr,
    /// Watch this namespace only (a namespaced Role is then enough); all when absent.
    #[arg(long, env = "FINREP_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Run without leader election (one replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// The Lease that elects the active replica.
    #[arg(long, default_value = "finrep-controller")]
    lease_name: String,
    /// Namespace of the Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a lease outlives its holder: the longest a standby waits.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Most run Jobs at once across the served namespaces (0: no bound). Later runs wait in
    /// order of slot, one namespace at a time, and say so in their status.
    #[arg(long, env = "FINREP_MAX_CONCURRENT_RUNS", default_value_t = super::objects::DEFAULT_MAX_CONCURRENT_RUNS)]
    max_concurrent_runs: usize,
    /// Reconciles at once per kind.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    /// Image of pipeline Jobs whose report names none.
    #[arg(long, env = "FINREP_IMAGE")]
    image: Option<String>,
    /// imagePullPolicy of the pods the controller creates.
    #[arg(long, env = "FINREP_IMAGE_PULL_POLICY")]
    image_pull_policy: Option<String>,
    /// Service account of pipeline pods (it needs no API permission).
    #[arg(long, default_value = "finrep-pipeline")]
    pipeline_service_account: String,
    /// Secret and key holding DATABASE_URL for pipeline and backup pods, as NAME/KEY.
    #[arg(long, default_value = "finrep-database/url")]
    database_secret: String,
    /// Secret and key holding the one-click unsubscribe signing key, as NAME/KEY.
    #[arg(long)]
    unsubscribe_secret: Option<String>,
    /// Public URL of the console, for unsubscribe links.
    #[arg(long, env = "FINREP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Hosts pipeline pods trust whatever they resolve to; repeatable.
    #[arg(long = "trusted-host", value_delimiter = ',')]
    trusted_hosts: Vec<String>,
    /// Hosts pipeline pods may post chat webhooks to besides the platforms' own
    /// (`host:port` over https, `http://host:port` in plaintext); repeatable.
    #[arg(long = "trusted-webhook-host", value_delimiter = ',')]
    trusted_webhook_hosts: Vec<String>,
    /// Namespace whose reports this controller runs; repeatable. Its Jobs, plans, Events and
    /// Secret lookups stay in these namespaces (namespaced Roles suffice); a report elsewhere
    /// is Ready=False (NamespaceNotServed). Default: every namespace.
    #[arg(
        long = "report-namespace",
        env = "FINREP_REPORT_NAMESPACES",
        value_delimiter = ','
    )]
    report_namespaces: Vec<String>,
    /// Repository a report's spec.job.image may name (NAME, or PREFIX/* for every repository
    /// under it); repeatable. Default: --image's repository only. Pipeline pods hold the
    /// database URL, so the image they run is the operator's choice.
    #[arg(
        long = "allowed-image",
        env = "FINREP_ALLOWED_IMAGES",
        value_delimiter = ','
    )]
    allowed_images: Vec<String>,
    /// PostgreSQL URL the controller reads run, fetch and delivery records from.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Read the time from this file instead of the system clock, and hand it to the run
    /// Jobs (tests and demos on one host: an RFC 3339 instant, optionally followed by a rate
    /// such as x60).
    #[arg(long, env = "FINREP_CLOCK_FILE", value_name = "FILE", hide = true)]
    clock_file: Option<std::path::PathBuf>,
}

fn secret_ref(arg: &str) -> anyhow::Result<SecretRef> {
    let (name, key) = arg
        .split_once('/')
        .filter(|(n, k)| !n.is_empty() && !k.is_empty())
        .with_context(|| format!("{arg:?} is not NAME/KEY of a Secret"))?;
    Ok(SecretRef {
        name: name.to_string(),
        key: key.to_string(),
    })
}

impl ControllerArgs {
    fn options(&self) -> anyhow::Result<ControllerOptions> {
        let defaults = Settings::default();
        let settings = Settings {
            image: self.image.clone().unwrap_or(defaults.image),
            image_pull_policy: self.image_pull_policy.clone(),
            pipeline_service_account: self.pipeline_service_account.clone(),
            resources: defaults.resources,
            database_url: secret_ref(&self.database_secret)?,
            unsubscribe_key: self
                .unsubscribe_secret
                .as_deref()
                .map(secret_ref)
                .transpose()?,
            public_url: self.public_url.clone(),
            trusted_hosts: self.trusted_hosts.clone(),
            trusted_webhook_hosts: self.trusted_webhook_hosts.clone(),
            allowed_images: self.allowed_images.clone(),
            report_namespaces: self.report_namespaces.clone(),
            max_concurrent_runs: self.max_concurrent_runs,
            clock_file: self
                .clock_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        };
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("finrep-controller-{}", std::process::id()));
        Ok(ControllerOptions {
            settings,
            namespace: self.watch_namespace.clone(),
            admin_listen: Some(self.admin_listen),
            lease: (!self.no_leader_election).then(|| LeaseOptions {
                name: self.lease_name.clone(),
                namespace: self.lease_namespace.clone(),
                identity,
                duration_seconds: self.lease_seconds,
            }),
            concurrency: self.concurrency.max(1),
        })
    }
}

/// `finrep controller`: runs until SIGTERM.
pub fn run(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    let opts = args.options()?;
    let clock =
        crate::clock::from_file_option(args.clock_file.as_deref()).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        crate::tls::install_crypto_provider();
        // Lazily: the controller starts (and says not-ready) while the database is away.
        let store = Store::connect_lazy(&args.database_url, 4, Duration::from_secs(10))?;
        let client = kube::Client::try_default().await.context(
            "no Kubernetes API to talk to (in a pod: its service account; elsewhere: KUBECONFIG)",
        )?;
        super::runtime::run(client, store, opts, clock, crate::signals::terminated()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
