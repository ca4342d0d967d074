//! Control requests, carried out by the daemon's loop: this file dispatches each to its
//! handler, one file per request or small family. Commands that change a job wait
//! (unless told not to) until the job has done it; the waiting happens in a small task,
//! never in the loop.

mod alerts;
mod diagnose;
mod emit;
mod monitor;
mod reload;
mod run;
mod start_stop;
mod status;

use tokio::sync::oneshot;

use crate::config::diag::did_you_mean;
use crate::control::protocol::{Request, Response};
use crate::job::{Machine, Reached, State, Until};

use super::{Daemon, Outcome};
use start_stop::Command;

/// Whether a waiter's wait is over, and what to tell it.
pub(super) fn outcome(until: Until, m: &Machine, name: &str) -> Option<Outcome> {
    let line = match m.reached(until)? {
        Reached::Up => match m.main_pid() {
            Some(pid) => Ok(format!("{name}: running, pid {pid}")),
            None => Ok(format!("{name}: running")),
        },
        Reached::Completed => Ok(format!("{name}: ran to completion")),
        Reached::Down => Ok(format!("{name}: stopped")),
        Reached::NotUp => {
            let why = m.last_failure().map_or_else(
                || "it stopped".to_string(),
                |f| format!("{} {}", f.process.as_str(), f.status),
            );
            let what = if m.state() == State::Failed {
                "failed"
            } else {
                "did not start"
            };
            Err(format!("{name}: {what}: {why}"))
        }
    };
    Some(line)
}

impl Daemon {
    pub(super) fn request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let response = match request {
            Request::Hello { .. } => Response::Error {
                message: "already said hello".into(),
            },
            Request::Status { job } => self.status(job.as_deref()),
            Request::Start { target, wait } => {
                return self.command(Command::Start, &target, wait, reply);
            }
            Request::Stop { target, wait } => {
                return self.command(Command::Stop, &target, wait, reply);
            }
            Request::Restart {
                target,
                wait,
                all_at_once,
            } => {
                let command = if all_at_once {
                    Command::Restart
                } else {
                    Command::RollingRestart
                };
                return self.command(command, &target, wait, reply);
            }
            Request::ReloadJob { target } => self.reload_job(&target),
            Request::ReloadAllJobs => self.reload_jobs(None),
            Request::ReloadConfig => self.reload_config(),
            Request::Monitor { target } => self.set_monitored(&target, true),
            Request::Unmonitor { target } => self.set_monitored(&target, false),
            Request::Logs { job } => self.log_file(&job),
            Request::Env { job } => self.env(&job),
            Request::Run { job, command } => return self.run_command(&job, &command, reply),
            Request::Emit { event, env, wait } => return self.emit(event, env, wait, reply),
            Request::Alerts => return self.list_alerts(reply),
            Request::TestAlert => return self.test_alert(reply),
            Request::Diagnose { job } => return self.diagnose(&job, reply),
            Request::Reports { job, which } => return self.reports(&job, which, reply),
            Request::Daemon => Response::Daemon {
                info: self.daemon_info(),
            },
            Request::Reexec => return self.ask_reexec(Some(reply)),
        };
        let _ = reply.send(response);
    }

    fn job_named(&self, name: &str) -> Result<&super::Job, Response> {
        self.jobs.get(name).map(|j| &**j).ok_or_else(|| {
            let names: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            let hint = did_you_mean(name, &names)
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            Response::Error {
                message: format!("no job named `{name}`{hint}"),
            }
        })
    }

    /// `all`, one job's name, or the name of a job file with `instances` (every
    /// instance, in order).
    fn targets(&self, target: &str) -> Result<Vec<String>, Response> {
        if target == "all" {
            return Ok(self.jobs.keys().cloned().collect());
        }
        let names =
            crate::config::instances::members(target, self.jobs.iter().map(|(n, j)| (n, &j.spec)));
        if names.is_empty() {
            self.job_named(target).map(|j| vec![j.spec.name.clone()])
        } else {
            Ok(names)
        }
    }
}

/// Waits for every job's answer and sends one reply: done if all went well, no if not.
async fn collect(answers: Vec<oneshot::Receiver<Outcome>>, reply: oneshot::Sender<Response>) {
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
}
