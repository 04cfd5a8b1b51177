//! The `fleetsim` command line: a thin shell over the library.
//!
//! The command line is read in two stages, as ripgrep does: clap parses the arguments
//! ([`cli::args`]), then each command reads its scenario into a plan and applies the
//! arguments to it with [`fleetsim::plan::Overrides::apply`], which checks them against
//! the whole plan ([`cli::commands`]).
//!
//! Exit codes: 0 the run passed; 1 the run failed (agents not ready, agents failed, run
//! interrupted, a threshold failed; `compare`: a regression); 2 bad input (scenario,
//! arguments, unreadable or incomparable runs); 3 broker or environment error.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::commands;

fn main() -> ExitCode {
    init_logging();
    let code = match Cli::parse().command {
        Command::Run(args) => commands::run(args),
        Command::Sweep(args) => commands::sweep(args),
        Command::Compare(args) => commands::compare(args),
        Command::Gate(args) => commands::gate(args),
        Command::Validate { files } => commands::validate(&files),
        Command::Report { dir } => commands::report(&dir),
        Command::Proxy(args) => commands::proxy(args),
    };
    ExitCode::from(code)
}

/// Logs go to stderr, filtered by `$FLEETSIM_LOG` (default `info,async_nats=warn`), in
/// colour only on a terminal: a file or a pipe (CI logs, `2>run.log`) gets plain text,
/// and `$NO_COLOR` (any value but empty, see no-color.org) turns colour off everywhere.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETSIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .init();
}
