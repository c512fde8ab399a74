//! `finrep-controller`: the operator alone, without the pipeline linked in, so the controller
//! process maps less code. Same flags as `finrep controller`.

use std::process::ExitCode;

// The binaries' own module: the library forbids unsafe code, and setting the allocator is the
// one call that needs it.
#[path = "../allocator.rs"]
mod allocator;

use clap::Parser;
use finrep::controller::cli::{ControllerArgs, run};
use finrep::telemetry::{self, LogArgs};

#[derive(Parser, Debug)]
#[command(version = finrep::build::VERSION, about = "finrep's operator: reconciles DailyReports, Sources and Recipients")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    args: ControllerArgs,
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    cli.log.init();
    telemetry::exit_code("finrep-controller", run(&cli.args))
}
