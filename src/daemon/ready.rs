//! Carrying out readiness: the rules are the pure sub-machine in
//! [`crate::job::readiness`]; this module does what it asks (watch the pid file, listen
//! on the notify socket, look for the process a fork left behind, run the probe) and
//! feeds back what it saw.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::task::AbortHandle;

use crate::config::probe::ReadySpec;
use crate::job::readiness::{DEFAULT_DEADLINE, Forked};
use crate::job::{Input, Proc, ProcessEnd, Readiness, ReadyEffect, ReadyInput, State};
use crate::process::lineage;

use super::{Daemon, Internal, Owner, Timer, Work};

/// What a helper task found.
pub(crate) enum Found {
    /// READY=1 on the notify socket.
    Notified,
    /// The readiness probe passed.
    ProbePassed,
    /// The pid file names this live process.
    PidFile(u32),
    /// The process said MAINPID=.
    MainPid(u32),
}

/// A job's readiness at run time: the sub-machine and the helpers working for it.
pub(crate) struct ReadyRt {
    pub generation: u64,
    m: Readiness,
    /// `@name` of the abstract socket given as NOTIFY_SOCKET.
    pub notify_socket: Option<String>,
    tasks: Vec<AbortHandle>,
}

impl Drop for ReadyRt {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A number no run of readiness or handover had before: a helper's message or a timer
/// that carries an older one is stale.
pub(super) fn next_generation() -> u64 {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

impl Daemon {
    /// Before the main process is spawned: what readiness will wait for, and the notify
    /// socket it must be given.
    pub(super) fn prepare_main(&mut self, name: &str) -> std::io::Result<()> {
        let tx = self.internal.clone();
        let now = self.now().mono;
        let Some(job) = self.jobs.get_mut(name) else {
            return Ok(());
        };
        job.readiness = None;
        let deadline = job
            .spec
            .ready
            .as_ref()
            .map_or(DEFAULT_DEADLINE, |r| r.deadline);
        let Some(m) = Readiness::new(
            job.spec.expect,
            job.spec.pidfile.is_some(),
            job.spec.ready.is_some(),
            deadline,
            now,
        ) else {
            return Ok(());
        };
        let generation = next_generation();
        let mut r = ReadyRt {
            generation,
            m,
            notify_socket: None,
            tasks: Vec::new(),
        };
        if r.m.listens_notify() {
            let (path, task) = notify_listener(name, generation, tx)?;
            r.notify_socket = Some(path);
            r.tasks.push(task);
        }
        job.readiness = Some(Box::new(r));
        Ok(())
    }

    /// The main process is spawned: start waiting for it to be ready.
    pub(super) fn await_ready(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        match (&job.readiness, job.m.main_pid()) {
            (Some(_), Some(pid)) => {
                self.ready_feed(name, ReadyInput::MainSpawned(pid));
            }
            // Nothing was prepared (it cannot be): do not hold the job.
            _ => self.work.push_back(Work::Feed(name.into(), Input::Ready)),
        }
    }

    /// Feeds one input to a job's readiness and carries out what follows, until nothing
    /// does. Says whether a main process's exit ended the job.
    fn ready_feed(&mut self, name: &str, input: ReadyInput) -> bool {
        let mut ended = false;
        let mut inputs = std::collections::VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let Some(r) = self.jobs.get_mut(name).and_then(|j| j.readiness.as_mut()) else {
                // Readiness is over: an exit is the job's end.
                return ended || matches!(input, ReadyInput::MainExited { .. });
            };
            let generation = r.generation;
            for effect in r.m.handle(input) {
                match effect {
                    ReadyEffect::ArmDeadline(at) => {
                        let timer = Timer::ReadyDeadline {
                            job: name.to_string(),
                            generation,
                        };
                        self.timers.arm(at, timer);
                    }
                    ReadyEffect::WatchPidFile => self.watch_ready_pidfile(name, generation),
                    ReadyEffect::LookForForkedChild => {
                        let found = self.newest_orphan(name).map(|pid| Forked {
                            pid,
                            in_foreign_session: in_a_session_it_does_not_lead(pid),
                        });
                        inputs.push_back(ReadyInput::ForkedChild(found));
                    }
                    ReadyEffect::LookForStop => {
                        if let Some(pid) = self.jobs.get(name).and_then(|j| j.m.main_pid())
                            && self.pids.stopped(&*self.os, pid)
                        {
                            inputs.push_back(ReadyInput::MainStopped);
                        }
                    }
                    ReadyEffect::Continue(pid) => {
                        tracing::debug!("{name}: stopped itself, continuing it");
                        self.os.signal_pid(pid, Signal::SIGCONT);
                    }
                    ReadyEffect::RunProbe => {
                        if let Err(reason) = self.run_ready_probe(name, generation) {
                            inputs.push_back(ReadyInput::Failed(reason));
                        }
                    }
                    ReadyEffect::Follow(pid) => self.follow_main(name, pid),
                    ReadyEffect::Detach => {
                        self.work.push_back(Work::Feed(name.into(), Input::Detach));
                    }
                    ReadyEffect::Ready => {
                        tracing::debug!("{name}: ready");
                        self.work.push_back(Work::Feed(name.into(), Input::Ready));
                    }
                    ReadyEffect::NotReady(reason) => self.not_ready(name, reason),
                    ReadyEffect::JobEnded => ended = true,
                }
            }
        }
        ended
    }

    fn watch_ready_pidfile(&mut self, name: &str, generation: u64) {
        let Some(path) = self
            .jobs
            .get(name)
            .and_then(|j| j.spec.pidfile.as_deref().map(Path::to_path_buf))
        else {
            return;
        };
        let job_name = name.to_string();
        let task = self.watch_pidfile(path, true, move |pid| Internal::Ready {
            job: job_name.clone(),
            generation,
            result: Ok(Found::PidFile(pid)),
        });
        if let Some(r) = self.jobs.get_mut(name).and_then(|j| j.readiness.as_mut()) {
            r.tasks.push(task);
        }
    }

    /// A task that watches the pid file `path` and sends the loop what `msg` makes of
    /// each live process it names that it did not name before: only the first one if
    /// `once`, else until it is aborted.
    pub(super) fn watch_pidfile(
        &self,
        path: PathBuf,
        once: bool,
        msg: impl Fn(u32) -> Internal + Send + 'static,
    ) -> AbortHandle {
        let tx = self.internal.clone();
        let task = tokio::spawn(async move {
            let mut pids = pidfile_changes(path);
            while let Some(pid) = pids.next().await {
                if tx.send(msg(pid)).is_err() || once {
                    return;
                }
            }
        });
        task.abort_handle()
    }

    /// Whether the main process of job `name` can be `pid`, which a pid file names: it
    /// is the main process already, or a descendant of guardian's.
    pub(super) fn can_follow(&self, name: &str, pid: u32) -> bool {
        self.jobs.get(name).and_then(|j| j.m.main_pid()) == Some(pid)
            || lineage::descends_from_guardian(pid)
    }

    /// Starts the readiness probe's task; the reason when it cannot be.
    fn run_ready_probe(&mut self, name: &str, generation: u64) -> Result<(), String> {
        let tx = self.internal.clone();
        // The HTTP clients are built only for jobs that probe.
        let ctx = self.probe_context(name)?;
        let Some(job) = self.jobs.get_mut(name) else {
            return Ok(());
        };
        let Some(spec) = job.spec.ready.as_deref().cloned() else {
            return Ok(());
        };
        let Some(r) = job.readiness.as_mut() else {
            return Ok(());
        };
        let task = tokio::spawn(probe_until_ready(
            ctx,
            spec,
            r.m.deadline(),
            name.to_string(),
            generation,
            tx,
        ));
        r.tasks.push(task.abort_handle());
        Ok(())
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
        if job.readiness.as_ref().map(|r| r.generation) != Some(generation) {
            return;
        }
        let input = match result {
            Err(reason) => ReadyInput::Failed(reason),
            Ok(Found::Notified) => ReadyInput::Notified,
            Ok(Found::ProbePassed) => ReadyInput::ProbePassed,
            Ok(Found::PidFile(pid)) => ReadyInput::PidFile {
                pid,
                ours: self.can_follow(name, pid),
            },
            Ok(Found::MainPid(pid)) => ReadyInput::MainPid {
                pid,
                ours: lineage::descends_from_guardian(pid),
            },
        };
        self.ready_feed(name, input);
        self.pump();
    }

    pub(super) fn ready_deadline(&mut self, name: &str, generation: u64) {
        let current = self
            .jobs
            .get(name)
            .and_then(|j| j.readiness.as_ref())
            .is_some_and(|r| r.generation == generation);
        if current {
            self.ready_feed(name, ReadyInput::Deadline);
            self.pump();
        }
    }

    /// Makes `pid`, a descendant of guardian's, the job's main process. Only such a
    /// process can be followed: it is reaped here once its parent (say, the starter that
    /// forked it) is gone, since guardian is a child subreaper.
    pub(super) fn follow_main(&mut self, name: &str, pid: u32) {
        tracing::info!("{name}: following process {pid} as the main process");
        self.make_main(name, pid);
    }

    /// Makes `pid`, a descendant of guardian's, the job's main process, without a word
    /// in the log.
    pub(super) fn make_main(&mut self, name: &str, pid: u32) {
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
        self.work
            .push_back(Work::Feed(name.into(), Input::Adopt(pid)));
    }

    /// The main process `pid` of a job exited with `end`; it was in the process group
    /// and session `ids`. If the job follows another process now (a fork while starting,
    /// a pid file rewritten by a seamless restart), adopt it and say so: the job has not
    /// ended. While it starts, readiness decides; after, the handover (`handover.rs`).
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
        if job.m.state() == State::Spawned {
            // While it starts, readiness says.
            if job.readiness.is_none() {
                return false;
            }
            let input = ReadyInput::MainExited {
                pid,
                success: end.success(),
            };
            let ended = self.ready_feed(name, input);
            self.pump();
            return !ended;
        }
        self.main_exited_running(name, pid, end, ids)
    }

    /// An orphan of guardian's was reaped: a job waiting to follow a fork may find the
    /// process it forked now.
    pub(super) fn orphan_reaped(&mut self) {
        let waiting: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.m.state() == State::Spawned && j.readiness.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for name in waiting {
            self.ready_feed(&name, ReadyInput::OrphanReaped);
        }
        self.pump();
    }

    /// The most recently started live child of guardian that belongs to job `name` (it
    /// is in the job's cgroup, or its environment says so) and is not known yet: a
    /// process that a job's main process left behind when it forked and exited. The
    /// cgroup is asked first: a daemon that sets its process title (redis-server,
    /// nginx) writes over the environment that /proc shows.
    fn newest_orphan(&self, name: &str) -> Option<u32> {
        let me = std::process::id();
        let in_cgroup = self
            .rest
            .cgroups()
            .map(|c| c.procs(name))
            .unwrap_or_default();
        lineage::live()
            .filter(|(pid, s)| {
                s.ppid == me
                    && !self.pids.contains_key(pid)
                    && (in_cgroup.contains(pid) || lineage::marked_for(*pid, name))
            })
            // Of two started in the same tick, the first found.
            .min_by_key(|(_, s)| std::cmp::Reverse(s.start_time))
            .map(|(pid, _)| pid)
    }

    /// For jobs that `expect = "stop"`: a main process that stopped itself is ready; it
    /// is continued. The process table says whether it stopped.
    pub(super) fn check_stopped_children(&mut self) {
        let stopped: Vec<String> = self
            .jobs
            .iter()
            .filter_map(|(n, j)| {
                let pid = j.readiness.as_ref()?.m.awaits_stop()?;
                self.pids.stopped(&*self.os, pid).then(|| n.clone())
            })
            .collect();
        for name in stopped {
            self.ready_feed(&name, ReadyInput::MainStopped);
        }
        self.pump();
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
            tracing::debug!("{job}: ready: {}", crate::logtext::Esc(&outcome.reason()));
            let _ = tx.send(Internal::Ready {
                job,
                generation,
                result: Ok(Found::ProbePassed),
            });
            return;
        }
        last = outcome.reason().into_owned();
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
                    Some(Found::Notified)
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

/// What a pid file names, as it changes: each live process it names that it did not
/// name when last read. The file is read again when inotify says something happened to
/// it or to its directory (`process::watch`); only if inotify cannot be used (the
/// user's limit of inotify instances is reached, say) is it read every 20 ms instead.
pub(crate) struct PidFileChanges {
    path: PathBuf,
    watch: Option<crate::process::watch::AsyncFileWatch>,
    started: bool,
    last: Option<u32>,
}

pub(crate) fn pidfile_changes(path: PathBuf) -> PidFileChanges {
    PidFileChanges {
        path,
        watch: None,
        started: false,
        last: None,
    }
}

const PIDFILE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

impl PidFileChanges {
    /// The next live process the file names.
    pub async fn next(&mut self) -> Option<u32> {
        use nix::sys::inotify::AddWatchFlags;
        loop {
            if !self.started {
                self.started = true;
                // Armed before the first read, so that no write can come in between.
                let events = AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MODIFY;
                match crate::process::watch::AsyncFileWatch::new(&self.path, events) {
                    Ok(w) => self.watch = Some(w),
                    Err(e) => tracing::warn!(
                        "cannot watch {} with inotify ({e}); reading it every {} ms",
                        crate::logtext::EscPath(&self.path),
                        PIDFILE_POLL.as_millis()
                    ),
                }
            } else {
                match self.watch.as_mut() {
                    Some(w) => {
                        if let Err(e) = w.changed().await {
                            tracing::warn!(
                                "watching {} failed ({e}); reading it every {} ms",
                                crate::logtext::EscPath(&self.path),
                                PIDFILE_POLL.as_millis()
                            );
                            self.watch = None;
                        }
                    }
                    None => tokio::time::sleep(PIDFILE_POLL).await,
                }
            }
            let found = read_pidfile(&self.path);
            let new = found.filter(|_| found != self.last);
            self.last = found;
            if new.is_some() {
                return new;
            }
        }
    }
}

/// The live process a pid file names, if any (not one that has exited: a zombie, or
/// one being torn down).
pub(crate) fn read_pidfile(path: &Path) -> Option<u32> {
    // The job's user may write what it likes there: a FIFO or a device must not block
    // the daemon, nor a huge file fill its memory.
    let bytes = crate::config::source::read(path, crate::config::source::Trust::Any, 4096).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let state = checks::tree::stat(pid)?.state;
    (state != 'Z' && state != 'X' && pid > 1).then_some(pid)
}

fn in_a_session_it_does_not_lead(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let own = nix::unistd::getsid(None).ok();
    nix::unistd::getsid(Some(Pid::from_raw(raw)))
        .is_ok_and(|sid| sid.as_raw() != raw && Some(sid) != own)
}
