//! Checks at run time: each check of a running job runs on its own timer in a task of
//! its own (a hung probe is cut at its timeout and delays nothing else); the outcomes
//! come back to the loop, which applies the policy (failures within the last checks)
//! and takes the action, unless the job is unmonitored.
//!
//! A check judges only a process that had its chance: after the job enters `running`
//! (a first start, a respawn, a restart by a check) its first run comes one `every`
//! later, or `grace` later if that is longer. A `flock` check runs first when the lock
//! has been seen held since then (and not before `grace`); a lock nobody takes within
//! its `deadline` is reported, once, and restarts nothing. Each result is tagged with
//! the start of the job it belongs to: a result of an earlier start is dropped, and one
//! start is restarted by its checks once at most.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use checks::{Outcome, Probe, Target};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::alert::{self, Kind};
use crate::config::check::{Action, CheckSpec};
use crate::job::{CheckRestart, State};
use crate::logtext::Esc;

use super::alerts::About;
use super::reports::Then;
use super::run::RunRequest;
use super::{Daemon, Internal, Job};

/// Whose check it is: the host's (guardian.toml) or a job's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckOwner {
    Host,
    Job(String),
}

/// One check of a job, at run time.
pub(crate) struct CheckRt {
    pub spec: CheckSpec,
    /// The last checks' results, newest last, at most `within` of them.
    window: VecDeque<bool>,
    /// The policy has said "failing" and no check has passed since.
    pub failing: bool,
    /// Which turn into failing the current one is (for reminders).
    pub episode: u64,
    /// The last outcome and how many runs there were: the check's task writes it for
    /// a pass that cannot change the verdict, the loop for the outcomes it is sent.
    slot: Arc<Slot>,
    task: Option<AbortHandle>,
    /// A flock check's lock watcher thread.
    watcher: Option<crate::process::lock_watch::LockWatcher>,
    generation: u64,
    /// The start of the job (its run count) the running task checks.
    pub start: u64,
    /// When the current run of failures began (for reports).
    failing_since: Option<Instant>,
    /// The next launch tells the loop of its first passes too (which it otherwise
    /// keeps to the slot): an alert that fires in Alertmanager waits for one.
    pub tell_passes: bool,
    /// `runs()` when the running task was launched.
    launched_runs: u64,
}

impl Drop for CheckRt {
    fn drop(&mut self) {
        self.halt();
    }
}

impl CheckRt {
    pub fn new(spec: CheckSpec) -> Self {
        CheckRt {
            spec,
            window: VecDeque::new(),
            failing: false,
            episode: 0,
            slot: Arc::new(Slot::default()),
            task: None,
            watcher: None,
            generation: 0,
            start: 0,
            failing_since: None,
            tell_passes: false,
            launched_runs: 0,
        }
    }

    /// Whether every pass of the check goes to the loop (see `Slot::watched`).
    pub fn watch(&self, on: bool) {
        self.slot.watched.store(on, Ordering::Relaxed);
    }

    /// Whether the running task's last outcome passed.
    pub fn passed_since_launch(&self) -> bool {
        self.running() && self.runs() > self.launched_runs && self.last_passed() == Some(true)
    }

    /// The last outcome, and when it came.
    pub fn last(&self) -> Option<(Outcome, SystemTime)> {
        lock(&self.slot.last).clone()
    }

    /// Whether the last outcome passed, and how long it took (None before the first):
    /// what `/metrics` says of it, without a copy of the outcome.
    pub fn last_brief(&self) -> Option<(bool, std::time::Duration)> {
        lock(&self.slot.last)
            .as_ref()
            .map(|(o, _)| (o.passed, o.latency))
    }

    /// Whether the last outcome passed (None before the first).
    pub fn last_passed(&self) -> Option<bool> {
        lock(&self.slot.last).as_ref().map(|(o, _)| o.passed)
    }

    /// How many outcomes the check has had since the daemon started.
    pub fn runs(&self) -> u64 {
        self.slot.runs.load(Ordering::Relaxed)
    }

    /// How many of those outcomes failed.
    pub fn failures(&self) -> u64 {
        self.slot.failures.load(Ordering::Relaxed)
    }

    /// Takes the runs counted by the image of the daemon before an exec.
    pub fn carry_runs(&self, runs: u64) {
        self.slot.runs.fetch_add(runs, Ordering::Relaxed);
    }

    fn halt(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(mut w) = self.watcher.take() {
            w.stop();
        }
    }

    /// Starts the check's task (and, for a flock check, the thread that waits on the
    /// lock), with a fresh count; a new generation tells its results from old ones.
    /// `start` is the job's start the task checks, and `since` when the job entered
    /// `running` (None for host checks, which run first after `grace` only).
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        ctx: checks::Context,
        default_every: Duration,
        pid: SharedPid,
        owner: CheckOwner,
        idx: usize,
        start: u64,
        since: Option<Instant>,
        tx: mpsc::UnboundedSender<Internal>,
    ) {
        self.halt();
        self.generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
        self.start = start;
        self.launched_runs = self.runs();
        self.rearm();
        let (poke_tx, poke_rx) = mpsc::unbounded_channel();
        let mut lock_seen = None;
        if let Probe::Flock(f) = &self.spec.probe {
            let seen = Arc::new(AtomicBool::new(false));
            self.watcher = flock_watcher(f.path.clone(), poke_tx.clone(), seen.clone());
            lock_seen = Some(seen);
        }
        let every = self.spec.every(default_every);
        let task = tokio::spawn(check_loop(CheckLoop {
            slot: self.slot.clone(),
            within: self.spec.within.max(1),
            since_failed: if std::mem::take(&mut self.tell_passes) {
                0
            } else {
                u32::MAX
            },
            ctx,
            probe: self.spec.probe.clone(),
            every,
            timeout: self.spec.timeout(default_every),
            gate: Gate {
                since: since.unwrap_or_else(Instant::now),
                grace: self.spec.grace,
                lock_deadline: self.spec.lock_deadline(),
                wait_every: since.is_some(),
            },
            lock_seen,
            pid,
            owner,
            idx,
            generation: self.generation,
            start,
            tx,
            poke: poke_rx,
            _poke_keep: poke_tx,
        }));
        self.task = Some(task.abort_handle());
    }

    /// Forgets the failing state: the next failures count afresh.
    pub fn rearm(&mut self) {
        self.window.clear();
        self.failing = false;
        self.failing_since = None;
    }

    pub fn running(&self) -> bool {
        self.task.is_some()
    }

    /// What the policy makes of a new result: act when it tips into failing, note a
    /// recovery when it passes again.
    fn record(&mut self, passed: bool) -> Verdict {
        if passed {
            self.failing_since = None;
        } else if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
        }
        self.window.push_back(passed);
        while self.window.len() > self.spec.within as usize {
            self.window.pop_front();
        }
        let failed = self.window.iter().filter(|p| !**p).count() as u32;
        if passed && self.failing {
            self.failing = false;
            Verdict::Recovered
        } else if !passed && !self.failing && failed >= self.spec.failures {
            self.failing = true;
            self.episode = super::alerts::next_episode();
            // Acting starts a new count: after a restart, say, it takes as many
            // failures again to act again.
            self.window.clear();
            Verdict::Act
        } else {
            Verdict::Nothing
        }
    }
}

/// A check's last outcome, shared by its task and the loop.
#[derive(Default)]
struct Slot {
    last: Mutex<Option<(Outcome, SystemTime)>>,
    runs: AtomicU64,
    failures: AtomicU64,
    /// Someone waits for the check to pass (a rolling restart): every pass goes to
    /// the loop, not only those that may change the verdict.
    watched: AtomicBool,
}

impl Slot {
    fn put(&self, outcome: Outcome) {
        let now = SystemTime::now();
        if !outcome.passed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&self.last) = Some((outcome, now));
        self.runs.fetch_add(1, Ordering::Relaxed);
    }
}

/// The slot's lock: a holder that panicked left a whole value in it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Nothing,
    Act,
    Recovered,
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The job's main pid, shared with its check tasks (0: none).
pub(crate) type SharedPid = Arc<AtomicU32>;

impl Daemon {
    /// Keeps job `name`'s stat file that of its main process now.
    pub(super) fn sync_stat(&mut self, name: &str) {
        if let Some(job) = self.jobs.get_mut(name) {
            job.sync_stat();
        }
    }

    /// Starts the checks of a job that is running, stops those of a job that is not.
    pub(super) fn sync_checks(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        job.main_pid_shared
            .store(job.m.main_pid().unwrap_or(0), Ordering::Relaxed);
        let running = job.m.state() == State::Running;
        // Checks of an earlier start (a stop called off while pre-stop ran keeps the
        // start) go on; a new start launches them afresh.
        let started = job
            .checks
            .iter()
            .any(|c| c.running() && c.start == job.m.runs());
        if running && !started && !job.checks.is_empty() {
            self.start_checks(name);
        } else if !running && let Some(job) = self.jobs.get_mut(name) {
            for c in &mut job.checks {
                c.halt();
                c.window.clear();
                c.failing = false;
            }
        }
    }

    fn start_checks(&mut self, name: &str) {
        let default_every = self.config.settings.every;
        let ctx_needed = self.jobs.get(name).is_some_and(|j| !j.checks.is_empty());
        if !ctx_needed {
            return;
        }
        let count = self.jobs.get(name).map_or(0, |j| j.checks.len());
        for idx in 0..count {
            let owner = CheckOwner::Job(name.to_string());
            let ctx = match self.probe_context_of(&owner) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{name}: checks cannot run: {e}");
                    return;
                }
            };
            let tx = self.internal.clone();
            let Some(job) = self.jobs.get_mut(name) else {
                return;
            };
            let pid = job.main_pid_shared.clone();
            let (start, since) = (job.m.runs(), job.m.running_since());
            let c = &mut job.checks[idx];
            if !self.am_firing.is_empty() {
                c.tell_passes = self.am_firing.contains_key(&super::alerts::Lasting {
                    host: false,
                    job: name.to_string(),
                    check: Some(c.spec.name.clone()),
                });
            }
            let since = Some(since.unwrap_or_else(Instant::now));
            c.launch(ctx, default_every, pid, owner, idx, start, since, tx);
        }
    }

    /// Host checks (guardian.toml) run for the daemon's whole life.
    pub(super) fn start_host_checks(&mut self) {
        let default_every = self.config.settings.every;
        let specs = self.config.settings.checks.clone();
        for (idx, spec) in specs.into_iter().enumerate() {
            let ctx = match self.probe_context_of(&CheckOwner::Host) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("host checks cannot run: {e}");
                    return;
                }
            };
            let mut c = CheckRt::new(spec);
            let tx = self.internal.clone();
            c.launch(
                ctx,
                default_every,
                Arc::new(AtomicU32::new(0)),
                CheckOwner::Host,
                idx,
                0,
                None,
                tx,
            );
            self.host_checks.push(c);
        }
    }

    /// A check's outcome arrives: `start` is the job's start it belongs to; `unheld`
    /// says a flock check's lock was not held by its deadline.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn checked(
        &mut self,
        owner: CheckOwner,
        idx: usize,
        generation: u64,
        start: u64,
        unheld: bool,
        outcome: Outcome,
    ) {
        let name = match owner {
            CheckOwner::Host => return self.host_checked(idx, generation, outcome),
            CheckOwner::Job(name) => name,
        };
        let name = name.as_str();
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let Some(c) = job
            .checks
            .get_mut(idx)
            .filter(|c| c.generation == generation && c.running())
        else {
            return;
        };
        if job.m.state() != State::Running || start != job.m.runs() || c.start != start {
            return;
        }
        if unheld {
            // Restarting a job that never takes its lock would not make it take it: say
            // so once, and keep waiting for the lock.
            let check = c.spec.name.clone();
            let reason = outcome.reason().into_owned();
            c.slot.put(outcome);
            if !c.failing {
                c.failing = true;
                c.episode = super::alerts::next_episode();
                let episode = c.episode;
                self.failure_lasts(name, Some(&check), episode);
                tracing::warn!("{name}: check {check}: {reason}");
                self.check_alert(
                    name,
                    &check,
                    Kind::CheckFailed,
                    &reason,
                    Some(alert::Action::Alert),
                );
            }
            return;
        }
        let verdict = c.record(outcome.passed);
        let check = c.spec.name.clone();
        let action = c.spec.action.clone();
        // Passing again after the restart its failure caused: what fires in
        // Alertmanager for it ends.
        let passed = (outcome.passed && verdict == Verdict::Nothing && !self.am_firing.is_empty())
            .then(|| outcome.reason().into_owned());
        if verdict == Verdict::Act {
            // Failing now, whether or not it acts: reminders of it, for who wants them.
            let episode = c.episode;
            self.failure_lasts(name, Some(&check), episode);
        }
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        job.health_seen(idx, start, outcome.passed);
        let Some(c) = job.checks.get_mut(idx) else {
            return;
        };
        let (failures, within) = (c.spec.failures, c.spec.within);
        let slot = c.slot.clone();
        let monitored = job.m.monitored();
        match verdict {
            Verdict::Nothing => {
                if !outcome.passed {
                    tracing::debug!(
                        "{name}: check {} failed: {}",
                        Esc(&check),
                        Esc(&outcome.reason())
                    );
                }
            }
            Verdict::Recovered if !monitored => {
                tracing::info!(
                    "{name}: check {} recovered: {}",
                    Esc(&check),
                    Esc(&outcome.reason())
                );
            }
            Verdict::Recovered => {
                self.check_alert(name, &check, Kind::CheckRecovered, &outcome.reason(), None);
            }
            Verdict::Act if !monitored => {
                tracing::warn!(
                    "{name}: check {} failed ({failures} of the last {within}): {}; unmonitored, so no {}",
                    Esc(&check),
                    Esc(&outcome.reason()),
                    action.as_str()
                );
            }
            Verdict::Act if action == Action::Restart && job.m.check_restart_under_way(start) => {
                // Another check of this start asked already: one start, one restart.
                tracing::debug!(
                    "{name}: check {check} failed too: {}; a restart is under way",
                    outcome.reason()
                );
            }
            Verdict::Act => {
                tracing::warn!(
                    "{name}: check {} failed ({failures} of the last {within}): {}; {}",
                    Esc(&check),
                    Esc(&outcome.reason()),
                    action.as_str()
                );
                let failing_secs = c.failing_since.map(|t| t.elapsed().as_secs_f64());
                self.act(name, &check, &action, &outcome.reason(), failing_secs);
            }
        }
        slot.put(outcome);
        if let Some(reason) = passed {
            self.am_passed(name, &check, &reason);
        }
    }

    /// A host check's outcome: host checks only alert.
    fn host_checked(&mut self, idx: usize, generation: u64, outcome: Outcome) {
        let Some(c) = self
            .host_checks
            .get_mut(idx)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        let verdict = c.record(outcome.passed);
        let check = c.spec.name.clone();
        let reason = (verdict != Verdict::Nothing).then(|| outcome.reason().into_owned());
        c.slot.put(outcome);
        let (kind, action) = match verdict {
            Verdict::Act => (Kind::CheckFailed, Some(alert::Action::Alert)),
            Verdict::Recovered => (Kind::CheckRecovered, None),
            Verdict::Nothing => return,
        };
        self.alert(
            About::Host,
            kind,
            Some(&check),
            reason.unwrap_or_default(),
            action,
        );
    }

    fn act(
        &mut self,
        name: &str,
        check: &str,
        action: &Action,
        reason: &str,
        failing_secs: Option<f64>,
    ) {
        // A restart or a stop first takes a report on the job (`super::reports`), then
        // alerts with its summary and acts.
        if !matches!(action, Action::Restart | Action::Stop) {
            self.check_alert(name, check, Kind::CheckFailed, reason, Some(action.into()));
        }
        match action {
            Action::Restart => {
                let now = self.now();
                let Some(job) = self.jobs.get_mut(name) else {
                    return;
                };
                if let CheckRestart::Unmonitor(limit) = job.m.check_restart(now) {
                    // Restarting does not help: stop acting, say so, keep it running.
                    let why = format!(
                        "restarted {} times within {} by its checks; unmonitored",
                        limit.count,
                        humantime::format_duration(limit.interval)
                    );
                    tracing::error!("{name}: {why}");
                    self.check_alert(
                        name,
                        check,
                        Kind::Unmonitored,
                        &format!("{reason}; {why}"),
                        Some(alert::Action::Unmonitor),
                    );
                    self.save_state();
                    return;
                }
                let start = job.m.runs();
                self.take_report(
                    name,
                    format!("check {check} failed: {reason}; action restart"),
                    failing_secs,
                    Then::Restart {
                        start,
                        check: check.to_string(),
                        reason: reason.to_string(),
                    },
                );
            }
            Action::Stop => {
                // Taken down on purpose: it stays down, across daemon restarts too, until
                // a person starts it, as after `guardian stop`.
                if let Some(job) = self.jobs.get_mut(name) {
                    job.m.set_manual_stop(true);
                }
                self.save_state();
                self.take_report(
                    name,
                    format!("check {check} failed: {reason}; action stop"),
                    failing_secs,
                    Then::Stop {
                        check: check.to_string(),
                        reason: reason.to_string(),
                    },
                );
            }
            Action::Alert => {}
            Action::Unmonitor => {
                if let Some(job) = self.jobs.get_mut(name) {
                    job.m.set_monitored(false);
                }
                self.save_state();
            }
            Action::Exec(program) => {
                let (reply, rx) = tokio::sync::oneshot::channel();
                self.run_request(RunRequest {
                    job: name.to_string(),
                    program: program.clone(),
                    extra_env: vec![
                        ("GUARDIAN_CHECK".into(), check.to_string()),
                        ("GUARDIAN_REASON".into(), reason.to_string()),
                    ],
                    timeout: Duration::from_secs(300),
                    reply,
                });
                let (job, check) = (name.to_string(), check.to_string());
                tokio::spawn(async move {
                    match rx.await {
                        Ok(Ok(ran)) => {
                            tracing::info!("{job}: action of check {}: {}", Esc(&check), ran.how)
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(
                                "{job}: action of check {} could not run: {}",
                                Esc(&check),
                                Esc(&e)
                            )
                        }
                        Err(_) => {}
                    }
                });
            }
        }
    }

    /// A job's check failed (and acted), recovered, or unmonitored its job: logged, and
    /// sent to whoever wants to know.
    pub(super) fn check_alert(
        &mut self,
        job: &str,
        check: &str,
        kind: Kind,
        reason: &str,
        action: Option<alert::Action>,
    ) {
        self.alert(
            About::Job(job),
            kind,
            Some(check),
            reason.to_string(),
            action,
        );
    }
}

/// When a job's check may first judge it.
struct Gate {
    /// When the job entered `running`.
    since: Instant,
    grace: Duration,
    /// `flock`: how long the lock may take to be held.
    lock_deadline: Duration,
    /// The first run waits one `every` too (a job's checks; not the host's).
    wait_every: bool,
}

struct CheckLoop {
    /// Where a pass that changes nothing goes, instead of a message to the loop.
    slot: Arc<Slot>,
    /// The check's `within`: after this many passes in a row (since the last failure
    /// this task sent), a pass cannot change the verdict.
    within: u32,
    /// Passes in a row since the last failure (or unheld lock) this task sent.
    since_failed: u32,
    ctx: checks::Context,
    probe: Probe,
    every: Duration,
    timeout: Duration,
    gate: Gate,
    /// `flock`: set once the lock has been seen held.
    lock_seen: Option<Arc<AtomicBool>>,
    pid: SharedPid,
    owner: CheckOwner,
    idx: usize,
    generation: u64,
    start: u64,
    tx: mpsc::UnboundedSender<Internal>,
    poke: mpsc::UnboundedReceiver<()>,
    /// Keeps the poke channel open when no watcher holds a sender.
    _poke_keep: mpsc::UnboundedSender<()>,
}

impl CheckLoop {
    /// Hands an outcome on: a pass after `within` passes in a row cannot change what
    /// the policy says (no failure is left in its window, and it is not failing), so it
    /// only goes to the check's slot; anything else goes to the loop, to be judged.
    /// False: the loop is gone.
    fn record(&mut self, outcome: Outcome) -> bool {
        if outcome.passed
            && self.since_failed >= self.within
            && !self.slot.watched.load(Ordering::Relaxed)
        {
            self.slot.put(outcome);
            return true;
        }
        self.send(outcome, false)
    }

    fn send(&mut self, outcome: Outcome, unheld: bool) -> bool {
        self.since_failed = if outcome.passed && !unheld {
            self.since_failed.saturating_add(1)
        } else {
            0
        };
        let msg = Internal::Checked {
            owner: self.owner.clone(),
            idx: self.idx,
            generation: self.generation,
            start: self.start,
            unheld,
            outcome,
        };
        self.tx.send(msg).is_ok()
    }

    /// Waits until the check may run first. False: the loop is to end.
    async fn gate(&mut self) -> bool {
        let g = &self.gate;
        let (since, grace, lock_deadline) = (g.since, g.grace, g.lock_deadline);
        let Some(seen) = self.lock_seen.clone() else {
            // One `every` after the start, or `grace` if that is later.
            let wait = if g.wait_every {
                self.every.max(grace)
            } else {
                grace
            };
            tokio::time::sleep_until(later(since, wait).into()).await;
            return true;
        };
        tokio::time::sleep_until(later(since, grace).into()).await;
        let deadline = later(since, lock_deadline.max(grace));
        let mut told = false;
        while !seen.load(Ordering::Relaxed) {
            tokio::select! {
                p = self.poke.recv() => {
                    if p.is_none() {
                        return false;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()), if !told => {
                    told = true;
                    let reason = format!(
                        "{}: no process has held the lock since the job started ({} ago)",
                        self.probe.describe(),
                        humantime::format_duration(Duration::from_secs(
                            since.elapsed().as_secs()
                        ))
                    );
                    if !self.send(Outcome::fail(reason, Duration::ZERO), true) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// `d` after `t`; durations too long for the clock end in 30 years.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(30 * 365 * 86_400)))
        .unwrap_or(t)
}

async fn check_loop(mut l: CheckLoop) {
    if !l.gate().await {
        return;
    }
    let every = l.every.max(Duration::from_millis(1));
    let mut target = Target::default();
    // One timer for the whole loop: it waits for the next tick, then, reset, times
    // the run.
    let mut next = Instant::now();
    let timer = tokio::time::sleep_until(next.into());
    tokio::pin!(timer);
    loop {
        timer.as_mut().reset(next.into());
        tokio::select! {
            () = &mut timer => {}
            Some(()) = l.poke.recv() => {}
        }
        let pid = l.pid.load(Ordering::Relaxed);
        target.pid = (pid != 0).then_some(pid);
        let outcome = l
            .probe
            .run_timed(&l.ctx, &mut target, l.timeout, timer.as_mut())
            .await;
        if !l.record(outcome) {
            return;
        }
        // The next tick; ticks missed while a run took long are skipped (a poke's run
        // leaves the schedule as it was).
        let now = Instant::now();
        if next <= now {
            next = next_tick(next, every, now);
        }
    }
}

/// The first of `from + every`, `from + 2 every`, ... after `now`.
fn next_tick(from: Instant, every: Duration, now: Instant) -> Instant {
    let behind = now.saturating_duration_since(from).as_nanos();
    let step = every.as_nanos().max(1);
    let ahead = step.saturating_mul(behind / step + 1);
    let ahead = Duration::from_nanos(u64::try_from(ahead).unwrap_or(u64::MAX));
    later(from, ahead)
}

/// A thread that tells when a lock on `path` becomes held and when every holder let
/// go (`process::lock_watch`, which polls nothing), and pokes the check so that it runs
/// at once: the moment the last holder is gone is seen as it happens. The first time it
/// sees the lock held it sets `seen` (and pokes): the check is armed. It ends when the
/// check stops.
fn flock_watcher(
    path: String,
    poke: mpsc::UnboundedSender<()>,
    seen: Arc<AtomicBool>,
) -> Option<crate::process::lock_watch::LockWatcher> {
    use crate::process::lock_watch::{Change, LockWatcher};
    let report = move |change| match change {
        Change::Held => seen.swap(true, Ordering::Relaxed) || poke.send(()).is_ok(),
        Change::Released => poke.send(()).is_ok(),
    };
    match LockWatcher::spawn(path, report) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot watch the lock on a file: {e}");
            None
        }
    }
}

impl Job {
    /// healthy, unhealthy or unknown: from the checks' last outcomes while running.
    pub(super) fn health(&self) -> checks::Health {
        if self.m.state() != State::Running {
            return checks::Health::Unknown;
        }
        checks::Health::of_passed(self.checks.iter().filter_map(CheckRt::last_passed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(failures: u32, within: u32) -> CheckRt {
        CheckRt::new(CheckSpec {
            name: "t".into(),
            probe: Probe::Flock(checks::FlockProbe { path: "/x".into() }),
            every: None,
            timeout: None,
            failures,
            within,
            grace: Duration::ZERO,
            deadline: None,
            action: Action::Restart,
        })
    }

    #[test]
    fn failures_in_a_row() {
        let mut c = rt(3, 3);
        assert_eq!(c.record(false), Verdict::Nothing);
        assert_eq!(c.record(false), Verdict::Nothing);
        assert_eq!(c.record(true), Verdict::Nothing);
        assert_eq!(c.record(false), Verdict::Nothing);
        assert_eq!(c.record(false), Verdict::Nothing);
        assert_eq!(c.record(false), Verdict::Act);
        // One action per failing period...
        assert_eq!(c.record(false), Verdict::Nothing);
        assert_eq!(c.record(false), Verdict::Nothing);
        assert_eq!(c.record(false), Verdict::Nothing);
        // ...and a recovery when it passes.
        assert_eq!(c.record(true), Verdict::Recovered);
        assert_eq!(c.record(true), Verdict::Nothing);
    }

    #[test]
    fn failures_within_a_window() {
        let mut c = rt(2, 4);
        assert_eq!(c.record(false), Verdict::Nothing);
        assert_eq!(c.record(true), Verdict::Nothing);
        assert_eq!(c.record(true), Verdict::Nothing);
        assert_eq!(c.record(false), Verdict::Act, "2 failures among the last 4");
        let mut c = rt(2, 3);
        c.record(false);
        c.record(true);
        c.record(true);
        assert_eq!(
            c.record(false),
            Verdict::Nothing,
            "the first failure left the window"
        );
    }
}
