//! `kubectl finrep`: an editor's loop from the cluster alone — see tomorrow's report now
//! (`preview`), send one marked copy to a recipient of the report (`test-send`), and know why a
//! morning went wrong (`status`, `logs`), plus `run-now` and `unblock`. Everything goes through
//! the Kubernetes API with the caller's kubeconfig: annotations the controller acknowledges,
//! and what it writes into the resources' status and the preview's ConfigMap. No database
//! credential is needed or used.
//!
//! Exit codes: 0 done (status: every report went out), 1 failed or refused, 2 usage,
//! 3 status: something needs attention, 4 timed out waiting for the controller.

#![forbid(unsafe_code)]

mod client;
mod commands;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// What a command ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Done,
    Failed,
    NeedsAttention,
    TimedOut,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Done => 0,
            Self::Failed => 1,
            Self::NeedsAttention => 3,
            Self::TimedOut => 4,
        }
    }
}

/// Preview, test-send and inspect finrep's daily reports from the cluster alone.
///
/// Every command talks to the Kubernetes API as kubectl does (the same kubeconfig, context and
/// namespace); none needs database credentials. Exit codes: 0 done, 1 failed or refused,
/// 2 usage, 3 a report needs attention (status), 4 timed out waiting for the controller.
#[derive(Parser, Debug)]
#[command(name = "kubectl finrep", bin_name = "kubectl finrep", version = finrep_core::build::VERSION)]
pub struct Cli {
    /// Namespace of the resources (default: the context's, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Output format: text for people, json or yaml for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "text")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compose a report now and send it to nobody: the next slot's (or --date's), as the run
    /// would make it. Waits for the controller's preview Job, then prints the text (or writes
    /// the HTML with --html FILE).
    Preview {
        /// The DailyReport.
        report: String,
        /// The local date to preview (YYYY-MM-DD) instead of the next slot.
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
        /// Preview what this Recipient gets: their sections and format, or a chat group's
        /// message in its platform's markup.
        #[arg(long = "as", value_name = "RECIPIENT")]
        as_recipient: Option<String>,
        /// Write the previewed HTML to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Send one copy of the latest preview (or of today's run, when newer) to a Recipient the
    /// report selects, marked as a test. Nobody else can be named.
    TestSend {
        /// The DailyReport.
        report: String,
        /// The Recipient (its resource name, as in kubectl get recipients).
        #[arg(long, value_name = "RECIPIENT")]
        to: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Each report's last run, next slot, failing sources and recipients not mailed, with
    /// what to do about each. Exit 3 when something needs attention.
    Status {
        /// One DailyReport (default: every report of the namespace).
        report: Option<String>,
    },
    /// The log of a report's run Job (while spec.history keeps it).
    Logs {
        /// The DailyReport.
        report: String,
        /// The run of this local date (default: the last run).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
        /// The last preview's Job instead of a run's.
        #[arg(long, conflicts_with_all = ["date", "test_send"])]
        preview: bool,
        /// The last test send's Job instead of a run's.
        #[arg(long, conflicts_with = "date")]
        test_send: bool,
    },
    /// Start today's run of a report now (the finrep.io/run-now annotation) and wait until the
    /// controller takes it.
    RunNow {
        report: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Lift a Recipient's bounce (the finrep.io/unblock annotation; never an unsubscribe) and
    /// wait until the controller acts on it.
    Unblock {
        recipient: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(clap::Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Set the annotation and return without waiting for the controller.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the controller, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub timeout: u64,
}

impl WaitArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// The plugin's whole run: arguments from the command line, exit code out.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(Exit::Failed.code());
        }
    };
    match runtime.block_on(commands::run(&cli)) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(Exit::Failed.code())
        }
    }
}
