//! The arguments, as clap reads them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "guardian",
    version = crate::build::version(),
    about = "A health-checking process supervisor",
    long_about = "Runs the jobs of a configuration directory as its children, in their own process groups, \
                  and keeps them running. Without a command, runs the daemon in the foreground."
)]
pub struct Args {
    /// The configuration directory: guardian.toml and jobs/*.toml.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "/etc/guardian"
    )]
    pub config: PathBuf,

    /// The control socket (default: GUARDIAN_SOCKET, else `socket` in guardian.toml).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,

    /// How long a client command waits for the daemon's answer, e.g. `30s`, `10m`
    /// (default: 5m for commands that wait for jobs, 30s for the others; connecting
    /// and the hello take at most 5s).
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<Duration>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration; print every error as file:line:col.
    Check {
        /// An object: `valid`, `jobs` and `diagnostics` (file, line, column, severity,
        /// message, hint), for editors.
        #[arg(long)]
        json: bool,
    },
    /// One line per job: goal, state, health, pid, uptime, cpu, memory, monitored; a
    /// `system` line and one line per host check when there are host checks.
    Summary {
        /// One job, or every instance of a job file (`summary web`), a row each.
        job: Option<String>,
        /// A row for each instance, not one for all the instances of a job file.
        #[arg(long)]
        instances: bool,
        /// An object: `jobs` (as `status --json`) and `host` (the host checks).
        #[arg(long)]
        json: bool,
        /// Only the jobs of a group (and no host checks).
        #[arg(
            short = 'g',
            long = "group",
            value_name = "GROUP",
            conflicts_with = "job"
        )]
        group: Option<String>,
    },
    /// Everything about one job, or the summary table; --json for scripts.
    Status {
        job: Option<String>,
        #[arg(long)]
        json: bool,
        /// Only the host checks (guardian.toml's [[check]]): the `system` line and a
        /// line per check, or with --json an array of them.
        #[arg(long, conflicts_with = "job")]
        host: bool,
        /// The summary of a group's jobs (with --json, an array of them).
        #[arg(short = 'g', long = "group", value_name = "GROUP", conflicts_with_all = ["job", "host"])]
        group: Option<String>,
    },
    /// Start a job (or `all`) and wait until it runs; `-g GROUP` for a group's jobs.
    Start {
        #[arg(required_unless_present = "group", value_name = "TARGET")]
        target: Option<String>,
        /// The jobs of a group instead, in dependency order.
        #[arg(
            short = 'g',
            long = "group",
            value_name = "GROUP",
            conflicts_with = "target"
        )]
        group: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop a job (or `all`) and wait until it is down. It stays down until `start`; `-g GROUP` for a group's jobs.
    Stop {
        #[arg(required_unless_present = "group", value_name = "TARGET")]
        target: Option<String>,
        /// The jobs of a group instead, in dependency order (dependents first).
        #[arg(
            short = 'g',
            long = "group",
            value_name = "GROUP",
            conflicts_with = "target"
        )]
        group: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop and start a job (or `all`) and wait until it runs again; `-g GROUP` for a group's
    /// jobs. The instances of a job file (`restart web`) go one after another, each once the
    /// one before runs again and its checks pass, unless --all-at-once.
    Restart {
        #[arg(required_unless_present = "group", value_name = "TARGET")]
        target: Option<String>,
        /// The jobs of a group instead, in dependency order (one after another).
        #[arg(
            short = 'g',
            long = "group",
            value_name = "GROUP",
            conflicts_with = "target"
        )]
        group: Option<String>,
        #[arg(long)]
        no_wait: bool,
        /// Restart every instance of the job file at once, not one after another.
        #[arg(long)]
        all_at_once: bool,
    },
    /// Without a job: re-read the configuration. With a job: send its reload signal.
    /// `--all-jobs` signals every running job (`reload all` is refused: one word away
    /// from re-reading the configuration).
    Reload {
        target: Option<String>,
        /// Send every running job its reload signal.
        #[arg(long, conflicts_with = "target")]
        all_jobs: bool,
    },
    /// Act on a job's checks again (or `all`, or `-g GROUP`).
    Monitor {
        #[arg(required_unless_present = "group", value_name = "TARGET")]
        target: Option<String>,
        /// The jobs of a group instead.
        #[arg(
            short = 'g',
            long = "group",
            value_name = "GROUP",
            conflicts_with = "target"
        )]
        group: Option<String>,
    },
    /// Keep a job running but stop acting on its checks (or `all`, or `-g GROUP`), e.g.
    /// during a deploy.
    Unmonitor {
        #[arg(required_unless_present = "group", value_name = "TARGET")]
        target: Option<String>,
        /// The jobs of a group instead.
        #[arg(
            short = 'g',
            long = "group",
            value_name = "GROUP",
            conflicts_with = "target"
        )]
        group: Option<String>,
    },
    /// Print the end of a job's log; -f to follow it.
    Logs {
        job: String,
        /// How many lines.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: usize,
        /// Keep printing lines as they come, across rotations.
        #[arg(short = 'f', long)]
        follow: bool,
        /// JSON lines: one object per line of the log (time, stream, text).
        #[arg(long)]
        json: bool,
    },
    /// The environment, directory, user, group, umask, nice value and limits a job gets.
    Env {
        job: String,
        #[arg(long)]
        json: bool,
    },
    /// A job's configuration as the daemon runs it: the text of its job file with every
    /// key and every default filled in (from the files when no daemon is up).
    Config {
        job: String,
        /// An object: `job`, `text` (the TOML) and `config` (the same keys as JSON).
        #[arg(long)]
        json: bool,
    },
    /// Run a custom command from a job's [commands] table.
    Run { job: String, command: String },
    /// Emit a user event that `start-on` / `stop-on` can wait for; waits for the jobs it moves.
    Emit {
        event: String,
        /// Variables of the event, KEY=VALUE.
        vars: Vec<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Print the jobs' dependency graph as Graphviz DOT (`guardian graph | dot -Tsvg`).
    Graph {
        /// The jobs, events and edges as one JSON object instead of DOT.
        #[arg(long)]
        json: bool,
    },
    /// The alerts waiting in the outbox to be delivered.
    Alerts {
        #[arg(long)]
        json: bool,
    },
    /// Send a test alert to every recipient, webhook and Alertmanager now, and say how it went.
    TestAlert {
        /// One object: `ok` and a result per recipient, webhook and Alertmanager.
        #[arg(long)]
        json: bool,
    },
    /// Take a report on what a job's processes are doing now (states, waits, system
    /// calls, accept queues, last log lines, its `diagnose` command), print it and keep it.
    Diagnose {
        job: String,
        #[arg(long)]
        json: bool,
    },
    /// List a job's reports, or print one: LAST (the newest), N (the Nth newest) or a
    /// name from the list.
    Reports {
        job: String,
        which: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Add a user of the HTTP interface, or set a user's password and role: reads the
    /// password from the terminal (twice, without echo) or from the first line of stdin.
    Passwd {
        user: String,
        /// `admin` (everything) or `read-only` (GET only).
        #[arg(long, default_value = "admin", value_parser = ["admin", "read-only"])]
        role: String,
        /// The users file (default: `users-file` of [http] in guardian.toml).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Turn Upstart jobs, a supervisord.conf or a monitrc into job files, and report
    /// every line that could not be carried over exactly (exit 1 when there is one).
    Import(crate::import::ImportArgs),
    /// Make the daemon execute its binary again, in place (after an upgrade), keeping
    /// every job running; wait until the new binary answers and say its version.
    Reexec,
    /// Write the man pages or a shell's completions into a directory (for packaging).
    #[command(hide = true, subcommand)]
    Generate(Generate),
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// guardian.1 and guardian-COMMAND.1 for each command.
    Man { dir: PathBuf },
    /// The completion file of one shell (bash, zsh, fish, elvish, powershell).
    Completions {
        shell: clap_complete::Shell,
        dir: PathBuf,
    },
}

fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("the timeout must be more than 0".into()),
        Ok(d) if d > Duration::from_secs(7 * 24 * 3600) => {
            Err("the timeout is at most a week (7d)".into())
        }
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e}; write it like 30s, 5m or 1h")),
    }
}
