//! Finding a job's main process ready, without guessing with timers. Depending on the
//! job, in this order:
//!
//! 1. `expect`: the process forks (once, or twice for a daemon) and the one that remains
//!    becomes the main process; or it raises SIGSTOP and is continued; or it says
//!    READY=1 on `NOTIFY_SOCKET`.
//! 2. `pidfile`: the file names a live process, which becomes the main process.
//! 3. `[ready]`: the probe passes.
//!
//! All of it must happen within the deadline (`[ready] deadline`, 60 s by default), or the
//! start fails and the main process is stopped.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::task::AbortHandle;

use crate::config::job::Expect;
use crate::config::probe::ReadySpec;
use crate::job::{Input, Proc, ProcessEnd, State};

use super::{Daemon, Internal, Owner, Timer, Work};

const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
const PIDFILE_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Follow this many forks.
    Forks(u8),
    SigStop,
    Notify,
    PidFile,
    Probe,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Forks(_) => "waiting for the process to fork",
            Stage::SigStop => "waiting for the process to stop itself (SIGSTOP)",
            Stage::Notify => "waiting for READY=1 on NOTIFY_SOCKET",
            Stage::PidFile => "waiting for the pid file",
            Stage::Probe => "waiting for the readiness probe to pass",
        }
    }
}

/// What a helper task found.
pub(crate) enum Found {
    /// The stage is done: READY=1, or the probe passed.
    Ready,
    /// The pid file names this live process.
    PidFile(u32),
    /// The process said MAINPID=.
    MainPid(u32),
}

pub(crate) struct Readiness {
    pub generation: u64,
    stages: VecDeque<Stage>,
    current: Option<Stage>,
    forks_seen: u8,
    deadline: Instant,
    /// `@name` of the abstract socket given as NOTIFY_SOCKET.
    pub notify_socket: Option<String>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Readiness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Daemon {
    /// Before the main process is spawned: what readiness will wait for, and the notify
    /// socket it must be given.
    pub(super) fn prepare_main(&mut self, name: &str) -> std::io::Result<()> {
        let tx = self.internal.clone();
        let Some(job) = self.jobs.get_mut(name) else {
            return Ok(());
        };
        job.readiness = None;
        if !job.spec.waits_for_ready() {
            return Ok(());
        }
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut stages = VecDeque::new();
        match job.spec.expect {
            Expect::None => {}
            Expect::Fork => stages.push_back(Stage::Forks(1)),
            Expect::Daemon => stages.push_back(Stage::Forks(2)),
            Expect::Stop => stages.push_back(Stage::SigStop),
            Expect::Notify => stages.push_back(Stage::Notify),
        }
        if job.spec.pidfile.is_some() {
            stages.push_back(Stage::PidFile);
        }
        if job.spec.ready.is_some() {
            stages.push_back(Stage::Probe);
        }
        let deadline = job
            .spec
            .ready
            .as_ref()
            .map_or(DEFAULT_DEADLINE, |r| r.deadline);
        let mut r = Readiness {
            generation,
            stages,
            current: None,
            forks_seen: 0,
            deadline: crate::config::limits::deadline(deadline),
            notify_socket: None,
            tasks: Vec::new(),
        };
        if job.spec.expect == Expect::Notify {
            let (path, task) = notify_listener(name, generation, tx)?;
            r.notify_socket = Some(path);
            r.tasks.push(task);
        }
        job.readiness = Some(r);
        Ok(())
    }

    /// The main process is spawned: start waiting for it to be ready.
    pub(super) fn await_ready(&mut self, name: &str) {
        let Some(r) = self.jobs.get(name).and_then(|j| j.readiness.as_ref()) else {
            // Nothing was prepared (it cannot be): do not hold the job.
            self.work.push_back(Work::Feed(name.into(), Input::Ready));
            return;
        };
        let timer = Timer::ReadyDeadline {
            job: name.to_string(),
            generation: r.generation,
        };
        self.timers.push(std::cmp::Reverse((r.deadline, timer)));
        self.next_stage(name);
    }

    fn next_stage(&mut self, name: &str) {
        let tx = self.internal.clone();
        let probing = self
            .jobs
            .get(name)
            .and_then(|j| j.readiness.as_ref())
            .is_some_and(|r| r.stages.front() == Some(&Stage::Probe));
        // The HTTP clients are built only for jobs that probe.
        let ctx = if probing {
            self.probe_context(name)
        } else {
            Err(String::new())
        };
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let Some(r) = job.readiness.as_mut() else {
            return;
        };
        r.current = r.stages.pop_front();
        let generation = r.generation;
        match r.current {
            None => {
                tracing::debug!("{name}: ready");
                self.work.push_back(Work::Feed(name.into(), Input::Ready));
            }
            Some(Stage::Forks(_) | Stage::Notify) => {}
            Some(Stage::SigStop) => self.check_stopped_children(),
            Some(Stage::PidFile) => {
                let path = job.spec.pidfile.clone().unwrap_or_default();
                let job_name = name.to_string();
                let task = tokio::spawn(async move {
                    loop {
                        if let Some(pid) = read_pidfile(&path) {
                            let _ = tx.send(Internal::Ready {
                                job: job_name,
                                generation,
                                result: Ok(Found::PidFile(pid)),
                            });
                            return;
                        }
                        tokio::time::sleep(PIDFILE_POLL).await;
                    }
                });
                r.tasks.push(task.abort_handle());
            }
            Some(Stage::Probe) => {
                let Some(spec) = job.spec.ready.as_deref().cloned() else {
                    self.work.push_back(Work::Feed(name.into(), Input::Ready));
                    return;
                };
                let ctx = match ctx {
                    Ok(c) => c,
                    Err(e) => {
                        self.not_ready(name, e);
                        return;
                    }
                };
                let deadline = r.deadline;
                let task = tokio::spawn(probe_until_ready(
                    ctx,
                    spec,
                    deadline,
                    name.to_string(),
                    generation,
                    tx,
                ));
                r.tasks.push(task.abort_handle());
            }
        }
    }

    fn not_ready(&mut self, name: &str, reason: String) {
        tracing::warn!("{name}: not ready: {}", crate::logtext::Esc(&reason));
        self.work
            .push_back(Work::Feed(name.into(), Input::NotReady));
        self.work.push_back(Work::Record(
            name.into(),
            Proc::Main,
            crate::job::FailureKind::NotReady,
            format!("not ready: {reason}"),
        ));
        if let Some(job) = self.jobs.get_mut(name) {
            job.readiness = None;
        }
        self.pump();
    }

    /// A helper task reports.
    pub(super) fn ready_step(
        &mut self,
        name: &str,
        generation: u64,
        result: Result<Found, String>,
    ) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let Some(r) = job
            .readiness
            .as_ref()
            .filter(|r| r.generation == generation)
        else {
            return;
        };
        let current = r.current;
        match result {
            Err(reason) => self.not_ready(name, reason),
            Ok(Found::MainPid(pid)) => {
                self.adopt(name, pid);
                self.pump();
            }
            Ok(Found::PidFile(pid)) => {
                if current != Some(Stage::PidFile) {
                    return;
                }
                if job.m.main_pid() != Some(pid) && !self.adopt(name, pid) {
                    self.not_ready(
                        name,
                        format!(
                            "the pid file names process {pid}, which guardian did not start (a stale pid file?)"
                        ),
                    );
                    return;
                }
                self.next_stage(name);
                self.pump();
            }
            Ok(Found::Ready) => {
                if matches!(current, Some(Stage::Notify | Stage::Probe)) {
                    self.next_stage(name);
                    self.pump();
                }
            }
        }
    }

    pub(super) fn ready_deadline(&mut self, name: &str, generation: u64) {
        let Some(r) = self
            .jobs
            .get(name)
            .and_then(|j| j.readiness.as_ref())
            .filter(|r| r.generation == generation)
        else {
            return;
        };
        if r.current == Some(Stage::Probe) {
            // The probe task reports its own deadline, with the probe's last reason.
            return;
        }
        let why = match r.current {
            Some(Stage::Forks(_)) => {
                "its process exited without leaving a process to follow (is `expect` right?)"
                    .to_string()
            }
            other => format!(
                "still {} at the deadline",
                other.map_or("waiting", Stage::describe)
            ),
        };
        self.not_ready(name, why);
    }

    /// Makes `pid` the job's main process. Only a descendant of guardian can be
    /// followed: it is reaped here once its parent (say, the starter that forked it) is
    /// gone, since guardian is a child subreaper. False otherwise.
    pub(super) fn adopt(&mut self, name: &str, pid: u32) -> bool {
        if !descends_from_guardian(pid) {
            return false;
        }
        // The process followed until now may live on (a starter that exits once its
        // daemon is up): from here on its end is not the job's.
        if let Some(old) = self.jobs.get(name).and_then(|j| j.m.main_pid())
            && old != pid
            && self.pids.contains_key(&old)
        {
            self.pids.insert(
                old,
                Owner::Former {
                    name: name.to_string(),
                },
            );
        }
        self.pids.insert(
            pid,
            Owner::Job {
                name: name.to_string(),
                proc: Proc::Main,
            },
        );
        tracing::info!("{name}: following process {pid} as the main process");
        self.work
            .push_back(Work::Feed(name.into(), Input::Adopt(pid)));
        true
    }

    /// The main process `pid` of a job exited with `end`; it was in the process group
    /// and session `ids`. If the job follows another process now (a fork while starting,
    /// a pid file rewritten by a seamless restart), adopt it and say so: the job has not
    /// ended. So too while a handover is waited for (see `handover.rs`).
    pub(super) fn main_handed_over(
        &mut self,
        name: &str,
        pid: u32,
        end: ProcessEnd,
        ids: Option<(u32, u32)>,
    ) -> bool {
        let Some(job) = self.jobs.get(name) else {
            return false;
        };
        if !job.follows() || job.m.main_pid() != Some(pid) {
            return false;
        }
        let spawned = job.m.state() == State::Spawned;
        let current = job.readiness.as_ref().and_then(|r| r.current);
        let pidfile = job.spec.pidfile.clone();
        if spawned && end.success() {
            if let Some(Stage::Forks(needed)) = current {
                if !self.follow_fork(name, needed) {
                    // The process that forked may still be on its way out (a daemon's
                    // first child exits right after its own fork): the orphan shows up
                    // when it is gone, and `orphan_reaped` looks again. A pid file, if
                    // any, names the daemon in the end anyway.
                    self.work.push_back(Work::Feed(name.into(), Input::Detach));
                    if pidfile.is_some() {
                        self.next_stage(name);
                    }
                }
                self.pump();
                return true;
            }
            if current == Some(Stage::PidFile) {
                // The starter exited; the pid file will name the daemon.
                self.work.push_back(Work::Feed(name.into(), Input::Detach));
                self.pump();
                return true;
            }
        }
        // Running: a seamless restart hands over to the process the pid file names now.
        if !spawned
            && let Some(path) = pidfile
            && let Some(next) = read_pidfile(&path)
            && next != pid
            && self.adopt(name, next)
        {
            tracing::info!("{name}: main process {pid} {end}; the pid file now names {next}");
            if let Some(job) = self.jobs.get_mut(name) {
                job.handover = None;
            }
            self.pump();
            return true;
        }
        // Or the pid file will name it soon: wait, as long as some process of the job
        // is left.
        !spawned && self.await_handover(name, pid, end, ids)
    }

    /// Follows the process a job's forking main process left behind, if there is one
    /// yet; says whether it did. When enough forks were followed, readiness moves on.
    fn follow_fork(&mut self, name: &str, needed: u8) -> bool {
        let Some(child) = self.newest_orphan(name) else {
            return false;
        };
        self.adopt(name, child);
        let done = {
            let Some(r) = self.jobs.get_mut(name).and_then(|j| j.readiness.as_mut()) else {
                return true;
            };
            r.forks_seen += 1;
            // A daemon forks, its child calls setsid and forks again. The child is in
            // guardian's session (before setsid) or leads its own (after); only the
            // grandchild is in a session it does not lead. Holding that one, the
            // forks are done even if the child's exit went by unseen.
            r.forks_seen >= needed || in_a_session_it_does_not_lead(child)
        };
        if done {
            self.next_stage(name);
        }
        true
    }

    /// An orphan of guardian's was reaped: a job waiting to follow a fork may find the
    /// process it forked now.
    pub(super) fn orphan_reaped(&mut self) {
        let waiting: Vec<(String, u8)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.m.state() == State::Spawned && j.m.main_pid().is_none())
            .filter_map(
                |(n, j)| match j.readiness.as_ref().and_then(|r| r.current) {
                    Some(Stage::Forks(needed)) => Some((n.clone(), needed)),
                    _ => None,
                },
            )
            .collect();
        for (name, needed) in waiting {
            if self.follow_fork(&name, needed) {
                self.pump();
            }
        }
    }

    /// The most recently started live child of guardian that belongs to job `name` (its
    /// environment says so) and is not known yet: a process that a job's main process
    /// left behind when it forked and exited.
    fn newest_orphan(&self, name: &str) -> Option<u32> {
        let me = std::process::id();
        let marker = format!("GUARDIAN_JOB={name}\0");
        let mut best: Option<(u64, u32)> = None;
        for pid in checks::tree::pids()? {
            if self.pids.contains_key(&pid) {
                continue;
            }
            let Some((ppid, state, start)) = stat_of(pid) else {
                continue;
            };
            if ppid != me || state == 'Z' {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if !String::from_utf8_lossy(&environ).contains(&marker) {
                continue;
            }
            if best.is_none_or(|(s, _)| start > s) {
                best = Some((start, pid));
            }
        }
        best.map(|(_, pid)| pid)
    }

    /// For jobs that `expect = "stop"`: a main process that stopped itself is ready; it
    /// is continued.
    pub(super) fn check_stopped_children(&mut self) {
        let waiting: Vec<(String, u32)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.readiness.as_ref().and_then(|r| r.current) == Some(Stage::SigStop))
            .filter_map(|(n, j)| j.m.main_pid().map(|p| (n.clone(), p)))
            .collect();
        for (name, pid) in waiting {
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG;
            if let Ok(WaitStatus::Stopped(_, _)) = waitid(Id::Pid(Pid::from_raw(raw)), flags) {
                tracing::debug!("{name}: stopped itself, continuing it");
                crate::process::signal_pid(pid, Signal::SIGCONT);
                self.next_stage(&name);
                self.pump();
            }
        }
    }
}

async fn probe_until_ready(
    ctx: checks::Context,
    spec: ReadySpec,
    deadline: Instant,
    job: String,
    generation: u64,
    tx: tokio::sync::mpsc::UnboundedSender<Internal>,
) {
    let mut last = String::from("the probe never ran");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = tx.send(Internal::Ready {
                job,
                generation,
                result: Err(format!(
                    "{} did not pass in time; last: {last}",
                    spec.probe.describe()
                )),
            });
            return;
        }
        let outcome = spec.probe.run(&ctx, spec.timeout.min(left)).await;
        if outcome.passed {
            tracing::debug!("{job}: ready: {}", crate::logtext::Esc(&outcome.reason));
            let _ = tx.send(Internal::Ready {
                job,
                generation,
                result: Ok(Found::Ready),
            });
            return;
        }
        last = outcome.reason;
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(spec.every.min(left)).await;
    }
}

/// An abstract datagram socket for sd_notify messages, and the task that reads it.
fn notify_listener(
    job: &str,
    generation: u64,
    tx: tokio::sync::mpsc::UnboundedSender<Internal>,
) -> std::io::Result<(String, AbortHandle)> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("guardian/{}/{job}/{generation}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let std_sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    std_sock.set_nonblocking(true)?;
    let sock = tokio::net::UnixDatagram::from_std(std_sock)?;
    let job = job.to_string();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok(n) = sock.recv(&mut buf).await else {
                return;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            for line in text.lines() {
                let found = if line == "READY=1" {
                    Some(Found::Ready)
                } else if let Some(pid) = line.strip_prefix("MAINPID=") {
                    pid.trim().parse().ok().map(Found::MainPid)
                } else {
                    None
                };
                if let Some(found) = found {
                    let _ = tx.send(Internal::Ready {
                        job: job.clone(),
                        generation,
                        result: Ok(found),
                    });
                }
            }
        }
    });
    Ok((format!("@{name}"), task.abort_handle()))
}

/// The live process a pid file names, if any (not one that has exited: a zombie, or
/// one being torn down).
pub(crate) fn read_pidfile(path: &Path) -> Option<u32> {
    // The job's user may write what it likes there: a FIFO or a device must not block
    // the daemon, nor a huge file fill its memory.
    let bytes = crate::config::source::read(path, crate::config::source::Trust::Any, 4096).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let (_, state, _) = stat_of(pid)?;
    (state != 'Z' && state != 'X' && pid > 1).then_some(pid)
}

/// Parent pid, state and start time of a process.
fn stat_of(pid: u32) -> Option<(u32, char, u64)> {
    checks::tree::stat(pid).map(|s| (s.ppid, s.state, s.start_time))
}

/// Whether guardian is an ancestor of `pid`.
pub(super) fn descends_from_guardian(pid: u32) -> bool {
    let me = std::process::id();
    let mut cur = pid;
    for _ in 0..64 {
        match stat_of(cur) {
            Some((ppid, _, _)) if ppid == me => return true,
            Some((ppid, _, _)) if ppid > 1 => cur = ppid,
            _ => return false,
        }
    }
    false
}

fn in_a_session_it_does_not_lead(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let own = nix::unistd::getsid(None).ok();
    nix::unistd::getsid(Some(Pid::from_raw(raw)))
        .is_ok_and(|sid| sid.as_raw() != raw && Some(sid) != own)
}
