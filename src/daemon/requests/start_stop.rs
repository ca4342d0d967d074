//! `start`, `stop` and `restart`: of one job, `all` or a group's jobs, waited for unless
//! `--no-wait`. A group's jobs are taken one at a time in dependency order (stopped in
//! reverse), each once the one before is up (or down).

use tokio::sync::oneshot;

use crate::control::protocol::{Request, Response};
use crate::daemon::{Daemon, Waiter};
use crate::job::{AutoStart, Input, Until};

use super::collect;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    Start,
    Stop,
    Restart,
    /// A restart that takes the instances of a job file one after another (and any
    /// other target all at once, as `Restart`).
    RollingRestart,
}

impl Daemon {
    pub(super) fn command(
        &mut self,
        command: Command,
        target: &str,
        group: Option<&str>,
        wait: bool,
        reply: oneshot::Sender<Response>,
    ) {
        let mut names = match self.select(target, group) {
            Ok(n) => n,
            Err(e) => {
                let _ = reply.send(e);
                return;
            }
        };
        // Instances of one job file restart one after another; a group's jobs are taken
        // in turn below anyway.
        let rolling = group.is_none()
            && command == Command::RollingRestart
            && target != "all"
            && names.iter().any(|n| n != target);
        let command = match command {
            Command::RollingRestart => Command::Restart,
            c => c,
        };
        if group.is_some() {
            if command == Command::Stop {
                // Dependents first.
                names.reverse();
            }
            if wait {
                // One job at a time, each once the one before has done it, as if each
                // were asked for by name.
                let steps = names
                    .into_iter()
                    .map(|target| match command {
                        Command::Start => Request::Start {
                            target,
                            group: None,
                            wait,
                        },
                        Command::Stop => Request::Stop {
                            target,
                            group: None,
                            wait,
                        },
                        Command::Restart | Command::RollingRestart => Request::Restart {
                            target,
                            group: None,
                            wait,
                            all_at_once: false,
                        },
                    })
                    .collect();
                let under_way = super::UnderWay::new(&self.group_commands, &self.internal);
                tokio::spawn(super::in_order(
                    steps,
                    self.internal.clone(),
                    reply,
                    under_way,
                ));
                return;
            }
        } else if target == "all" {
            // `all` means the jobs that run with the daemon: `start all` leaves `manual`
            // jobs alone, and `restart all` does not bring up what a person stopped.
            // `start all` starts what the daemon would start, in the same order: jobs
            // without `start-on`, and those whose `start-on` holds now; the others follow
            // when their events come, as their manual stops are lifted too.
            if command == Command::Start {
                for job in self.jobs.values_mut() {
                    if !job.m.policy().manual {
                        job.m.set_manual_stop(false);
                    }
                }
            }
            names.retain(|n| {
                self.jobs.get(n).is_some_and(|j| match command {
                    Command::Start => {
                        let holds = j.start_on.as_ref().is_none_or(|w| w.holds());
                        j.m.may_autostart(holds, AutoStart::StartAll)
                    }
                    Command::Restart | Command::RollingRestart => {
                        !j.m.manual_stop() && !j.m.is_down()
                    }
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
        if rolling {
            if wait {
                self.roll(names, Some(reply));
            } else {
                let message = format!("rolling restart requested for {}", names.join(", "));
                self.roll(names, None);
                let _ = reply.send(Response::Done { message });
            }
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
                Command::Restart | Command::RollingRestart => {
                    (Input::Restart, Until::UpAgain(job.m.runs()))
                }
            };
            job.m.set_manual_stop(command == Command::Stop);
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
                Command::Restart | Command::RollingRestart => "restart",
            };
            let _ = reply.send(Response::Done {
                message: format!("{verb} requested for {}", names.join(", ")),
            });
            return;
        }
        tokio::spawn(collect(answers, reply));
    }
}
