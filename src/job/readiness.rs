//! Readiness as a pure sub-machine: when a job's main process is ready, and which
//! process that is. Depending on the job, in this order:
//!
//! 1. `expect`: the process forks (once, or twice for a daemon) and the one that remains
//!    becomes the main process; or it raises SIGSTOP and is continued; or it says
//!    READY=1 on `NOTIFY_SOCKET`.
//! 2. `pidfile`: the file names a live process, which becomes the main process.
//! 3. `[ready]`: the probe passes.
//!
//! All of it must happen by the deadline, or the start fails.
//!
//! Nothing here looks at a process, a file or a clock. The daemon feeds in what it saw
//! ([`ReadyInput`]) and carries out the [`ReadyEffect`]s: it watches the pid file,
//! listens on the notify socket, looks in /proc for the process a fork left behind,
//! runs the probe. It also decides, for a main process that exits while the job starts,
//! whether that exit ends the job ([`ReadyEffect::JobEnded`]) or hands over.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::job::Expect;

/// How long readiness may take when `[ready]` does not say.
pub const DEFAULT_DEADLINE: Duration = crate::config::probe::ReadySpec::DEFAULT_DEADLINE;

/// One thing readiness waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Follow this many forks.
    Forks(u8),
    SigStop,
    Notify,
    PidFile,
    Probe,
}

impl Stage {
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Forks(_) => "waiting for the process to fork",
            Stage::SigStop => "waiting for the process to stop itself (SIGSTOP)",
            Stage::Notify => "waiting for READY=1 on NOTIFY_SOCKET",
            Stage::PidFile => "waiting for the pid file",
            Stage::Probe => "waiting for the readiness probe to pass",
        }
    }
}

/// Whether guardian follows a main process other than the one it spawned (a daemon that
/// forks, a pid file): then the spawned leader's exit is not the job's end, and its
/// process group is not cleaned up when it exits.
pub fn follows(expect: Expect, pidfile: bool) -> bool {
    matches!(expect, Expect::Fork | Expect::Daemon) || pidfile
}

/// The process a forking main process left behind, as the daemon found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forked {
    pub pid: u32,
    /// It is in a session it does not lead: a daemon's grandchild, after its child's
    /// `setsid` and second fork.
    pub in_foreign_session: bool,
}

/// What the daemon saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyInput {
    /// The main process was spawned with this pid: start waiting.
    MainSpawned(u32),
    /// The followed main process `pid` exited; `success`: with status 0.
    MainExited { pid: u32, success: bool },
    /// The answer to [`ReadyEffect::LookForForkedChild`].
    ForkedChild(Option<Forked>),
    /// An orphan of guardian's was reaped: a fork not found before may be found now.
    OrphanReaped,
    /// The main process stopped itself (SIGSTOP).
    MainStopped,
    /// The pid file names this live process; `ours`: it is the main process already or
    /// a descendant of guardian's (only such a process can be followed).
    PidFile { pid: u32, ours: bool },
    /// READY=1 on the notify socket.
    Notified,
    /// MAINPID= on the notify socket; `ours` as for [`ReadyInput::PidFile`].
    MainPid { pid: u32, ours: bool },
    /// The readiness probe passed.
    ProbePassed,
    /// A helper failed (the probe ran out of time, a probe could not be set up).
    Failed(String),
    /// The deadline passed.
    Deadline,
}

/// What the daemon is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyEffect {
    /// Feed back [`ReadyInput::Deadline`] at this time.
    ArmDeadline(Instant),
    /// Watch the pid file; feed back [`ReadyInput::PidFile`] when it names a process.
    WatchPidFile,
    /// Look for the process the main process left behind when it forked; answer with
    /// [`ReadyInput::ForkedChild`].
    LookForForkedChild,
    /// See whether the main process has stopped itself (now, and at every SIGCHLD);
    /// feed back [`ReadyInput::MainStopped`].
    LookForStop,
    /// Continue the main process, which stopped itself.
    Continue(u32),
    /// Run the readiness probe until it passes (feed back [`ReadyInput::ProbePassed`])
    /// or the deadline ([`ReadyInput::Failed`] with its last reason).
    RunProbe,
    /// Make this process the job's main process.
    Follow(u32),
    /// The main process handed over to one not known yet.
    Detach,
    /// The main process is ready.
    Ready,
    /// It did not become ready, for this reason; readiness is over.
    NotReady(String),
    /// The main process's exit was not a handover: it is the job's end.
    JobEnded,
}

/// Readiness of one start of a job's main process.
#[derive(Debug, Clone)]
pub struct Readiness {
    stages: VecDeque<Stage>,
    current: Option<Stage>,
    forks_seen: u8,
    deadline: Instant,
    /// The process followed now, if any.
    main: Option<u32>,
    /// An exit of the followed process waits for the answer to LookForForkedChild.
    exit_pending: bool,
    over: bool,
}

impl Readiness {
    /// What a job with this `expect`, a pid file or not and a `[ready]` probe or not waits
    /// for, with `deadline` from `now`. None when it waits for nothing.
    pub fn new(
        expect: Expect,
        pidfile: bool,
        probe: bool,
        deadline: Duration,
        now: Instant,
    ) -> Option<Readiness> {
        let mut stages = VecDeque::new();
        match expect {
            Expect::None => {}
            Expect::Fork => stages.push_back(Stage::Forks(1)),
            Expect::Daemon => stages.push_back(Stage::Forks(2)),
            Expect::Stop => stages.push_back(Stage::SigStop),
            Expect::Notify => stages.push_back(Stage::Notify),
        }
        if pidfile {
            stages.push_back(Stage::PidFile);
        }
        if probe {
            stages.push_back(Stage::Probe);
        }
        if stages.is_empty() {
            return None;
        }
        let deadline = now
            .checked_add(deadline)
            .or_else(|| now.checked_add(crate::config::limits::MAX_DURATION))
            .unwrap_or(now);
        Some(Readiness {
            stages,
            current: None,
            forks_seen: 0,
            deadline,
            main: None,
            exit_pending: false,
            over: false,
        })
    }

    /// Whether the main process must be given a notify socket.
    pub fn listens_notify(&self) -> bool {
        self.stages.contains(&Stage::Notify) || self.current == Some(Stage::Notify)
    }

    /// What it waits for now.
    pub fn current(&self) -> Option<Stage> {
        self.current
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The main process to look at for a stop, while that is waited for.
    pub fn awaits_stop(&self) -> Option<u32> {
        (!self.over && self.current == Some(Stage::SigStop))
            .then_some(self.main)
            .flatten()
    }

    /// Ready, or not ready: nothing more will come of it.
    pub fn is_over(&self) -> bool {
        self.over
    }

    pub fn handle(&mut self, input: ReadyInput) -> Vec<ReadyEffect> {
        let mut fx = Vec::new();
        if self.over {
            // A main process that exits after readiness ended is the job's business.
            if matches!(input, ReadyInput::MainExited { .. }) {
                fx.push(ReadyEffect::JobEnded);
            }
            return fx;
        }
        match input {
            ReadyInput::MainSpawned(pid) => {
                self.main = Some(pid);
                fx.push(ReadyEffect::ArmDeadline(self.deadline));
                self.advance(&mut fx);
            }
            ReadyInput::MainExited { pid, success } => {
                if self.main != Some(pid) || !success {
                    fx.push(ReadyEffect::JobEnded);
                    return fx;
                }
                match self.current {
                    Some(Stage::Forks(_)) => {
                        self.exit_pending = true;
                        fx.push(ReadyEffect::LookForForkedChild);
                    }
                    Some(Stage::PidFile) => {
                        // The starter exited; the pid file will name the daemon.
                        self.main = None;
                        fx.push(ReadyEffect::Detach);
                    }
                    _ => fx.push(ReadyEffect::JobEnded),
                }
            }
            ReadyInput::ForkedChild(found) => {
                let after_exit = std::mem::take(&mut self.exit_pending);
                let Some(Stage::Forks(needed)) = self.current else {
                    return fx;
                };
                match found {
                    Some(child) => {
                        self.main = Some(child.pid);
                        fx.push(ReadyEffect::Follow(child.pid));
                        self.forks_seen = self.forks_seen.saturating_add(1);
                        // A daemon forks, its child calls setsid and forks again. The
                        // child is in guardian's session (before setsid) or leads its
                        // own (after); only the grandchild is in a session it does not
                        // lead. Holding that one, the forks are done even if the
                        // child's exit went by unseen.
                        if self.forks_seen >= needed || child.in_foreign_session {
                            self.advance(&mut fx);
                        }
                    }
                    None if after_exit => {
                        // The process that forked may still be on its way out (a
                        // daemon's first child exits right after its own fork): the
                        // orphan shows up when it is gone. A pid file, if any, names the
                        // daemon in the end anyway.
                        self.main = None;
                        fx.push(ReadyEffect::Detach);
                        if self.stages.front() == Some(&Stage::PidFile) {
                            self.advance(&mut fx);
                        }
                    }
                    None => {}
                }
            }
            ReadyInput::OrphanReaped => {
                if matches!(self.current, Some(Stage::Forks(_)))
                    && self.main.is_none()
                    && !self.exit_pending
                {
                    fx.push(ReadyEffect::LookForForkedChild);
                }
            }
            ReadyInput::MainStopped => {
                if let (Some(Stage::SigStop), Some(pid)) = (self.current, self.main) {
                    fx.push(ReadyEffect::Continue(pid));
                    self.advance(&mut fx);
                }
            }
            ReadyInput::PidFile { pid, ours } => {
                if self.current != Some(Stage::PidFile) {
                    return fx;
                }
                if self.main != Some(pid) {
                    if !ours {
                        self.fail(
                            format!(
                                "the pid file names process {pid}, which guardian did not start (a stale pid file?)"
                            ),
                            &mut fx,
                        );
                        return fx;
                    }
                    self.main = Some(pid);
                    fx.push(ReadyEffect::Follow(pid));
                }
                self.advance(&mut fx);
            }
            ReadyInput::MainPid { pid, ours } => {
                if ours && self.main != Some(pid) {
                    self.main = Some(pid);
                    fx.push(ReadyEffect::Follow(pid));
                }
            }
            ReadyInput::Notified | ReadyInput::ProbePassed => {
                if matches!(self.current, Some(Stage::Notify | Stage::Probe)) {
                    self.advance(&mut fx);
                }
            }
            ReadyInput::Failed(reason) => self.fail(reason, &mut fx),
            ReadyInput::Deadline => match self.current {
                // The probe reports its own deadline, with the probe's last reason.
                Some(Stage::Probe) => {}
                Some(Stage::Forks(_)) => self.fail(
                    "its process exited without leaving a process to follow (is `expect` right?)"
                        .into(),
                    &mut fx,
                ),
                other => self.fail(
                    format!(
                        "still {} at the deadline",
                        other.map_or("waiting", Stage::describe)
                    ),
                    &mut fx,
                ),
            },
        }
        fx
    }

    fn fail(&mut self, reason: String, fx: &mut Vec<ReadyEffect>) {
        self.over = true;
        self.current = None;
        fx.push(ReadyEffect::NotReady(reason));
    }

    /// On to the next stage, and what it needs done.
    fn advance(&mut self, fx: &mut Vec<ReadyEffect>) {
        self.current = self.stages.pop_front();
        match self.current {
            None => {
                self.over = true;
                fx.push(ReadyEffect::Ready);
            }
            Some(Stage::Forks(_) | Stage::Notify) => {}
            Some(Stage::SigStop) => fx.push(ReadyEffect::LookForStop),
            Some(Stage::PidFile) => fx.push(ReadyEffect::WatchPidFile),
            Some(Stage::Probe) => fx.push(ReadyEffect::RunProbe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReadyEffect as E;
    use ReadyInput as I;

    const MAIN: u32 = 100;

    fn start(expect: Expect, pidfile: bool, probe: bool) -> (Readiness, Vec<ReadyEffect>, Instant) {
        let now = Instant::now();
        let mut r = Readiness::new(expect, pidfile, probe, Duration::from_secs(5), now)
            .unwrap_or_else(|| panic!("{expect:?} waits for something"));
        let fx = r.handle(I::MainSpawned(MAIN));
        (r, fx, now + Duration::from_secs(5))
    }

    fn exited(r: &mut Readiness, pid: u32) -> Vec<ReadyEffect> {
        r.handle(I::MainExited { pid, success: true })
    }

    fn child(pid: u32) -> I {
        I::ForkedChild(Some(Forked {
            pid,
            in_foreign_session: false,
        }))
    }

    #[test]
    fn nothing_to_wait_for() {
        assert!(
            Readiness::new(Expect::None, false, false, DEFAULT_DEADLINE, Instant::now()).is_none()
        );
    }

    #[test]
    fn follows_only_forks_and_pid_files() {
        assert!(follows(Expect::Fork, false));
        assert!(follows(Expect::Daemon, false));
        assert!(follows(Expect::None, true));
        assert!(!follows(Expect::Stop, false));
        assert!(!follows(Expect::Notify, false));
        assert!(!follows(Expect::None, false));
    }

    #[test]
    fn fork_follows_the_child() {
        let (mut r, fx, at) = start(Expect::Fork, false, false);
        assert_eq!(fx, vec![E::ArmDeadline(at)]);
        assert_eq!(r.current(), Some(Stage::Forks(1)));
        assert_eq!(exited(&mut r, MAIN), vec![E::LookForForkedChild]);
        assert_eq!(r.handle(child(101)), vec![E::Follow(101), E::Ready]);
        assert!(r.is_over());
        // The followed child's own exit later is the job's end.
        assert_eq!(exited(&mut r, 101), vec![E::JobEnded]);
    }

    #[test]
    fn a_failing_starter_ends_the_job() {
        let (mut r, _, _) = start(Expect::Fork, false, false);
        let fx = r.handle(I::MainExited {
            pid: MAIN,
            success: false,
        });
        assert_eq!(fx, vec![E::JobEnded]);
        // An exit of some other process is not the followed one's.
        let (mut r, _, _) = start(Expect::Fork, false, false);
        assert_eq!(exited(&mut r, 7), vec![E::JobEnded]);
    }

    #[test]
    fn daemon_follows_two_forks() {
        let (mut r, _, _) = start(Expect::Daemon, false, false);
        assert_eq!(exited(&mut r, MAIN), vec![E::LookForForkedChild]);
        assert_eq!(r.handle(child(101)), vec![E::Follow(101)]);
        assert_eq!(r.current(), Some(Stage::Forks(2)));
        assert_eq!(exited(&mut r, 101), vec![E::LookForForkedChild]);
        assert_eq!(r.handle(child(102)), vec![E::Follow(102), E::Ready]);
    }

    #[test]
    fn daemon_grandchild_in_its_own_session_is_enough() {
        let (mut r, _, _) = start(Expect::Daemon, false, false);
        exited(&mut r, MAIN);
        let fx = r.handle(I::ForkedChild(Some(Forked {
            pid: 102,
            in_foreign_session: true,
        })));
        assert_eq!(fx, vec![E::Follow(102), E::Ready]);
    }

    #[test]
    fn a_fork_found_later_when_an_orphan_is_reaped() {
        let (mut r, _, _) = start(Expect::Fork, false, false);
        assert_eq!(exited(&mut r, MAIN), vec![E::LookForForkedChild]);
        assert_eq!(r.handle(I::ForkedChild(None)), vec![E::Detach]);
        assert_eq!(r.current(), Some(Stage::Forks(1)));
        assert_eq!(r.handle(I::OrphanReaped), vec![E::LookForForkedChild]);
        // Still none: nothing changes.
        assert_eq!(r.handle(I::ForkedChild(None)), vec![]);
        assert_eq!(r.handle(I::OrphanReaped), vec![E::LookForForkedChild]);
        assert_eq!(r.handle(child(103)), vec![E::Follow(103), E::Ready]);
    }

    #[test]
    fn orphans_mean_nothing_while_the_main_process_lives() {
        let (mut r, _, _) = start(Expect::Fork, false, false);
        assert_eq!(r.handle(I::OrphanReaped), vec![]);
    }

    #[test]
    fn fork_without_child_goes_on_to_the_pid_file() {
        let (mut r, _, _) = start(Expect::Fork, true, false);
        exited(&mut r, MAIN);
        assert_eq!(
            r.handle(I::ForkedChild(None)),
            vec![E::Detach, E::WatchPidFile]
        );
        assert_eq!(
            r.handle(I::PidFile {
                pid: 200,
                ours: true
            }),
            vec![E::Follow(200), E::Ready]
        );
    }

    #[test]
    fn pid_file_after_the_starter_exits() {
        let (mut r, fx, at) = start(Expect::None, true, false);
        assert_eq!(fx, vec![E::ArmDeadline(at), E::WatchPidFile]);
        assert_eq!(exited(&mut r, MAIN), vec![E::Detach]);
        assert_eq!(
            r.handle(I::PidFile {
                pid: 200,
                ours: true
            }),
            vec![E::Follow(200), E::Ready]
        );
    }

    #[test]
    fn pid_file_naming_the_main_process_itself() {
        let (mut r, _, _) = start(Expect::None, true, false);
        let fx = r.handle(I::PidFile {
            pid: MAIN,
            ours: true,
        });
        assert_eq!(fx, vec![E::Ready]);
    }

    #[test]
    fn a_stale_pid_file_is_not_ready() {
        let (mut r, _, _) = start(Expect::None, true, false);
        let fx = r.handle(I::PidFile {
            pid: 999,
            ours: false,
        });
        assert!(
            matches!(&fx[..], [E::NotReady(why)] if why.contains("stale")),
            "{fx:?}"
        );
        assert!(r.is_over());
    }

    #[test]
    fn a_pid_file_before_its_stage_is_ignored() {
        let (mut r, _, _) = start(Expect::Fork, true, false);
        let fx = r.handle(I::PidFile {
            pid: 200,
            ours: true,
        });
        assert_eq!(fx, vec![]);
        assert_eq!(r.current(), Some(Stage::Forks(1)));
    }

    #[test]
    fn stop_continues_the_process() {
        let (mut r, fx, at) = start(Expect::Stop, false, false);
        assert_eq!(fx, vec![E::ArmDeadline(at), E::LookForStop]);
        assert_eq!(r.awaits_stop(), Some(MAIN));
        assert_eq!(r.handle(I::MainStopped), vec![E::Continue(MAIN), E::Ready]);
        assert_eq!(r.awaits_stop(), None);
        // Any exit of the main process ends the job: it is not followed elsewhere.
        assert_eq!(exited(&mut r, MAIN), vec![E::JobEnded]);
    }

    #[test]
    fn an_exit_while_waiting_for_a_stop_ends_the_job() {
        let (mut r, _, _) = start(Expect::Stop, false, false);
        assert_eq!(exited(&mut r, MAIN), vec![E::JobEnded]);
    }

    #[test]
    fn notify_ready_and_mainpid() {
        let (mut r, fx, at) = start(Expect::Notify, false, false);
        assert!(r.listens_notify());
        assert_eq!(fx, vec![E::ArmDeadline(at)]);
        assert_eq!(
            r.handle(I::MainPid {
                pid: 300,
                ours: false
            }),
            vec![],
            "a pid guardian did not start is not followed"
        );
        assert_eq!(
            r.handle(I::MainPid {
                pid: 300,
                ours: true
            }),
            vec![E::Follow(300)]
        );
        assert_eq!(r.handle(I::Notified), vec![E::Ready]);
        assert_eq!(r.handle(I::Notified), vec![], "once over, over");
    }

    #[test]
    fn probe_after_notify() {
        let (mut r, _, _) = start(Expect::Notify, false, true);
        assert_eq!(r.handle(I::ProbePassed), vec![E::RunProbe]);
        assert_eq!(r.handle(I::ProbePassed), vec![E::Ready]);
    }

    #[test]
    fn probe_alone() {
        let (mut r, fx, at) = start(Expect::None, false, true);
        assert!(!r.listens_notify());
        assert_eq!(fx, vec![E::ArmDeadline(at), E::RunProbe]);
        // The probe task reports its own deadline, with its last reason.
        assert_eq!(r.handle(I::Deadline), vec![]);
        assert_eq!(
            r.handle(I::Failed("connection refused".into())),
            vec![E::NotReady("connection refused".into())]
        );
        assert_eq!(r.handle(I::ProbePassed), vec![]);
    }

    #[test]
    fn fork_pid_file_and_probe_in_order() {
        let (mut r, _, _) = start(Expect::Daemon, true, true);
        exited(&mut r, MAIN);
        r.handle(child(101));
        exited(&mut r, 101);
        assert_eq!(r.handle(child(102)), vec![E::Follow(102), E::WatchPidFile]);
        assert_eq!(
            r.handle(I::PidFile {
                pid: 102,
                ours: true
            }),
            vec![E::RunProbe]
        );
        assert_eq!(r.handle(I::ProbePassed), vec![E::Ready]);
    }

    #[test]
    fn deadlines_say_what_was_waited_for() {
        let (mut r, _, _) = start(Expect::Fork, false, false);
        let fx = r.handle(I::Deadline);
        assert!(
            matches!(&fx[..], [E::NotReady(why)] if why.contains("without leaving a process")),
            "{fx:?}"
        );
        for (expect, pidfile, text) in [
            (Expect::Stop, false, "SIGSTOP"),
            (Expect::Notify, false, "READY=1"),
            (Expect::None, true, "pid file"),
        ] {
            let (mut r, _, _) = start(expect, pidfile, false);
            let fx = r.handle(I::Deadline);
            assert!(
                matches!(&fx[..], [E::NotReady(why)] if why.starts_with("still") && why.contains(text)),
                "{expect:?}: {fx:?}"
            );
            assert_eq!(r.handle(I::Deadline), vec![], "told once");
        }
    }

    #[test]
    fn a_deadline_after_ready_is_nothing() {
        let (mut r, _, _) = start(Expect::Stop, false, false);
        r.handle(I::MainStopped);
        assert_eq!(r.handle(I::Deadline), vec![]);
    }

    #[test]
    fn deadline_too_far_for_the_clock_is_clamped() {
        let now = Instant::now();
        let r = Readiness::new(Expect::Stop, false, false, Duration::MAX, now);
        assert!(r.is_some_and(|r| r.deadline() >= now));
    }
}
