//! Logging: readable lines on a terminal, JSON lines elsewhere (or when asked).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    /// Human-readable, coloured on a terminal.
    Text,
    /// One JSON object per line: timestamp, level, target, fields and spans.
    Json,
}

/// The logging flags of the single-purpose binaries (`finrep-controller`, `finrep-pipeline`);
/// `finrep` has the same ones for every subcommand.
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// Log format: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(long, env = "FINREP_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    /// Log filter (e.g. info, finrep=debug); RUST_LOG takes precedence.
    #[arg(long, env = "FINREP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl LogArgs {
    pub fn init(&self) {
        init(self.log_format, &self.log_level);
    }
}

/// The exit code of a binary's `main`: a failure is logged and printed, as `program failed`.
pub fn exit_code(
    program: &str,
    result: anyhow::Result<std::process::ExitCode>,
) -> std::process::ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{program} failed");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let stderr_tty = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !stderr_tty,
    };
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_ansi(stderr_tty)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    // A panic is logged like any error (cleaned: its message may quote hostile text); where
    // it is caught, its item or source is recorded as failed and the run goes on.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            panic = %crate::untrusted::panic_message(info.payload()),
            location,
            "panicked"
        );
    }));
}

/// This process's peak resident memory (VmHWM) in KiB, where /proc tells it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
