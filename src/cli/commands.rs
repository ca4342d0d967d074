//! Each command: what it asks the daemon, and what it prints.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::config;
use crate::control::client::Client;
use crate::control::protocol::{Request, Response};

use super::Exit;
use super::args::{Args, Command};
use super::{logs, output};

pub fn dispatch(args: Args) -> anyhow::Result<Exit> {
    let socket = match &args.command {
        None => return run_daemon(&args.config),
        Some(Command::Check) => return check(&args.config),
        Some(Command::Graph) => return graph(&args.config),
        Some(_) => socket_path(&args)?,
    };
    let Some(command) = args.command else {
        return Ok(Exit::Error);
    };
    let wait = |no_wait: bool| !no_wait;
    match command {
        Command::Summary => status(&socket, None, false),
        Command::Status { job, json } => status(&socket, job, json),
        Command::Start { target, no_wait } => ask(
            &socket,
            Request::Start {
                target,
                wait: wait(no_wait),
            },
        ),
        Command::Stop { target, no_wait } => ask(
            &socket,
            Request::Stop {
                target,
                wait: wait(no_wait),
            },
        ),
        Command::Restart { target, no_wait } => ask(
            &socket,
            Request::Restart {
                target,
                wait: wait(no_wait),
            },
        ),
        Command::Reload { target: None } => ask(&socket, Request::ReloadConfig),
        Command::Reload {
            target: Some(target),
        } => ask(&socket, Request::ReloadJob { target }),
        Command::Monitor { target } => ask(&socket, Request::Monitor { target }),
        Command::Unmonitor { target } => ask(&socket, Request::Unmonitor { target }),
        Command::Logs { job, lines, follow } => {
            logs::show(&socket, &args.config, &job, lines, follow)
        }
        Command::Env { job } => env(&socket, &args.config, &job),
        Command::Run { job, command } => run(&socket, job, command),
        Command::Emit {
            event,
            vars,
            no_wait,
        } => {
            let mut env = Vec::new();
            for v in vars {
                match v.split_once('=') {
                    Some((k, val)) if !k.is_empty() => env.push((k.to_string(), val.to_string())),
                    _ => anyhow::bail!("`{v}`: event variables are written KEY=VALUE"),
                }
            }
            ask(
                &socket,
                Request::Emit {
                    event,
                    env,
                    wait: wait(no_wait),
                },
            )
        }
        Command::Alerts { json } => alerts(&socket, json),
        Command::TestAlert => ask(&socket, Request::TestAlert),
        Command::Check | Command::Graph => Ok(Exit::Error),
    }
}

/// `--socket`, else `GUARDIAN_SOCKET`, else `socket` in guardian.toml, else the default.
fn socket_path(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    if let Some(s) = std::env::var_os("GUARDIAN_SOCKET").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(s));
    }
    let dir = std::path::absolute(&args.config).unwrap_or_else(|_| args.config.clone());
    match config::load_settings(&dir) {
        Ok(s) => Ok(s.socket),
        Err(diags) => Err(anyhow::anyhow!("{diags}")),
    }
}

fn run_daemon(dir: &std::path::Path) -> anyhow::Result<Exit> {
    init_tracing();
    let config = match config::load(dir) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("guardian: nothing started: fix the configuration and try again");
            return Ok(Exit::Error);
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(crate::daemon::run(config))?;
    Ok(Exit::Ok)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("GUARDIAN_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::logtext::LogWriter { keep_esc: ansi })
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

fn check(dir: &std::path::Path) -> anyhow::Result<Exit> {
    match config::load(dir) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            let n = c.jobs.len();
            println!(
                "guardian: {}: {n} job{} OK",
                c.dir.display(),
                if n == 1 { "" } else { "s" }
            );
            Ok(Exit::Ok)
        }
        Err(diags) => {
            eprintln!("{diags}");
            Ok(Exit::Error)
        }
    }
}

fn alerts(socket: &std::path::Path, json: bool) -> anyhow::Result<Exit> {
    let response = connect(socket)?.call(&Request::Alerts)?;
    let Response::Alerts { pending } = response else {
        return answer(response);
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &pending)?;
        writeln!(out)?;
    } else if pending.is_empty() {
        writeln!(out, "no alerts waiting")?;
    } else {
        for d in &pending {
            writeln!(
                out,
                "{}  {}  {}: {}  (tries {}{})",
                d.alert.time,
                d.to.shown(),
                d.alert.job,
                d.alert.event(),
                d.attempts,
                d.last_error
                    .as_deref()
                    .map(|e| format!(", last: {e}"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(Exit::Ok)
}

fn graph(dir: &std::path::Path) -> anyhow::Result<Exit> {
    match config::load(dir) {
        Ok(c) => {
            let mut out = std::io::stdout().lock();
            output::graph(&mut out, &c.jobs)?;
            Ok(Exit::Ok)
        }
        Err(diags) => {
            eprintln!("{diags}");
            Ok(Exit::Error)
        }
    }
}

fn connect(socket: &std::path::Path) -> anyhow::Result<Client> {
    Ok(Client::connect(socket)?)
}

/// Sends one request and turns the common answers into output and an exit code.
fn ask(socket: &std::path::Path, request: Request) -> anyhow::Result<Exit> {
    let response = connect(socket)?.call(&request)?;
    answer(response)
}

fn answer(response: Response) -> anyhow::Result<Exit> {
    match response {
        Response::Done { message } => {
            if !message.is_empty() {
                println!("{message}");
            }
            Ok(Exit::Ok)
        }
        Response::No { message } => {
            eprintln!("{message}");
            Ok(Exit::No)
        }
        Response::Error { message } => {
            eprintln!("guardian: {message}");
            Ok(Exit::Error)
        }
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

fn status(socket: &std::path::Path, job: Option<String>, json: bool) -> anyhow::Result<Exit> {
    let one = job.is_some();
    let response = connect(socket)?.call(&Request::Status { job })?;
    let Response::Jobs { jobs } = response else {
        return answer(response);
    };
    let mut out = std::io::stdout().lock();
    if one {
        let Some(j) = jobs.first() else {
            anyhow::bail!("the daemon sent no job");
        };
        if json {
            serde_json::to_writer_pretty(&mut out, j)?;
            writeln!(out)?;
        } else {
            output::job_details(&mut out, j)?;
        }
        return Ok(if j.state == "running" && j.health != "unhealthy" {
            Exit::Ok
        } else {
            Exit::No
        });
    }
    if json {
        serde_json::to_writer_pretty(&mut out, &jobs)?;
        writeln!(out)?;
    } else {
        output::summary(&mut out, &jobs)?;
    }
    Ok(Exit::Ok)
}

fn env(socket: &std::path::Path, dir: &std::path::Path, job: &str) -> anyhow::Result<Exit> {
    let report = match Client::connect(socket) {
        Ok(mut client) => match client.call(&Request::Env {
            job: job.to_string(),
        })? {
            Response::Env { report } => *report,
            other => return answer(other),
        },
        Err(crate::control::client::ClientError::Connect { .. }) => {
            // No daemon: the configuration says the same thing the daemon would.
            let config = config::load(dir).map_err(|d| anyhow::anyhow!("{d}"))?;
            let spec = config
                .jobs
                .get(job)
                .with_context(|| format!("no job named `{job}` in {}", config.dir.display()))?;
            eprintln!("(the daemon is not running: this is what the configuration says)");
            crate::process::env::report(spec)
        }
        Err(e) => return Err(e.into()),
    };
    output::env_report(&mut std::io::stdout().lock(), &report)?;
    Ok(Exit::Ok)
}

fn run(socket: &std::path::Path, job: String, command: String) -> anyhow::Result<Exit> {
    let label = format!("{job} {command}");
    match connect(socket)?.call(&Request::Run { job, command })? {
        Response::Ran {
            status,
            success,
            output,
        } => {
            let mut out = std::io::stdout().lock();
            out.write_all(output.as_bytes())?;
            out.flush()?;
            if success {
                Ok(Exit::Ok)
            } else {
                eprintln!("guardian: {label}: {status}");
                Ok(Exit::No)
            }
        }
        other => answer(other),
    }
}
