//! `guardian generate`: the man pages and shell completions, from the clap definitions
//! (never written by hand), and guardian.toml(5) from docs/configuration.md. Hidden:
//! packaging runs it.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Generator;

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
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Args::command(), "guardian", &mut buf);
            let script = String::from_utf8(buf).context("the completion script is not UTF-8")?;
            let script = super::completion::with_job_names(*shell, &script)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let path = dir.join(shell.file_name("guardian"));
            std::fs::write(&path, script)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
            Ok(Exit::Ok)
        }
    }
}

/// guardian.1, guardian-COMMAND.1 for each command, and guardian.toml.5, into `dir`.
fn man(dir: &Path) -> anyhow::Result<Exit> {
    clap_mangen::generate_to(Args::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    let page = super::roff::man_page(
        "guardian.toml",
        5,
        "the configuration directory of guardian: guardian.toml and jobs/*.toml",
        include_str!("../../docs/configuration.md"),
    );
    let path = dir.join("guardian.toml.5");
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", dir.display());
    Ok(Exit::Ok)
}
