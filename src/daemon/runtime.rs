//! A job at run time: its lifecycle machine and what the daemon holds for it while it
//! lives (its spec, its log pipe, the clients waiting on it, its event watches, the
//! helpers of its readiness, handover and checks).

use tokio::sync::oneshot;

use crate::config::{JobSpec, Program};
use crate::event::expr::Watch;
use crate::job::{FailureId, Machine, Policy, Proc, Until};
use crate::process::stat::{self, StatFile, Usage};

use super::checking;
use super::handover::Handover;
use super::logs::LogPipe;
use super::ready::ReadyRt;

/// What a client waiting on a job is told: done, or why not.
pub(super) type Outcome = Result<String, String>;

/// A client waiting for a job to reach `until`.
pub(super) struct Waiter {
    pub until: Until,
    pub tx: oneshot::Sender<Outcome>,
}

/// What to do with a job once it is down.
pub(super) enum After {
    Nothing,
    /// It was removed from the configuration.
    Remove,
    /// Its file changed: take the new spec, then start it again.
    Replace(Box<JobSpec>),
}

pub(super) struct Job {
    pub spec: JobSpec,
    pub m: Machine,
    pub log: LogPipe,
    pub waiters: Vec<Waiter>,
    /// Waits for every check of a start to pass (a rolling restart's).
    pub health_waiters: Vec<super::rolling::HealthWaiter>,
    pub after: After,
    /// Boxed, as the two below: most jobs have none, and each job's size counts two
    /// thousand times over.
    pub start_on: Option<Box<Watch>>,
    pub stop_on: Option<Box<Watch>>,
    /// The variables of the event that started the job, for its processes.
    pub start_env: Vec<(String, String)>,
    /// How the job's main process is being found ready, while it is.
    pub readiness: Option<Box<ReadyRt>>,
    /// A seamless restart whose successor the pid file does not name yet.
    pub handover: Option<Box<Handover>>,
    /// A boxed slice: the checks are set with the spec, never pushed to.
    pub checks: Box<[checking::CheckRt]>,
    /// The main pid as the check tasks see it.
    pub main_pid_shared: checking::SharedPid,
    /// The failure last alerted about, so each is told once.
    pub failure_alerted: Option<FailureId>,
    /// The main process's `/proc/PID/stat`, kept open while it is the main (see
    /// [`crate::process::stat::StatFile`]).
    pub stat: Option<StatFile>,
    /// What the record says of the job while it is not at rest (`recovery.rs`).
    pub recorded: Option<super::recovery::Recorded>,
}

impl Job {
    /// A job of `spec`, down, with what a person decided about it before (stopped by
    /// hand, unmonitored), logging to `log`.
    pub fn new(spec: JobSpec, log: LogPipe, manual_stop: bool, monitored: bool) -> Job {
        let mut m = Machine::new(Policy::of(&spec));
        m.set_monitored(monitored);
        m.set_manual_stop(manual_stop);
        let mut job = Job {
            m,
            start_on: None,
            stop_on: None,
            spec: JobSpec::new(&spec.name, &spec.file),
            log,
            waiters: Vec::new(),
            health_waiters: Vec::new(),
            after: After::Nothing,
            start_env: Vec::new(),
            readiness: None,
            handover: None,
            checks: Box::default(),
            main_pid_shared: Default::default(),
            failure_alerted: None,
            stat: None,
            recorded: None,
        };
        job.apply(spec);
        job
    }

    /// Takes `spec` as the job's configuration: its lifecycle policy, its event
    /// expressions and its checks follow it. Only for a job that is down.
    pub fn apply(&mut self, spec: JobSpec) {
        self.m.set_policy(Policy::of(&spec));
        self.start_on = spec
            .start_on
            .as_ref()
            .map(|o| Box::new(Watch::new(o.expr.clone())));
        self.stop_on = spec
            .stop_on
            .as_ref()
            .map(|o| Box::new(Watch::new(o.expr.clone())));
        self.checks = spec
            .checks
            .iter()
            .cloned()
            .map(checking::CheckRt::new)
            .collect();
        self.spec = spec;
    }

    /// Keeps the stat file of the main process the machine follows now: a new one when
    /// the main changed (spawned, adopted, followed after a fork, handed over), none
    /// when there is none or no room for it.
    pub fn sync_stat(&mut self) {
        let want = self.m.main_pid().filter(|_| stat::keeping());
        if self.stat.as_ref().map(StatFile::pid) == want {
            return;
        }
        self.stat = want.and_then(|pid| match StatFile::open(pid) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::debug!("{}: cannot keep /proc/{pid}/stat open: {e}", self.spec.name);
                None
            }
        });
    }

    /// The main process's CPU time and resident memory: from its kept stat file, which
    /// reads nothing once that process is gone; or, with none kept, from
    /// `/proc/PID/stat` opened for this read (the pid is the main's, which the daemon
    /// has not reaped yet, or it would not be the main any more).
    pub fn main_usage(&self) -> Option<Usage> {
        let pid = self.m.main_pid()?;
        match &self.stat {
            Some(f) if f.pid() == pid => f.usage(),
            _ => stat::usage(pid),
        }
    }

    /// Whether the job has a `start-on` or `stop-on`, and so is offered events.
    pub fn watches(&self) -> bool {
        self.start_on.is_some() || self.stop_on.is_some()
    }

    /// Whether guardian follows a main process other than the one it spawned (a daemon
    /// that forks, a pid file): then the spawned leader's exit is not the job's end,
    /// and its process group is not cleaned up when it exits.
    pub fn follows(&self) -> bool {
        crate::job::readiness::follows(self.spec.expect, self.spec.pidfile.is_some())
    }

    /// What the job runs as process `p`, if it has one.
    pub fn program(&self, p: Proc) -> Option<&Program> {
        let spec = &self.spec;
        match p {
            Proc::Main => spec.main.as_ref(),
            Proc::PreStart => spec.hooks.pre_start.as_ref(),
            Proc::PostStart => spec.hooks.post_start.as_ref(),
            Proc::PreStop => spec.hooks.pre_stop.as_ref(),
            Proc::PostStop => spec.hooks.post_stop.as_ref(),
        }
    }

    /// The variables a process `p` of the job gets beyond its environment: the starting
    /// event's, which process it is (for a hook), and where to say READY=1.
    pub fn extra_env(&self, p: Proc) -> Vec<(&str, &str)> {
        let mut extra: Vec<(&str, &str)> = self
            .start_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if p != Proc::Main {
            extra.push(("GUARDIAN_PROCESS", p.as_str()));
        }
        if let Some(sock) = self
            .readiness
            .as_ref()
            .and_then(|r| r.notify_socket.as_deref())
        {
            extra.push(("NOTIFY_SOCKET", sock));
        }
        extra
    }
}
