//! After the daemon's own crash: what the daemon that died left (its record, and what
//! /proc holds of its jobs) is found at start, and each job is either adopted (its main
//! process, not guardian's child any more, is supervised again through a pidfd) or
//! ended cleanly (kill-signal, kill-timeout, SIGKILL, post-stop) before it follows its
//! goal. The record itself is kept here too: one entry per job that is not at rest,
//! written once per turn of the loop when something in it changed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::job::{Goal, Input, Proc, ProcessEnd, State};
use crate::process::Pgid;
use crate::process::lineage::Leftover;

use super::record::{self, Entry, ProcEntry, Record};
use super::timers::Timer;
use super::{Daemon, Internal};

/// Whether the record changed since it was last written. What it says of each job is
/// kept in the job ([`Recorded`]), not in a map of its own beside the jobs'.
#[derive(Default)]
pub(super) struct Book {
    pub dirty: bool,
}

/// What the record says of one job that is not at rest, as the daemon keeps it between
/// writes: the words of its entry as enums, its name the job's (some 100 bytes a job,
/// where a map of entries took some 350 at 2,000 jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recorded {
    state: State,
    goal: Goal,
    kill_signal: i32,
    fingerprint: u64,
    main: Option<ProcEntry>,
    hook: Option<(Proc, ProcEntry)>,
    restarts: u64,
    runs: u64,
    kill_timeout_ms: u64,
}

impl Recorded {
    /// The job's entry in the record.
    fn entry(&self) -> Entry {
        Entry {
            state: Cow::Borrowed(self.state.as_str()),
            goal: Cow::Borrowed(goal_word(self.goal)),
            fingerprint: self.fingerprint,
            main: self.main,
            hook: self.hook.map(|(p, e)| (Cow::Borrowed(p.as_str()), e)),
            restarts: self.restarts,
            runs: self.runs,
            kill_signal: self.kill_signal,
            kill_timeout_ms: self.kill_timeout_ms,
        }
    }
}

/// The entries of the jobs that are not at rest, in the order of their names, as the
/// record's `jobs` is written: each made as it is written, none kept.
struct Entries<'a>(&'a BTreeMap<String, Box<super::runtime::Job>>);

impl serde::Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .filter_map(|(name, job)| job.recorded.as_ref().map(|r| (name, r.entry()))),
        )
    }
}

/// A process of a job that is not guardian's child (a previous daemon's), watched
/// through a pidfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Held {
    pub pid: u32,
    pub start_time: u64,
    /// Its group, when the group is the job's (guardian made it): signals go there.
    pub group: Option<Pgid>,
}

impl Daemon {
    /// Takes what the record should say of job `name` now; marks the record dirty if
    /// that changed. Reads /proc (the start time) only for a process not recorded yet.
    pub(super) fn note_record(&mut self, name: &str) {
        let Some(job) = self.jobs.get_mut(name) else {
            // A job leaves the jobs only at rest, its entry gone before.
            return;
        };
        let m = &job.m;
        if m.is_down() {
            if job.recorded.take().is_some() {
                self.book.dirty = true;
            }
            return;
        }
        let old = job.recorded;
        let hook = m.hook().and_then(|(p, pid)| pid.map(|pid| (p, pid)));
        let unchanged = old.is_some_and(|e| {
            e.state == m.state()
                && e.goal == m.goal()
                && e.main.map(|p| p.pid) == m.main_pid()
                && e.hook.as_ref().map(|(_, p)| p.pid) == hook.map(|(_, pid)| pid)
                && e.restarts == m.restarts()
                && e.runs == m.runs()
        });
        if unchanged {
            return;
        }
        let follows = job.follows();
        let fingerprint = record::fingerprint(&job.spec);
        let os = &*self.os;
        let own_sid = self.own_sid;
        let held = self.held.get(name);
        let known = |pid: u32, own_group: bool| -> Option<ProcEntry> {
            if let Some(p) = old.and_then(|e| e.main).filter(|p| p.pid == pid) {
                return Some(p);
            }
            if let Some(p) = old
                .and_then(|e| e.hook)
                .map(|(_, p)| p)
                .filter(|p| p.pid == pid)
            {
                return Some(p);
            }
            if let Some(h) = held.and_then(|h| h.iter().find(|h| h.pid == pid)) {
                let (pgid, sid) = os.ids_of(pid).unwrap_or((h.group.map_or(0, |g| g.0), 0));
                return Some(ProcEntry {
                    pid,
                    start_time: h.start_time,
                    pgid,
                    sid,
                });
            }
            let start_time = os.start_time(pid)?;
            let (pgid, sid) = if own_group {
                (pid, own_sid)
            } else {
                os.ids_of(pid)?
            };
            Some(ProcEntry {
                pid,
                start_time,
                pgid,
                sid,
            })
        };
        let recorded = Recorded {
            state: m.state(),
            goal: m.goal(),
            fingerprint,
            main: m.main_pid().and_then(|pid| known(pid, !follows)),
            hook: hook.and_then(|(p, pid)| known(pid, true).map(|e| (p, e))),
            restarts: m.restarts(),
            runs: m.runs(),
            kill_signal: m.policy().kill_signal as i32,
            kill_timeout_ms: u64::try_from(m.policy().kill_timeout.as_millis()).unwrap_or(u64::MAX),
        };
        job.recorded = Some(recorded);
        self.book.dirty = true;
    }

    /// Writes the record if it changed since it was last written: once per turn of the
    /// loop, before the answers of that turn reach their clients.
    pub(super) fn flush_record(&mut self) {
        if !self.book.dirty {
            return;
        }
        self.book.dirty = false;
        if let Err(e) = record::save(&self.config.settings.state_dir, false, &Entries(&self.jobs)) {
            tracing::error!(
                "cannot write {}: {e}; after a crash of the daemon its jobs may not be found again",
                crate::logtext::EscPath(&record::path(&self.config.settings.state_dir))
            );
        }
    }

    /// The daemon exits with every job down: the next one has nothing to look for.
    pub(super) fn record_clean_exit(&mut self) {
        let none: BTreeMap<String, Entry> = BTreeMap::new();
        if let Err(e) = record::save(&self.config.settings.state_dir, true, &none) {
            tracing::error!("cannot write the clean exit mark: {e}");
        }
    }

    /// At start, before any job is started: finds what a previous daemon left and
    /// adopts or ends each of its jobs. Then writes the record (even an empty one), so
    /// that a crash from now on always leaves one.
    pub(super) fn recover(&mut self) {
        let state_dir = self.config.settings.state_dir.clone();
        let (rec, warning) = record::load(&state_dir);
        if let Some(w) = warning {
            tracing::error!("{w}");
        }
        if let Some(rec) = rec.filter(|r| !r.clean_exit) {
            self.recover_from(rec);
        }
        self.book.dirty = true;
        self.flush_record();
    }

    fn recover_from(&mut self, rec: Record) {
        let jobs = &self.jobs;
        let known = |j: &str| jobs.contains_key(j) || rec.jobs.contains_key(j);
        let mut left: BTreeMap<String, Vec<Leftover>> = BTreeMap::new();
        for l in self.os.leftovers(&known) {
            left.entry(l.job.clone()).or_default().push(l);
        }
        let mut names: Vec<String> = rec.jobs.keys().cloned().collect();
        names.extend(left.keys().filter(|n| !rec.jobs.contains_key(*n)).cloned());
        tracing::info!(
            "the previous daemon did not exit cleanly: {} of its jobs were not at rest, {} processes of them are left",
            rec.jobs.len(),
            left.values().map(Vec::len).sum::<usize>()
        );
        // Adopted jobs are taken in the order their main processes started: the
        // shutdown stops the most recently started first.
        let mut adopted: Vec<(u64, String)> = Vec::new();
        for name in names {
            let entry = rec.jobs.get(&name);
            let procs = left.remove(&name).unwrap_or_default();
            if !self.jobs.contains_key(&name) {
                self.end_removed(&name, entry, &procs);
                continue;
            }
            match self.adoptable(rec.version, &name, entry, &procs) {
                Ok((main, since_ticks)) => {
                    if self.adopt(&name, entry, main) {
                        adopted.push((since_ticks, name.clone()));
                    }
                }
                Err(why) => {
                    if entry.is_some() || !procs.is_empty() {
                        tracing::info!("{name}: not adopted ({why}): ending it cleanly");
                    }
                    self.end_cleanly(&name, entry, &procs);
                }
            }
        }
        adopted.sort();
        for (_, name) in adopted {
            self.graph.started(&name);
        }
        // An adopted job emits no `started` (it did when it started): the watches set up
        // now count it as started, as on a reload.
        self.assume_watches();
    }

    /// Marks `started JOB` / `stopped JOB` in every job's `start-on` from the jobs'
    /// states now, for watches set up after those events went by.
    pub(super) fn assume_watches(&mut self) {
        let up: BTreeMap<String, bool> = self
            .jobs
            .iter()
            .map(|(n, j)| (n.clone(), j.m.state() == State::Running))
            .collect();
        for job in self.jobs.values_mut() {
            if let Some(w) = &mut job.start_on {
                w.assume(|j| up.get(j).copied());
            }
        }
    }

    /// Whether job `name` can be adopted: its main process and its start time, or why not.
    fn adoptable(
        &mut self,
        version: u32,
        name: &str,
        entry: Option<&Entry>,
        procs: &[Leftover],
    ) -> Result<(Held, u64), &'static str> {
        let job = self.jobs.get_mut(name).ok_or("not configured")?;
        let entry = entry.ok_or("processes of it were started but not recorded")?;
        if entry.state != State::Running.as_str() || entry.goal != "start" {
            return Err("it was not running");
        }
        if entry.hook.is_some() {
            return Err("a hook of it was running");
        }
        if record::fingerprint_for(version, &job.spec) != entry.fingerprint {
            return Err("its configuration changed");
        }
        if job.spec.task {
            return Err("a task's exit status cannot be known once it is adopted");
        }
        if job.spec.pidfile.is_some() {
            return Err("it follows a pid file, whose handovers need the exit status");
        }
        let main = entry.main.ok_or("it had no main process")?;
        let found = procs
            .iter()
            .find(|l| l.pid == main.pid && l.start_time == main.start_time)
            .ok_or("its main process is gone")?;
        // Every other process left must be the main's: a descendant of it.
        let by_pid: HashMap<u32, &Leftover> = procs.iter().map(|l| (l.pid, l)).collect();
        let under_main = |l: &Leftover| {
            let mut cur = l.pid;
            for _ in 0..64 {
                if cur == main.pid {
                    return true;
                }
                match by_pid.get(&cur) {
                    Some(p) => cur = p.ppid,
                    None => return false,
                }
            }
            false
        };
        if !procs.iter().all(under_main) {
            return Err("a process of it is not the main process's");
        }
        let group = (main.pgid > 1).then_some(Pgid(main.pgid));
        Ok((
            Held {
                pid: found.pid,
                start_time: found.start_time,
                group,
            },
            found.start_time,
        ))
    }

    /// Opens a watch on `h` and checks, after opening it, that the process is still the
    /// one recorded: then its end will be seen. False if it is not (gone, or not it).
    pub(super) fn watch_held(&mut self, name: &str, h: Held) -> bool {
        let exit = match self.os.watch_exit(h.pid) {
            Ok(exit) => exit,
            Err(e) => {
                tracing::debug!("{name}: cannot watch process {}: {e}", h.pid);
                return false;
            }
        };
        if self.os.start_time(h.pid) != Some(h.start_time) {
            return false;
        }
        let tx = self.internal.clone();
        let job = name.to_string();
        let pid = h.pid;
        tokio::spawn(async move {
            exit.await;
            let _ = tx.send(Internal::Gone { job, pid });
        });
        self.held.entry(name.to_string()).or_default().push(h);
        true
    }

    /// Adopts `main` as job `name`'s running main process; false if it ended meanwhile
    /// (then the job is ended cleanly instead).
    fn adopt(&mut self, name: &str, entry: Option<&Entry>, main: Held) -> bool {
        if !self.watch_held(name, main) {
            tracing::info!("{name}: its main process {} ended meanwhile", main.pid);
            self.end_cleanly(name, entry, &[]);
            return false;
        }
        let age = self.os.age(main.start_time);
        let now = self.os.now();
        let since = now.mono.checked_sub(age).unwrap_or(now.mono);
        tracing::info!(
            "{name}: adopted main process {} (up {})",
            main.pid,
            humantime::format_duration(Duration::from_secs(age.as_secs()))
        );
        self.feed(
            name,
            Input::Resume {
                pid: main.pid,
                since,
                runs: entry.map_or(1, |e| e.runs),
                restarts: entry.map_or(0, |e| e.restarts),
            },
        );
        true
    }

    /// Ends what is left of job `name` (kill-signal, kill-timeout, SIGKILL, post-stop)
    /// and lets it follow its goal.
    fn end_cleanly(&mut self, name: &str, entry: Option<&Entry>, procs: &[Leftover]) {
        let groups = recorded_groups(entry);
        for l in procs {
            let h = held_of(l, &groups);
            self.watch_held(name, h);
        }
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let goal = match entry {
            Some(e) if e.goal == "start" && !job.m.manual_stop() => Goal::Start,
            _ => Goal::Stop,
        };
        let post_stop = entry.is_none_or(|e| {
            ![State::Starting, State::PostStop, State::Waiting]
                .iter()
                .any(|s| s.as_str() == e.state)
        });
        let pid = self.held.get(name).and_then(|h| h.first()).map(|h| h.pid);
        if let Some(pid) = pid {
            tracing::info!(
                "{name}: ending {} process(es) left of it, process {pid} first",
                self.held.get(name).map_or(0, Vec::len)
            );
        }
        self.feed(
            name,
            Input::Recover {
                pid,
                post_stop: post_stop && (entry.is_some() || pid.is_some()),
                goal,
                restarts: entry.map_or(0, |e| e.restarts),
            },
        );
    }

    /// A job that is gone from the configuration: what is left of it gets its recorded
    /// kill-signal and, after its kill-timeout, SIGKILL. No post-stop: it is gone too.
    fn end_removed(&mut self, name: &str, entry: Option<&Entry>, procs: &[Leftover]) {
        if procs.is_empty() {
            return;
        }
        let sig = entry
            .and_then(|e| Signal::try_from(e.kill_signal).ok())
            .unwrap_or(Signal::SIGTERM);
        let timeout = Duration::from_millis(entry.map_or(5000, |e| e.kill_timeout_ms))
            .min(Duration::from_secs(86_400));
        tracing::info!(
            "{name}: no longer configured: ending the {} process(es) left of it",
            procs.len()
        );
        let groups = recorded_groups(entry);
        let mut held = Vec::new();
        for l in procs {
            let h = held_of(l, &groups);
            self.signal_held(&h, sig);
            self.signal_held(&h, Signal::SIGCONT);
            held.push(h);
        }
        let now = self.os.now().mono;
        self.timers.arm_in(now, timeout, Timer::Leftovers { held });
    }

    /// The kill-timeout of a removed job's leftovers: SIGKILL to those still there.
    pub(super) fn kill_leftovers(&mut self, held: Vec<Held>) {
        for h in held {
            if self.os.start_time(h.pid) == Some(h.start_time) {
                self.signal_held(&h, Signal::SIGKILL);
            }
        }
    }

    fn signal_held(&self, h: &Held, sig: Signal) {
        match h.group {
            Some(g) => self.os.signal_group(g, sig),
            None => self.os.signal_pid(h.pid, sig),
        }
    }

    /// A signal for the main process of a job whose processes are held (not children):
    /// it goes to each of them. False if the job has none.
    pub(super) fn signal_held_job(&self, name: &str, sig: Signal) -> bool {
        let Some(held) = self.held.get(name) else {
            return false;
        };
        for h in held {
            self.signal_held(h, sig);
        }
        true
    }

    /// A held process `pid` of `job` exited (its pidfd said so). Once none of the job's
    /// is left, the job's main process has ended, with no status to be had.
    pub(super) fn held_gone(&mut self, job: &str, pid: u32) {
        let Some(held) = self.held.get_mut(job) else {
            return;
        };
        let Some(i) = held.iter().position(|h| h.pid == pid) else {
            return;
        };
        let h = held.remove(i);
        if !held.is_empty() {
            return;
        }
        self.held.remove(job);
        let Some(j) = self.jobs.get(job) else {
            return;
        };
        if j.m.main_pid().is_none() {
            return;
        }
        if j.m.state() == State::Killed {
            tracing::info!("{job}: what was left of it is gone");
        } else {
            tracing::warn!("{job}: adopted main process {pid} {}", ProcessEnd::Unknown);
        }
        // Whatever it left in its group goes with it, as for a child.
        if !j.follows()
            && let Some(g) = h.group
        {
            self.os.signal_group(g, Signal::SIGKILL);
        }
        self.feed(job, Input::Exited(Proc::Main, ProcessEnd::Unknown));
    }
}

/// A leftover to watch, with its process group when the group is its own or one the
/// record names (a group it merely joined is someone else's to signal).
fn held_of(l: &Leftover, groups: &[u32]) -> Held {
    let group = (l.pgid == l.pid || groups.contains(&l.pgid)).then_some(Pgid(l.pgid));
    Held {
        pid: l.pid,
        start_time: l.start_time,
        group,
    }
}

fn recorded_groups(entry: Option<&Entry>) -> Vec<u32> {
    entry
        .into_iter()
        .flat_map(|e| e.main.iter().chain(e.hook.iter().map(|(_, p)| p)))
        .map(|p| p.pgid)
        .filter(|g| *g > 1)
        .collect()
}

fn goal_word(g: Goal) -> &'static str {
    match g {
        Goal::Start => "start",
        Goal::Stop => "stop",
    }
}
