//! guardian: a health-checking process supervisor. `guardian -c DIR` runs the daemon;
//! every other command talks to it over its control socket.

use std::process::ExitCode;

use clap::Parser;

mod alert;
mod cli;
mod config;
mod control;
mod daemon;
mod event;
mod job;
mod process;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    cli::run(args)
}
