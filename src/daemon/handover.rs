//! Seamless restarts of a followed daemon whose pid file names its successor only some
//! time after the old master is gone.
//!
//! gunicorn, say: on USR2 the old master starts a new master as its child, which writes
//! `PIDFILE.2`; on QUIT (or TERM) the old master exits and removes `PIDFILE`, and the new
//! master renames `PIDFILE.2` over it only when it notices its parent is gone, up to a
//! second later. So when the followed process of a running job exits while other
//! processes of the job remain and the pid file does not name a live successor yet,
//! the job is not declared ended at once: guardian follows the newest of those
//! processes meanwhile (so that a stop still reaches them) and waits up to
//! `handover-timeout` for the pid file to name the successor. Only an exit with status
//! 0 starts the wait: a master killed by a signal, or failing, did not hand over.

use std::path::PathBuf;

use nix::sys::signal::Signal;
use tokio::task::AbortHandle;

use crate::job::{Goal, Input, ProcessEnd, State};

use super::ready::pidfile_changes;
use super::{Daemon, Internal, Owner, Timer, Work};

/// A handover being waited for.
pub(crate) struct Handover {
    pub generation: u64,
    /// How the process that was followed ended, for when no successor shows up.
    end: ProcessEnd,
    /// Process groups and sessions of the processes followed so far: the job's remaining
    /// processes are found in them.
    ids: Vec<(u32, u32)>,
    task: AbortHandle,
}

impl Handover {
    pub fn end(&self) -> ProcessEnd {
        self.end
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.task.abort();
    }
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Daemon {
    /// The followed main process `pid` of a running job ended with `end` (it was in the
    /// process group and session `ids`), and the pid file names no successor yet. If
    /// processes of the job remain, wait for the pid file and say so (true); else the
    /// job has ended (false).
    pub(super) fn await_handover(
        &mut self,
        name: &str,
        pid: u32,
        end: ProcessEnd,
        ids: Option<(u32, u32)>,
    ) -> bool {
        let Some(job) = self.jobs.get(name) else {
            return false;
        };
        let Some(path) = job.spec.pidfile.clone() else {
            return false;
        };
        if job.m.state() != State::Running || job.m.goal() != Goal::Start {
            return false;
        }
        let timeout = job.spec.handover_timeout;
        let mut all_ids: Vec<(u32, u32)> = job
            .handover
            .as_ref()
            .map(|h| h.ids.clone())
            .unwrap_or_default();
        if let Some(i) = ids
            && !all_ids.contains(&i)
        {
            all_ids.push(i);
        }
        let left = self.remnants(name, &all_ids);
        let Some(&next) = left.first() else {
            // Nothing of the job is left: it ended, whatever the pid file says.
            if let Some(job) = self.jobs.get_mut(name) {
                job.handover = None;
            }
            return false;
        };
        if timeout.is_zero() {
            return false;
        }
        let already = self
            .jobs
            .get(name)
            .and_then(|j| j.handover.as_ref())
            .is_some();
        if !already && end != ProcessEnd::Exited(0) {
            // A master that hands over exits 0; one killed by a signal or failing did
            // not: what it left behind goes with it.
            return false;
        }
        if !already {
            tracing::info!(
                "{name}: main process {pid} {end} and {} of its processes remain; waiting up to {} for {} to name the successor",
                left.len(),
                humantime::format_duration(timeout),
                path.display()
            );
            let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let task = tokio::spawn(watch_pidfile(
                path,
                name.to_string(),
                generation,
                self.internal.clone(),
            ));
            let timer = Timer::Handover {
                job: name.to_string(),
                generation,
            };
            self.timers.arm_in(self.now().mono, timeout, timer);
            if let Some(job) = self.jobs.get_mut(name) {
                job.handover = Some(Handover {
                    generation,
                    end,
                    ids: all_ids,
                    task: task.abort_handle(),
                });
            }
        } else if let Some(h) = self.jobs.get_mut(name).and_then(|j| j.handover.as_mut()) {
            h.ids = all_ids;
        }
        // Meanwhile the newest remaining process stands for the job: a stop reaches it,
        // checks look at it, and its end is seen.
        tracing::debug!("{name}: following {next} until the pid file names the successor");
        self.follow(name, next);
        self.pump();
        true
    }

    /// The pid file of a job waiting for a handover names `pid`.
    pub(super) fn handover_found(&mut self, name: &str, generation: u64, pid: u32) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        if job.handover.as_ref().map(|h| h.generation) != Some(generation) {
            return;
        }
        if job.m.main_pid() != Some(pid) && !self.adopt(name, pid) {
            tracing::debug!(
                "{name}: the pid file names {pid}, which guardian did not start; still waiting"
            );
            return;
        }
        tracing::info!("{name}: handover done; following process {pid} as the main process");
        if let Some(job) = self.jobs.get_mut(name) {
            job.handover = None;
        }
        self.pump();
    }

    /// No successor showed up in time: the job has ended, and what is left of it goes.
    pub(super) fn handover_deadline(&mut self, name: &str, generation: u64) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if job.handover.as_ref().map(|h| h.generation) != Some(generation) {
            return;
        }
        let Some(h) = job.handover.take() else {
            return;
        };
        let path = job
            .spec
            .pidfile
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        tracing::warn!(
            "{name}: {path} named no successor within {}; the job has ended",
            humantime::format_duration(job.spec.handover_timeout)
        );
        let mut ids = h.ids.clone();
        if let Some(pid) = job.m.main_pid()
            && let Some(s) = checks::tree::stat(pid)
        {
            ids.push((s.pgrp, s.session));
        }
        for pid in self.remnants(name, &ids) {
            self.os.signal_pid(pid, Signal::SIGKILL);
        }
        self.work.push_back(Work::Feed(
            name.to_string(),
            Input::Exited(crate::job::Proc::Main, h.end),
        ));
        self.pump();
    }

    /// Makes `pid` the main process for now, without the checks `adopt` makes: it is a
    /// process of the job already.
    fn follow(&mut self, name: &str, pid: u32) {
        self.pids.insert(
            pid,
            Owner::Job {
                name: name.to_string(),
                proc: crate::job::Proc::Main,
            },
        );
        self.work
            .push_back(Work::Feed(name.into(), Input::Adopt(pid)));
    }

    /// The live processes of job `name` that guardian does not know as anything else:
    /// those in the process groups and sessions `ids` (except guardian's own) and those
    /// whose environment names the job. Orphans (children of guardian) come first, the
    /// newest first.
    fn remnants(&self, name: &str, ids: &[(u32, u32)]) -> Vec<u32> {
        let me = std::process::id();
        let own = checks::tree::stat(me).map(|s| (s.pgrp, s.session));
        let marker = format!("GUARDIAN_JOB={name}\0");
        let mut found: Vec<(bool, u64, u32)> = Vec::new();
        let Some(pids) = checks::tree::pids() else {
            return Vec::new();
        };
        for pid in pids {
            if pid == me || self.pids.get(&pid).is_some_and(|o| !is_main_of(o, name)) {
                continue;
            }
            let Some(s) = checks::tree::stat(pid) else {
                continue;
            };
            if s.state == 'Z' || s.state == 'X' {
                continue;
            }
            let in_group = ids.iter().any(|&(pgrp, session)| {
                (s.pgrp == pgrp && own.is_none_or(|o| o.0 != pgrp))
                    || (s.session == session && own.is_none_or(|o| o.1 != session))
            });
            let ours = in_group || {
                let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                String::from_utf8_lossy(&environ).contains(&marker)
            };
            if ours && super::ready::descends_from_guardian(pid) {
                found.push((s.ppid == me, s.start_time, pid));
            }
        }
        found.sort_by(|a, b| b.cmp(a));
        found.into_iter().map(|(_, _, pid)| pid).collect()
    }

    /// Drops the handover of a job that is no longer running.
    pub(super) fn settle_handover(&mut self, name: &str) {
        if let Some(job) = self.jobs.get_mut(name)
            && job.handover.is_some()
            && job.m.state() != State::Running
        {
            job.handover = None;
        }
    }
}

fn is_main_of(owner: &Owner, job: &str) -> bool {
    matches!(owner, Owner::Job { name, proc: crate::job::Proc::Main } if name == job)
}

/// Watches the pid file until the task is aborted; tells the loop each time it names a
/// live process other than the one it named before.
async fn watch_pidfile(
    path: PathBuf,
    job: String,
    generation: u64,
    tx: tokio::sync::mpsc::UnboundedSender<Internal>,
) {
    let mut changes = pidfile_changes(path);
    while let Some(pid) = changes.next().await {
        let msg = Internal::Handover {
            job: job.clone(),
            generation,
            pid,
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}
