//! `guardian generate`: the man pages and shell completions, from the clap definitions
//! (never written by hand). Hidden: packaging runs it.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::Exit;
use super::args::{Args, Generate};

pub fn generate(what: &Generate) -> anyhow::Result<Exit> {
    let dir = match what {
        Generate::Man { dir } | Generate::Completions { dir, .. } => dir,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match what {
        Generate::Man { dir } => man(dir),
        Generate::Completions { shell, dir } => {
            let path = clap_complete::generate_to(*shell, &mut Args::command(), "guardian", dir)
                .with_context(|| format!("cannot write completions into {}", dir.display()))?;
            println!("{}", path.display());
            Ok(Exit::Ok)
        }
    }
}

/// guardian.1, and guardian-COMMAND.1 for each command, into `dir`.
fn man(dir: &Path) -> anyhow::Result<Exit> {
    clap_mangen::generate_to(Args::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    println!("{}", dir.display());
    Ok(Exit::Ok)
}
