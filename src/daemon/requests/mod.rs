//! Control requests, carried out by the daemon's loop: this file dispatches each to its
//! handler, one file per request or small family. Commands that change a job wait
//! (unless told not to) until the job has done it; the waiting happens in a small task,
//! never in the loop.

mod alerts;
mod config;
mod diagnose;
mod emit;
mod metrics;
mod monitor;
mod reload;
mod run;
mod start_stop;
mod status;
mod summary;

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
            Request::Status { job, group } => self.status(job.as_deref(), group.as_deref()),
            Request::Summary { group } => self.summary(group.as_deref()),
            Request::Start {
                target,
                group,
                wait,
            } => {
                return self.command(Command::Start, &target, group.as_deref(), wait, reply);
            }
            Request::Stop {
                target,
                group,
                wait,
            } => {
                return self.command(Command::Stop, &target, group.as_deref(), wait, reply);
            }
            Request::Restart {
                target,
                group,
                wait,
                all_at_once,
            } => {
                let command = if all_at_once {
                    Command::Restart
                } else {
                    Command::RollingRestart
                };
                return self.command(command, &target, group.as_deref(), wait, reply);
            }
            Request::ReloadJob { target } => self.reload_job(&target),
            Request::ReloadAllJobs => self.reload_jobs(None),
            Request::ReloadConfig => self.reload_config(),
            Request::Monitor { target, group } => {
                self.set_monitored(&target, group.as_deref(), true)
            }
            Request::Unmonitor { target, group } => {
                self.set_monitored(&target, group.as_deref(), false)
            }
            Request::Logs { job } => self.log_file(&job),
            Request::Env { job } => self.env(&job),
            Request::Config { job, hide_secrets } => self.config_of(&job, hide_secrets),
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
            Request::Metrics => self.metrics(),
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

    /// The jobs a request acts on, in the order to start them: with a `group`, its jobs
    /// in dependency order (each after the jobs its `start-on` names); else `target`:
    /// `all` (every job, by name), one job's name, or the name of a job file with
    /// `instances` (every instance, in order). An unknown job or group is an error, as
    /// the client shows it.
    fn select(&self, target: &str, group: Option<&str>) -> Result<Vec<String>, Response> {
        if let Some(group) = group {
            let members: Vec<&str> = self
                .jobs
                .values()
                .filter(|j| j.spec.groups.iter().any(|g| g == group))
                .map(|j| j.spec.name.as_str())
                .collect();
            if members.is_empty() {
                return Err(self.no_group(group));
            }
            return Ok(crate::config::deps::dependency_order(&members, |n| {
                self.jobs.get(n).map(|j| &j.spec)
            }));
        }
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

    fn no_group(&self, group: &str) -> Response {
        let names: std::collections::BTreeSet<&str> = self
            .jobs
            .values()
            .flat_map(|j| j.spec.groups.iter().map(String::as_str))
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        let hint = match did_you_mean(group, &names) {
            Some(n) => format!(" (did you mean `{n}`?)"),
            None if names.is_empty() => " (no job is in a group: `groups = [...]`)".to_string(),
            None => String::new(),
        };
        Response::Error {
            message: format!("no group named `{}`{hint}", crate::logtext::escape(group)),
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

/// Carries out `steps`, each a request about one job, one after another: each is sent to
/// the loop once the one before is answered, so a group's jobs start (or stop) in order,
/// each with the outcome it would have alone. One reply: an error if a step was one, no
/// if a step's answer was no, else done; with every step's lines.
async fn in_order(
    steps: Vec<Request>,
    internal: tokio::sync::mpsc::UnboundedSender<super::Internal>,
    reply: oneshot::Sender<Response>,
    under_way: UnderWay,
) {
    let _under_way = under_way;
    let mut lines = Vec::with_capacity(steps.len());
    let (mut no, mut error) = (false, false);
    for request in steps {
        let (tx, rx) = oneshot::channel();
        if internal.send(super::Internal::Ask(request, tx)).is_err() {
            error = true;
            lines.push("guardian is shutting down".to_string());
            break;
        }
        match rx.await {
            Ok(Response::Done { message }) => lines.push(message),
            Ok(Response::No { message }) => {
                no = true;
                lines.push(message);
            }
            Ok(Response::Error { message }) => {
                error = true;
                lines.push(message);
            }
            Ok(other) => {
                error = true;
                lines.push(format!("unexpected answer: {other:?}"));
            }
            Err(_) => {
                error = true;
                lines.push("guardian is shutting down".into());
                break;
            }
        }
    }
    let message = lines.join("\n");
    let _ = reply.send(if error {
        Response::Error { message }
    } else if no {
        Response::No { message }
    } else {
        Response::Done { message }
    });
}

/// One command on a group under way, counted while it lives; its end wakes the loop,
/// for a re-execution that waited for it.
pub(super) struct UnderWay {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    internal: tokio::sync::mpsc::UnboundedSender<super::Internal>,
}

impl UnderWay {
    pub(super) fn new(
        count: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
        internal: &tokio::sync::mpsc::UnboundedSender<super::Internal>,
    ) -> UnderWay {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        UnderWay {
            count: count.clone(),
            internal: internal.clone(),
        }
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.count
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.internal.send(super::Internal::Wake);
    }
}
