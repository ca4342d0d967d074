//! Carrying out seamless restarts of a followed daemon whose pid file names its
//! successor only some time after the old master is gone. The rules (when a wait
//! begins, who stands in meanwhile, when and how the job has ended) are the pure
//! sub-machine in [`crate::job::handover`]; this module does what it asks (read the pid
//! file, find what is left of the job in /proc, watch the file, arm the deadline, kill
//! what is left) and feeds back what it saw.

use std::collections::VecDeque;
use std::time::Instant;

use nix::sys::signal::Signal;
use tokio::task::AbortHandle;

use crate::job::handover::{self as rules, HandoverEffect, HandoverInput, Ids, MainExit, Named};
use crate::job::{Input, Proc, ProcessEnd};
use crate::process::lineage;

use super::ready::{next_generation, read_pidfile};
use super::{Daemon, Internal, Owner, Timer, Work};

/// A handover at run time: the sub-machine and the pid file's watch working for it.
pub(crate) struct Handover {
    pub generation: u64,
    m: rules::Handover,
    task: Option<AbortHandle>,
}

impl Handover {
    /// The job's end if it ends now: that of the process whose exit began the handover.
    pub fn end(&self) -> ProcessEnd {
        self.m.end()
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Daemon {
    /// The followed main process `pid` of a job past starting ended with `end` (it was in
    /// the process group and session `ids`). Says whether the job goes on: the pid file
    /// names a successor, or one is waited for while a remaining process stands in.
    /// False: the job has ended, as [`Handover::end`] says while a wait was on.
    pub(super) fn main_exited_running(
        &mut self,
        name: &str,
        pid: u32,
        end: ProcessEnd,
        ids: Option<Ids>,
    ) -> bool {
        let Some(job) = self.jobs.get_mut(name) else {
            return false;
        };
        let exit = MainExit {
            pid,
            end,
            ids,
            state: job.m.state(),
            goal: job.m.goal(),
            now: self.os.now().mono,
        };
        let fx = match job.handover.as_mut() {
            Some(h) => h.m.handle(HandoverInput::MainExited(exit)),
            None => {
                let (m, fx) = rules::Handover::begin(
                    job.spec.pidfile.is_some(),
                    job.spec.handover_timeout,
                    exit,
                );
                job.handover = Some(Box::new(Handover {
                    generation: next_generation(),
                    m,
                    task: None,
                }));
                fx
            }
        };
        let goes_on = self.handover_carry(name, fx, Some((pid, end))).is_none();
        if goes_on {
            self.pump();
        }
        goes_on
    }

    /// The pid file of a job waiting for a handover names `pid`.
    pub(super) fn handover_found(&mut self, name: &str, generation: u64, pid: u32) {
        if !self.handover_is(name, generation) {
            return;
        }
        let named = Named {
            pid,
            ours: self.can_follow(name, pid),
        };
        self.handover_feed(name, HandoverInput::Named(named));
        self.pump();
    }

    /// The deadline of a handover passed.
    pub(super) fn handover_deadline(&mut self, name: &str, generation: u64) {
        if !self.handover_is(name, generation) {
            return;
        }
        let ids = self
            .jobs
            .get(name)
            .and_then(|j| j.m.main_pid())
            .and_then(checks::tree::stat)
            .map(|s| (s.pgrp, s.session));
        if let Some(end) = self.handover_feed(name, HandoverInput::Deadline { ids }) {
            self.work
                .push_back(Work::Feed(name.to_string(), Input::Exited(Proc::Main, end)));
        }
        self.pump();
    }

    /// Drops the handover of a job that is no longer running.
    pub(super) fn settle_handover(&mut self, name: &str) {
        if let Some(job) = self.jobs.get_mut(name)
            && let Some(h) = job.handover.as_mut()
        {
            h.m.handle(HandoverInput::Moved(job.m.state()));
            if h.m.is_over() {
                job.handover = None;
            }
        }
    }

    fn handover_is(&self, name: &str, generation: u64) -> bool {
        self.jobs
            .get(name)
            .and_then(|j| j.handover.as_ref())
            .is_some_and(|h| h.generation == generation)
    }

    fn handover_feed(&mut self, name: &str, input: HandoverInput) -> Option<ProcessEnd> {
        let h = self.jobs.get_mut(name)?.handover.as_mut()?;
        let fx = h.m.handle(input);
        self.handover_carry(name, fx, None)
    }

    /// Carries out what the handover asks, feeding back the answers, until nothing
    /// follows; then drops the handover if it is over. The job's end, if it has ended.
    /// `exit`: the process whose exit this follows, for the log.
    fn handover_carry(
        &mut self,
        name: &str,
        fx: Vec<HandoverEffect>,
        exit: Option<(u32, ProcessEnd)>,
    ) -> Option<ProcessEnd> {
        let mut ended = None;
        let mut effects = VecDeque::from(fx);
        while let Some(effect) = effects.pop_front() {
            let answer = match effect {
                HandoverEffect::LookAtPidFile => {
                    let path = self.jobs.get(name).and_then(|j| j.spec.pidfile.clone());
                    let named = path.as_deref().and_then(read_pidfile).map(|pid| Named {
                        pid,
                        ours: self.can_follow(name, pid),
                    });
                    Some(HandoverInput::PidFile(named))
                }
                HandoverEffect::LookForRemnants(ids) => {
                    Some(HandoverInput::Remnants(self.remnants(name, &ids)))
                }
                HandoverEffect::Wait {
                    remaining,
                    deadline,
                } => {
                    self.handover_wait(name, remaining, deadline, exit);
                    None
                }
                HandoverEffect::StandIn(pid) => {
                    // Meanwhile the newest remaining process stands for the job: a stop
                    // reaches it, checks look at it, and its end is seen.
                    tracing::debug!(
                        "{name}: following {pid} until the pid file names the successor"
                    );
                    self.make_main(name, pid);
                    None
                }
                HandoverEffect::Follow(pid) => {
                    self.follow_main(name, pid);
                    None
                }
                HandoverEffect::Done {
                    successor,
                    waited: true,
                } => {
                    tracing::info!(
                        "{name}: handover done; following process {successor} as the main process"
                    );
                    None
                }
                HandoverEffect::Done {
                    successor,
                    waited: false,
                } => {
                    if let Some((pid, end)) = exit {
                        tracing::info!(
                            "{name}: main process {pid} {end}; the pid file now names {successor}"
                        );
                    }
                    None
                }
                HandoverEffect::Foreign(pid) => {
                    tracing::debug!(
                        "{name}: the pid file names {pid}, which guardian did not start; still waiting"
                    );
                    None
                }
                HandoverEffect::KillRemnants(ids) => {
                    if let Some(job) = self.jobs.get(name) {
                        let path = job.spec.pidfile.as_ref().map(|p| p.display().to_string());
                        tracing::warn!(
                            "{name}: {} named no successor within {}; the job has ended",
                            path.unwrap_or_default(),
                            humantime::format_duration(job.spec.handover_timeout)
                        );
                    }
                    for pid in self.remnants(name, &ids) {
                        self.os.signal_pid(pid, Signal::SIGKILL);
                    }
                    None
                }
                HandoverEffect::Ended(end) => {
                    ended = Some(end);
                    None
                }
            };
            if let Some(input) = answer
                && let Some(h) = self.jobs.get_mut(name).and_then(|j| j.handover.as_mut())
            {
                effects.extend(h.m.handle(input));
            }
        }
        if let Some(job) = self.jobs.get_mut(name)
            && job.handover.as_ref().is_some_and(|h| h.m.is_over())
        {
            job.handover = None;
        }
        ended
    }

    /// A wait begins: watch the pid file and arm the deadline.
    fn handover_wait(
        &mut self,
        name: &str,
        remaining: usize,
        deadline: Instant,
        exit: Option<(u32, ProcessEnd)>,
    ) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let (Some(path), Some(generation)) = (
            job.spec
                .pidfile
                .as_deref()
                .map(std::path::Path::to_path_buf),
            job.handover.as_ref().map(|h| h.generation),
        ) else {
            return;
        };
        if let Some((pid, end)) = exit {
            tracing::info!(
                "{name}: main process {pid} {end} and {remaining} of its processes remain; waiting up to {} for {} to name the successor",
                humantime::format_duration(job.spec.handover_timeout),
                path.display()
            );
        }
        let job_name = name.to_string();
        let task = self.watch_pidfile(path, false, move |pid| Internal::Handover {
            job: job_name.clone(),
            generation,
            pid,
        });
        self.timers.arm(
            deadline,
            Timer::Handover {
                job: name.to_string(),
                generation,
            },
        );
        if let Some(h) = self.jobs.get_mut(name).and_then(|j| j.handover.as_mut()) {
            h.task = Some(task);
        }
    }

    /// The live processes of job `name` that guardian does not know as anything else:
    /// those in the process groups and sessions `ids` (except guardian's own) and those
    /// whose environment names the job, if they descend from guardian. Orphans
    /// (children of guardian) come first, the newest first.
    fn remnants(&self, name: &str, ids: &[Ids]) -> Vec<u32> {
        let me = std::process::id();
        let own = checks::tree::stat(me).map(|s| (s.pgrp, s.session));
        let mut found: Vec<(bool, u64, u32)> = Vec::new();
        for (pid, s) in lineage::live() {
            if self.pids.get(&pid).is_some_and(|o| !is_main_of(o, name)) {
                continue;
            }
            let in_group = ids.iter().any(|&(pgrp, session)| {
                (s.pgrp == pgrp && own.is_none_or(|o| o.0 != pgrp))
                    || (s.session == session && own.is_none_or(|o| o.1 != session))
            });
            if (in_group || lineage::marked_for(pid, name)) && lineage::descends_from_guardian(pid)
            {
                found.push((s.ppid == me, s.start_time, pid));
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        found.into_iter().map(|(_, _, pid)| pid).collect()
    }
}

fn is_main_of(owner: &Owner, job: &str) -> bool {
    matches!(owner, Owner::Job { name, proc: Proc::Main } if name == job)
}
