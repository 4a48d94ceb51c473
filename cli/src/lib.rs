//! The `grid` command line, thin over the libraries it drives: the
//! coordinator ([`grid_coordinator::run`], for `grid serve`), the native
//! worker (for `grid worker` and `serve --local-workers`), and the HTTP API
//! through [`client::Client`].
//!
//! - [`args`]: the commands and flags, as clap types.
//! - [`commands`]: what each command does.
//! - [`client`]: the HTTP client of the job API.
//! - `print`: tables and JSON for the terminal.

pub mod args;
pub mod client;
pub mod commands;
mod print;

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line, sets up logging, runs the command, and turns its
/// outcome into an exit code. The `grid` binary is this function.
pub fn main() -> ExitCode {
    let args = args::Cli::parse();
    let default_log = if args.command.is_long_running() {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::execute(args)) {
        Ok(code) => code,
        Err(error) => {
            // One line: the error and its causes.
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
