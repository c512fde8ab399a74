use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use finrep::api::ResourceKind;
use finrep::manifest::{self, LoadOptions};
use finrep::plan::{RunPlan, build_plan};
use finrep::store::{Store, redact_url};
use finrep::telemetry::{self, LogFormat};
use kube::ResourceExt;

/// finrep builds a financial-intelligence daily report from news feeds, JSON APIs and web
/// pages, and mails it to its subscribers inside a morning delivery window.
///
/// In Kubernetes it runs as an operator driven by Source, Recipient and DailyReport resources
/// (kubectl apply / kubectl get dailyreports). The same manifests drive the standalone mode.
#[derive(Parser, Debug)]
#[command(name = "finrep", version = finrep::build::VERSION, propagate_version = true)]
struct Cli {
    /// Log format: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(
        long,
        global = true,
        env = "FINREP_LOG_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    log_format: LogFormat,

    /// Log filter (e.g. info, finrep=debug); RUST_LOG takes precedence.
    #[arg(long, global = true, env = "FINREP_LOG_LEVEL", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions generated from finrep's types.
    ///
    /// With --output-dir, write one file per CRD instead (this is how crds/ is produced:
    /// `finrep crd --output-dir crds`).
    Crd {
        /// Write <plural>.finrep.io.yaml files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },

    /// Check Source, Recipient and DailyReport manifests offline, before kubectl apply.
    ///
    /// Applies the CRD schema, its CEL rules and the checks only code can do (cron, time
    /// zone, mail window, selectors, charsets, CSS selectors, duplicate addresses). Given a
    /// directory, it also checks that each DailyReport selects at least one Source and one
    /// Recipient. Exits 1 when any error is found; warnings do not fail.
    Validate {
        /// Files or directories (searched recursively for .yaml, .yml and .json).
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Namespace of manifests that name none.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },

    /// Apply the database migrations (idempotent).
    Migrate(DatabaseArgs),

    /// Run the pipeline of one run plan (what a report's Job runs).
    ///
    /// Collects every source, extracts and ranks the items, composes the report and stores
    /// it in PostgreSQL. Secrets come from FINREP_SECRET_<SECRET>_<KEY> variables.
    Pipeline {
        /// The run plan (YAML or JSON), as mounted from the run's ConfigMap.
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        run: RunArgs,
    },

    /// Build today's plan of a report from manifests and run it once, now.
    ///
    /// Loads the manifests like `validate` (any error stops it), applies pending database
    /// migrations, and runs the report for --date (default: today in the report's time
    /// zone). A second run of the same day reuses what the first one composed.
    Run {
        /// Directory (or file) of Source, Recipient and DailyReport manifests.
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// Name of the DailyReport to run.
        #[arg(long, value_name = "NAME")]
        report: String,
        /// Namespace of manifests that name none.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Local date of the run (YYYY-MM-DD); default today in the report's time zone.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Also write report.html, report.txt and outcome.json into this directory.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,

    /// Allow sources on loopback and private networks (tests, local demos, internal mirrors).
    #[arg(long, env = "FINREP_ALLOW_PRIVATE_NETWORKS", default_value_t = false)]
    allow_private_networks: bool,

    /// Host trusted whatever address it resolves to (an in-cluster feed mirror); repeatable.
    #[arg(
        long = "trusted-host",
        env = "FINREP_TRUSTED_HOSTS",
        value_delimiter = ','
    )]
    trusted_hosts: Vec<String>,

    /// Directory with override templates (the mounted template ConfigMap).
    #[arg(long, env = "FINREP_TEMPLATE_DIR", value_name = "DIR")]
    template_dir: Option<PathBuf>,

    /// Rebuild the report even when today's was already composed.
    #[arg(long)]
    recompose: bool,

    /// Compose and store the report, but send nothing.
    #[arg(long)]
    no_send: bool,

    /// Keep a manual run inside the mail window (wait for it to open, stop at its end).
    #[arg(long)]
    respect_window: bool,

    /// Open a new SMTP connection for every message (diagnostics and benchmarks only).
    #[arg(long, hide = true)]
    no_connection_reuse: bool,

    /// Public base URL of the console, for one-click unsubscribe links
    /// (with FINREP_UNSUBSCRIBE_KEY, a signing key from a Secret).
    #[arg(long, env = "FINREP_PUBLIC_URL")]
    public_url: Option<String>,

    /// Most sources fetched at once.
    #[arg(long, default_value_t = 32)]
    max_concurrency: usize,

    /// Most requests at once to one host.
    #[arg(long, default_value_t = 4)]
    max_per_host: usize,
}

impl RunArgs {
    fn options(&self) -> finrep::pipeline::PipelineOptions {
        finrep::pipeline::PipelineOptions {
            fetch: finrep::pipeline::fetch::FetchConfig {
                max_concurrency: self.max_concurrency,
                max_per_host: self.max_per_host,
                policy: if self.allow_private_networks {
                    finrep::pipeline::guard::NetworkPolicy::permissive()
                } else {
                    finrep::pipeline::guard::NetworkPolicy::strict(self.trusted_hosts.clone())
                },
                ..Default::default()
            },
            template_dir: self.template_dir.clone(),
            output_dir: self.output.clone(),
            now: chrono::Utc::now(),
            recompose: self.recompose,
        }
    }
}

#[derive(Args, Debug)]
struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://finrep@localhost:5432/finrep.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "finrep failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl DatabaseArgs {
    async fn connect(&self) -> anyhow::Result<Store> {
        Ok(Store::connect(
            &self.database_url,
            4,
            Duration::from_secs(self.connect_timeout),
        )
        .await?)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Exit codes a Job sees (documented in docs/delivery.md).
mod exit {
    /// Done: the report was delivered to every recipient (or nothing was to be sent).
    pub const DONE: u8 = 0;
    /// Invalid plan, configuration or template: retrying will not help.
    pub const INVALID: u8 = 1;
    /// Done, with deliveries that failed, bounced or were deferred: recorded, not retried.
    pub const DONE_WITH_FAILURES: u8 = 2;
    /// Retry me: the database or the mail server was unreachable; nothing was lost.
    pub const RETRY: u8 = 75;
}

/// Runs a plan and prints its outcome as one JSON line on stdout.
async fn run_plan(plan: &RunPlan, store: &Store, args: &RunArgs) -> anyhow::Result<ExitCode> {
    use finrep::pipeline::deliver::{DeliveryOptions, Unsubscribe};
    use finrep::pipeline::window::WindowMode;
    let opts = args.options();
    let unsubscribe = match (std::env::var("FINREP_UNSUBSCRIBE_KEY"), &args.public_url) {
        (Ok(key), Some(url)) if key.len() >= finrep::unsubscribe::MIN_KEY_BYTES => {
            Some(Unsubscribe {
                key: key.into_bytes(),
                public_url: url.clone(),
            })
        }
        (Ok(_), Some(_)) => anyhow::bail!(
            "FINREP_UNSUBSCRIBE_KEY must be at least {} bytes",
            finrep::unsubscribe::MIN_KEY_BYTES
        ),
        _ => None,
    };
    let delivery = DeliveryOptions {
        mode: if plan.slot.manual && !args.respect_window {
            WindowMode::Ignore
        } else {
            WindowMode::Respect
        },
        unsubscribe,
        reuse_connections: !args.no_connection_reuse,
        ..Default::default()
    };
    let result =
        finrep::pipeline::run(plan, store, &opts, (!args.no_send).then_some(&delivery)).await;
    match result {
        Ok(mut outcome) => {
            outcome.peak_rss_kib = finrep::telemetry::peak_rss_kib();
            println!("{}", serde_json::to_string(&outcome)?);
            let undelivered = outcome.delivery.as_ref().map_or(0, |c| {
                c.pending + c.deferred + c.failed + c.bounced + c.uncertain
            });
            Ok(ExitCode::from(if undelivered == 0 {
                exit::DONE
            } else {
                exit::DONE_WITH_FAILURES
            }))
        }
        Err(e) => {
            let code = if e.is_transient() {
                exit::RETRY
            } else {
                exit::INVALID
            };
            tracing::error!(error = %e, exit_code = code, "run failed");
            eprintln!("error: {e}");
            Ok(ExitCode::from(code))
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Crd { output_dir } => {
            match output_dir {
                None => print!("{}", finrep::crd::all_yaml()?),
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    for kind in ResourceKind::ALL {
                        let path = dir.join(finrep::crd::file_name(kind));
                        std::fs::write(&path, finrep::crd::to_yaml(&kind.crd())?)
                            .with_context(|| format!("writing {}", path.display()))?;
                        println!("wrote {}", path.display());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths, namespace } => {
            let loaded = manifest::load(
                &paths,
                &LoadOptions {
                    default_namespace: namespace,
                    complete: None,
                },
            )?;
            for d in &loaded.diagnostics {
                println!("{d}");
            }
            let resources =
                loaded.set.sources.len() + loaded.set.recipients.len() + loaded.set.reports.len();
            println!(
                "{} document(s), {} valid resource(s): {} error(s), {} warning(s)",
                loaded.documents,
                resources,
                loaded.errors(),
                loaded.warnings()
            );
            Ok(if loaded.errors() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Pipeline { plan, db, run } => {
            let text = std::fs::read_to_string(&plan)
                .with_context(|| format!("reading plan {}", plan.display()))?;
            let plan = RunPlan::from_yaml(&text)?;
            runtime()?.block_on(async {
                let store = db.connect().await?;
                run_plan(&plan, &store, &run).await
            })
        }
        Command::Run {
            config,
            report,
            namespace,
            date,
            db,
            run,
        } => {
            let loaded = manifest::load_valid(
                std::slice::from_ref(&config),
                &LoadOptions {
                    default_namespace: namespace.clone(),
                    complete: Some(true),
                },
            )?;
            let set = loaded.set;
            let report = set
                .reports
                .iter()
                .find(|r| {
                    r.name_any() == report && r.namespace().as_deref() == Some(namespace.as_str())
                })
                .with_context(|| {
                    format!(
                        "no DailyReport {report} in namespace {namespace} under {}",
                        config.display()
                    )
                })?;
            let date = match date {
                Some(d) => d,
                None => finrep::plan::local_date(report, chrono::Utc::now())?,
            };
            let slot = finrep::plan::manual_slot(report, date)?;
            runtime()?.block_on(async {
                let store = db.connect().await?;
                store.migrate().await?;
                let blacklist = store.blacklisted_emails().await?;
                let plan = build_plan(report, &set.sources, &set.recipients, &blacklist, slot);
                run_plan(&plan, &store, &run).await
            })
        }
        Command::Migrate(db) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let store = db.connect().await?;
                let report = store.migrate().await?;
                for m in &report.applied {
                    tracing::info!(migration = %m, "applied");
                }
                tracing::info!(
                    database = %redact_url(&db.database_url),
                    applied = report.applied.len(),
                    already_applied = report.already_applied,
                    "database schema is current"
                );
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
