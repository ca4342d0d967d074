//! The lifecycle rules, driven without processes: a tiny harness plays the daemon,
//! handing out pids for spawns and recording what the machine asked for.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use super::*;
use crate::config::job::{RespawnDelay, RespawnLimit};

/// No delay between respawns: the rules that do not depend on time.
const NO_DELAY: RespawnDelay = RespawnDelay {
    initial: Duration::ZERO,
    max: Duration::ZERO,
    stable: Duration::ZERO,
};

fn policy() -> Policy {
    Policy {
        main: true,
        pre_start: false,
        post_start: false,
        pre_stop: false,
        post_stop: false,
        respawn: false,
        respawn_limit: Some(RespawnLimit {
            count: 10,
            interval: Duration::from_secs(5),
        }),
        respawn_delay: NO_DELAY,
        normal_exit: vec![ExitMatch::Code(0)].into(),
        task: false,
        kill_signal: Signal::SIGTERM,
        kill_timeout: Duration::from_secs(5),
        wait_ready: false,
        manual: false,
        restart_limit: Some(RespawnLimit {
            count: 3,
            interval: Duration::from_secs(60),
        }),
    }
}

fn hooks() -> Policy {
    Policy {
        pre_start: true,
        post_start: true,
        pre_stop: true,
        post_stop: true,
        ..policy()
    }
}

/// Plays the daemon: spawns succeed at once with fresh pids; records every spawn.
struct Harness {
    m: Machine,
    now: Now,
    next_pid: u32,
    spawned: Vec<Proc>,
    signals: Vec<(Proc, Signal)>,
    events: Vec<Event>,
    timer: Option<u64>,
    /// The respawn timer last armed: generation and delay.
    respawn_timer: Option<(u64, Duration)>,
    fail_spawn: Option<Proc>,
    ready_at_once: bool,
    auto_proceed: bool,
}

impl Harness {
    fn new(p: Policy) -> Self {
        Harness {
            m: Machine::new(p),
            now: Now::read(),
            next_pid: 100,
            spawned: vec![],
            signals: vec![],
            events: vec![],
            timer: None,
            respawn_timer: None,
            fail_spawn: None,
            ready_at_once: false,
            auto_proceed: true,
        }
    }

    fn feed(&mut self, input: Input) {
        let mut queue = vec![input];
        while let Some(i) = queue.pop() {
            for e in self.m.handle(i, self.now) {
                match e {
                    Effect::Spawn(p) => {
                        self.spawned.push(p);
                        if self.fail_spawn == Some(p) {
                            queue.insert(0, Input::SpawnFailed(p));
                        } else {
                            self.next_pid += 1;
                            queue.insert(0, Input::Spawned(p, self.next_pid));
                        }
                    }
                    Effect::Signal(p, s) => self.signals.push((p, s)),
                    Effect::ArmKillTimer(g, _) => self.timer = Some(g),
                    Effect::Emit(ev) => {
                        self.events.push(ev);
                        // Nothing waits on these events here: go on at once.
                        if self.auto_proceed && matches!(ev, Event::Starting | Event::Stopping) {
                            queue.insert(0, Input::Proceed);
                        }
                    }
                    Effect::AwaitReady => {
                        if self.ready_at_once {
                            queue.insert(0, Input::Ready);
                        }
                    }
                    Effect::GaveUp => {}
                    Effect::ArmRespawnTimer(g, d) => self.respawn_timer = Some((g, d)),
                }
            }
        }
    }

    fn exit(&mut self, p: Proc, code: i32) {
        self.feed(Input::Exited(p, ProcessEnd::Exited(code)));
    }

    fn state(&self) -> State {
        self.m.state
    }

    /// A restart of a job without hooks whose main process goes on SIGTERM.
    fn restart(&mut self) {
        self.feed(Input::Restart);
        assert_eq!(self.state(), State::Killed);
        self.feed(Input::Exited(
            Proc::Main,
            ProcessEnd::Signaled(Signal::SIGTERM),
        ));
        assert_eq!(self.state(), State::Running);
    }
}

#[test]
fn start_without_hooks_runs_main() {
    let mut h = Harness::new(policy());
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Running);
    assert_eq!(h.spawned, vec![Proc::Main]);
    assert!(h.m.main_pid.is_some());
    assert_eq!(h.events, vec![Event::Starting, Event::Started]);
}

#[test]
fn hooks_run_in_order_and_running_waits_for_post_start() {
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    assert_eq!(h.state(), State::PreStart);
    assert_eq!(h.spawned, vec![Proc::PreStart]);
    h.exit(Proc::PreStart, 0);
    assert_eq!(h.state(), State::PostStart);
    assert_eq!(h.spawned, vec![Proc::PreStart, Proc::Main, Proc::PostStart]);
    h.exit(Proc::PostStart, 0);
    assert_eq!(h.state(), State::Running);

    h.feed(Input::Stop);
    assert_eq!(h.state(), State::PreStop);
    assert!(h.signals.is_empty(), "pre-stop runs before the kill");
    h.exit(Proc::PreStop, 0);
    assert_eq!(h.state(), State::Killed);
    assert_eq!(
        h.signals,
        vec![(Proc::Main, Signal::SIGTERM), (Proc::Main, Signal::SIGCONT)]
    );
    h.feed(Input::Exited(
        Proc::Main,
        ProcessEnd::Signaled(Signal::SIGTERM),
    ));
    assert_eq!(h.state(), State::PostStop);
    h.exit(Proc::PostStop, 0);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(h.m.goal, Goal::Stop);
    assert_eq!(h.events.last(), Some(&Event::Stopped { failed: false }));
}

#[test]
fn failing_pre_start_never_runs_main_but_runs_post_stop() {
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 3);
    assert_eq!(h.state(), State::PostStop);
    assert!(!h.spawned.contains(&Proc::Main));
    h.exit(Proc::PostStop, 0);
    assert_eq!(h.state(), State::Waiting);
    let f = h.m.last_failure().cloned().expect("failure recorded");
    assert_eq!(f.process, Proc::PreStart);
    assert_eq!(f.status, "exited 3");
    assert_eq!(h.events.last(), Some(&Event::Stopped { failed: true }));
}

#[test]
fn stop_during_pre_start_kills_it_and_still_runs_post_stop() {
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    h.feed(Input::Stop);
    assert_eq!(
        h.signals,
        vec![
            (Proc::PreStart, Signal::SIGTERM),
            (Proc::PreStart, Signal::SIGCONT)
        ]
    );
    h.feed(Input::Exited(
        Proc::PreStart,
        ProcessEnd::Signaled(Signal::SIGTERM),
    ));
    assert_eq!(h.state(), State::PostStop);
    h.exit(Proc::PostStop, 0);
    assert_eq!(h.state(), State::Waiting);
    assert!(!h.spawned.contains(&Proc::Main));
    assert_eq!(
        h.spawned.iter().filter(|p| **p == Proc::PostStop).count(),
        1
    );
}

#[test]
fn failing_post_start_fails_the_start_and_kills_main() {
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 0);
    h.exit(Proc::PostStart, 1);
    assert_eq!(
        h.state(),
        State::Killed,
        "no pre-stop: the stop was not requested"
    );
    assert!(!h.spawned.contains(&Proc::PreStop));
    h.feed(Input::Exited(
        Proc::Main,
        ProcessEnd::Signaled(Signal::SIGTERM),
    ));
    h.exit(Proc::PostStop, 0);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(
        h.m.last_failure.as_ref().map(|f| f.process),
        Some(Proc::PostStart)
    );
}

#[test]
fn kill_timeout_escalates_to_sigkill() {
    let mut h = Harness::new(policy());
    h.feed(Input::Start);
    h.feed(Input::Stop);
    assert_eq!(h.state(), State::Killed);
    let generation = h.timer.expect("timer armed");
    h.feed(Input::KillTimeout(generation));
    assert_eq!(h.signals.last(), Some(&(Proc::Main, Signal::SIGKILL)));
    // A stale timer after the process died does nothing.
    h.feed(Input::Exited(
        Proc::Main,
        ProcessEnd::Signaled(Signal::SIGKILL),
    ));
    let n = h.signals.len();
    h.feed(Input::KillTimeout(generation));
    assert_eq!(h.signals.len(), n);
    assert_eq!(h.state(), State::Waiting);
}

#[test]
fn crash_respawns_through_post_stop_and_pre_start() {
    let mut h = Harness::new(Policy {
        respawn: true,
        ..hooks()
    });
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 0);
    h.exit(Proc::PostStart, 0);
    h.spawned.clear();
    h.feed(Input::Exited(
        Proc::Main,
        ProcessEnd::Signaled(Signal::SIGKILL),
    ));
    assert_eq!(h.spawned, vec![Proc::PostStop]);
    h.exit(Proc::PostStop, 0);
    h.exit(Proc::PreStart, 0);
    h.exit(Proc::PostStart, 0);
    assert_eq!(h.state(), State::Running);
    assert_eq!(h.m.restarts, 1);
    assert!(
        !h.spawned.contains(&Proc::PreStop),
        "pre-stop only on a requested stop"
    );
}

#[test]
fn normal_exit_is_not_respawned() {
    let mut h = Harness::new(Policy {
        respawn: true,
        normal_exit: vec![ExitMatch::Code(0), ExitMatch::Signal(Signal::SIGTERM)].into(),
        ..policy()
    });
    h.feed(Input::Start);
    h.feed(Input::Exited(
        Proc::Main,
        ProcessEnd::Signaled(Signal::SIGTERM),
    ));
    assert_eq!(h.state(), State::Waiting);
    assert!(h.m.last_failure.is_none());
}

#[test]
fn respawn_limit_gives_up_into_failed_until_start() {
    let mut h = Harness::new(Policy {
        respawn: true,
        respawn_limit: Some(RespawnLimit {
            count: 3,
            interval: Duration::from_secs(5),
        }),
        ..policy()
    });
    h.feed(Input::Start);
    for _ in 0..3 {
        h.exit(Proc::Main, 1);
        assert_eq!(h.state(), State::Running);
    }
    h.exit(Proc::Main, 1);
    assert_eq!(h.state(), State::Failed);
    assert_eq!(h.m.restarts, 3);
    // Nothing brings it back by itself; a start does.
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Running);
}

#[test]
fn respawns_spread_out_in_time_are_not_limited() {
    let mut h = Harness::new(Policy {
        respawn: true,
        respawn_limit: Some(RespawnLimit {
            count: 2,
            interval: Duration::from_secs(5),
        }),
        ..policy()
    });
    h.feed(Input::Start);
    for _ in 0..10 {
        h.now = h.now.later(Duration::from_secs(3));
        h.exit(Proc::Main, 1);
        assert_eq!(h.state(), State::Running);
    }
}

#[test]
fn manual_stop_is_never_respawned() {
    let mut h = Harness::new(Policy {
        respawn: true,
        ..policy()
    });
    h.feed(Input::Start);
    h.feed(Input::Stop);
    h.exit(Proc::Main, 1);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(h.m.restarts, 0);
}

#[test]
fn task_runs_to_completion() {
    let mut h = Harness::new(Policy {
        task: true,
        ..policy()
    });
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Running);
    h.exit(Proc::Main, 0);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(h.events.last(), Some(&Event::Stopped { failed: false }));
}

#[test]
fn restart_goes_down_and_up() {
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 0);
    h.exit(Proc::PostStart, 0);
    let first = h.m.main_pid;
    h.feed(Input::Restart);
    assert_eq!(h.state(), State::PreStop);
    h.exit(Proc::PreStop, 0);
    h.feed(Input::Exited(
        Proc::Main,
        ProcessEnd::Signaled(Signal::SIGTERM),
    ));
    h.exit(Proc::PostStop, 0);
    h.exit(Proc::PreStart, 0);
    h.exit(Proc::PostStart, 0);
    assert_eq!(h.state(), State::Running);
    assert_ne!(h.m.main_pid, first);
    assert_eq!(h.m.runs, 2);
}

#[test]
fn start_during_pre_stop_keeps_it_running() {
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 0);
    h.exit(Proc::PostStart, 0);
    h.feed(Input::Stop);
    h.feed(Input::Start);
    h.exit(Proc::PreStop, 0);
    assert_eq!(h.state(), State::Running);
    assert!(h.signals.is_empty());
}

#[test]
fn main_that_cannot_spawn_fails_the_start() {
    let mut h = Harness::new(Policy {
        respawn: true,
        post_stop: true,
        ..policy()
    });
    h.fail_spawn = Some(Proc::Main);
    h.feed(Input::Start);
    assert_eq!(h.state(), State::PostStop);
    h.exit(Proc::PostStop, 0);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(h.events.last(), Some(&Event::Stopped { failed: true }));
}

#[test]
fn main_dying_during_post_start_interrupts_it() {
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 0);
    h.exit(Proc::Main, 2);
    assert_eq!(h.signals, vec![(Proc::PostStart, Signal::SIGKILL)]);
    h.feed(Input::Exited(
        Proc::PostStart,
        ProcessEnd::Signaled(Signal::SIGKILL),
    ));
    assert_eq!(h.state(), State::PostStop);
    h.exit(Proc::PostStop, 0);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(
        h.m.last_failure.as_ref().map(|f| f.process),
        Some(Proc::Main)
    );
}

#[test]
fn starting_and_stopping_wait_for_proceed() {
    let mut h = Harness::new(policy());
    h.auto_proceed = false;
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Starting);
    assert!(
        h.spawned.is_empty(),
        "nothing runs before the starting event is done"
    );
    h.feed(Input::Proceed);
    assert_eq!(h.state(), State::Running);
    h.feed(Input::Stop);
    assert_eq!(h.state(), State::Stopping);
    assert!(
        h.signals.is_empty(),
        "nothing is killed before the stopping event is done"
    );
    h.feed(Input::Proceed);
    assert_eq!(h.state(), State::Killed);
}

#[test]
fn a_stop_while_starting_is_blocked_goes_straight_down() {
    let mut h = Harness::new(hooks());
    h.auto_proceed = false;
    h.feed(Input::Start);
    h.feed(Input::Stop);
    h.feed(Input::Proceed);
    assert_eq!(h.state(), State::Stopping);
    h.feed(Input::Proceed);
    assert_eq!(h.spawned, vec![Proc::PostStop], "post-stop still runs once");
}

#[test]
fn readiness_gates_post_start_and_running() {
    let mut h = Harness::new(Policy {
        wait_ready: true,
        ..hooks()
    });
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 0);
    assert_eq!(h.state(), State::Spawned);
    assert!(!h.spawned.contains(&Proc::PostStart));
    h.feed(Input::Adopt(4242));
    assert_eq!(h.m.main_pid, Some(4242));
    h.feed(Input::Ready);
    assert_eq!(h.state(), State::PostStart);
    h.exit(Proc::PostStart, 0);
    assert_eq!(h.state(), State::Running);
}

#[test]
fn not_ready_fails_the_start_and_stops_main() {
    let mut h = Harness::new(Policy {
        wait_ready: true,
        respawn: true,
        ..policy()
    });
    h.feed(Input::Start);
    h.feed(Input::NotReady);
    h.m.record_failure(
        Proc::Main,
        FailureKind::NotReady,
        "not ready within 1s".into(),
        h.now,
    );
    assert_eq!(h.state(), State::Killed);
    assert_eq!(h.signals[0], (Proc::Main, Signal::SIGTERM));
    h.feed(Input::Exited(
        Proc::Main,
        ProcessEnd::Signaled(Signal::SIGTERM),
    ));
    assert_eq!(h.state(), State::Waiting, "no respawn: it never was ready");
    assert_eq!(h.events.last(), Some(&Event::Stopped { failed: true }));
}

#[test]
fn a_stop_while_waiting_for_readiness_kills_main() {
    let mut h = Harness::new(Policy {
        wait_ready: true,
        ..policy()
    });
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Spawned);
    h.feed(Input::Stop);
    assert_eq!(h.state(), State::Killed);
}

fn backing_off(initial_ms: u64, max_ms: u64) -> Policy {
    Policy {
        respawn: true,
        respawn_delay: RespawnDelay {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            stable: Duration::from_secs(1),
        },
        respawn_limit: None,
        ..policy()
    }
}

impl Harness {
    /// The main process crashes; returns the respawn delay asked for, if any, and lets
    /// that time pass and the timer fire.
    fn crash_and_wait(&mut self) -> Option<Duration> {
        self.respawn_timer = None;
        self.exit(Proc::Main, 1);
        let (g, d) = self.respawn_timer?;
        assert_eq!(self.state(), State::Waiting, "at rest while it waits");
        assert_eq!(self.m.goal, Goal::Start);
        assert!(!self.m.is_down(), "a respawn is due: not at rest for good");
        assert_eq!(self.m.respawn_due(), Some(self.now.mono + d));
        self.now = self.now.later(d);
        self.feed(Input::RespawnDue(g));
        Some(d)
    }
}

#[test]
fn a_job_that_was_up_for_a_while_is_respawned_at_once() {
    let mut h = Harness::new(backing_off(100, 30_000));
    h.feed(Input::Start);
    for i in 1..=5 {
        h.now = h.now.later(Duration::from_secs(2));
        assert_eq!(h.crash_and_wait(), None, "no delay after a stable run");
        assert_eq!(h.state(), State::Running);
        assert_eq!(h.m.restarts, i);
    }
}

#[test]
fn quick_failures_back_off_doubling_up_to_the_cap() {
    let mut h = Harness::new(backing_off(100, 500));
    h.feed(Input::Start);
    let mut delays = Vec::new();
    for _ in 0..5 {
        delays.push(h.crash_and_wait().map(|d| d.as_millis()));
        assert_eq!(h.state(), State::Running);
    }
    assert_eq!(
        delays,
        vec![Some(100), Some(200), Some(400), Some(500), Some(500)]
    );
    assert_eq!(h.m.restarts, 5);
    // A run that lasts starts the count over.
    h.now = h.now.later(Duration::from_secs(5));
    assert_eq!(h.crash_and_wait(), None);
    assert_eq!(h.crash_and_wait().map(|d| d.as_millis()), Some(100));
}

#[test]
fn a_failure_before_running_counts_as_quick() {
    let mut h = Harness::new(Policy {
        wait_ready: true,
        ..backing_off(100, 1000)
    });
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Spawned);
    h.exit(Proc::Main, 1);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(h.respawn_timer.map(|(_, d)| d.as_millis()), Some(100));
}

#[test]
fn a_stop_while_waiting_to_respawn_ends_it() {
    let mut h = Harness::new(backing_off(100, 1000));
    h.feed(Input::Start);
    h.exit(Proc::Main, 1);
    let (g, _) = h.respawn_timer.expect("a delay");
    h.events.clear();
    h.feed(Input::Stop);
    assert_eq!(h.state(), State::Waiting);
    assert_eq!(h.m.goal, Goal::Stop);
    assert!(h.m.is_down());
    assert_eq!(h.m.respawn_due(), None);
    assert_eq!(h.events, vec![Event::Stopped { failed: true }]);
    // The timer that was armed finds nothing to do.
    h.spawned.clear();
    h.feed(Input::RespawnDue(g));
    assert_eq!(h.state(), State::Waiting);
    assert!(h.spawned.is_empty());
    assert_eq!(h.m.restarts, 0);
}

#[test]
fn a_start_while_waiting_to_respawn_goes_at_once_and_old_timers_are_ignored() {
    let mut h = Harness::new(backing_off(100, 1000));
    h.feed(Input::Start);
    h.exit(Proc::Main, 1);
    let (g, _) = h.respawn_timer.expect("a delay");
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Running);
    assert_eq!(h.m.respawn_due(), None);
    assert_eq!(h.m.restarts, 1);
    h.spawned.clear();
    h.feed(Input::RespawnDue(g));
    assert!(h.spawned.is_empty(), "a stale timer starts nothing");
    assert_eq!(h.m.restarts, 1);
}

#[test]
fn the_respawn_limit_still_gives_up_when_delays_spread_the_tries_out() {
    // Each try waits 2 s: four tries span 6 s of wall time, more than the limit's 5 s,
    // but the waiting is not counted: the job crashes at once, every time.
    let mut h = Harness::new(Policy {
        respawn_limit: Some(RespawnLimit {
            count: 3,
            interval: Duration::from_secs(5),
        }),
        ..backing_off(2000, 2000)
    });
    h.feed(Input::Start);
    for _ in 0..3 {
        assert_eq!(h.crash_and_wait(), Some(Duration::from_secs(2)));
        assert_eq!(h.state(), State::Running);
    }
    h.respawn_timer = None;
    h.exit(Proc::Main, 1);
    assert_eq!(h.state(), State::Failed);
    assert!(h.respawn_timer.is_none(), "no try after giving up");
    assert!(h.m.is_down());
    assert_eq!(h.m.restarts, 3);
}

#[test]
fn a_normal_exit_or_a_manual_stop_never_backs_off() {
    let mut h = Harness::new(backing_off(100, 1000));
    h.feed(Input::Start);
    h.exit(Proc::Main, 0);
    assert_eq!(h.state(), State::Waiting);
    assert!(h.respawn_timer.is_none());
    assert!(h.m.is_down());
}

// --- The rules the daemon asks about: rate windows, autostart, settling, checks' restarts,
// failure ids.

const SECOND: Duration = Duration::from_secs(1);

fn rate(count: u32, secs: u64) -> Rate {
    Rate {
        count,
        interval: Duration::from_secs(secs),
    }
}

#[test]
fn a_rate_window_admits_count_times_within_the_interval() {
    let t0 = Instant::now();
    let mut w = RateWindow::default();
    let r = rate(3, 10);
    assert!(w.admit(r, t0));
    assert!(w.admit(r, t0 + SECOND));
    assert!(w.admit(r, t0 + 2 * SECOND));
    assert!(!w.admit(r, t0 + 3 * SECOND), "a fourth within 10 s");
    assert_eq!(w.len(), 3, "a refused time is not counted");
    // Exactly one interval after the first, the first still counts...
    assert!(!w.admit(r, t0 + 10 * SECOND));
    // ...and just past it, it has left: one more is admitted.
    assert!(w.admit(r, t0 + 10 * SECOND + Duration::from_millis(1)));
    assert!(!w.admit(r, t0 + 10 * SECOND + Duration::from_millis(2)));
    w.clear();
    assert!(w.is_empty());
    assert!(w.admit(r, t0 + 11 * SECOND));
}

#[test]
fn a_rate_window_edges_zero_count_and_a_clock_that_goes_back() {
    let t0 = Instant::now();
    let mut w = RateWindow::default();
    assert!(!w.admit(rate(0, 10), t0), "a count of 0 admits nothing");
    assert!(w.is_empty());
    // A time before those counted (a clock the caller moved back) counts as now.
    let r = rate(2, 10);
    assert!(w.admit(r, t0 + 5 * SECOND));
    assert!(w.admit(r, t0));
    assert!(!w.admit(r, t0 + SECOND));
    // An interval of zero: only times at the very same instant count together.
    let mut w = RateWindow::default();
    assert!(w.admit(rate(1, 0), t0));
    assert!(!w.admit(rate(1, 0), t0));
    assert!(w.admit(rate(1, 0), t0 + Duration::from_nanos(1)));
}

/// Crashes a respawning job until its respawn limit gives up.
fn failed_job() -> Harness {
    let mut h = Harness::new(Policy {
        respawn: true,
        respawn_limit: Some(RespawnLimit {
            count: 1,
            interval: Duration::from_secs(5),
        }),
        ..policy()
    });
    h.feed(Input::Start);
    h.exit(Proc::Main, 1);
    h.exit(Proc::Main, 1);
    assert_eq!(h.state(), State::Failed);
    h
}

#[test]
fn may_autostart_needs_start_on_and_no_manual_and_no_manual_stop() {
    let mut m = Machine::new(policy());
    assert!(m.may_autostart(true, AutoStart::Daemon));
    assert!(m.may_autostart(true, AutoStart::StartAll));
    assert!(
        !m.may_autostart(false, AutoStart::Daemon),
        "start-on does not hold"
    );
    assert!(!m.may_autostart(false, AutoStart::StartAll));
    m.set_manual_stop(true);
    assert!(m.manual_stop());
    assert!(
        !m.may_autostart(true, AutoStart::Daemon),
        "a person stopped it"
    );
    assert!(!m.may_autostart(true, AutoStart::StartAll));
    m.set_manual_stop(false);
    assert!(m.may_autostart(true, AutoStart::Daemon));
    let manual = Machine::new(Policy {
        manual: true,
        ..policy()
    });
    assert!(
        !manual.may_autostart(true, AutoStart::Daemon),
        "manual = true"
    );
    assert!(!manual.may_autostart(true, AutoStart::StartAll));
}

#[test]
fn a_job_that_gave_up_is_started_again_by_start_all_but_not_by_the_daemon() {
    let h = failed_job();
    assert!(!h.m.may_autostart(true, AutoStart::Daemon));
    assert!(h.m.may_autostart(true, AutoStart::StartAll));
}

#[test]
fn settled_when_the_move_toward_the_goal_is_over() {
    let mut h = Harness::new(policy());
    assert!(h.m.settled(), "down, goal stop");
    assert!(!h.m.settled_up());
    h.auto_proceed = false;
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Starting);
    assert!(!h.m.settled(), "starting");
    h.feed(Input::Proceed);
    assert_eq!(h.state(), State::Running);
    assert!(h.m.settled() && h.m.settled_up());
    h.feed(Input::Stop);
    assert_eq!(h.state(), State::Stopping);
    assert!(!h.m.settled() && !h.m.settled_up(), "on its way down");
    h.feed(Input::Proceed);
    assert_eq!(h.state(), State::Killed);
    assert!(!h.m.settled());
    h.exit(Proc::Main, 0);
    assert!(h.m.settled() && !h.m.settled_up());
    // A job that gave up has settled too: nothing more will happen by itself.
    assert!(failed_job().m.settled());
}

#[test]
fn a_task_settles_only_once_it_has_run() {
    let mut h = Harness::new(Policy {
        task: true,
        ..policy()
    });
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Running);
    assert!(!h.m.settled(), "a task running is still on its way");
    assert_eq!(h.m.reached(Until::Up), None);
    h.exit(Proc::Main, 0);
    assert!(h.m.settled());
    assert_eq!(h.m.reached(Until::Up), Some(Reached::Completed));
    h.feed(Input::Start);
    h.exit(Proc::Main, 3);
    assert_eq!(h.m.reached(Until::Up), Some(Reached::NotUp));
}

#[test]
fn reached_answers_waiting_clients() {
    let mut h = Harness::new(policy());
    assert_eq!(h.m.reached(Until::Down), Some(Reached::Down));
    // Down with the goal stop: a wait for it to come up is over.
    assert_eq!(h.m.reached(Until::Up), Some(Reached::NotUp));
    h.feed(Input::Start);
    assert_eq!(h.m.reached(Until::Up), Some(Reached::Up));
    assert_eq!(h.m.reached(Until::Down), None);
    let runs = h.m.runs();
    assert_eq!(h.m.reached(Until::UpAgain(runs)), None, "the same run");
    h.auto_proceed = false;
    h.feed(Input::Restart);
    assert_eq!(h.m.reached(Until::UpAgain(runs)), None, "on its way down");
    h.feed(Input::Proceed);
    h.exit(Proc::Main, 0);
    h.feed(Input::Proceed);
    assert_eq!(h.state(), State::Running);
    assert_eq!(h.m.reached(Until::UpAgain(runs)), Some(Reached::Up));
    // A start that fails for good: the wait is over, not up.
    let mut h = Harness::new(hooks());
    h.feed(Input::Start);
    h.exit(Proc::PreStart, 1);
    h.exit(Proc::PostStop, 0);
    assert_eq!(h.m.reached(Until::Up), Some(Reached::NotUp));
    assert_eq!(failed_job().m.reached(Until::Up), Some(Reached::NotUp));
}

#[test]
fn a_job_waiting_to_respawn_has_not_reached_down() {
    let mut h = Harness::new(backing_off(100, 1000));
    h.feed(Input::Start);
    h.exit(Proc::Main, 1);
    assert_eq!(h.state(), State::Waiting);
    assert!(h.respawn_timer.is_some());
    assert_eq!(h.m.reached(Until::Down), None);
    assert_eq!(h.m.reached(Until::Up), None);
    // At rest until the respawn is due: jobs held on it may go on meanwhile.
    assert!(h.m.settled() && !h.m.settled_up());
}

#[test]
fn checks_restart_once_per_start_then_unmonitor_past_the_limit() {
    let mut h = Harness::new(policy());
    h.feed(Input::Start);
    for _ in 0..3 {
        let start = h.m.runs();
        assert!(!h.m.check_restart_under_way(start));
        assert_eq!(h.m.check_restart(h.now), CheckRestart::Restart);
        assert!(h.m.check_restart_under_way(start), "one start, one restart");
        h.restart();
        assert!(!h.m.check_restart_under_way(h.m.runs()), "a new start");
        h.now = h.now.later(SECOND);
    }
    assert_eq!(
        h.m.check_restart(h.now),
        CheckRestart::Unmonitor(rate(3, 60))
    );
    assert!(!h.m.monitored());
    assert_eq!(h.state(), State::Running, "it keeps running");
    // Monitored again, the count starts afresh.
    assert!(h.m.set_monitored(true));
    assert!(!h.m.set_monitored(true), "no change");
    assert_eq!(h.m.check_restart(h.now), CheckRestart::Restart);
}

#[test]
fn check_restarts_spread_out_or_unlimited_never_unmonitor() {
    let mut h = Harness::new(policy());
    h.feed(Input::Start);
    for _ in 0..10 {
        assert_eq!(h.m.check_restart(h.now), CheckRestart::Restart);
        h.restart();
        h.now = h.now.later(Duration::from_secs(21));
    }
    assert!(h.m.monitored());
    let mut h = Harness::new(Policy {
        restart_limit: None,
        ..policy()
    });
    h.feed(Input::Start);
    for _ in 0..10 {
        assert_eq!(h.m.check_restart(h.now), CheckRestart::Restart);
    }
    assert!(h.m.monitored());
}

#[test]
fn unmonitor_keeps_the_checks_restart_count_until_monitored_again() {
    let mut h = Harness::new(policy());
    h.feed(Input::Start);
    for _ in 0..3 {
        assert_eq!(h.m.check_restart(h.now), CheckRestart::Restart);
    }
    // A person's unmonitor and monitor forgets the restarts...
    assert!(h.m.set_monitored(false));
    assert!(h.m.set_monitored(true));
    assert_eq!(h.m.check_restart(h.now), CheckRestart::Restart);
    // ...but a `stop` then `start` does not.
    h.feed(Input::Stop);
    h.exit(Proc::Main, 0);
    assert!(h.m.is_down());
    h.feed(Input::Start);
    assert_eq!(h.state(), State::Running);
    h.m.check_restart(h.now);
    h.m.check_restart(h.now);
    assert_eq!(
        h.m.check_restart(h.now),
        CheckRestart::Unmonitor(rate(3, 60))
    );
}

#[test]
fn every_failure_has_its_own_id_and_the_time_of_its_input() {
    let mut h = Harness::new(Policy {
        respawn: true,
        ..policy()
    });
    // A wall clock far from the real one: the failure's time can only come from the input.
    h.now.wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    h.feed(Input::Start);
    assert_eq!(h.m.running_since(), Some(h.now.mono));
    h.exit(Proc::Main, 1);
    let first = h.m.last_failure().cloned().expect("a failure");
    assert_eq!(first.at, h.now.wall);
    // The same instant again: a second failure all the same.
    h.exit(Proc::Main, 2);
    let second = h.m.last_failure().cloned().expect("a failure");
    assert_eq!(second.at, first.at);
    assert!(second.id > first.id, "{second:?} after {first:?}");
    h.m.record_failure(
        Proc::Main,
        FailureKind::SpawnFailed,
        "spawn failed: no such file".into(),
        h.now,
    );
    let third = h.m.last_failure().cloned().expect("a failure");
    assert!(third.id > second.id);
    assert_eq!(third.status, "spawn failed: no such file");
}
