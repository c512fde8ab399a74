//! `finrep-controller`: the operator alone, without the pipeline linked in, so the controller
//! process maps less code. Same flags as `finrep controller`.

use std::process::ExitCode;

// The binaries' own module: the library forbids unsafe code, and setting the allocator is the
// one call that needs it.
#[path = "../allocator.rs"]
mod allocator;

use clap::Parser;
use finrep::controller::cli::{ControllerArgs, run};
use finrep::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(version = finrep::build::VERSION, about = "finrep's operator: reconciles DailyReports, Sources and Recipients")]
struct Cli {
    /// Log format: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(long, env = "FINREP_LOG_FORMAT", value_enum, default_value = "auto")]
    log_format: LogFormat,
    /// Log filter (e.g. info, finrep=debug); RUST_LOG takes precedence.
    #[arg(long, env = "FINREP_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(flatten)]
    args: ControllerArgs,
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level);
    match run(&cli.args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "finrep-controller failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
