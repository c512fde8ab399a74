use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use finrep::api::ResourceKind;
use finrep::manifest::{self, LoadOptions};
use finrep::store::{Store, redact_url};
use finrep::telemetry::{self, LogFormat};

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
        Command::Migrate(db) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let store =
                    Store::connect(&db.database_url, 2, Duration::from_secs(db.connect_timeout))
                        .await?;
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
