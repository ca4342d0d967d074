//! Control requests, carried out by the daemon's loop. Commands that change a job wait
//! (unless told not to) until the job has done it; the waiting happens in a small task,
//! never in the loop.

use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::config::Program;
use crate::config::diag::did_you_mean;
use crate::control::protocol::{Request, Response};
use crate::job::{Input, Machine, ProcessEnd, State};
use crate::process::spawn::{Output, spawn};
use crate::process::{Pgid, env};

use super::{Daemon, Outcome, Owner, Until, Waiter, status};

/// A custom command that runs longer than this is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// At most this much of a custom command's output is returned.
const RUN_OUTPUT_CAP: usize = 1 << 19;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    Start,
    Stop,
    Restart,
}

/// Whether a waiter's wait is over, and how it went.
pub(super) fn outcome(until: Until, m: &Machine, name: &str) -> Option<Outcome> {
    let failed = || {
        let why = m.last_failure.as_ref().map_or_else(
            || "it stopped".to_string(),
            |f| format!("{} {}", f.process.as_str(), f.status),
        );
        let what = if m.state == State::Failed {
            "failed"
        } else {
            "did not start"
        };
        Err(format!("{name}: {what}: {why}"))
    };
    let up = || match m.main_pid {
        Some(pid) => Ok(format!("{name}: running, pid {pid}")),
        None => Ok(format!("{name}: running")),
    };
    let down_for_good = m.state.is_down() && m.goal == crate::job::Goal::Stop;
    match until {
        Until::Up if m.policy.task => {
            // A task is done when it has run to completion.
            if !down_for_good {
                None
            } else if m.run_failed() {
                Some(failed())
            } else {
                Some(Ok(format!("{name}: ran to completion")))
            }
        }
        Until::Up => {
            if m.state == State::Running {
                Some(up())
            } else if down_for_good {
                Some(failed())
            } else {
                None
            }
        }
        Until::UpAgain(runs) => {
            if m.state == State::Running && m.runs > runs {
                Some(up())
            } else if down_for_good {
                Some(failed())
            } else {
                None
            }
        }
        Until::Down => m.state.is_down().then(|| Ok(format!("{name}: stopped"))),
    }
}

impl Daemon {
    pub(super) fn request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let response = match request {
            Request::Hello { .. } => Response::Error {
                message: "already said hello".into(),
            },
            Request::Status { job: None } => Response::Jobs {
                jobs: self.jobs.values().map(status::of).collect(),
            },
            Request::Status { job: Some(name) } => match self.job_named(&name) {
                Ok(job) => Response::Jobs {
                    jobs: vec![status::of(job)],
                },
                Err(e) => e,
            },
            Request::Start { target, wait } => {
                return self.command(Command::Start, &target, wait, reply);
            }
            Request::Stop { target, wait } => {
                return self.command(Command::Stop, &target, wait, reply);
            }
            Request::Restart { target, wait } => {
                return self.command(Command::Restart, &target, wait, reply);
            }
            Request::ReloadJob { target } => self.reload_jobs(&target),
            Request::ReloadConfig => match self.reload() {
                Ok(message) => Response::Done {
                    message: format!("reloaded: {message}"),
                },
                Err(message) => Response::Error {
                    message: format!("reload refused, nothing changed:\n{message}"),
                },
            },
            Request::Monitor { target } => self.set_monitored(&target, true),
            Request::Unmonitor { target } => self.set_monitored(&target, false),
            Request::Logs { job } => match self.job_named(&job) {
                Ok(_) => Response::LogFile {
                    path: self.log_path(&job).display().to_string(),
                },
                Err(e) => e,
            },
            Request::Env { job } => match self.job_named(&job) {
                Ok(j) => Response::Env {
                    report: Box::new(env::report(&j.spec)),
                },
                Err(e) => e,
            },
            Request::Run { job, command } => return self.run_command(&job, &command, reply),
        };
        let _ = reply.send(response);
    }

    fn job_named(&self, name: &str) -> Result<&super::Job, Response> {
        self.jobs.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            let hint = did_you_mean(name, &names)
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            Response::Error {
                message: format!("no job named `{name}`{hint}"),
            }
        })
    }

    /// `all`, or one job's name.
    fn targets(&self, target: &str) -> Result<Vec<String>, Response> {
        if target == "all" {
            Ok(self.jobs.keys().cloned().collect())
        } else {
            self.job_named(target).map(|j| vec![j.spec.name.clone()])
        }
    }

    fn command(
        &mut self,
        command: Command,
        target: &str,
        wait: bool,
        reply: oneshot::Sender<Response>,
    ) {
        let mut names = match self.targets(target) {
            Ok(n) => n,
            Err(e) => {
                let _ = reply.send(e);
                return;
            }
        };
        if target == "all" {
            // `all` means the jobs that run with the daemon: `start all` leaves `manual`
            // jobs alone, and `restart all` does not bring up what a person stopped.
            names.retain(|n| {
                self.jobs.get(n).is_some_and(|j| match command {
                    Command::Start => !j.spec.manual,
                    Command::Restart => !j.manual_stop && !j.m.state.is_down(),
                    Command::Stop => true,
                })
            });
        }
        if self.shutdown.is_some() && command != Command::Stop {
            let _ = reply.send(Response::Error {
                message: "guardian is shutting down".into(),
            });
            return;
        }
        let mut answers = Vec::new();
        for name in &names {
            let Some(job) = self.jobs.get_mut(name) else {
                continue;
            };
            let (input, until) = match command {
                Command::Start => (Input::Start, Until::Up),
                Command::Stop => (Input::Stop, Until::Down),
                Command::Restart => (Input::Restart, Until::UpAgain(job.m.runs)),
            };
            job.manual_stop = command == Command::Stop;
            if wait {
                let (tx, rx) = oneshot::channel();
                job.waiters.push(Waiter { until, tx });
                answers.push(rx);
            }
            self.feed(name, input);
        }
        self.save_state();
        if !wait {
            let verb = match command {
                Command::Start => "start",
                Command::Stop => "stop",
                Command::Restart => "restart",
            };
            let _ = reply.send(Response::Done {
                message: format!("{verb} requested for {}", names.join(", ")),
            });
            return;
        }
        tokio::spawn(async move {
            let mut lines = Vec::new();
            let mut all_ok = true;
            for rx in answers {
                match rx.await {
                    Ok(Ok(line)) => lines.push(line),
                    Ok(Err(line)) => {
                        all_ok = false;
                        lines.push(line);
                    }
                    Err(_) => {
                        all_ok = false;
                        lines.push("guardian is shutting down".into());
                    }
                }
            }
            let message = lines.join("\n");
            let _ = reply.send(if all_ok {
                Response::Done { message }
            } else {
                Response::No { message }
            });
        });
    }

    fn reload_jobs(&mut self, target: &str) -> Response {
        let names = match self.targets(target) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let mut lines = Vec::new();
        let mut all_ok = true;
        for name in names {
            let Some(job) = self.jobs.get(&name) else {
                continue;
            };
            let sig = job.spec.reload_signal;
            match job.m.main_pid.and_then(|p| i32::try_from(p).ok()) {
                Some(pid) if job.m.state == State::Running => match kill(Pid::from_raw(pid), sig) {
                    Ok(()) => lines.push(format!(
                        "{name}: sent SIG{} to pid {pid}",
                        crate::config::signal::name(sig)
                    )),
                    Err(e) => {
                        all_ok = false;
                        lines.push(format!("{name}: cannot signal pid {pid}: {e}"));
                    }
                },
                _ => {
                    if target != "all" {
                        all_ok = false;
                    }
                    lines.push(format!("{name}: not running, nothing to reload"));
                }
            }
        }
        let message = lines.join("\n");
        if all_ok {
            Response::Done { message }
        } else {
            Response::No { message }
        }
    }

    fn set_monitored(&mut self, target: &str, monitored: bool) -> Response {
        let names = match self.targets(target) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let mut changed = false;
        for name in &names {
            if let Some(job) = self.jobs.get_mut(name)
                && job.monitored != monitored
            {
                job.monitored = monitored;
                changed = true;
            }
        }
        if changed {
            self.save_state();
        }
        let word = if monitored {
            "monitored"
        } else {
            "unmonitored"
        };
        Response::Done {
            message: format!("{}: {word}", names.join(", ")),
        }
    }

    fn run_command(&mut self, name: &str, command: &str, reply: oneshot::Sender<Response>) {
        let job = match self.job_named(name) {
            Ok(j) => j,
            Err(e) => {
                let _ = reply.send(e);
                return;
            }
        };
        let Some(text) = job.spec.commands.get(command) else {
            let known: Vec<&str> = job.spec.commands.keys().map(String::as_str).collect();
            let message = if known.is_empty() {
                format!("{name} has no [commands]")
            } else {
                format!(
                    "{name} has no command `{command}`; it has: {}",
                    known.join(", ")
                )
            };
            let _ = reply.send(Response::Error { message });
            return;
        };
        let program = Program::Script(text.clone());
        let spawned = match spawn(
            &job.spec,
            &program,
            &[("GUARDIAN_COMMAND", command)],
            Output::Capture,
        ) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Response::Error {
                    message: format!("{name}: cannot run `{command}`: {e}"),
                });
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        self.pids.insert(spawned.pid, Owner::Command(tx));
        let pid = spawned.pid;
        let out = spawned.stdout.map(OwnedFd::from);
        let err = spawned.stderr.map(OwnedFd::from);
        tokio::spawn(async move {
            let collect = async {
                let (a, b) = tokio::join!(read_all(out), read_all(err));
                let end = rx.await.ok();
                (a, b, end)
            };
            let (status, success, output) = match tokio::time::timeout(RUN_TIMEOUT, collect).await {
                Ok((a, b, end)) => {
                    let mut output = a;
                    output.push_str(&b);
                    match end {
                        Some(end) => (end.to_string(), end == ProcessEnd::Exited(0), output),
                        None => ("lost".to_string(), false, output),
                    }
                }
                Err(_) => {
                    Pgid::of_leader(pid).signal(nix::sys::signal::Signal::SIGKILL);
                    (
                        format!("timed out after {}s, killed", RUN_TIMEOUT.as_secs()),
                        false,
                        String::new(),
                    )
                }
            };
            let _ = reply.send(Response::Ran {
                status,
                success,
                output,
            });
        });
    }
}

/// Reads a pipe to its end, keeping at most [`RUN_OUTPUT_CAP`] bytes.
async fn read_all(fd: Option<OwnedFd>) -> String {
    let Some(fd) = fd else {
        return String::new();
    };
    let Ok(mut rx) = pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = RUN_OUTPUT_CAP.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
