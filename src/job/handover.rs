//! Seamless restarts as a pure sub-machine: whether the exit of a running job's followed
//! main process is the job's end, or the start of a wait for the successor that its pid
//! file will name.
//!
//! gunicorn, say: on USR2 the old master starts a new master as its child, which writes
//! `PIDFILE.2`; on QUIT (or TERM) the old master exits and removes `PIDFILE`, and the new
//! master renames `PIDFILE.2` over it only when it notices its parent is gone, up to a
//! second later. The rules:
//!
//! - A followed main process exits and the pid file names another live process that
//!   guardian can follow (a descendant of its own): that one is the main process now,
//!   whatever the job's state.
//! - Otherwise a wait begins only for a job with a pid file and a `handover-timeout`
//!   other than zero, that is `running` with goal `start`, whose process exited with
//!   status 0 (a master killed by a signal, or failing, did not hand over), and of which
//!   some process remains. Meanwhile the newest remaining process stands in for the job
//!   (a stop reaches it, checks look at it, its end is seen).
//! - The wait ends well when the pid file names a process guardian can follow. A
//!   process it did not start is not followed: the wait goes on.
//! - The job has ended when nothing of it is left, when the stand-in exits and no wait
//!   can go on, or at the timeout (then what is left of it is killed). Its end is the
//!   end of the first process of the handover, not of whatever stood in for it.
//! - The wait lasts only while the job is `running`.
//!
//! Nothing here looks at a process, a file or a clock: the daemon feeds in what it saw
//! ([`HandoverInput`], with the remaining processes and whether guardian is an ancestor
//! of a process as it found them in /proc) and carries out the [`HandoverEffect`]s.
//!
//! This is a machine of its own rather than a stage of [`super::readiness`]: readiness
//! lasts from one spawn until the process is ready, once per start; a handover happens
//! to a job that is running, after readiness is over, any number of times per start,
//! and asks other things of the daemon (the remaining processes, a timeout).

use std::time::{Duration, Instant};

use super::{Goal, ProcessEnd, State};

/// A process group and a session, by their ids: `(pgrp, session)`.
pub type Ids = (u32, u32);

/// A live process that the pid file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    pub pid: u32,
    /// It can be followed: it is the main process already, or a descendant of
    /// guardian's (reaped by guardian, which is a child subreaper).
    pub ours: bool,
}

/// The followed main process of a job that is past starting has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainExit {
    pub pid: u32,
    pub end: ProcessEnd,
    /// Its process group and session, if they could be read.
    pub ids: Option<Ids>,
    /// The job's state and goal as the exit found them.
    pub state: State,
    pub goal: Goal,
    pub now: Instant,
}

/// What the daemon saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverInput {
    /// The process that stands in for the job exited.
    MainExited(MainExit),
    /// The answer to [`HandoverEffect::LookAtPidFile`].
    PidFile(Option<Named>),
    /// The answer to [`HandoverEffect::LookForRemnants`]: the live processes of the job
    /// that guardian knows as nothing else, the one to stand in for the job first.
    Remnants(Vec<u32>),
    /// While waiting: the pid file names this live process now.
    Named(Named),
    /// The wait's deadline passed; `ids`: the group and session of the process standing
    /// in, if they could be read.
    Deadline { ids: Option<Ids> },
    /// The job moved to this state.
    Moved(State),
}

/// What the daemon is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverEffect {
    /// Read the pid file; answer with [`HandoverInput::PidFile`].
    LookAtPidFile,
    /// Find the job's remaining processes in these groups and sessions (and those whose
    /// environment names the job); answer with [`HandoverInput::Remnants`].
    LookForRemnants(Vec<Ids>),
    /// The wait begins, with `remaining` processes of the job left: watch the pid file
    /// (feed back [`HandoverInput::Named`]) and feed back [`HandoverInput::Deadline`] at
    /// `deadline`.
    Wait { remaining: usize, deadline: Instant },
    /// Make this process of the job the main process for now.
    StandIn(u32),
    /// Make this process, which the pid file names, the main process.
    Follow(u32),
    /// The handover is done: `successor` is the main process; `waited`: after a wait
    /// (else the pid file named it when the process exited).
    Done { successor: u32, waited: bool },
    /// The pid file names a process guardian did not start: it is not followed and the
    /// wait goes on.
    Foreign(u32),
    /// No successor in time: kill what is left of the job in these groups and sessions
    /// (and what the job's environment marks).
    KillRemnants(Vec<Ids>),
    /// The job has ended, as this says.
    Ended(ProcessEnd),
}

/// One handover of a job: from the exit of its followed main process until the
/// successor is followed or the job has ended.
#[derive(Debug, Clone)]
pub struct Handover {
    pidfile: bool,
    timeout: Duration,
    /// The end of the process whose exit began it: the job's end if it ends.
    first: ProcessEnd,
    /// Groups and sessions of every process followed in it.
    ids: Vec<Ids>,
    /// An exit being decided.
    exit: Option<MainExit>,
    waiting: Option<Waiting>,
    over: bool,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    deadline: Instant,
    stand_in: Option<u32>,
}

impl Handover {
    /// The followed main process of a job with a pid file or not and this
    /// `handover-timeout` exited: a handover may begin.
    pub fn begin(
        pidfile: bool,
        timeout: Duration,
        exit: MainExit,
    ) -> (Handover, Vec<HandoverEffect>) {
        let mut h = Handover {
            pidfile,
            timeout,
            first: exit.end,
            ids: Vec::new(),
            exit: None,
            waiting: None,
            over: false,
        };
        let fx = h.handle(HandoverInput::MainExited(exit));
        (h, fx)
    }

    /// The job's end, if it ends now: that of the process whose exit began the handover.
    pub fn end(&self) -> ProcessEnd {
        self.first
    }

    /// Whether a successor is being waited for.
    pub fn is_waiting(&self) -> bool {
        !self.over && self.waiting.is_some()
    }

    /// Done, or the job has ended: nothing more will come of it.
    pub fn is_over(&self) -> bool {
        self.over
    }

    pub fn handle(&mut self, input: HandoverInput) -> Vec<HandoverEffect> {
        let mut fx = Vec::new();
        if self.over {
            return fx;
        }
        match input {
            HandoverInput::MainExited(exit) => {
                if let Some(ids) = exit.ids
                    && !self.ids.contains(&ids)
                {
                    self.ids.push(ids);
                }
                if !self.pidfile {
                    self.ended(&mut fx);
                    return fx;
                }
                self.exit = Some(exit);
                fx.push(HandoverEffect::LookAtPidFile);
            }
            HandoverInput::PidFile(named) => {
                let Some(exit) = self.exit else {
                    return fx;
                };
                if let Some(n) = named
                    && n.pid != exit.pid
                    && n.ours
                {
                    self.exit = None;
                    fx.push(HandoverEffect::Follow(n.pid));
                    self.done(n.pid, false, &mut fx);
                    return fx;
                }
                // Or the pid file will name it soon: wait, as long as some process of
                // the job is left.
                let may_wait = exit.state == State::Running
                    && exit.goal == Goal::Start
                    && !self.timeout.is_zero()
                    // A master that hands over exits 0; one killed by a signal or
                    // failing did not: what it left behind goes with it.
                    && (self.waiting.is_some() || exit.end == ProcessEnd::Exited(0));
                if may_wait {
                    fx.push(HandoverEffect::LookForRemnants(self.ids.clone()));
                } else {
                    self.ended(&mut fx);
                }
            }
            HandoverInput::Remnants(left) => {
                let Some(exit) = self.exit.take() else {
                    return fx;
                };
                let Some(&next) = left.first() else {
                    // Nothing of the job is left: it ended, whatever the pid file says.
                    self.ended(&mut fx);
                    return fx;
                };
                let waiting = match self.waiting {
                    Some(w) => w,
                    None => {
                        let deadline = exit.now.checked_add(self.timeout).unwrap_or(exit.now);
                        fx.push(HandoverEffect::Wait {
                            remaining: left.len(),
                            deadline,
                        });
                        Waiting {
                            deadline,
                            stand_in: None,
                        }
                    }
                };
                self.waiting = Some(Waiting {
                    stand_in: Some(next),
                    ..waiting
                });
                fx.push(HandoverEffect::StandIn(next));
            }
            HandoverInput::Named(n) => {
                let Some(w) = self.waiting else {
                    return fx;
                };
                if !n.ours {
                    fx.push(HandoverEffect::Foreign(n.pid));
                    return fx;
                }
                if w.stand_in != Some(n.pid) {
                    fx.push(HandoverEffect::Follow(n.pid));
                }
                self.done(n.pid, true, &mut fx);
            }
            HandoverInput::Deadline { ids } => {
                if self.waiting.is_none() {
                    return fx;
                }
                let mut all = self.ids.clone();
                all.extend(ids);
                fx.push(HandoverEffect::KillRemnants(all));
                self.ended(&mut fx);
            }
            HandoverInput::Moved(state) => {
                if state != State::Running && self.exit.is_none() {
                    self.over = true;
                }
            }
        }
        fx
    }

    /// When the wait ends at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting.map(|w| w.deadline)
    }

    fn done(&mut self, successor: u32, waited: bool, fx: &mut Vec<HandoverEffect>) {
        self.over = true;
        fx.push(HandoverEffect::Done { successor, waited });
    }

    fn ended(&mut self, fx: &mut Vec<HandoverEffect>) {
        self.over = true;
        self.exit = None;
        fx.push(HandoverEffect::Ended(self.first));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HandoverEffect as E;
    use HandoverInput as I;
    use nix::sys::signal::Signal;

    const OLD: u32 = 100;
    const IDS: Ids = (100, 50);
    const TIMEOUT: Duration = Duration::from_secs(5);

    fn exit(pid: u32, end: ProcessEnd, now: Instant) -> MainExit {
        MainExit {
            pid,
            end,
            ids: Some((pid, 50)),
            state: State::Running,
            goal: Goal::Start,
            now,
        }
    }

    fn begin(e: MainExit) -> (Handover, Vec<HandoverEffect>) {
        Handover::begin(true, TIMEOUT, e)
    }

    fn ours(pid: u32) -> Named {
        Named { pid, ours: true }
    }

    /// The old master exited 0, the pid file names nothing yet and `left` remain.
    fn waiting(left: Vec<u32>, now: Instant) -> (Handover, Vec<HandoverEffect>) {
        let (mut h, fx) = begin(exit(OLD, ProcessEnd::Exited(0), now));
        assert_eq!(fx, vec![E::LookAtPidFile]);
        assert_eq!(
            h.handle(I::PidFile(None)),
            vec![E::LookForRemnants(vec![IDS])]
        );
        let fx = h.handle(I::Remnants(left));
        (h, fx)
    }

    #[test]
    fn a_successor_already_in_the_pid_file_is_followed_at_once() {
        let (mut h, _) = begin(exit(OLD, ProcessEnd::Exited(0), Instant::now()));
        let fx = h.handle(I::PidFile(Some(ours(200))));
        assert_eq!(
            fx,
            vec![
                E::Follow(200),
                E::Done {
                    successor: 200,
                    waited: false
                }
            ]
        );
        assert!(h.is_over());
        assert!(!h.is_waiting());
    }

    #[test]
    fn a_successor_in_the_pid_file_is_followed_whatever_the_state() {
        // Even a master killed while the job stops: the pid file names who is left.
        let mut e = exit(OLD, ProcessEnd::Signaled(Signal::SIGTERM), Instant::now());
        e.state = State::Stopping;
        e.goal = Goal::Stop;
        let (mut h, _) = begin(e);
        assert_eq!(h.handle(I::PidFile(Some(ours(200))))[0], E::Follow(200));
    }

    #[test]
    fn the_pid_file_naming_the_exited_process_or_a_stranger_is_no_successor() {
        for named in [
            ours(OLD),
            Named {
                pid: 300,
                ours: false,
            },
        ] {
            let (mut h, _) = begin(exit(OLD, ProcessEnd::Exited(0), Instant::now()));
            assert_eq!(
                h.handle(I::PidFile(Some(named))),
                vec![E::LookForRemnants(vec![IDS])],
                "{named:?}"
            );
        }
    }

    #[test]
    fn without_a_pid_file_the_exit_is_the_end() {
        let end = ProcessEnd::Exited(0);
        let (h, fx) = Handover::begin(false, TIMEOUT, exit(OLD, end, Instant::now()));
        assert_eq!(fx, vec![E::Ended(end)]);
        assert!(h.is_over());
    }

    #[test]
    fn only_an_exit_with_status_0_starts_a_wait() {
        for end in [ProcessEnd::Exited(1), ProcessEnd::Signaled(Signal::SIGKILL)] {
            let (mut h, _) = begin(exit(OLD, end, Instant::now()));
            assert_eq!(h.handle(I::PidFile(None)), vec![E::Ended(end)], "{end}");
            assert!(h.is_over());
        }
    }

    #[test]
    fn only_a_running_job_with_goal_start_waits() {
        for (state, goal) in [
            (State::Running, Goal::Stop),
            (State::Stopping, Goal::Stop),
            (State::PostStart, Goal::Start),
        ] {
            let mut e = exit(OLD, ProcessEnd::Exited(0), Instant::now());
            e.state = state;
            e.goal = goal;
            let (mut h, _) = begin(e);
            assert_eq!(
                h.handle(I::PidFile(None)),
                vec![E::Ended(ProcessEnd::Exited(0))],
                "{state} {goal:?}"
            );
        }
    }

    #[test]
    fn a_zero_timeout_turns_the_wait_off() {
        let e = exit(OLD, ProcessEnd::Exited(0), Instant::now());
        let (mut h, _) = Handover::begin(true, Duration::ZERO, e);
        assert_eq!(
            h.handle(I::PidFile(None)),
            vec![E::Ended(ProcessEnd::Exited(0))]
        );
    }

    #[test]
    fn nothing_left_is_the_end() {
        let (h, fx) = waiting(vec![], Instant::now());
        assert_eq!(fx, vec![E::Ended(ProcessEnd::Exited(0))]);
        assert!(h.is_over());
    }

    #[test]
    fn the_newest_remaining_process_stands_in_until_the_deadline() {
        let now = Instant::now();
        let (h, fx) = waiting(vec![201, 202], now);
        assert_eq!(
            fx,
            vec![
                E::Wait {
                    remaining: 2,
                    deadline: now + TIMEOUT
                },
                E::StandIn(201)
            ]
        );
        assert!(h.is_waiting());
        assert_eq!(h.deadline(), Some(now + TIMEOUT));
    }

    #[test]
    fn the_pid_file_naming_a_successor_ends_the_wait() {
        let (mut h, _) = waiting(vec![201], Instant::now());
        assert_eq!(
            h.handle(I::Named(ours(202))),
            vec![
                E::Follow(202),
                E::Done {
                    successor: 202,
                    waited: true
                }
            ]
        );
        assert!(h.is_over());
        // What comes after is nothing.
        assert_eq!(h.handle(I::Deadline { ids: None }), vec![]);
    }

    #[test]
    fn the_stand_in_named_by_the_pid_file_is_the_successor() {
        let (mut h, _) = waiting(vec![201], Instant::now());
        assert_eq!(
            h.handle(I::Named(ours(201))),
            vec![E::Done {
                successor: 201,
                waited: true
            }]
        );
    }

    #[test]
    fn a_process_guardian_did_not_start_is_not_followed_and_the_wait_goes_on() {
        let (mut h, _) = waiting(vec![201], Instant::now());
        let stranger = Named {
            pid: 300,
            ours: false,
        };
        assert_eq!(h.handle(I::Named(stranger)), vec![E::Foreign(300)]);
        assert!(h.is_waiting());
        assert_eq!(h.handle(I::Named(ours(202)))[0], E::Follow(202));
    }

    #[test]
    fn at_the_deadline_the_job_ends_as_the_first_process_did_and_the_rest_is_killed() {
        let (mut h, _) = waiting(vec![201], Instant::now());
        let fx = h.handle(I::Deadline {
            ids: Some((201, 50)),
        });
        assert_eq!(
            fx,
            vec![
                E::KillRemnants(vec![IDS, (201, 50)]),
                E::Ended(ProcessEnd::Exited(0))
            ]
        );
        assert!(h.is_over());
        assert_eq!(h.handle(I::Named(ours(202))), vec![], "too late");
    }

    #[test]
    fn a_deadline_before_any_wait_is_nothing() {
        let (mut h, _) = begin(exit(OLD, ProcessEnd::Exited(0), Instant::now()));
        assert_eq!(h.handle(I::Deadline { ids: None }), vec![]);
        assert_eq!(h.handle(I::Named(ours(202))), vec![]);
    }

    #[test]
    fn a_stand_in_that_exits_hands_on_to_the_next_and_the_first_end_stays() {
        let now = Instant::now();
        let (mut h, _) = waiting(vec![201, 202], now);
        // The stand-in is killed: a wait already on goes on, whatever its end.
        let killed = ProcessEnd::Signaled(Signal::SIGKILL);
        let mut e = exit(201, killed, now + Duration::from_secs(1));
        e.ids = Some(IDS);
        assert_eq!(h.handle(I::MainExited(e)), vec![E::LookAtPidFile]);
        assert_eq!(
            h.handle(I::PidFile(None)),
            vec![E::LookForRemnants(vec![IDS])]
        );
        // No second wait, and the deadline stays the first one.
        assert_eq!(h.handle(I::Remnants(vec![202])), vec![E::StandIn(202)]);
        assert_eq!(h.deadline(), Some(now + TIMEOUT));
        assert_eq!(h.end(), ProcessEnd::Exited(0));
        // Its groups are gathered: the last stand-in's exit finds nothing left.
        let mut e = exit(202, ProcessEnd::Exited(3), now + Duration::from_secs(2));
        e.ids = Some((202, 60));
        h.handle(I::MainExited(e));
        assert_eq!(
            h.handle(I::PidFile(None)),
            vec![E::LookForRemnants(vec![IDS, (202, 60)])]
        );
        assert_eq!(
            h.handle(I::Remnants(vec![])),
            vec![E::Ended(ProcessEnd::Exited(0))]
        );
    }

    #[test]
    fn a_stand_in_that_exits_once_the_job_stops_ends_it_as_the_first_did() {
        let now = Instant::now();
        let (mut h, _) = waiting(vec![201], now);
        let mut e = exit(201, ProcessEnd::Signaled(Signal::SIGTERM), now);
        e.state = State::Stopping;
        e.goal = Goal::Stop;
        h.handle(I::MainExited(e));
        assert_eq!(
            h.handle(I::PidFile(None)),
            vec![E::Ended(ProcessEnd::Exited(0))]
        );
    }

    #[test]
    fn the_wait_lasts_only_while_the_job_runs() {
        let (mut h, _) = waiting(vec![201], Instant::now());
        assert!(h.handle(I::Moved(State::Running)).is_empty());
        assert!(h.is_waiting());
        h.handle(I::Moved(State::Stopping));
        assert!(h.is_over());
        assert!(!h.is_waiting());
        assert_eq!(h.handle(I::Deadline { ids: None }), vec![]);
    }

    #[test]
    fn a_deadline_too_far_for_the_clock_is_clamped() {
        let now = Instant::now();
        let (mut h, _) =
            Handover::begin(true, Duration::MAX, exit(OLD, ProcessEnd::Exited(0), now));
        h.handle(I::PidFile(None));
        let fx = h.handle(I::Remnants(vec![201]));
        assert!(
            matches!(fx[..], [E::Wait { deadline, .. }, E::StandIn(201)] if deadline >= now),
            "{fx:?}"
        );
    }
}
