//! The rest of a job: whatever of it is not in the process group guardian signals at a
//! stop. With a cgroup per job ([`crate::process::cgroup`]) that is every process in
//! the job's cgroup outside its main process's group; without, every child of guardian
//! it did not spawn that carries the job's `GUARDIAN_JOB` mark (something that left the
//! group and was re-parented to guardian, [`crate::process::escaped`]).
//!
//! When a stop reaches its kill (the main process is sent its `kill-signal`), the rest
//! is sent the signal too. When the stop is over (the job is down, or about to start
//! again), or its `kill-timeout` passed, whatever is left is killed: `cgroup.kill`, or
//! SIGKILL to each escaped process. An emptied cgroup is removed. Nothing here runs on
//! the way up: /proc and the cgroup are read only when a job stops, and for `status`.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;

use crate::control::protocol::ProcessReport;
use crate::job::State;
use crate::process::cgroup::{Cgroups, Mode};
use crate::process::escaped;

use super::Daemon;

/// The daemon's cgroups, when its jobs have them, and which exist.
#[derive(Default)]
pub(super) struct Rest {
    cgroups: Option<Cgroups>,
    /// Jobs whose cgroup guardian made and has not removed.
    made: BTreeSet<String>,
    /// Jobs that are down and whose cgroup goes once it is empty.
    to_remove: BTreeSet<String>,
}

impl Rest {
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref()
    }
}

fn stopping(s: State) -> bool {
    matches!(s, State::Stopping | State::Killed | State::PostStop)
}

/// `N process(es) ...: pid 1 (sleep), pid 2 (sh)` for the log.
fn listed(pids: &[u32], what: &str) -> String {
    let list: Vec<String> = pids
        .iter()
        .map(|p| format!("pid {p} ({})", escaped::name(*p)))
        .collect();
    let noun = if pids.len() == 1 {
        "process"
    } else {
        "processes"
    };
    format!("{} {noun} {what}: {}", pids.len(), list.join(", "))
}

impl Daemon {
    /// At the real daemon's start: a cgroup per job if the configuration and the host
    /// allow it; the empty cgroups a daemon before left are removed.
    pub(super) fn open_cgroups(&mut self) {
        if self.config.settings.cgroups == Mode::Off {
            tracing::info!("cgroups = \"off\": jobs are followed by process group");
            return;
        }
        match Cgroups::open(&self.config.settings.state_dir) {
            Ok(c) => {
                for (job, n) in c.sweep() {
                    // After a re-execution the jobs' processes are the same daemon's.
                    if self.image.generation > 0 {
                        self.rest.made.insert(job);
                        continue;
                    }
                    tracing::warn!(
                        "{}: its cgroup from an earlier daemon still holds {n} processes; they are ended when the job stops",
                        crate::logtext::Esc(&job)
                    );
                    self.rest.made.insert(job);
                }
                tracing::info!(
                    "each job runs in a cgroup of its own, under {}",
                    crate::logtext::EscPath(c.base())
                );
                self.rest.cgroups = Some(c);
            }
            Err(why) => tracing::info!(
                "no cgroup per job ({}): jobs are followed by process group",
                crate::logtext::Esc(&why)
            ),
        }
    }

    /// The cgroups of `names`, the jobs about to start in that order, made on a thread
    /// ahead of their spawns (those a daemon before left are there already).
    pub(super) fn make_cgroups_ahead(&self, names: &[String]) {
        let Some(cg) = &self.rest.cgroups else { return };
        cg.make_ahead(
            names
                .iter()
                .filter(|n| !self.rest.made.contains(*n))
                .cloned()
                .collect(),
        );
    }

    /// The cgroup directory the next process of `name` is born in, made if need be;
    /// None without cgroups, or (said in the log) when it cannot be made.
    pub(super) fn cgroup_to_join(&mut self, name: &str) -> Option<OwnedFd> {
        let cg = self.rest.cgroups.as_ref()?;
        match cg.join_handle(name, self.rest.made.contains(name)) {
            Ok(fd) => {
                self.rest.to_remove.remove(name);
                if !self.rest.made.contains(name) {
                    self.rest.made.insert(name.to_string());
                }
                Some(fd)
            }
            Err(e) => {
                tracing::warn!(
                    "{name}: cannot make its cgroup {} ({e}); this process runs without one",
                    crate::logtext::EscPath(&cg.dir(name))
                );
                None
            }
        }
    }

    /// Right after `name`'s machine took an input in state `before`, ahead of its
    /// effects (so that a hook they spawn, such as post-stop, is not taken for the
    /// rest): a stop that is over (the job is down, or about to start again) ends what
    /// is left of the job; one that reached its kill sends the rest the job's kill
    /// signal.
    pub(super) fn rest_after_step(&mut self, name: &str, before: State) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let after = job.m.state();
        let sig = job.m.policy().kill_signal;
        if stopping(before) && !stopping(after) {
            self.end_rest(name, after.is_down());
        } else if before == State::Stopping && after != State::Stopping {
            self.signal_rest(name, sig);
        }
    }

    /// The kill timeout of `name` fired: if its stop is still waiting for the main
    /// process, the rest is killed with it.
    pub(super) fn rest_kill_timeout(&mut self, name: &str) {
        if self
            .jobs
            .get(name)
            .is_some_and(|j| j.m.state() == State::Killed)
        {
            self.end_rest(name, false);
        }
    }

    /// Sends `sig` (and SIGCONT) to the rest of `name`: what is in its cgroup outside
    /// the main process's group, or what left the group.
    fn signal_rest(&mut self, name: &str, sig: Signal) {
        let main_group = self
            .jobs
            .get(name)
            .and_then(|j| j.m.main_pid())
            .and_then(|p| self.os.group_of(p));
        let pids: Vec<u32> = match self.rest.cgroups.as_ref() {
            Some(cg) if self.rest.made.contains(name) => cg
                .procs(name)
                .into_iter()
                .filter(|&p| {
                    main_group.is_none_or(|g| checks::tree::stat(p).is_none_or(|s| s.pgrp != g.0))
                })
                .collect(),
            Some(_) => Vec::new(),
            None => self.escaped_of(name),
        };
        for &pid in &pids {
            self.os.signal_pid(pid, sig);
            self.os.signal_pid(pid, Signal::SIGCONT);
        }
        if !pids.is_empty() {
            tracing::debug!(
                "{name}: SIG{} to {}",
                crate::config::signal::name(sig),
                listed(&pids, "outside the main process group")
            );
        }
    }

    /// Kills whatever is left of `name`; with `down`, its cgroup is removed once empty.
    fn end_rest(&mut self, name: &str, down: bool) {
        match self.rest.cgroups.as_ref() {
            Some(cg) => {
                if !self.rest.made.contains(name) {
                    return;
                }
                let pids = cg.procs(name);
                if !pids.is_empty() {
                    tracing::warn!(
                        "{name}: ended {}",
                        listed(&pids, "left in the job's cgroup")
                    );
                    cg.kill(name);
                }
                if down {
                    if cg.remove(name) {
                        self.rest.made.remove(name);
                    } else {
                        self.rest.to_remove.insert(name.to_string());
                    }
                }
            }
            None => {
                let pids = self.escaped_of(name);
                if pids.is_empty() {
                    return;
                }
                tracing::warn!(
                    "{name}: ended {}",
                    listed(&pids, "that left the job's process group")
                );
                for pid in pids {
                    self.kill_escaped(pid);
                }
            }
        }
    }

    /// SIGKILL to an escaped process, and to the group it leads (what it started and
    /// kept in its group, as `setsid` leaves it).
    fn kill_escaped(&self, pid: u32) {
        if let Some(s) = checks::tree::stat(pid)
            && s.pgrp == pid
            && s.pgrp != nix::unistd::getpgrp().as_raw() as u32
        {
            self.os
                .signal_group(crate::process::Pgid(pid), Signal::SIGKILL);
        }
        self.os.signal_pid(pid, Signal::SIGKILL);
    }

    /// guardian's children that it did not spawn and that carry the mark of `name`.
    /// Only those it did not spawn are read in /proc: with many jobs, most children
    /// are the jobs' own processes.
    fn escaped_of(&self, name: &str) -> Vec<u32> {
        escaped::children()
            .into_iter()
            .filter(|p| !self.pids.contains_key(p))
            .filter(|&p| escaped::live(p) && escaped::job_of(p).as_deref() == Some(name))
            .collect()
    }

    /// After children were reaped: removes the cgroups of jobs that are down once
    /// they are empty.
    pub(super) fn rest_reaped(&mut self) {
        let Some(cg) = self.rest.cgroups.as_ref() else {
            return;
        };
        if self.rest.to_remove.is_empty() {
            return;
        }
        let gone: Vec<String> = self
            .rest
            .to_remove
            .iter()
            .filter(|n| cg.remove(n))
            .cloned()
            .collect();
        for n in gone {
            self.rest.to_remove.remove(&n);
            self.rest.made.remove(&n);
        }
    }

    /// The second request to stop: everything of every job is killed now.
    pub(super) fn kill_all_rest(&mut self) {
        match self.rest.cgroups.as_ref() {
            Some(cg) => {
                for name in &self.rest.made {
                    cg.kill(name);
                }
            }
            None => {
                for pid in escaped::children() {
                    if !self.pids.contains_key(&pid)
                        && escaped::live(pid)
                        && escaped::job_of(pid).is_some_and(|j| self.jobs.contains_key(&j))
                    {
                        self.kill_escaped(pid);
                    }
                }
            }
        }
    }

    /// When every job is down and the daemon exits: nothing of any job is left behind,
    /// and the cgroups guardian made are removed. Waits for killed processes to end, up
    /// to a few seconds.
    pub(super) fn rest_at_exit(&mut self) {
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in &names {
            self.end_rest(name, true);
        }
        let Some(cg) = self.rest.cgroups.as_ref() else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            // The processes killed are guardian's children or their children: reap
            // what ended (their owners are gone with the jobs).
            while let Some((pid, _)) = self.pids.peek(&*self.os) {
                if self.pids.reap(&*self.os, pid).is_none() {
                    break;
                }
            }
            let left: Vec<String> = self
                .rest
                .made
                .iter()
                .filter(|n| !cg.remove(n))
                .cloned()
                .collect();
            if left.is_empty() || std::time::Instant::now() >= deadline {
                for n in &left {
                    tracing::warn!(
                        "{n}: its cgroup {} is not empty at exit",
                        crate::logtext::EscPath(&cg.dir(n))
                    );
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.rest.made.clear();
        self.rest.to_remove.clear();
        cg.remove_all();
    }

    /// Every process of `name`, for `status JOB`: what is in its cgroup; without one,
    /// the groups of its main process and hook, what left them (re-parented to
    /// guardian, marked as the job's), and what those started.
    pub(super) fn processes_of(&self, name: &str) -> Vec<ProcessReport> {
        let Some(job) = self.jobs.get(name) else {
            return Vec::new();
        };
        let report = |pid: u32, ppid: u32| ProcessReport {
            pid,
            ppid,
            command: escaped::command(pid),
        };
        if let Some(cg) = self.rest.cgroups.as_ref()
            && self.rest.made.contains(name)
        {
            return cg
                .procs(name)
                .into_iter()
                .filter_map(|p| checks::tree::stat(p).map(|s| report(p, s.ppid)))
                .collect();
        }
        let mut groups: Vec<u32> = Vec::new();
        for pid in [job.m.main_pid(), job.m.hook().and_then(|(_, p)| p)]
            .into_iter()
            .flatten()
        {
            if let Some(g) = self.os.group_of(pid) {
                groups.push(g.0);
            }
        }
        let live: Vec<(u32, checks::tree::Stat)> = crate::process::lineage::live().collect();
        let mut ours: BTreeSet<u32> = live
            .iter()
            .filter(|(_, s)| groups.contains(&s.pgrp))
            .map(|(p, _)| *p)
            .collect();
        ours.extend(self.escaped_of(name));
        ours.extend(job.m.main_pid());
        // What those started, wherever it went (bounded: each pass adds a generation).
        for _ in 0..64 {
            let more: Vec<u32> = live
                .iter()
                .filter(|(p, s)| !ours.contains(p) && ours.contains(&s.ppid))
                .map(|(p, _)| *p)
                .collect();
            if more.is_empty() {
                break;
            }
            ours.extend(more);
        }
        live.iter()
            .filter(|(p, _)| ours.contains(p))
            .map(|(p, s)| report(*p, s.ppid))
            .collect()
    }
}
