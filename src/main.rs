//! guardian: a health-checking process supervisor. `guardian -c DIR` runs the daemon;
//! every other command talks to it over its control socket.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = guardian::cli::Args::parse();
    guardian::cli::run(args)
}
