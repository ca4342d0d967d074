//! The job lifecycle as a pure state machine: `(state, input) -> (state, effects)`.
//!
//! Nothing here spawns, signals or sleeps. The daemon feeds in what happened (a command,
//! a process that was spawned or exited, a timer) and carries out the [`Effect`]s; unit
//! tests drive the same machine without a single process.
//!
//! The states and guarantees are Upstart's: the main process runs only after pre-start
//! succeeded, post-stop runs once for every start (also when a stop comes during pre-start),
//! the job is `running` only once post-start finished, and pre-stop runs only on a
//! requested stop, before the kill.

pub mod handover;
mod policy;
mod rate;
pub mod readiness;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde::Serialize;

pub use policy::Policy;
pub use rate::{Rate, RateWindow};
pub use readiness::{Readiness, ReadyEffect, ReadyInput};

use crate::config::ExitMatch;
use crate::config::signal::name as signal_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Start,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Waiting,
    Starting,
    PreStart,
    Spawned,
    PostStart,
    Running,
    PreStop,
    Stopping,
    Killed,
    PostStop,
    /// The respawn limit gave up; stays so until the next `start`.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::PreStart => "pre-start",
            State::Spawned => "spawned",
            State::PostStart => "post-start",
            State::Running => "running",
            State::PreStop => "pre-stop",
            State::Stopping => "stopping",
            State::Killed => "killed",
            State::PostStop => "post-stop",
            State::Failed => "failed",
        }
    }

    /// At rest: nothing runs and nothing will until a command or event says so.
    pub fn is_down(self) -> bool {
        matches!(self, State::Waiting | State::Failed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The processes of a job's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proc {
    Main,
    PreStart,
    PostStart,
    PreStop,
    PostStop,
}

impl Proc {
    pub fn as_str(self) -> &'static str {
        match self {
            Proc::Main => "main",
            Proc::PreStart => "pre-start",
            Proc::PostStart => "post-start",
            Proc::PreStop => "pre-stop",
            Proc::PostStop => "post-stop",
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessEnd {
    Exited(i32),
    Signaled(Signal),
    /// It ended, but how is not knowable: a process adopted from a daemon that died is
    /// not guardian's child, and its exit is seen through a pidfd, without a status.
    /// Never a normal exit.
    Unknown,
}

impl ProcessEnd {
    pub fn success(self) -> bool {
        self == ProcessEnd::Exited(0)
    }

    fn matches(self, normal: &[ExitMatch]) -> bool {
        normal.iter().any(|m| match (m, self) {
            (ExitMatch::Code(c), ProcessEnd::Exited(e)) => *c == e,
            (ExitMatch::Signal(s), ProcessEnd::Signaled(g)) => *s == g,
            _ => false,
        })
    }
}

impl fmt::Display for ProcessEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessEnd::Exited(c) => write!(f, "exited {c}"),
            ProcessEnd::Signaled(s) => write!(f, "killed by SIG{}", signal_name(*s)),
            ProcessEnd::Unknown => f.write_str("exited, status unknown"),
        }
    }
}

/// A moment, as the caller read it: the machine never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For durations and timers.
    pub mono: Instant,
    /// For what people are shown (when a failure happened).
    pub wall: SystemTime,
}

impl Now {
    /// Reads both clocks: for the machine's callers, once per input.
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `d` later on both clocks (unchanged where a clock cannot go that far).
    pub fn later(self, d: Duration) -> Now {
        Now {
            mono: self.mono.checked_add(d).unwrap_or(self.mono),
            wall: self.wall.checked_add(d).unwrap_or(self.wall),
        }
    }
}

/// Which failure of a job this is: each failure recorded gets the next id, so that two
/// failures are never taken for one (as two at the same wall-clock time could be).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailureId(std::num::NonZeroU64);

/// What kind of thing went wrong with a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// It ended as it should not have (`status` says how).
    Ended,
    /// It could not be spawned.
    SpawnFailed,
    /// It did not become ready.
    NotReady,
}

/// Why a run of the job went wrong: which process, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub id: FailureId,
    pub process: Proc,
    pub kind: FailureKind,
    pub status: String,
    /// How the process ended, when it ended (not for spawn failures or readiness).
    pub end: Option<ProcessEnd>,
    pub at: SystemTime,
}

/// Upstart's events, emitted as the job moves through its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Starting,
    Started,
    Stopping,
    Stopped { failed: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The goal becomes start (a command, or the daemon starting up).
    Start,
    /// The goal becomes stop: a requested stop.
    Stop,
    /// Stop, then start again.
    Restart,
    /// The process asked for by [`Effect::Spawn`] is running with this pid.
    Spawned(Proc, u32),
    /// The process asked for by [`Effect::Spawn`] could not be started.
    SpawnFailed(Proc),
    Exited(Proc, ProcessEnd),
    /// The kill timer armed with this generation fired.
    KillTimeout(u64),
    /// The jobs that the `starting` / `stopping` event started or stopped have finished
    /// doing so: the job may go on.
    Proceed,
    /// The main process is ready (it forked, wrote its pid file, said READY=1, stopped
    /// itself, or its readiness probe passed).
    Ready,
    /// The main process did not become ready; the reason is recorded by the caller.
    NotReady,
    /// The main process is now this one (a daemon's fork, a pid file's new pid).
    Adopt(u32),
    /// The main process handed over to one not known yet (a daemon whose pid file is
    /// still to come).
    Detach,
    /// The respawn timer armed with this generation fired.
    RespawnDue(u64),
    /// The daemon started again after its own crash and adopts this job's main process
    /// `pid`, found alive and ready as recorded: the job is `running` (goal start) since
    /// `since`, with the counts recorded. Only for a job at rest.
    Resume {
        pid: u32,
        since: Instant,
        runs: u64,
        restarts: u64,
    },
    /// The daemon started again after its own crash and ends what is left of this job's
    /// last run cleanly before it follows `goal`: with `pid` (what is left, seen by the
    /// daemon as one main process) the job is `killed` (kill-signal, kill-timeout,
    /// SIGKILL); then post-stop runs, unless `post_stop` is false (the run's post-stop
    /// had begun already), and the job starts again if `goal` is start. Only for a job at
    /// rest.
    Recover {
        pid: Option<u32>,
        post_stop: bool,
        goal: Goal,
        restarts: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Start this process; answer with `Spawned` or `SpawnFailed`.
    Spawn(Proc),
    /// Send a signal to this process's process group.
    Signal(Proc, Signal),
    /// After the kill timeout, feed back `KillTimeout(generation)`.
    ArmKillTimer(u64, Duration),
    Emit(Event),
    /// The respawn limit was reached: the job is given up on.
    GaveUp,
    /// Find out when the main process is ready; answer `Ready` or `NotReady`.
    AwaitReady,
    /// The job waits this long before it is respawned: after it, feed back
    /// `RespawnDue(generation)`.
    ArmRespawnTimer(u64, Duration),
}

/// Who starts a job that nobody named: see [`Machine::may_autostart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoStart {
    /// The daemon: at its start, on a reload that adds the job, on a `start-on` event.
    Daemon,
    /// `guardian start all`: a person's start, so a job that gave up may start again.
    StartAll,
}

/// What a client waits for after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Up,
    Down,
    /// Running again, after the run counted when the restart was asked for.
    UpAgain(u64),
}

/// How the wait for an [`Until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Running.
    Up,
    /// A task ran to completion.
    Completed,
    /// At rest, as asked.
    Down,
    /// Down for good without getting up: the last failure says why, and the state
    /// whether the job gave up (`failed`) or did not start.
    NotUp,
}

/// What the checks' `restart` action may do now: see [`Machine::check_restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRestart {
    /// Restart the job (feed [`Input::Restart`]).
    Restart,
    /// The checks restarted it `rate.count` times within `rate.interval` already:
    /// restarting does not help. The job is now unmonitored, and keeps running.
    Unmonitor(Rate),
}

/// What a job's respawns and its checks' restarts leave behind. Apart from the machine
/// and made on first need: most jobs never fail, and a machine's size counts once per
/// job (some 150 bytes each at 2,000 jobs).
#[derive(Debug, Clone, Default)]
struct Retries {
    /// When checks restarted the job, for its `restart-limit`.
    check_restarts: RateWindow,
    /// The start (run count) that checks last restarted the job for: once per start.
    restarted_start: Option<u64>,
    /// When the job was respawned, on a clock that leaves out the respawn delays.
    respawn_times: RateWindow,
    /// Runs in a row that ended (or never got to `running`) before `stable`.
    quick_failures: u32,
    /// The delay that the respawn now under way must wait, decided when main died.
    pending_delay: Option<Duration>,
    /// Waiting for a respawn: since when, and until when.
    backoff: Option<(Instant, Instant)>,
    backoff_gen: u64,
    /// Time spent waiting for respawn delays, left out of the respawn limit's clock.
    paused: Duration,
}

/// The retries of a machine that has none yet.
static NO_RETRIES: Retries = Retries {
    check_restarts: RateWindow::new(),
    restarted_start: None,
    respawn_times: RateWindow::new(),
    quick_failures: 0,
    pending_delay: None,
    backoff: None,
    backoff_gen: 0,
    paused: Duration::ZERO,
};

/// One job's lifecycle.
#[derive(Debug, Clone)]
pub struct Machine {
    policy: Policy,
    goal: Goal,
    state: State,
    main_pid: Option<u32>,
    /// The hook running now, with its pid once spawned.
    hook: Option<(Proc, Option<u32>)>,
    /// Why the latest run failed, kept until a later failure replaces it. Boxed: most
    /// jobs never fail, and a machine's size counts once per job.
    last_failure: Option<Box<Failure>>,
    /// Failures recorded so far: the id of the latest.
    failures: u64,
    /// Times the job went from stopping straight back to starting since the daemon started.
    restarts: u64,
    /// Times the job reached `running`.
    runs: u64,
    running_since: Option<Instant>,
    /// Stopped by a person (or a check's `stop`): nothing starts it but `guardian start`.
    manual_stop: bool,
    /// Checks act on their failures; false after `guardian unmonitor`, or when the
    /// checks' restart limit gave up.
    monitored: bool,
    /// How the main process ended while a hook was still running.
    main_end: Option<ProcessEnd>,
    /// This run failed (its `stopped` event says `failed`).
    run_failed: bool,
    restart_pending: bool,
    gave_up: bool,
    /// What respawns and check restarts keep: None until the job first needs it.
    retries: Option<Box<Retries>>,
    timer_gen: u64,
    /// The post-stop of this stop is not run (a recovery whose run was in post-stop).
    skip_post_stop: bool,
}

impl Machine {
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Takes a new policy (the job's file changed). Only for a job that is down.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The main process followed now.
    pub fn main_pid(&self) -> Option<u32> {
        self.main_pid
    }

    /// The hook running now, with its pid once spawned.
    pub fn hook(&self) -> Option<(Proc, Option<u32>)> {
        self.hook
    }

    /// The pid of one of the job's processes, while it runs.
    pub fn pid_of(&self, p: Proc) -> Option<u32> {
        match (p, self.hook) {
            (Proc::Main, _) => self.main_pid,
            (_, Some((hp, pid))) if hp == p => pid,
            _ => None,
        }
    }

    /// Why the latest run failed, kept until a later failure replaces it.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_deref()
    }

    /// Times the job went from stopping straight back to starting.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Times the job reached `running`: the current start's number while it runs.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// When the job last entered `running`, while it is there.
    pub fn running_since(&self) -> Option<Instant> {
        self.running_since
    }

    /// Stopped by a person: nothing starts it but `guardian start`.
    pub fn manual_stop(&self) -> bool {
        self.manual_stop
    }

    /// A person's `start` or `restart` lifts a manual stop; a `stop` (or a check's
    /// `stop` action) sets one.
    pub fn set_manual_stop(&mut self, stopped: bool) {
        self.manual_stop = stopped;
    }

    /// Whether the job's checks act on their failures.
    pub fn monitored(&self) -> bool {
        self.monitored
    }

    /// Monitors or unmonitors the job; returns whether that changed anything. Monitored
    /// again, earlier restarts by checks no longer count against their limit.
    pub fn set_monitored(&mut self, monitored: bool) -> bool {
        if self.monitored == monitored {
            return false;
        }
        self.monitored = monitored;
        if monitored && let Some(r) = self.retries.as_deref_mut() {
            r.check_restarts.clear();
        }
        true
    }

    /// May the job start without anyone naming it? Never a `manual` job, nor one a
    /// person stopped, nor one whose `start-on` does not hold (`start_on`: it holds, or
    /// the job has none); and the daemon does not bring back a job that gave up
    /// (`failed`), which only a person's start does.
    pub fn may_autostart(&self, start_on: bool, by: AutoStart) -> bool {
        !self.policy.manual
            && !self.manual_stop
            && start_on
            && (by == AutoStart::StartAll || self.state != State::Failed)
    }

    /// Up and about to stay so: running, with the goal start.
    pub fn settled_up(&self) -> bool {
        self.state == State::Running && self.goal == Goal::Start
    }

    /// Finished moving toward its goal: down for a stop (or a task, which is done when
    /// it has run), up or down for good for a start.
    pub fn settled(&self) -> bool {
        match self.goal {
            Goal::Start if !self.policy.task => self.settled_up() || self.state.is_down(),
            _ => self.state.is_down(),
        }
    }

    /// Whether a client's wait for `until` is over, and how it ended.
    pub fn reached(&self, until: Until) -> Option<Reached> {
        let down_for_good = self.state.is_down() && self.goal == Goal::Stop;
        let up = self.state == State::Running;
        match until {
            Until::Up if self.policy.task => {
                // A task is done when it has run to completion.
                if !down_for_good {
                    None
                } else if self.run_failed {
                    Some(Reached::NotUp)
                } else {
                    Some(Reached::Completed)
                }
            }
            Until::Up if up => Some(Reached::Up),
            Until::UpAgain(runs) if up && self.runs > runs => Some(Reached::Up),
            Until::Up | Until::UpAgain(_) => down_for_good.then_some(Reached::NotUp),
            Until::Down => self.is_down().then_some(Reached::Down),
        }
    }

    /// Whether checks have restarted the start `start` already: one start, one restart.
    pub fn check_restart_under_way(&self, start: u64) -> bool {
        self.retries().restarted_start == Some(start)
    }

    /// A check's `restart` action: may it restart the job now? Within the job's
    /// `restart-limit` it may, once for this start; past it, the job is unmonitored
    /// (and the count starts afresh), since restarting does not help.
    pub fn check_restart(&mut self, now: Now) -> CheckRestart {
        if let Some(limit) = self.policy.restart_limit {
            let rate = Rate::from(limit);
            let r = self.retries_mut();
            if !r.check_restarts.admit(rate, now.mono) {
                r.check_restarts.clear();
                self.monitored = false;
                return CheckRestart::Unmonitor(rate);
            }
        }
        let runs = self.runs;
        self.retries_mut().restarted_start = Some(runs);
        CheckRestart::Restart
    }

    /// Whether the kill timer armed with `generation` still stands (the process it was
    /// armed for has not gone in the meantime).
    pub fn kill_timer_armed(&self, generation: u64) -> bool {
        generation == self.timer_gen
    }

    /// Whether the current (or last) run failed.
    pub fn run_failed(&self) -> bool {
        self.run_failed
    }

    /// At rest: down, and no respawn is due either.
    pub fn is_down(&self) -> bool {
        self.state.is_down() && self.retries().backoff.is_none()
    }

    /// When the respawn the job waits for is due, if it waits for one.
    pub fn respawn_due(&self) -> Option<Instant> {
        self.retries().backoff.map(|(_, due)| due)
    }

    /// The respawn limit's clock: the time since an arbitrary start, less the time spent
    /// waiting between tries, so that a delay does not make a crash loop look slow.
    fn limit_clock(&self, now: Instant) -> Instant {
        now.checked_sub(self.retries().paused).unwrap_or(now)
    }

    /// How long to wait before respawning a main process that ended at `now`: nothing if
    /// its run lasted `stable`, else a delay that doubles with each quick failure in a
    /// row, from `initial` up to `max`.
    fn respawn_delay(&mut self, now: Instant) -> Duration {
        let d = self.policy.respawn_delay;
        let up = self
            .running_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if up >= d.stable {
            if let Some(r) = self.retries.as_deref_mut() {
                r.quick_failures = 0;
            }
            return Duration::ZERO;
        }
        let r = self.retries_mut();
        r.quick_failures = r.quick_failures.saturating_add(1);
        let doublings = r.quick_failures.saturating_sub(1).min(31);
        // A day at most: nothing waits longer, and the timer's instant cannot overflow.
        d.initial
            .saturating_mul(1u32 << doublings)
            .min(d.max)
            .min(Duration::from_secs(86_400))
    }

    /// Leaves a respawn delay (it is over, or cut short): its time leaves the limit's
    /// clock.
    fn end_backoff(&mut self, now: Instant) -> bool {
        let Some(r) = self.retries.as_deref_mut() else {
            return false;
        };
        let Some((since, _)) = r.backoff.take() else {
            return false;
        };
        r.backoff_gen += 1;
        r.paused = r
            .paused
            .saturating_add(now.saturating_duration_since(since));
        true
    }

    /// The machine's retries, or none yet.
    fn retries(&self) -> &Retries {
        self.retries.as_deref().unwrap_or(&NO_RETRIES)
    }

    /// The machine's retries, made now if it had none.
    fn retries_mut(&mut self) -> &mut Retries {
        self.retries.get_or_insert_with(Box::default)
    }

    pub fn new(policy: Policy) -> Self {
        Machine {
            policy,
            goal: Goal::Stop,
            state: State::Waiting,
            main_pid: None,
            hook: None,
            last_failure: None,
            failures: 0,
            restarts: 0,
            runs: 0,
            running_since: None,
            manual_stop: false,
            monitored: true,
            main_end: None,
            run_failed: false,
            restart_pending: false,
            gave_up: false,
            retries: None,
            timer_gen: 0,
            skip_post_stop: false,
        }
    }

    /// Feeds one input; returns what must be done, in order.
    pub fn handle(&mut self, input: Input, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Start => self.start(now, &mut fx),
            Input::Stop => {
                self.restart_pending = false;
                self.stop(now, &mut fx);
            }
            Input::Restart => {
                if self.state.is_down() {
                    self.start(now, &mut fx);
                } else {
                    self.restart_pending = true;
                    self.stop(now, &mut fx);
                }
            }
            Input::Spawned(Proc::Main, pid) => {
                self.main_pid = Some(pid);
                if self.state == State::Spawned {
                    if self.policy.wait_ready {
                        fx.push(Effect::AwaitReady);
                    } else {
                        self.enter(State::PostStart, now, &mut fx);
                    }
                }
            }
            Input::Spawned(p, pid) => {
                if let Some((hp, slot)) = &mut self.hook
                    && *hp == p
                {
                    *slot = Some(pid);
                }
            }
            Input::SpawnFailed(p) => self.process_failed_to_spawn(p, now, &mut fx),
            Input::Exited(Proc::Main, end) => self.main_exited(end, now, &mut fx),
            Input::Exited(p, end) => self.hook_exited(p, end, now, &mut fx),
            Input::Proceed => match self.state {
                State::Starting => {
                    if self.goal == Goal::Stop {
                        self.enter(State::Stopping, now, &mut fx);
                    } else {
                        self.enter(State::PreStart, now, &mut fx);
                    }
                }
                State::Stopping => self.enter(State::Killed, now, &mut fx),
                _ => {}
            },
            Input::Ready => {
                if self.state == State::Spawned && self.main_pid.is_some() {
                    self.enter(State::PostStart, now, &mut fx);
                }
            }
            Input::NotReady => {
                if self.state == State::Spawned {
                    self.goal = Goal::Stop;
                    self.run_failed = true;
                    self.enter(State::Stopping, now, &mut fx);
                }
            }
            Input::Adopt(pid) => self.main_pid = Some(pid),
            Input::Detach => self.main_pid = None,
            Input::RespawnDue(generation) => {
                if generation == self.retries().backoff_gen
                    && self.retries().backoff.is_some()
                    && self.state == State::Waiting
                    && self.goal == Goal::Start
                {
                    self.end_backoff(now.mono);
                    self.restarts += 1;
                    self.enter(State::Starting, now, &mut fx);
                }
            }
            Input::Resume {
                pid,
                since,
                runs,
                restarts,
            } => {
                if self.is_down() {
                    self.goal = Goal::Start;
                    self.state = State::Running;
                    self.main_pid = Some(pid);
                    self.running_since = Some(since);
                    self.runs = runs.max(1);
                    self.restarts = restarts;
                }
            }
            Input::Recover {
                pid,
                post_stop,
                goal,
                restarts,
            } => {
                if self.is_down() {
                    self.restarts = restarts;
                    self.goal = Goal::Stop;
                    self.restart_pending = goal == Goal::Start;
                    self.main_pid = pid;
                    self.skip_post_stop = !post_stop;
                    self.enter(State::Killed, now, &mut fx);
                }
            }
            Input::KillTimeout(generation) => {
                if generation == self.timer_gen {
                    if self.state == State::Killed && self.main_pid.is_some() {
                        fx.push(Effect::Signal(Proc::Main, Signal::SIGKILL));
                    } else if let Some((p, Some(_))) = self.hook {
                        fx.push(Effect::Signal(p, Signal::SIGKILL));
                    }
                }
            }
        }
        fx
    }

    /// After the daemon re-executed itself: the job had given up (`failed`) in the image
    /// before, with these counts. Only for a job at rest.
    pub fn restore_failed(&mut self, restarts: u64, runs: u64) {
        if self.is_down() {
            self.goal = Goal::Stop;
            self.state = State::Failed;
            self.gave_up = true;
            self.restarts = restarts;
            self.runs = runs;
        }
    }

    /// Records a failure of this run, as reported by the caller (spawn errors carry text
    /// the machine cannot know).
    pub fn record_failure(&mut self, process: Proc, kind: FailureKind, status: String, now: Now) {
        self.record(process, kind, status, None, now);
    }

    fn record(
        &mut self,
        process: Proc,
        kind: FailureKind,
        status: String,
        end: Option<ProcessEnd>,
        now: Now,
    ) {
        self.run_failed = true;
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(Box::new(Failure {
            // At least 1 after the add: the id has room for None beside it.
            id: FailureId(
                std::num::NonZeroU64::new(self.failures).unwrap_or(std::num::NonZeroU64::MAX),
            ),
            process,
            kind,
            status,
            end,
            at: now.wall,
        }));
    }

    fn record_end(&mut self, process: Proc, end: ProcessEnd, now: Now) {
        self.record(process, FailureKind::Ended, end.to_string(), Some(end), now);
    }

    fn start(&mut self, now: Now, fx: &mut Vec<Effect>) {
        if self.state.is_down() {
            // A start while a respawn is due is that respawn, sooner; a person's or an
            // event's start also forgets earlier quick failures.
            if self.end_backoff(now.mono) {
                self.restarts += 1;
            }
            if let Some(r) = self.retries.as_deref_mut() {
                r.quick_failures = 0;
                r.respawn_times.clear();
            }
            self.goal = Goal::Start;
            self.gave_up = false;
            self.run_failed = false;
            self.enter(State::Starting, now, fx);
        } else if !self.restart_pending {
            // Somewhere in the lifecycle already: a stop on its way becomes a restart
            // when it reaches post-stop; a pre-stop that finishes leaves the job running.
            self.goal = Goal::Start;
        }
    }

    fn stop(&mut self, now: Now, fx: &mut Vec<Effect>) {
        self.goal = Goal::Stop;
        match self.state {
            State::Failed => self.state = State::Waiting,
            // Stopped while waiting to be respawned: the run that ended is over now.
            State::Waiting if self.retries().backoff.is_some() => {
                self.end_backoff(now.mono);
                fx.push(Effect::Emit(Event::Stopped {
                    failed: self.run_failed,
                }));
            }
            State::PreStart | State::PostStart => self.kill_hook(fx),
            State::Spawned => self.enter(State::Stopping, now, fx),
            State::Running => {
                self.enter(State::PreStop, now, fx);
            }
            _ => {}
        }
    }

    fn kill_hook(&mut self, fx: &mut Vec<Effect>) {
        if let Some((p, Some(_))) = self.hook {
            fx.push(Effect::Signal(p, self.policy.kill_signal));
            fx.push(Effect::Signal(p, Signal::SIGCONT));
            self.arm_timer(fx);
        }
    }

    fn arm_timer(&mut self, fx: &mut Vec<Effect>) {
        self.timer_gen += 1;
        fx.push(Effect::ArmKillTimer(
            self.timer_gen,
            self.policy.kill_timeout,
        ));
    }

    fn disarm_timer(&mut self) {
        self.timer_gen += 1;
    }

    fn fail(&mut self, process: Proc, end: ProcessEnd, now: Now) {
        self.record_end(process, end, now);
        self.goal = Goal::Stop;
    }

    fn process_failed_to_spawn(&mut self, p: Proc, now: Now, fx: &mut Vec<Effect>) {
        if p == Proc::Main {
            if self.state == State::Spawned {
                self.goal = Goal::Stop;
                self.run_failed = true;
                self.enter(State::Stopping, now, fx);
            }
            return;
        }
        // A hook that cannot start is a hook that failed.
        self.hook = Some((p, None));
        self.hook_exited(p, ProcessEnd::Exited(127), now, fx);
    }

    fn main_exited(&mut self, end: ProcessEnd, now: Now, fx: &mut Vec<Effect>) {
        self.main_pid = None;
        match self.state {
            State::Killed => {
                self.disarm_timer();
                self.enter(State::PostStop, now, fx);
            }
            State::Running | State::Spawned => self.main_died(end, now, fx),
            State::PostStart => {
                // post-start is interrupted; what happens next is decided when it is gone.
                self.main_end = Some(end);
                if let Some((p, Some(_))) = self.hook {
                    fx.push(Effect::Signal(p, Signal::SIGKILL));
                }
            }
            // Under pre-stop the stop goes on; the main process is simply gone already.
            _ => {}
        }
    }

    /// The main process ended on its own: respawn, finish, or fail.
    fn main_died(&mut self, end: ProcessEnd, now: Now, fx: &mut Vec<Effect>) {
        let normal = end.matches(&self.policy.normal_exit);
        if self.goal == Goal::Start && self.policy.respawn && !normal {
            self.record_end(Proc::Main, end, now);
            let delay = self.respawn_delay(now.mono);
            let clock = self.limit_clock(now.mono);
            let limit = self.policy.respawn_limit;
            let r = self.retries_mut();
            r.pending_delay = (!delay.is_zero()).then_some(delay);
            if let Some(limit) = limit
                && !r.respawn_times.admit(limit.into(), clock)
            {
                self.goal = Goal::Stop;
                self.gave_up = true;
                self.record(
                    Proc::Main,
                    FailureKind::Ended,
                    format!(
                        "{end}; respawned {} times within {}, giving up",
                        limit.count,
                        humantime::format_duration(limit.interval)
                    ),
                    Some(end),
                    now,
                );
                self.retries_mut().pending_delay = None;
                fx.push(Effect::GaveUp);
            }
        } else {
            self.goal = Goal::Stop;
            if !normal {
                self.record_end(Proc::Main, end, now);
            }
        }
        self.enter(State::Stopping, now, fx);
    }

    fn hook_exited(&mut self, p: Proc, end: ProcessEnd, now: Now, fx: &mut Vec<Effect>) {
        match self.hook {
            Some((hp, _)) if hp == p => {}
            _ => return,
        }
        self.hook = None;
        self.disarm_timer();
        let ok = end.success();
        match p {
            Proc::PreStart => {
                if self.goal == Goal::Stop || self.restart_pending {
                    self.enter(State::Stopping, now, fx);
                } else if !ok {
                    self.fail(p, end, now);
                    self.enter(State::Stopping, now, fx);
                } else {
                    self.enter(State::Spawned, now, fx);
                }
            }
            Proc::PostStart => {
                if let Some(main_end) = self.main_end.take() {
                    self.main_died(main_end, now, fx);
                } else if self.goal == Goal::Stop || self.restart_pending {
                    self.enter(State::Stopping, now, fx);
                } else if !ok {
                    self.fail(p, end, now);
                    self.enter(State::Stopping, now, fx);
                } else {
                    self.enter(State::Running, now, fx);
                }
            }
            Proc::PreStop => {
                if !ok {
                    self.record_end(p, end, now);
                }
                if self.goal == Goal::Start && !self.restart_pending && self.main_pid.is_some() {
                    // The stop was called off while pre-stop ran.
                    self.state = State::Running;
                } else {
                    self.enter(State::Stopping, now, fx);
                }
            }
            Proc::PostStop => {
                if !ok {
                    self.fail(p, end, now);
                    self.restart_pending = false;
                }
                self.finish_stop(now, fx);
            }
            Proc::Main => {}
        }
    }

    fn enter(&mut self, state: State, now: Now, fx: &mut Vec<Effect>) {
        self.state = state;
        match state {
            State::Starting => {
                // Waits here for `Proceed`: jobs that start on `starting` this job go first.
                self.run_failed = false;
                fx.push(Effect::Emit(Event::Starting));
            }
            State::PreStart => {
                if self.policy.pre_start {
                    self.spawn_hook(Proc::PreStart, fx);
                } else {
                    self.enter(State::Spawned, now, fx);
                }
            }
            State::Spawned => {
                if self.policy.main {
                    fx.push(Effect::Spawn(Proc::Main));
                } else {
                    self.enter(State::PostStart, now, fx);
                }
            }
            State::PostStart => {
                if self.policy.post_start {
                    self.spawn_hook(Proc::PostStart, fx);
                } else {
                    self.enter(State::Running, now, fx);
                }
            }
            State::Running => {
                self.runs += 1;
                self.running_since = Some(now.mono);
                fx.push(Effect::Emit(Event::Started));
                if !self.policy.main {
                    // A job without a main process is "running" until stopped;
                    // a task without one has nothing left to do.
                    if self.policy.task {
                        self.goal = Goal::Stop;
                        self.enter(State::Stopping, now, fx);
                    }
                }
            }
            State::PreStop => {
                if self.policy.pre_stop && self.main_pid.is_some() {
                    self.spawn_hook(Proc::PreStop, fx);
                } else {
                    self.enter(State::Stopping, now, fx);
                }
            }
            State::Stopping => {
                // Waits here for `Proceed`: jobs that stop on `stopping` this job go first.
                self.running_since = None;
                fx.push(Effect::Emit(Event::Stopping));
            }
            State::Killed => {
                if self.main_pid.is_some() {
                    fx.push(Effect::Signal(Proc::Main, self.policy.kill_signal));
                    fx.push(Effect::Signal(Proc::Main, Signal::SIGCONT));
                    self.arm_timer(fx);
                } else {
                    self.enter(State::PostStop, now, fx);
                }
            }
            State::PostStop => {
                let skip = std::mem::take(&mut self.skip_post_stop);
                if self.policy.post_stop && !skip {
                    self.spawn_hook(Proc::PostStop, fx);
                } else {
                    self.finish_stop(now, fx);
                }
            }
            State::Waiting | State::Failed => {}
        }
    }

    fn spawn_hook(&mut self, p: Proc, fx: &mut Vec<Effect>) {
        self.hook = Some((p, None));
        fx.push(Effect::Spawn(p));
    }

    fn finish_stop(&mut self, now: Now, fx: &mut Vec<Effect>) {
        let delay = self
            .retries
            .as_deref_mut()
            .and_then(|r| r.pending_delay.take());
        if self.restart_pending {
            self.restart_pending = false;
            self.goal = Goal::Start;
        }
        if self.goal == Goal::Start {
            if let Some(delay) = delay {
                // Failing quickly: wait before the next try, at rest meanwhile.
                self.state = State::Waiting;
                let r = self.retries_mut();
                r.backoff_gen += 1;
                r.backoff = Some((now.mono, now.mono.checked_add(delay).unwrap_or(now.mono)));
                fx.push(Effect::ArmRespawnTimer(r.backoff_gen, delay));
                return;
            }
            self.restarts += 1;
            self.enter(State::Starting, now, fx);
            return;
        }
        self.state = if self.gave_up {
            State::Failed
        } else {
            State::Waiting
        };
        fx.push(Effect::Emit(Event::Stopped {
            failed: self.run_failed,
        }));
    }
}
