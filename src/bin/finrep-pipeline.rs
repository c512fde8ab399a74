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
use finrep::telemetry::{self, LogArgs};

#[derive(Parser, Debug)]
#[command(version = finrep::build::VERSION, about = "Runs one finrep run plan: collect, extract, compose, deliver")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    args: PipelineArgs,
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    cli.log.init();
    telemetry::exit_code("finrep-pipeline", run_plan_file(&cli.args))
}
