//! Each command: what it asks the daemon, and what it prints.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config;
use crate::control::client::{CONNECT_TIMEOUT, Client, ClientError};
use crate::control::protocol::{JobRow, JobState, REEXECUTING, Request, Response, unknown_request};

use super::Exit;
use super::args::{Args, Command};
use super::{logs, output};

/// The daemon as a client command reaches it: its socket, and how long to wait.
pub(super) struct Socket {
    pub path: PathBuf,
    /// `--timeout`; else a default by command.
    pub timeout: Option<Duration>,
}

/// How long commands that wait for jobs (start, stop, restart, emit, test-alert) wait
/// for their answer by default; `diagnose` too (its `report-deadline` may be 60 s).
const WAIT_DEFAULT: Duration = Duration::from_secs(300);
/// `run`: the daemon kills a custom command after 5 minutes; its answer comes after.
const RUN_DEFAULT: Duration = Duration::from_secs(330);
/// Commands the daemon answers at once (summary, status, monitor, reload ...).
const QUICK_DEFAULT: Duration = Duration::from_secs(30);

impl Socket {
    fn timeout_for(&self, request: &Request) -> Duration {
        self.timeout.unwrap_or(match request {
            Request::Start { wait: true, .. }
            | Request::Stop { wait: true, .. }
            | Request::Restart { wait: true, .. }
            | Request::Emit { wait: true, .. }
            | Request::TestAlert
            | Request::Diagnose { .. } => WAIT_DEFAULT,
            Request::Run { .. } => RUN_DEFAULT,
            _ => QUICK_DEFAULT,
        })
    }

    pub fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(&self.path, self.timeout.unwrap_or(CONNECT_TIMEOUT))
    }

    /// Connects, sends one request and returns its answer, each step bounded. While the
    /// daemon re-executes (`guardian reexec`), it is asked again for up to
    /// [`RETRY_FOR`]: when it said so ([`REEXECUTING`]: nothing was done), when the
    /// connection ended before the request was sent, or, for a request that only
    /// reads, before its answer came.
    pub fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let until = Instant::now() + RETRY_FOR;
        loop {
            let (answer, retry) = match self.connect() {
                Err(e) => {
                    let retry = matches!(e, ClientError::Frame(_));
                    (Err(e), retry)
                }
                Ok(mut client) => {
                    let answer = client.call(request, self.timeout_for(request));
                    let retry = match &answer {
                        Ok(Response::Error { message }) => message.starts_with(REEXECUTING),
                        Err(ClientError::Frame(_)) => request.is_read_only(),
                        _ => false,
                    };
                    (answer, retry)
                }
            };
            if !retry || Instant::now() >= until {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How long a client asks again while the daemon re-executes.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// `guardian reexec`: asks for the exec, then waits until the daemon answers as a new
/// image (its generation went up) or says the exec failed.
fn reexec(socket: &Socket) -> anyhow::Result<Exit> {
    let info = |r: Response| match r {
        Response::Daemon { info } => Some(info),
        _ => None,
    };
    let Some(before) = info(socket.call(&Request::Daemon)?) else {
        anyhow::bail!("the daemon does not say what it is: it is older than `reexec`");
    };
    match socket.call(&Request::Reexec)? {
        Response::Done { .. } => {}
        other => return answer(other),
    }
    let wait = socket.timeout.unwrap_or(QUICK_DEFAULT);
    let until = Instant::now() + wait;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(Some(now)) = socket.call(&Request::Daemon).map(info) {
            if now.generation > before.generation {
                println!(
                    "guardian re-executed: {} now runs {} (pid {})",
                    now.exe, now.version, now.pid
                );
                return Ok(Exit::Ok);
            }
            if now.reexec_attempts > before.reexec_attempts
                && let Some(why) = now.reexec_failure
            {
                eprintln!("guardian: re-execution failed: {why}; the daemon goes on as before");
                return Ok(Exit::Error);
            }
        }
        if Instant::now() >= until {
            eprintln!(
                "guardian: the daemon did not answer as re-executed within {}: see its log",
                humantime::format_duration(wait)
            );
            return Ok(Exit::Error);
        }
    }
}

pub fn dispatch(args: Args) -> anyhow::Result<Exit> {
    let path = match &args.command {
        None => return run_daemon(&args.config),
        Some(Command::Check { json }) => return check(&args.config, *json),
        Some(Command::Graph { json }) => return graph(&args.config, *json),
        Some(Command::Generate(what)) => return super::generate::generate(what),
        Some(Command::Passwd { user, role, file }) => {
            return crate::http::passwd::run(&args.config, user, role, file.as_deref());
        }
        Some(Command::Import(_)) => return import(args),
        Some(_) => socket_path(&args)?,
    };
    let socket = Socket {
        path,
        timeout: args.timeout,
    };
    let Some(command) = args.command else {
        return Ok(Exit::Error);
    };
    let wait = |no_wait: bool| !no_wait;
    match command {
        Command::Summary {
            job,
            instances,
            json,
            group,
        } => summary(&socket, job, group, instances, json),
        Command::Status {
            host: true, json, ..
        } => host_status(&socket, json),
        Command::Status {
            group: Some(group),
            json,
            ..
        } => status_of_group(&socket, group, json),
        Command::Status { job, json, .. } => status(&socket, job, json),
        Command::Start {
            target,
            group,
            no_wait,
        } => ask(
            &socket,
            Request::Start {
                target: target.unwrap_or_default(),
                group,
                wait: wait(no_wait),
            },
        ),
        Command::Stop {
            target,
            group,
            no_wait,
        } => ask(
            &socket,
            Request::Stop {
                target: target.unwrap_or_default(),
                group,
                wait: wait(no_wait),
            },
        ),
        Command::Restart {
            target,
            group,
            no_wait,
            all_at_once,
        } => ask(
            &socket,
            Request::Restart {
                target: target.unwrap_or_default(),
                group,
                wait: wait(no_wait),
                all_at_once,
            },
        ),
        Command::Reload {
            target: None,
            all_jobs: false,
        } => ask(&socket, Request::ReloadConfig),
        Command::Reload {
            target: None,
            all_jobs: true,
        } => ask(&socket, Request::ReloadAllJobs),
        Command::Reload {
            target: Some(target),
            ..
        } if target == "all" => {
            eprintln!(
                "guardian: `reload all` is not taken: it would send every job its reload signal.\n\
                 To re-read the configuration: guardian reload\n\
                 To send every running job its reload signal: guardian reload --all-jobs"
            );
            Ok(Exit::Error)
        }
        Command::Reload {
            target: Some(target),
            ..
        } => ask(&socket, Request::ReloadJob { target }),
        Command::Monitor { target, group } => ask(
            &socket,
            Request::Monitor {
                target: target.unwrap_or_default(),
                group,
            },
        ),
        Command::Unmonitor { target, group } => ask(
            &socket,
            Request::Unmonitor {
                target: target.unwrap_or_default(),
                group,
            },
        ),
        Command::Logs {
            job,
            lines,
            follow,
            json,
        } => logs::show(&socket, &args.config, &job, lines, follow, json),
        Command::Env { job, json } => env(&socket, &args.config, &job, json),
        Command::Config { job, json } => job_config(&socket, &args.config, &job, json),
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
        Command::TestAlert { json: false } => ask(&socket, Request::TestAlert),
        Command::TestAlert { json: true } => test_alert_json(&socket),
        Command::Diagnose { job, json } => super::reports::diagnose(&socket, job, json),
        Command::Reports { job, which, json } => super::reports::reports(&socket, job, which, json),
        Command::Reexec => reexec(&socket),
        Command::Check { .. }
        | Command::Graph { .. }
        | Command::Generate(_)
        | Command::Passwd { .. }
        | Command::Import(_) => Ok(Exit::Error),
    }
}

/// `--socket`, else `GUARDIAN_SOCKET`, else `socket` in guardian.toml, else the default.
/// Only the `socket` key of guardian.toml is read: a client needs nothing else, and may
/// not be allowed to read what the rest names (a password file).
fn socket_path(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    if let Some(s) = std::env::var_os("GUARDIAN_SOCKET").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(s));
    }
    let dir = std::path::absolute(&args.config).unwrap_or_else(|_| args.config.clone());
    match config::client::paths(&dir) {
        Ok(p) => Ok(p.socket),
        Err(diags) => Err(anyhow::anyhow!("{diags}")),
    }
}

fn run_daemon(dir: &std::path::Path) -> anyhow::Result<Exit> {
    // First, while this is the only thread: an image of the daemon before an exec may
    // have handed over its state (`guardian reexec`).
    let handed = crate::daemon::reexec::take_from_env();
    init_tracing();
    let handed = match handed {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            tracing::error!(
                "re-executed, but the state handed over cannot be read ({e}): going on as after a crash"
            );
            None
        }
        None => None,
    };
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
    runtime.block_on(async {
        let (listener, handed) = match handed {
            Some(mut h) => match h.take_socket(&config.settings.socket) {
                Ok(bound) => (bound, Some(h)),
                Err(e) => {
                    tracing::error!("the control socket handed over cannot be used ({e})");
                    (crate::daemon::bind(&config)?, None)
                }
            },
            None => (crate::daemon::bind(&config)?, None),
        };
        crate::daemon::run_until_signalled(config, listener, handed).await
    })?;
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

fn import(args: Args) -> anyhow::Result<Exit> {
    match args.command {
        Some(Command::Import(import)) => crate::import::run(&args.config, import),
        _ => Ok(Exit::Error),
    }
}

fn check(dir: &std::path::Path, json: bool) -> anyhow::Result<Exit> {
    if json {
        return check_json(dir);
    }
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

fn alerts(socket: &Socket, json: bool) -> anyhow::Result<Exit> {
    let response = socket.call(&Request::Alerts)?;
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

/// `check --json`: the diagnostics as editors want them; the exit code as without.
fn check_json(dir: &std::path::Path) -> anyhow::Result<Exit> {
    let (value, exit) = match config::load(dir) {
        Ok(c) => (
            output::check_json(Some(c.jobs.len()), &c.warnings, &[]),
            Exit::Ok,
        ),
        Err(diags) => (output::check_json(None, &[], &diags.0), Exit::Error),
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)?;
    Ok(exit)
}

/// `status --host`: the host checks only.
fn host_status(socket: &Socket, json: bool) -> anyhow::Result<Exit> {
    let response = socket.call(&Request::Status {
        job: None,
        group: None,
    })?;
    let Response::Jobs { host, .. } = response else {
        return answer(response);
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &host)?;
        writeln!(out)?;
    } else {
        output::summary(&mut out, &[], &host, false)?;
    }
    Ok(Exit::Ok)
}

/// `test-alert --json`: each recipient's outcome, from the daemon's `TO: sent (via
/// SERVER)` / `TO: NOT sent: ERROR` lines.
fn test_alert_json(socket: &Socket) -> anyhow::Result<Exit> {
    let (ok, message) = match socket.call(&Request::TestAlert)? {
        Response::Done { message } => (true, message),
        Response::No { message } => (false, message),
        other => return answer(other),
    };
    let value = output::test_alert_json(ok, &message);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)?;
    Ok(if ok { Exit::Ok } else { Exit::No })
}

fn graph(dir: &std::path::Path, json: bool) -> anyhow::Result<Exit> {
    match config::load(dir) {
        Ok(c) => {
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &output::graph_json(&c.jobs))?;
                writeln!(out)?;
            } else {
                output::graph(&mut out, &c.jobs)?;
            }
            Ok(Exit::Ok)
        }
        Err(diags) => {
            eprintln!("{diags}");
            Ok(Exit::Error)
        }
    }
}

/// Sends one request and turns the common answers into output and an exit code.
fn ask(socket: &Socket, request: Request) -> anyhow::Result<Exit> {
    answer(socket.call(&request)?)
}

pub(super) fn answer(response: Response) -> anyhow::Result<Exit> {
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

fn status(socket: &Socket, job: Option<String>, json: bool) -> anyhow::Result<Exit> {
    let Some(target) = job else {
        return table(socket, None, None, true, json);
    };
    let response = socket.call(&Request::Status {
        job: Some(target.clone()),
        group: None,
    })?;
    let Response::Jobs { jobs, .. } = response else {
        return answer(response);
    };
    let mut out = std::io::stdout().lock();
    // One job: its object; the instances of a job file: an array of theirs.
    let set = jobs.len() != 1 || jobs.iter().any(|j| j.name != target);
    if jobs.is_empty() {
        anyhow::bail!("the daemon sent no job");
    }
    if json && set {
        serde_json::to_writer_pretty(&mut out, &jobs)?;
        writeln!(out)?;
    }
    let mut all_up = true;
    for (i, j) in jobs.iter().enumerate() {
        if json && !set {
            serde_json::to_writer_pretty(&mut out, j)?;
            writeln!(out)?;
        } else if !json {
            if i > 0 {
                writeln!(out)?;
            }
            output::job_details(&mut out, j)?;
        }
        let up = j.state == JobState::Running && j.health != "unhealthy";
        all_up &= up || j.health == crate::control::protocol::HEALTH_DONE;
    }
    Ok(if all_up { Exit::Ok } else { Exit::No })
}

/// The summary table of every job (the instances of a job file as one row when
/// `rows_per_file`), of `job`'s instances or of `group`'s jobs, or `--json` of them.
fn table(
    socket: &Socket,
    job: Option<String>,
    group: Option<String>,
    rows_per_file: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    if !json && job.is_none() {
        return summary_table(socket, group, rows_per_file);
    }
    let one = job.is_some();
    let response = socket.call(&Request::Status { job, group })?;
    let Response::Jobs { jobs, host } = response else {
        return answer(response);
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &jobs)?;
        writeln!(out)?;
    } else {
        let rows: Vec<JobRow> = jobs.iter().map(JobRow::from).collect();
        output::summary(&mut out, &rows, &host, rows_per_file && !one)?;
    }
    Ok(Exit::Ok)
}

/// The summary table of every job or of `group`'s, from the rows the daemon sends for
/// it; a daemon older than the `summary` request is asked for every job's status
/// instead, which says the same and more.
fn summary_table(
    socket: &Socket,
    group: Option<String>,
    rows_per_file: bool,
) -> anyhow::Result<Exit> {
    let request = Request::Summary {
        group: group.clone(),
    };
    let (rows, host) = match socket.call(&request)? {
        Response::Summary { rows, host } => (rows, host),
        Response::Error { message } if unknown_request(&message, request.verb()) => {
            match socket.call(&Request::Status { job: None, group })? {
                Response::Jobs { jobs, host } => (jobs.iter().map(JobRow::from).collect(), host),
                other => return answer(other),
            }
        }
        other => return answer(other),
    };
    let mut out = std::io::stdout().lock();
    output::summary(&mut out, &rows, &host, rows_per_file)?;
    Ok(Exit::Ok)
}

/// `status -g GROUP`: the summary table of the group's jobs, or with `--json` an array
/// of them as `status --json` shows every job.
fn status_of_group(socket: &Socket, group: String, json: bool) -> anyhow::Result<Exit> {
    table(socket, None, Some(group), true, json)
}

/// `summary`: the table, or with `--json` the jobs and the host checks in one object;
/// with `-g GROUP`, of the group's jobs only.
fn summary(
    socket: &Socket,
    job: Option<String>,
    group: Option<String>,
    instances: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    if !json || job.is_some() {
        return table(socket, job, group, !instances, json);
    }
    let response = socket.call(&Request::Status { job: None, group })?;
    let Response::Jobs { jobs, host } = response else {
        return answer(response);
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "jobs": jobs, "host": host }))?;
    writeln!(out)?;
    Ok(Exit::Ok)
}

fn env(socket: &Socket, dir: &std::path::Path, job: &str, json: bool) -> anyhow::Result<Exit> {
    let request = Request::Env {
        job: job.to_string(),
    };
    let report = match socket.call(&request) {
        Ok(Response::Env { report }) => *report,
        Ok(other) => return answer(other),
        Err(e) if e.no_daemon() => {
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
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &output::env_json(&report))?;
        writeln!(out)?;
        return Ok(Exit::Ok);
    }
    output::env_report(&mut out, &report)?;
    Ok(Exit::Ok)
}

/// `config JOB`: what the daemon runs; with no daemon up, what the files say.
fn job_config(
    socket: &Socket,
    dir: &std::path::Path,
    job: &str,
    json: bool,
) -> anyhow::Result<Exit> {
    let request = Request::Config {
        job: job.to_string(),
        hide_secrets: false,
    };
    let (name, text, config) = match socket.call(&request) {
        Ok(Response::Config { job, text, config }) => (job, text, config),
        Ok(other) => return answer(other),
        Err(e) if e.no_daemon() => {
            let config = config::load(dir).map_err(|d| anyhow::anyhow!("{d}"))?;
            let Some(spec) = config.jobs.get(job) else {
                let names = crate::config::instances::members(job, config.jobs.iter());
                match crate::config::instances::hint(&crate::logtext::escape(job), &names) {
                    Some(hint) => eprintln!("guardian: {hint}"),
                    None => eprintln!(
                        "guardian: no job named `{}` in {}",
                        crate::logtext::escape(job),
                        config.dir.display()
                    ),
                }
                return Ok(Exit::Error);
            };
            eprintln!("(the daemon is not running: this is what the configuration says)");
            let every = config.settings.every;
            (
                spec.name.clone(),
                crate::config::render::toml(spec, every, false),
                crate::config::render::json(spec, every, false),
            )
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({ "job": name, "text": text, "config": config });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        out.write_all(text.as_bytes())?;
    }
    Ok(Exit::Ok)
}

fn run(socket: &Socket, job: String, command: String) -> anyhow::Result<Exit> {
    let label = format!("{job} {command}");
    match socket.call(&Request::Run { job, command })? {
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
