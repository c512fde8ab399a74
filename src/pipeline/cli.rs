//! The command line of a run: `finrep pipeline` (also the `finrep-pipeline` binary, which
//! links the pipeline alone and is what a report's Job runs), `finrep run` and the standalone
//! scheduler share these flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::PipelineOptions;
use super::fetch::FetchConfig;
use crate::clock::Clock;
use crate::delivery::{DeliveryOptions, Unsubscribe};
use crate::guard::NetworkPolicy;
use crate::plan::{PlanPurpose, RunPlan};
use crate::run::RunExit;
use crate::store::Store;
use crate::window::WindowMode;

/// `finrep pipeline` and `finrep-pipeline`: one run plan, as a report's Job runs it.
#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// The run plan as mounted from the run's ConfigMap (plan.yaml.gz), or plain YAML/JSON.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Also write report.html, report.txt and outcome.json into this directory.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Allow sources on loopback and private networks (tests, local demos, internal mirrors).
    #[arg(long, env = "FINREP_ALLOW_PRIVATE_NETWORKS", default_value_t = false)]
    pub allow_private_networks: bool,

    /// Host trusted whatever address it resolves to (an in-cluster feed mirror); repeatable.
    #[arg(
        long = "trusted-host",
        env = "FINREP_TRUSTED_HOSTS",
        value_delimiter = ','
    )]
    pub trusted_hosts: Vec<String>,

    /// Host trusted for chat webhooks alone (an in-cluster relay): `host:port` over https,
    /// `http://host:port` to allow plaintext; repeatable. Hosts trusted for feeds are not.
    #[arg(
        long = "trusted-webhook-host",
        env = "FINREP_TRUSTED_WEBHOOK_HOSTS",
        value_delimiter = ','
    )]
    pub trusted_webhook_hosts: Vec<String>,

    /// Directory with override templates (the mounted template ConfigMap).
    #[arg(long, env = "FINREP_TEMPLATE_DIR", value_name = "DIR")]
    pub template_dir: Option<PathBuf>,

    /// Rebuild the report even when today's was already composed.
    #[arg(long)]
    pub recompose: bool,

    /// Compose and store the report, but send nothing.
    #[arg(long)]
    pub no_send: bool,

    /// Keep a manual run inside the mail window (wait for it to open, stop at its end).
    #[arg(long)]
    pub respect_window: bool,

    /// Post again to the chat groups whose post of this day is `uncertain` (the process died
    /// after the request went out): only once someone has checked that the group did not get
    /// it, as a second post would be a second message. Name the groups checked
    /// (`--resend-uncertain=wecom:desk,…`, by address or Recipient name); alone, every one.
    #[arg(long, value_name = "GROUP", num_args = 0.., value_delimiter = ',', require_equals = true)]
    pub resend_uncertain: Option<Vec<String>>,

    /// Open a new SMTP connection for every message (diagnostics and benchmarks only).
    #[arg(long, hide = true)]
    pub no_connection_reuse: bool,

    /// Public base URL of the console, for one-click unsubscribe links
    /// (with FINREP_UNSUBSCRIBE_KEY, a signing key from a Secret).
    #[arg(long, env = "FINREP_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Seconds to wait while another attempt at the same report and day runs (a retried Job
    /// whose old pod still runs, `finrep run` beside the scheduler) before exiting 75.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative_seconds)]
    pub lock_wait_seconds: f64,

    /// Most sources fetched at once.
    #[arg(long, default_value_t = 32)]
    pub max_concurrency: usize,

    /// Most requests at once to one host.
    #[arg(long, default_value_t = 4)]
    pub max_per_host: usize,

    /// Read the time from this file instead of the system clock (tests and demos: an RFC 3339
    /// instant, optionally followed by a rate such as x60). Every time the run records comes
    /// from it.
    #[arg(long, env = "FINREP_CLOCK_FILE", value_name = "FILE", hide = true)]
    pub clock_file: Option<PathBuf>,
}

impl RunArgs {
    pub fn network(&self) -> NetworkPolicy {
        NetworkPolicy::with_hosts(
            self.allow_private_networks,
            &self.trusted_hosts,
            &self.trusted_webhook_hosts,
        )
    }

    /// The clock the run reads: `--clock-file`'s, or the wall clock.
    pub fn clock(&self) -> anyhow::Result<Arc<dyn Clock>> {
        crate::clock::from_file_option(self.clock_file.as_deref()).map_err(anyhow::Error::msg)
    }

    pub fn options(&self, clock: &Arc<dyn Clock>) -> PipelineOptions {
        PipelineOptions {
            fetch: FetchConfig {
                max_concurrency: self.max_concurrency,
                max_per_host: self.max_per_host,
                policy: self.network(),
                ..Default::default()
            },
            template_dir: self.template_dir.clone(),
            output_dir: self.output.clone(),
            now: clock.now(),
            clock: Arc::clone(clock),
            recompose: self.recompose,
            lock_wait: Duration::from_secs_f64(self.lock_wait_seconds),
        }
    }

    /// How delivery runs for `plan`; `None` with --no-send.
    pub fn delivery(
        &self,
        plan: &RunPlan,
        clock: &Arc<dyn Clock>,
    ) -> anyhow::Result<Option<DeliveryOptions>> {
        if self.no_send {
            return Ok(None);
        }
        self.delivery_for(plan.slot.manual, clock).map(Some)
    }

    /// How delivery runs for a manual or a scheduled run.
    pub fn delivery_for(
        &self,
        manual: bool,
        clock: &Arc<dyn Clock>,
    ) -> anyhow::Result<DeliveryOptions> {
        // A master key (standalone, `finrep run`) or one namespace's derived key (a pipeline
        // pod: `v2:<key id>:<hex>`, as the chart writes it into the namespace's Secret).
        let unsubscribe = match (std::env::var("FINREP_UNSUBSCRIBE_KEY"), &self.public_url) {
            (Ok(key), Some(url)) => Some(Unsubscribe {
                signer: crate::unsubscribe::Signer::parse(key.trim()).map_err(|_| {
                    anyhow::anyhow!(
                        "FINREP_UNSUBSCRIBE_KEY must be at least {} bytes (or a namespace key v2:<key id>:<key>)",
                        crate::unsubscribe::MIN_KEY_BYTES
                    )
                })?,
                public_url: url.clone(),
            }),
            _ => None,
        };
        Ok(DeliveryOptions {
            mode: WindowMode::for_run(manual, self.respect_window),
            clock: Arc::clone(clock),
            unsubscribe,
            reuse_connections: !self.no_connection_reuse,
            network: self.network(),
            console_url: self.public_url.clone(),
            resend_uncertain: match &self.resend_uncertain {
                None => crate::delivery::ResendUncertain::None,
                Some(groups) if groups.is_empty() => crate::delivery::ResendUncertain::All,
                Some(groups) => {
                    crate::delivery::ResendUncertain::Groups(groups.iter().cloned().collect())
                }
            },
            ..Default::default()
        })
    }
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() && v < 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 86400")),
    }
}

#[derive(clap::Args, Debug)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://finrep@localhost:5432/finrep.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
}

impl DatabaseArgs {
    pub async fn connect(&self) -> anyhow::Result<Store> {
        Ok(Store::connect(
            &self.database_url,
            4,
            Duration::from_secs(self.connect_timeout),
        )
        .await?)
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// What a report's Job runs: the plan mounted from its ConfigMap.
pub fn run_plan_file(args: &PipelineArgs) -> anyhow::Result<ExitCode> {
    let PipelineArgs { plan, db, run } = args;
    let bytes = std::fs::read(plan).with_context(|| format!("reading plan {}", plan.display()))?;
    let plan = match RunPlan::from_bytes(&bytes).and_then(|p| p.validate().map(|()| p)) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(RunExit::Invalid.code()));
        }
    };
    runtime()?.block_on(async {
        let store = db.connect().await?;
        run_plan(&plan, &store, run).await
    })
}

/// Runs a plan — the day's run, a preview or a test send, as the plan says — and prints its
/// outcome as one JSON line on stdout; the exit code tells a Job what to do next.
pub async fn run_plan(plan: &RunPlan, store: &Store, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let clock = args.clock()?;
    let opts = args.options(&clock);
    let done = match &plan.purpose {
        PlanPurpose::Run => {
            let delivery = args.delivery(plan, &clock)?;
            super::run(plan, store, &opts, delivery.as_ref())
                .await
                .map(|mut outcome| {
                    outcome.peak_rss_kib = crate::telemetry::peak_rss_kib();
                    let exit = RunExit::for_outcome(&outcome);
                    (serde_json::to_value(&outcome).unwrap_or_default(), exit)
                })
        }
        PlanPurpose::Preview { .. } => {
            let console = args.public_url.as_deref();
            super::preview::preview(plan, store, &opts, console)
                .await
                .map(|p| (preview_line(&p), RunExit::Done))
        }
        PlanPurpose::TestSend { .. } => {
            let delivery = args.delivery_for(true, &clock)?;
            super::test_send::test_send(plan, store, &opts, &delivery)
                .await
                .map(|t| (test_send_line(&t), RunExit::Done))
        }
    };
    match done {
        Ok((line, exit)) => {
            println!("{line}");
            Ok(ExitCode::from(exit.code()))
        }
        Err(e) => {
            let exit = RunExit::for_failure(e.is_transient());
            tracing::error!(error = %e, category = %e.category(), exit_code = exit.code(), "run failed");
            eprintln!("error: {e}");
            Ok(ExitCode::from(exit.code()))
        }
    }
}

/// A preview's line: its id, what it holds and which sources failed.
fn preview_line(p: &super::preview::Previewed) -> serde_json::Value {
    serde_json::json!({
        "preview": p.preview_id,
        "subject": p.subject,
        "articles": p.articles,
        "sourcesFailing": p.outcome.failed_sources().collect::<Vec<_>>(),
    })
}

fn test_send_line(t: &super::test_send::TestSent) -> serde_json::Value {
    serde_json::json!({
        "testSend": t.state.as_str(),
        "copyOf": t.copy_of.map(|(of, date)| format!("{of} of {date}")),
        "reply": t.reply,
    })
}
