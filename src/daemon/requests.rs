//! Control requests, carried out by the daemon's loop. Commands that change a job wait
//! (unless told not to) until the job has done it; the waiting happens in a small task,
//! never in the loop.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::config::diag::did_you_mean;
use crate::control::protocol::{Request, Response};
use crate::job::{Input, Machine, State};
use crate::process::env;

use super::run::RunRequest;
use super::{Daemon, Outcome, Until, Waiter, status};

/// A custom command that runs longer than this is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

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
        Until::Down => m.is_down().then(|| Ok(format!("{name}: stopped"))),
    }
}

impl Daemon {
    pub(super) fn request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let response = match request {
            Request::Hello { .. } => Response::Error {
                message: "already said hello".into(),
            },
            Request::Status { job: None } => Response::Jobs {
                jobs: self.jobs.values().map(|j| status::of(j)).collect(),
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
            Request::ReloadJob { target } if target == "all" => Response::Error {
                message:
                    "`reload all` would send every job its reload signal, so it is not taken: \
                          `guardian reload` re-reads the configuration, and \
                          `guardian reload --all-jobs` signals every running job"
                        .into(),
            },
            Request::ReloadJob { target } => self.reload_jobs(Some(&target)),
            Request::ReloadAllJobs => self.reload_jobs(None),
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
            Request::Emit { event, env, wait } => return self.emit(event, env, wait, reply),
            Request::Alerts => return self.list_alerts(reply),
            Request::TestAlert => return self.test_alert(reply),
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
            // `start all` starts what the daemon would start, in the same order: jobs
            // without `start-on`, and those whose `start-on` holds now; the others follow
            // when their events come, as their manual stops are lifted too.
            if command == Command::Start {
                for job in self.jobs.values_mut() {
                    if !job.spec.manual && job.manual_stop {
                        job.manual_stop = false;
                    }
                }
            }
            names.retain(|n| {
                self.jobs.get(n).is_some_and(|j| match command {
                    Command::Start => {
                        !j.spec.manual && j.start_on.as_ref().is_none_or(|w| w.holds())
                    }
                    Command::Restart => !j.manual_stop && !j.m.is_down(),
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
        tokio::spawn(collect(answers, reply));
    }

    fn emit(
        &mut self,
        name: String,
        env: Vec<(String, String)>,
        wait: bool,
        reply: oneshot::Sender<Response>,
    ) {
        use crate::event::{DAEMON_EVENTS, Event, JOB_EVENTS};
        if JOB_EVENTS.contains(&name.as_str()) || DAEMON_EVENTS.contains(&name.as_str()) {
            let _ = reply.send(Response::Error {
                message: format!("`{name}` is emitted by guardian itself, not by hand"),
            });
            return;
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
        {
            let _ = reply.send(Response::Error {
                message: format!("`{name}` is not an event name"),
            });
            return;
        }
        let mut event = Event::new(&name);
        event.env = env;
        // The event's Display escapes what the client sent.
        tracing::info!("event `{event}` emitted by hand");
        let moved = self.emit_user_event(event);
        if moved.is_empty() {
            let _ = reply.send(Response::Done {
                message: format!("{name}: no job waits for it"),
            });
            return;
        }
        if !wait {
            let _ = reply.send(Response::Done {
                message: format!("{name}: moves {}", moved.join(", ")),
            });
            return;
        }
        let mut answers = Vec::new();
        for job_name in &moved {
            let Some(job) = self.jobs.get_mut(job_name) else {
                continue;
            };
            let until = if job.m.goal == crate::job::Goal::Start {
                Until::Up
            } else {
                Until::Down
            };
            let (tx, rx) = oneshot::channel();
            job.waiters.push(Waiter { until, tx });
            answers.push(rx);
            self.settle(job_name);
        }
        tokio::spawn(collect(answers, reply));
    }

    fn list_alerts(&mut self, reply: oneshot::Sender<Response>) {
        let Some(tx) = &self.alerts else {
            let _ = reply.send(Response::Alerts { pending: vec![] });
            return;
        };
        let (list_tx, list_rx) = oneshot::channel();
        let _ = tx.send(crate::alert::Msg::List(list_tx));
        tokio::spawn(async move {
            let pending = list_rx.await.unwrap_or_default();
            let _ = reply.send(Response::Alerts { pending });
        });
    }

    fn test_alert(&mut self, reply: oneshot::Sender<Response>) {
        use crate::alert::{Alert, To};
        let settings = &self.config.settings.alert;
        let Some(tx) = &self.alerts else {
            let _ = reply.send(Response::Error {
                message:
                    "no alert recipients or webhooks are configured ([alert] in guardian.toml)"
                        .into(),
            });
            return;
        };
        let mut targets: Vec<To> = settings
            .to
            .iter()
            .map(|r| To::Email(r.address.clone()))
            .collect();
        for job in self.jobs.values() {
            for r in &job.spec.alert.extra {
                let to = To::Email(r.address.clone());
                if !targets.contains(&to) {
                    targets.push(to);
                }
            }
        }
        targets.extend(settings.webhooks.iter().map(|w| To::Webhook(w.url.clone())));
        let alert = Alert::new(
            "guardian",
            crate::alert::Kind::Test,
            "a test alert sent by `guardian test-alert`: if you read this, alerts reach you".into(),
        );
        let (result_tx, result_rx) = oneshot::channel();
        let _ = tx.send(crate::alert::Msg::Test(targets, alert, result_tx));
        tokio::spawn(async move {
            let results = result_rx.await.unwrap_or_default();
            let all_ok = results.iter().all(|(_, r)| r.is_ok());
            let message = results
                .into_iter()
                .map(|(to, r)| match r {
                    Ok(via) => format!("{to}: sent (via {via})"),
                    Err(e) => format!("{to}: NOT sent: {e}"),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let _ = reply.send(if all_ok {
                Response::Done { message }
            } else {
                Response::No { message }
            });
        });
    }

    /// Sends one job (or, with None, every job) its reload signal.
    fn reload_jobs(&mut self, target: Option<&str>) -> Response {
        let names = match target {
            Some(name) => match self.job_named(name) {
                Ok(j) => vec![j.spec.name.clone()],
                Err(e) => return e,
            },
            None => self.jobs.keys().cloned().collect(),
        };
        let mut lines = Vec::new();
        let mut all_ok = true;
        for name in names {
            let Some(job) = self.jobs.get(&name) else {
                continue;
            };
            let sig = job.spec.reload_signal.unwrap_or(Signal::SIGHUP);
            let which = match job.spec.reload_signal {
                Some(_) => "its reload-signal",
                None => "the default reload-signal: the job sets no `reload-signal`",
            };
            match job.m.main_pid.and_then(|p| i32::try_from(p).ok()) {
                Some(pid) if job.m.state == State::Running => match kill(Pid::from_raw(pid), sig) {
                    Ok(()) => lines.push(format!(
                        "{name}: sent SIG{} ({which}) to pid {pid}",
                        crate::config::signal::name(sig)
                    )),
                    Err(e) => {
                        all_ok = false;
                        lines.push(format!("{name}: cannot signal pid {pid}: {e}"));
                    }
                },
                _ => {
                    if target.is_some() {
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
                if monitored {
                    // Re-armed: a check that failed while unmonitored acts on its next
                    // failures, and earlier restarts no longer count against the limit.
                    job.check_restarts.clear();
                    for c in &mut job.checks {
                        c.rearm();
                    }
                }
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
        let (tx, rx) = oneshot::channel();
        self.run_request(RunRequest {
            job: name.to_string(),
            program: crate::config::Program::Script(text.clone()),
            extra_env: vec![("GUARDIAN_COMMAND".into(), command.to_string())],
            timeout: RUN_TIMEOUT,
            reply: tx,
        });
        let label = format!("{name}: cannot run `{command}`");
        tokio::spawn(async move {
            let response = match rx.await {
                Ok(Ok(ran)) => Response::Ran {
                    success: ran.code == Some(0),
                    status: ran.how,
                    output: ran.output,
                },
                Ok(Err(e)) => Response::Error {
                    message: format!("{label}: {e}"),
                },
                Err(_) => Response::Error {
                    message: "guardian is shutting down".into(),
                },
            };
            let _ = reply.send(response);
        });
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
