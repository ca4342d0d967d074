//! The command line: raw arguments to a command, a command to an exit code.
//! 0: done; 1: the answer is no (not running, did not start); 2: an error.

mod args;
mod commands;
mod completion;
mod generate;
mod logs;
pub(crate) mod output;
mod reports;
mod roff;

use std::process::ExitCode;

pub use args::Args;

/// What a command came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    No = 1,
    Error = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

pub fn run(args: Args) -> ExitCode {
    match commands::dispatch(args) {
        Ok(exit) => exit.into(),
        Err(e) => {
            // A closed pipe (`guardian summary | head`) is not an error.
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return Exit::Ok.into();
            }
            eprintln!("guardian: {e:#}");
            Exit::Error.into()
        }
    }
}
