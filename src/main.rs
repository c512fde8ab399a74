use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

// The binary's own module: the library forbids unsafe code, and setting the allocator is the
// one call that needs it.
mod allocator;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use finrep::api::ResourceKind;
use finrep::delivery::DeliveryOptions;
use finrep::editor::{PreviewRequest, TestSendRequest, preview_plan, test_send_plan};
use finrep::manifest::{self, LoadOptions};
use finrep::pipeline::cli::{
    DatabaseArgs, PipelineArgs, RunArgs, run_plan, run_plan_file, runtime,
};
use finrep::plan::{RunAt, RunPlan, find_report, plan_for};
use finrep::store::{Store, redact_url};
use finrep::telemetry::{self, LogFormat};
use finrep::validation::ResourceSet;

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

    /// Dump the database to DIR/finrep_<NAME>_<YYYYMMDD>.sql.gz and delete this name's dumps
    /// older than the retention (never any other file).
    ///
    /// Runs the pg_dump it finds (--pg-dump), which must be of the server's major version or
    /// newer. Prints what it wrote and pruned as one JSON line.
    Backup {
        /// Directory the dumps are kept in.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Name in the dump's file name (a report's name, as the backup CronJob writes).
        #[arg(long, default_value = "database")]
        name: String,
        /// Dumps of this name older than this many days are deleted.
        #[arg(long, default_value_t = 14)]
        retention_days: u32,
        /// The pg_dump program.
        #[arg(long, env = "FINREP_PG_DUMP", default_value = "pg_dump")]
        pg_dump: PathBuf,
        /// Date in the file name (YYYY-MM-DD); default today in the local time zone (TZ).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[command(flatten)]
        db: DatabaseArgs,
    },

    /// Reports (latest run, next slot), failing sources and blacklisted addresses, from
    /// PostgreSQL.
    ///
    /// With --config, the manifests give each report's next slot and reveal missed slots.
    /// Exits 1 when a report's last run failed or a slot was missed, so a cron job or a
    /// health check can act on it.
    Status {
        /// Directory (or file) of manifests, for next and missed slots.
        #[arg(long, value_name = "DIR")]
        config: Option<PathBuf>,
        /// Namespace of manifests that name none.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// table (default) or json.
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: StatusFormat,
        #[command(flatten)]
        db: DatabaseArgs,
    },

    /// Restore a dump (as `backup` writes it) into an empty database.
    Restore {
        /// The dump (.sql.gz or .sql).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The psql program.
        #[arg(long, env = "FINREP_PSQL", default_value = "psql")]
        psql: PathBuf,
        #[command(flatten)]
        db: DatabaseArgs,
    },

    /// Run every DailyReport of a configuration directory on its schedule, without
    /// Kubernetes (docker compose, a VM, WSL).
    ///
    /// Loads the manifests like `validate` (any error refuses to start) and reads them again
    /// when a file changes or on SIGHUP (a bad edit is reported and the last good set kept).
    /// Runs each report's plan in-process at its slot — once per slot across restarts,
    /// catching up within startingDeadlineSeconds — and backs the database up at each
    /// report's backup slot. Stops cleanly on SIGTERM.
    Standalone(Box<StandaloneArgs>),

    /// Ask a running finrep's admin port whether it is ready; exit 0 when it is (a container
    /// health check: the image has no HTTP client of its own).
    Probe {
        /// The URL to ask.
        #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },

    /// Serve one-click unsubscribe and the console (runs, deliveries, archive) from
    /// PostgreSQL; `finrep web hash-password` prints the console password's hash.
    ///
    /// Never talks to the Kubernetes API. The console needs FINREP_WEB_PASSWORD_HASH; the
    /// unsubscribe links need FINREP_UNSUBSCRIBE_KEY, the key the runs sign them with.
    Web(Box<finrep::web::cli::WebArgs>),

    /// Relay every report's mail and summariser calls through the operator's own login, which
    /// no report holds (run in the release namespace; see docs/security.md).
    Relay(Box<finrep::relay::cli::RelayArgs>),

    /// Run the operator: reconcile DailyReports, Sources and Recipients in the cluster.
    ///
    /// Starts a pipeline Job at each report's slot, keeps its backup CronJob and writes the
    /// status of all three kinds from the cluster and PostgreSQL. Waits for the CRDs, runs one
    /// active replica through a Lease and stops cleanly on SIGTERM.
    Controller(Box<finrep::controller::cli::ControllerArgs>),

    /// Run the pipeline of one run plan (what a report's Job runs).
    ///
    /// Collects every source, extracts and ranks the items, composes the report and stores
    /// it in PostgreSQL. Secrets come from FINREP_SECRET_<SECRET>_<KEY> variables.
    Pipeline(Box<PipelineArgs>),

    /// Build today's plan of a report from manifests and write it, without running it.
    ///
    /// The plan is what `finrep pipeline` (and a report's Job) runs: the report, its sources
    /// and its recipients as resolved for one day. Reads the database's blacklist (blacklisted
    /// addresses are left out) and applies pending migrations first.
    Plan {
        #[command(flatten)]
        day: ReportDay,
        /// Write the plan here (gzip-compressed when the name ends in .gz, as a Job mounts
        /// it); standard output when absent.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        db: DatabaseArgs,
    },

    /// Create (or rotate) the PostgreSQL role of a served namespace and print its
    /// `finrep-database` Secret.
    ///
    /// The role sees and writes only its namespace's rows (row-level security), holds at most a
    /// few connections, runs no statement past a minute and creates nothing. Run it with a
    /// connection that may create roles (the operator's: never a pipeline pod or the web);
    /// running it again sets a new password. Pipe the output to `kubectl apply -f -`.
    TenantRole {
        /// The namespace whose role to make; repeatable.
        #[arg(short, long = "namespace", required = true, value_delimiter = ',')]
        namespaces: Vec<String>,
        /// Write each namespace's `finrep-database` Secret through the Kubernetes API instead
        /// of printing it (the chart's hook Job does; a Secret of that name that finrep
        /// tenant-role did not make is left alone and reported).
        #[arg(long)]
        apply: bool,
        /// The Secret and key pipeline pods read DATABASE_URL from (the controller's
        /// --database-secret).
        #[arg(long, value_name = "NAME/KEY", default_value = "finrep-database/url")]
        secret: String,
        /// What to print: the Secret manifest, or only the URL.
        #[arg(short, long, value_enum, default_value = "secret")]
        output: TenantRoleOutput,
        /// The URL the role's URL is built from (host, port, database, options), when it is
        /// not the one connected with (e.g. the in-cluster Service's name).
        #[arg(long, value_name = "URL")]
        url_base: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },

    /// Lift a recipient's unsubscribe, with their consent, recorded with who did it and why.
    ///
    /// An unsubscribe is the recipient's: only their own re-subscribe link or this recorded
    /// operator action lifts it (`finrep.io/unblock` and the console's unblock lift bounces
    /// only). The Recipient's status and the console show who lifted it and when.
    Resubscribe {
        /// The address (or chat group, `<platform>:<name>`) that unsubscribed; its `+tag`
        /// variants share the one unsubscribe.
        address: String,
        /// The namespace whose reports the address left.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Who lifts it (a person's name, recorded).
        #[arg(long, value_name = "NAME")]
        by: String,
        /// The recipient's consent: how and when they asked to be mailed again (recorded).
        #[arg(long, value_name = "WHY")]
        reason: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },

    /// Build today's plan of a report from manifests and run it once, now.
    ///
    /// Loads the manifests like `validate` (any error stops it), applies pending database
    /// migrations, and runs the report for --date (default: today in the report's time
    /// zone). A second run of the same day reuses what the first one composed.
    Run {
        #[command(flatten)]
        day: ReportDay,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        run: RunArgs,
    },

    /// Compose a report now and send it to nobody: the next slot's report (or --date's), as
    /// its run would make it, stored as a preview — never as the day's run.
    ///
    /// Prints the text on standard output; --output DIR also writes report.html and
    /// report.txt (message.md for a chat group). --as RECIPIENT previews that recipient's
    /// copy. In a cluster: `kubectl finrep preview`.
    Preview {
        #[command(flatten)]
        report: EditorReport,
        /// The local date to preview (YYYY-MM-DD) instead of the next slot.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Preview what this Recipient gets.
        #[arg(long = "as", value_name = "RECIPIENT")]
        as_recipient: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        run: RunArgs,
    },

    /// Send one copy of the latest preview (or of today's run, when newer) to a Recipient the
    /// report selects, marked as a test; nobody else can be named. In a cluster:
    /// `kubectl finrep test-send`.
    TestSend {
        #[command(flatten)]
        report: EditorReport,
        /// The Recipient's name.
        #[arg(long, value_name = "RECIPIENT")]
        to: String,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// A preview or a test copy: which report, from which manifests.
#[derive(Args, Debug)]
struct EditorReport {
    /// Directory (or file) of Source, Recipient and DailyReport manifests.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// Name of the DailyReport.
    #[arg(long, value_name = "NAME")]
    report: String,
    /// Namespace of manifests that name none.
    #[arg(short, long, default_value = "default")]
    namespace: String,
}

/// Which report and day `finrep plan` and `finrep run` plan, from which manifests.
#[derive(Args, Debug)]
struct ReportDay {
    /// Directory (or file) of Source, Recipient and DailyReport manifests.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// Name of the DailyReport.
    #[arg(long, value_name = "NAME")]
    report: String,
    /// Namespace of manifests that name none.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Local date of the run (YYYY-MM-DD); default today in the report's time zone.
    #[arg(long)]
    date: Option<chrono::NaiveDate>,
}

#[derive(Args, Debug)]
struct StandaloneArgs {
    /// Directory (or file) of Source, Recipient and DailyReport manifests.
    #[arg(long, env = "FINREP_CONFIG", value_name = "DIR")]
    config: PathBuf,
    /// Namespace of manifests that name none.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = "FINREP_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    admin_listen: std::net::SocketAddr,
    /// Most runs and backups at once.
    #[arg(long, env = "FINREP_MAX_CONCURRENT_RUNS", default_value_t = 2)]
    max_concurrent_runs: usize,
    /// Seconds between looks at the configuration files and the database when no slot is due.
    #[arg(long, default_value_t = 30.0)]
    poll_seconds: f64,
    /// Seconds a shutdown waits for work in flight (delivery stops between messages).
    #[arg(long, default_value_t = 25)]
    shutdown_grace_seconds: u64,
    /// Directory the backups are written to.
    #[arg(long, env = "FINREP_BACKUP_DIR", default_value = "backups")]
    backup_dir: PathBuf,
    /// The pg_dump program backups run.
    #[arg(long, env = "FINREP_PG_DUMP", default_value = "pg_dump")]
    pg_dump: PathBuf,
    /// When the database is backed up: one 5-field cron schedule for the whole installation
    /// (as the chart's CronJob), in --backup-time-zone.
    #[arg(long, env = "FINREP_BACKUP_SCHEDULE", default_value = "30 6 * * *")]
    backup_schedule: String,
    /// The IANA time zone of --backup-schedule and of the dumps' dates.
    #[arg(long, env = "FINREP_BACKUP_TIME_ZONE", default_value = "Asia/Shanghai")]
    backup_time_zone: String,
    /// Dumps older than this many days are deleted (only finrep_database_*.sql.gz).
    #[arg(long, env = "FINREP_BACKUP_RETENTION_DAYS", default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    backup_retention_days: u32,
    /// Make no backups (another job backs the database up).
    #[arg(long, env = "FINREP_NO_BACKUP")]
    no_backup: bool,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum StatusFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level);
    telemetry::exit_code("finrep", run(cli.command))
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Crd { output_dir } => crd(output_dir),
        Command::Validate { paths, namespace } => validate(&paths, namespace),
        Command::Migrate(db) => migrate(&db),
        Command::Backup {
            dir,
            name,
            retention_days,
            pg_dump,
            date,
            db,
        } => {
            let target = finrep::backup::BackupTarget {
                dir: &dir,
                name: &name,
                // The local date, as `date` names the CronJob's dumps (TZ decides).
                today: date.unwrap_or_else(|| chrono::Local::now().date_naive()),
                retention_days,
            };
            backup(&target, &pg_dump, &db)
        }
        Command::Status {
            config,
            namespace,
            output,
            db,
        } => status(config.as_deref(), namespace, output, &db),
        Command::Restore { file, psql, db } => restore(&file, &psql, &db),
        Command::Standalone(args) => standalone(&args),
        Command::Probe { url, timeout } => probe(&url, Duration::from_secs(timeout)),
        Command::Controller(args) => finrep::controller::cli::run(&args),
        Command::Web(args) => finrep::web::cli::run(&args),
        Command::Relay(args) => finrep::relay::cli::run(&args),
        Command::Pipeline(args) => run_plan_file(&args),
        Command::Plan { day, output, db } => plan(&day, output.as_deref(), &db),
        Command::Run { day, db, run } => run_report(&day, &db, &run),
        Command::Preview {
            report,
            date,
            as_recipient,
            db,
            run,
        } => editor_request(&report, &db, &run, EditorAsk::Preview(date, as_recipient)),
        Command::TestSend {
            report,
            to,
            db,
            run,
        } => editor_request(&report, &db, &run, EditorAsk::TestSend(to)),
        Command::TenantRole {
            namespaces,
            apply,
            secret,
            output,
            url_base,
            db,
        } => {
            let target = TenantSecret::parse(&secret)?;
            tenant_roles(
                &namespaces,
                apply.then_some(&target),
                output,
                url_base.as_deref(),
                &db,
            )
        }
        Command::Resubscribe {
            address,
            namespace,
            by,
            reason,
            db,
        } => resubscribe(&address, &namespace, &by, &reason, &db),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TenantRoleOutput {
    Secret,
    Url,
}

/// Where a namespace's database login goes.
struct TenantSecret {
    name: String,
    key: String,
}

impl TenantSecret {
    fn parse(s: &str) -> anyhow::Result<Self> {
        let (name, key) = s
            .split_once('/')
            .filter(|(n, k)| !n.is_empty() && !k.is_empty())
            .context("--secret is NAME/KEY, e.g. finrep-database/url")?;
        Ok(Self {
            name: name.to_string(),
            key: key.to_string(),
        })
    }
}

fn tenant_roles(
    namespaces: &[String],
    apply: Option<&TenantSecret>,
    output: TenantRoleOutput,
    url_base: Option<&str>,
    db: &DatabaseArgs,
) -> anyhow::Result<ExitCode> {
    for ns in namespaces {
        // A namespace is a DNS label: at most 63 lower-case letters, digits and `-`.
        anyhow::ensure!(
            ns.len() <= 63 && !ns.contains('.') && finrep::api::selector::is_dns_subdomain(ns),
            "--namespace {ns:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
        );
    }
    runtime()?.block_on(async {
        let store = db.connect().await?;
        let client = if apply.is_some() {
            finrep::tls::install_crypto_provider();
            Some(kube::Client::try_default().await.context(
                "--apply needs the Kubernetes API (in a pod, its service account; elsewhere a kubeconfig)",
            )?)
        } else {
            None
        };
        for ns in namespaces {
            let login = store.ensure_tenant_role(ns).await?;
            let url = login
                .url(url_base.unwrap_or(&db.database_url))
                .map_err(anyhow::Error::msg)?;
            match (&client, apply) {
                (Some(client), Some(target)) => {
                    let secret = finrep::controller::tenant_secret::SecretName {
                        name: &target.name,
                        key: &target.key,
                    };
                    let done = finrep::controller::tenant_secret::apply_database_secret(
                        client.clone(),
                        ns,
                        secret,
                        &login.role,
                        &url,
                    )
                    .await?;
                    eprintln!("namespace {ns}: role {}, Secret finrep-database {done:?}", login.role);
                }
                _ => {
                    print_tenant_login(ns, &login.role, &url, output);
                    eprintln!(
                        "role {} of namespace {ns}: a new password is set; apply the Secret before the next run",
                        login.role
                    );
                }
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_tenant_login(namespace: &str, role: &str, url: &str, output: TenantRoleOutput) {
    match output {
        TenantRoleOutput::Url => println!("{url}"),
        TenantRoleOutput::Secret => {
            let secret = finrep::controller::tenant_secret::database_secret(
                namespace,
                finrep::controller::tenant_secret::SecretName::default(),
                role,
                url,
            );
            println!(
                "# The database login of namespace {namespace}'s pipeline pods: role {role}, which sees\n\
                 # only this namespace's rows. Made by `finrep tenant-role`; run it again to rotate.\n---"
            );
            match serde_norway::to_string(&secret) {
                Ok(yaml) => print!("{yaml}"),
                Err(e) => eprintln!("cannot print the Secret: {e}"),
            }
        }
    }
}

fn resubscribe(
    address: &str,
    namespace: &str,
    by: &str,
    reason: &str,
    db: &DatabaseArgs,
) -> anyhow::Result<ExitCode> {
    let (by, reason) = (by.trim(), reason.trim());
    anyhow::ensure!(
        !by.is_empty() && !reason.is_empty(),
        "--by and --reason are required: who lifts the unsubscribe and the recipient's consent"
    );
    let lifted = runtime()?.block_on(async {
        let store = db.connect().await?;
        let lifted = store
            .resubscribe(
                namespace,
                address,
                finrep::store::Resubscriber::Operator,
                Some(by),
                Some(reason),
            )
            .await?;
        anyhow::Ok(lifted)
    })?;
    if lifted {
        println!(
            "{} re-subscribed in namespace {namespace} by {by}",
            finrep::unsubscribe::address_key(address)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} has no unsubscribe in namespace {namespace}: nothing lifted",
            finrep::unsubscribe::address_key(address)
        );
        Ok(ExitCode::from(3))
    }
}

fn crd(output_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let Some(dir) = output_dir else {
        print!("{}", finrep::crd::all_yaml()?);
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for kind in ResourceKind::ALL {
        let path = dir.join(finrep::crd::file_name(kind));
        std::fs::write(&path, finrep::crd::to_yaml(&kind.crd())?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(paths: &[PathBuf], namespace: String) -> anyhow::Result<ExitCode> {
    let loaded = manifest::load(
        paths,
        &LoadOptions {
            default_namespace: namespace,
            complete: None,
        },
    )?;
    for d in &loaded.diagnostics {
        println!("{d}");
    }
    let set = &loaded.set;
    println!(
        "{} document(s), {} valid resource(s): {} error(s), {} warning(s)",
        loaded.documents,
        set.sources.len() + set.recipients.len() + set.reports.len(),
        loaded.errors(),
        loaded.warnings()
    );
    Ok(if loaded.errors() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn migrate(db: &DatabaseArgs) -> anyhow::Result<ExitCode> {
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

/// `finrep status`: the overview, and an exit code that says whether a person is needed.
fn status(
    config: Option<&Path>,
    namespace: String,
    format: StatusFormat,
    db: &DatabaseArgs,
) -> anyhow::Result<ExitCode> {
    let reports = match config {
        Some(dir) => {
            manifest::load_valid(
                &[dir.to_path_buf()],
                &LoadOptions {
                    default_namespace: namespace,
                    complete: None,
                },
            )?
            .set
            .reports
        }
        None => Vec::new(),
    };
    let overview = runtime()?.block_on(async {
        let store = db.connect().await?;
        let mut overview = finrep::overview::overview(
            store.latest_runs().await?,
            store.failing_sources().await?,
            store.blacklist().await?,
            &reports,
            &store.next_slots().await?,
            chrono::Utc::now(),
        );
        overview.chat_groups = store.latest_chat_posts().await?;
        anyhow::Ok(overview)
    })?;
    match format {
        StatusFormat::Table => print!("{}", finrep::overview::render(&overview)),
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&overview)?),
    }
    Ok(ExitCode::from(overview.verdict().exit_code()))
}

/// `finrep probe`: 0 when the admin port answers 2xx, 1 otherwise (with the reason).
fn probe(url: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    finrep::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
            Ok(r) => {
                eprintln!("{url}: {}", r.status());
                Ok(ExitCode::FAILURE)
            }
            Err(e) => {
                eprintln!("{url}: {e}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

/// The installation's backup schedule from the flags, checked before anything starts.
fn backup_schedule(
    args: &StandaloneArgs,
) -> anyhow::Result<Option<finrep::standalone::slots::BackupSchedule>> {
    if args.no_backup {
        return Ok(None);
    }
    finrep::schedule::Schedule::parse(&args.backup_schedule, &args.backup_time_zone)
        .map_err(|e| anyhow::anyhow!("--backup-schedule / --backup-time-zone: {e}"))?;
    Ok(Some(finrep::standalone::slots::BackupSchedule {
        cron: args.backup_schedule.clone(),
        time_zone: args.backup_time_zone.clone(),
        retention_days: args.backup_retention_days,
    }))
}

/// `finrep standalone`: schedules and runs every report until SIGTERM.
fn standalone(args: &StandaloneArgs) -> anyhow::Result<ExitCode> {
    use finrep::standalone::{config::ConfigSource, runner};

    let config = ConfigSource::open(args.config.clone(), &args.namespace)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let clock = args.run.clock()?;
    if args.run.no_send {
        anyhow::bail!("standalone mode delivers every run; --no-send is for `finrep run`");
    }
    if !(args.poll_seconds > 0.0 && args.poll_seconds.is_finite()) {
        anyhow::bail!("--poll-seconds must be a positive number of seconds");
    }
    runtime()?.block_on(async {
        let store = args.db.connect().await?;
        store.migrate().await?;
        let stop = tokio_util::sync::CancellationToken::new();
        let delivery = DeliveryOptions {
            stop: stop.clone(),
            ..args.run.delivery_for(false, &clock)?
        };
        let runner = runner::Runner {
            store,
            pipeline: args.run.options(&clock),
            clock,
            metrics: finrep::metrics::Metrics::new(),
            delivery,
            backup: runner::BackupSettings {
                dir: args.backup_dir.clone(),
                pg_dump: args.pg_dump.clone(),
                database_url: args.db.database_url.clone(),
                schedule: backup_schedule(args)?,
            },
        };
        let settings = finrep::standalone::Settings {
            max_concurrent: args.max_concurrent_runs,
            poll: Duration::from_secs_f64(args.poll_seconds),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            admin_listen: Some(args.admin_listen),
            ..Default::default()
        };
        let scheduler =
            finrep::standalone::Scheduler::new(config, std::sync::Arc::new(runner), settings);
        let on_signal = stop.clone();
        tokio::spawn(async move {
            finrep::signals::terminated().await;
            tracing::info!("SIGTERM: stopping");
            on_signal.cancel();
        });
        scheduler.run(stop).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Today's plan of a report from manifests, run once now.
fn run_report(day: &ReportDay, db: &DatabaseArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let set = load_report(day)?;
    runtime()?.block_on(async {
        let store = db.connect().await?;
        let plan = plan_of_day(&set, day, &store).await?;
        run_plan(&plan, &store, args).await
    })
}

/// `finrep plan`: today's plan of a report from manifests, written for `finrep pipeline`.
fn plan(day: &ReportDay, output: Option<&Path>, db: &DatabaseArgs) -> anyhow::Result<ExitCode> {
    let set = load_report(day)?;
    let plan = runtime()?.block_on(async {
        let store = db.connect().await?;
        plan_of_day(&set, day, &store).await
    })?;
    let gzip = output.is_some_and(|p| p.extension().is_some_and(|e| e == "gz"));
    let bytes = if gzip {
        plan.to_gzip()?
    } else {
        plan.to_yaml()?.into_bytes()
    };
    match output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `finrep backup`: one dump and the retention, its outcome as a JSON line.
fn backup(
    target: &finrep::backup::BackupTarget<'_>,
    pg_dump: &Path,
    db: &DatabaseArgs,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = db.connect().await?;
        let outcome = finrep::backup::backup(&store, &db.database_url, pg_dump, target).await?;
        println!("{}", serde_json::to_string(&outcome)?);
        Ok(ExitCode::SUCCESS)
    })
}

/// `finrep restore`: a dump into an empty database.
fn restore(file: &Path, psql: &Path, db: &DatabaseArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = db.connect().await?;
        finrep::backup::restore(&store, &db.database_url, psql, file).await?;
        tracing::info!(file = %file.display(), "restored");
        Ok(ExitCode::SUCCESS)
    })
}

/// A request's value outside a cluster: the moment it was made.
fn editor_request_value() -> String {
    chrono::Utc::now()
        .format("standalone-%Y%m%dT%H%M%S%.3fZ")
        .to_string()
}

/// What `finrep preview` (a date, a recipient) or `finrep test-send` (to whom) asks.
enum EditorAsk {
    Preview(Option<chrono::NaiveDate>, Option<String>),
    TestSend(String),
}

/// `finrep preview` and `finrep test-send`: the request's plan from the manifests, carried
/// out in this process as the controller's Job would.
fn editor_request(
    report: &EditorReport,
    db: &DatabaseArgs,
    args: &RunArgs,
    ask: EditorAsk,
) -> anyhow::Result<ExitCode> {
    let day = ReportDay {
        config: report.config.clone(),
        report: report.report.clone(),
        namespace: report.namespace.clone(),
        date: None,
    };
    let set = load_report(&day)?;
    runtime()?.block_on(async {
        let store = db.connect().await?;
        store.migrate().await?;
        let blacklist = store.blacklisted_emails(&report.namespace).await?;
        let now = args.clock()?.now();
        let (ns, name) = (&report.namespace, &report.report);
        match ask {
            EditorAsk::Preview(date, recipient) => {
                let request = PreviewRequest {
                    value: editor_request_value(),
                    date,
                    recipient,
                };
                let plan = preview_plan(&set, ns, name, &request, now, &blacklist)?;
                print_preview(&plan, &store, args).await
            }
            EditorAsk::TestSend(to) => {
                let request = TestSendRequest::parse(&format!("{to}#{}", editor_request_value()))
                    .map_err(anyhow::Error::msg)?;
                let plan = test_send_plan(&set, ns, name, &request, now, &blacklist)?;
                run_plan(&plan, &store, args).await
            }
        }
    })
}

/// Composes the preview and prints its text (a chat group's message when previewed as one).
async fn print_preview(plan: &RunPlan, store: &Store, args: &RunArgs) -> anyhow::Result<ExitCode> {
    use finrep::pipeline::copies::ReadableCopy;
    let clock = args.clock()?;
    let opts = args.options(&clock);
    let done =
        finrep::pipeline::preview::preview(plan, store, &opts, args.public_url.as_deref()).await?;
    let text = match &done.copy {
        Some(ReadableCopy::Letter { text, .. }) => text.clone(),
        Some(ReadableCopy::Chat { markdown, .. }) => markdown.clone(),
        None => store
            .preview(done.preview_id)
            .await?
            .and_then(|p| p.text)
            .unwrap_or_default(),
    };
    println!("{text}");
    let failing: Vec<&str> = done.outcome.failed_sources().collect();
    eprintln!(
        "preview {} of {} ({}): {} item(s); sources failing: {}",
        done.preview_id,
        plan.report,
        plan.slot.date,
        done.articles,
        if failing.is_empty() {
            "none".to_string()
        } else {
            failing.join(", ")
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The manifests of `day`, which must hold its report; any invalid manifest stops here,
/// before any database is asked.
fn load_report(day: &ReportDay) -> anyhow::Result<ResourceSet> {
    let loaded = manifest::load_valid(
        std::slice::from_ref(&day.config),
        &LoadOptions {
            default_namespace: day.namespace.clone(),
            complete: Some(true),
        },
    )?;
    if let Err(e) = find_report(&loaded.set, &day.namespace, &day.report) {
        anyhow::bail!("{e} (manifests under {})", day.config.display());
    }
    Ok(loaded.set)
}

/// The plan of `day` (default today), as a manual run makes it: the schema migrated first,
/// blacklisted addresses left out.
async fn plan_of_day(set: &ResourceSet, day: &ReportDay, store: &Store) -> anyhow::Result<RunPlan> {
    store.migrate().await?;
    let blacklist = store.blacklisted_emails(&day.namespace).await?;
    let when = RunAt::Manual {
        date: day.date,
        now: chrono::Utc::now(),
    };
    Ok(plan_for(
        set,
        &day.namespace,
        &day.report,
        when,
        &blacklist,
    )?)
}
