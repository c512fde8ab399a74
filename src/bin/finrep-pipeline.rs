//! `finrep-pipeline`: one run plan, as a report's Job runs it — the pipeline alone, without
//! the operator, the console or manifest validation linked in, so a run maps less code.
//! Same flags as `finrep pipeline`.

use std::process::ExitCode;

// The binaries' own module: the library forbids unsafe code, and setting the allocator is the
// one call that needs it.
#[path = "../allocator.rs"]
mod allocator;

use clap::Parser;
use finrep::pipeline::cli::{PipelineArgs, run_plan_file};
use finrep::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(version = finrep::build::VERSION, about = "Runs one finrep run plan: collect, extract, compose, deliver")]
struct Cli {
    /// Log format: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(long, env = "FINREP_LOG_FORMAT", value_enum, default_value = "auto")]
    log_format: LogFormat,
    /// Log filter (e.g. info, finrep=debug); RUST_LOG takes precedence.
    #[arg(long, env = "FINREP_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(flatten)]
    args: PipelineArgs,
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level);
    let PipelineArgs { plan, db, run } = &cli.args;
    match run_plan_file(plan, db, run) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "finrep-pipeline failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
