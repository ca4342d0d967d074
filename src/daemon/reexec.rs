//! Upgrade in place: `guardian reexec` (or SIGUSR2) makes the daemon execute the binary
//! at its path again, the one a package may just have replaced, with the same
//! arguments, keeping every job running under the same pid.
//!
//! `execve` keeps the process, and so its pid and its children: the jobs are still the
//! daemon's children afterwards, waited for as before, and one that exits while the new
//! image starts stays a zombie until the new image reaps it and handles its end. What
//! the old image hands over:
//!
//! - **descriptors**, with `FD_CLOEXEC` cleared just before the exec: the control
//!   socket's listener (clients that connect meanwhile wait in its backlog) and its lock,
//!   the HTTP interface's listener likewise (its connections have finished the request
//!   each was at, and ended), and each job's log pipe (so nothing in a pipe is lost, not
//!   even an anonymous one);
//! - **state**, in `state-dir/reexec.json` (0600) named by [`ENV`] in the new image's
//!   environment, which it removes from its environment and deletes once read: each
//!   job's state, goal, processes, counts, the variables of its starting event, the
//!   runs of its checks, the generation (how many times the daemon re-executed);
//! - **signals**: SIGTERM, SIGINT, SIGHUP, SIGUSR2 and SIGCHLD are blocked across the
//!   exec, so one that comes meanwhile waits, pending, for the new image's handlers.
//!
//! The exec waits (up to [`SETTLE`]) until no job is between two states and no client
//! waits on a job, then happens: a job in the middle of a move is ended cleanly and
//! follows its goal in the new image, as after a crash. Requests that arrive while the
//! old image hands over are answered [`REEXECUTING`]: nothing was done, ask again (the
//! CLI does so itself). When the exec fails (the binary is gone, not executable, not a
//! program), the old image says why, takes its descriptors back and goes on.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsString};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::control::protocol::{DaemonInfo, REEXECUTING, Response};
use crate::files;
use crate::job::{AutoStart, Goal, Input, Proc, State};
use crate::process::Pgid;

use super::recovery::Held;
use super::timers::Timer;
use super::{Daemon, Owner};

/// The variable that names the state file in the new image's environment.
pub const ENV: &str = "GUARDIAN_REEXEC_STATE";
/// The state file's format. A new binary reads this version; it must go on reading
/// every version a release it may replace wrote.
pub const FORMAT: u32 = 1;
/// How long the exec waits for every job to be still.
pub const SETTLE: Duration = Duration::from_secs(5);

/// What the old image hands the new one.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    pub format: u32,
    /// How many times the daemon re-executed, this exec included.
    pub generation: u64,
    pub listener_fd: RawFd,
    pub lock_fd: RawFd,
    /// The HTTP interface's listening socket, when `[http]` is on. Absent from the
    /// files of releases before it: the new image then binds its own.
    #[serde(default)]
    pub http_fd: Option<RawFd>,
    pub jobs: BTreeMap<String, JobHand>,
}

/// One job, handed over.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobHand {
    pub state: String,
    pub goal: String,
    pub fingerprint: u64,
    /// The main process and the hook running now (their pids: children of the daemon,
    /// or held through a pidfd when `held` names them).
    pub main: Option<u32>,
    pub hook: Option<(String, u32)>,
    /// How long it has been running, in milliseconds.
    pub up_ms: Option<u64>,
    pub restarts: u64,
    pub runs: u64,
    pub kill_signal: i32,
    pub kill_timeout_ms: u64,
    /// The descriptor of its log pipe.
    pub pipe_fd: Option<RawFd>,
    /// Its processes that are not the daemon's children (a crashed daemon's, adopted).
    #[serde(default)]
    pub held: Vec<HeldHand>,
    /// The variables of the event that started it.
    #[serde(default)]
    pub start_env: Vec<(String, String)>,
    /// The runs of each of its checks.
    #[serde(default)]
    pub check_runs: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HeldHand {
    pub pid: u32,
    pub start_time: u64,
    pub group: Option<u32>,
}

/// A re-execution asked for and not done yet.
pub(super) struct Pending {
    /// It happens then even if some job is still moving.
    pub due_by: Instant,
    /// The `guardian reexec` client, told when the exec happens.
    pub reply: Option<oneshot::Sender<Response>>,
}

/// What the daemon knows of itself for re-executing.
pub(super) struct SelfImage {
    /// The binary's path, resolved at start (the file may be replaced meanwhile: the
    /// new file at that path is what is executed).
    pub exe: Option<PathBuf>,
    pub argv: Vec<OsString>,
    pub generation: u64,
    pub attempts: u64,
    pub failure: Option<String>,
    pub pending: Option<Pending>,
}

impl SelfImage {
    pub fn new(generation: u64) -> SelfImage {
        SelfImage {
            exe: own_exe(),
            argv: std::env::args_os().collect(),
            generation,
            attempts: 0,
            failure: None,
            pending: None,
        }
    }
}

/// The path this process was executed from: /proc/self/exe, whose link names the old
/// file with " (deleted)" after a package replaced it.
fn own_exe() -> Option<PathBuf> {
    let link = std::fs::read_link("/proc/self/exe").ok()?;
    let bytes = link.as_os_str().as_bytes();
    let bytes = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// The state file under `state_dir`.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("reexec.json")
}

/// The signals that wait, blocked, across the exec.
fn held_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Unblocks the signals an old image blocked across its exec, once their handlers are
/// in place: what came meanwhile is delivered now. Harmless in a daemon not re-executed.
pub fn unblock_signals() {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&held_signals()), None);
}

/// In the new image, before anything else: the handover, if this process is one. The
/// variable is removed from the environment (so no job inherits it) and the file
/// deleted; the descriptors handed over get `FD_CLOEXEC` again. An error means a
/// handover that cannot be read: the daemon goes on as after a crash.
pub fn take_from_env() -> Option<Result<Handover, String>> {
    let path = std::env::var_os(ENV)?;
    // SAFETY: called at the start of the daemon, before its runtime or any other
    // thread exists, so nothing reads the environment meanwhile.
    unsafe { std::env::remove_var(ENV) };
    let path = PathBuf::from(path);
    let read = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    let h = read
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|bytes| {
            serde_json::from_slice::<Handover>(&bytes)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))
        })
        .and_then(|h| {
            if h.format == FORMAT {
                Ok(h)
            } else {
                Err(format!(
                    "{} has format {}, not {FORMAT}",
                    path.display(),
                    h.format
                ))
            }
        });
    if let Ok(h) = &h {
        for fd in h.fds() {
            set_cloexec(fd, true);
        }
    }
    Some(h)
}

impl Handover {
    /// Every descriptor it hands over.
    fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.listener_fd, self.lock_fd];
        fds.extend(self.http_fd);
        fds.extend(self.jobs.values().filter_map(|j| j.pipe_fd));
        fds
    }

    /// The HTTP listener handed over, if one was and it is a TCP socket.
    pub fn take_http(&mut self) -> Option<std::net::TcpListener> {
        let fd = self.http_fd.take()?;
        if !is_socket(fd) {
            tracing::warn!("the HTTP listener handed over (descriptor {fd}) is not a socket");
            return None;
        }
        // SAFETY: the old image handed this descriptor over, open, as its HTTP listener;
        // it is taken once (the field is cleared), and nothing else owns it.
        Some(std::net::TcpListener::from(unsafe {
            OwnedFd::from_raw_fd(fd)
        }))
    }

    /// The control socket handed over, at `path`.
    pub fn take_socket(&mut self, path: &Path) -> std::io::Result<crate::control::server::Bound> {
        let (l, k) = (self.listener_fd, self.lock_fd);
        self.listener_fd = -1;
        self.lock_fd = -1;
        if l < 0 || k < 0 || l == k {
            return Err(std::io::Error::other("no socket was handed over"));
        }
        // SAFETY: the old image handed these over, open, as its listener and its lock;
        // they are taken once (the fields are cleared), and nothing else owns them.
        let (listener, lock) = unsafe { (OwnedFd::from_raw_fd(l), OwnedFd::from_raw_fd(k)) };
        crate::control::server::Bound::handed(path, listener, lock)
    }

    /// The log pipes, by job, as owned descriptors.
    pub fn take_pipes(&mut self) -> HashMap<String, OwnedFd> {
        let mut out = HashMap::new();
        for (name, j) in &mut self.jobs {
            if let Some(fd) = j.pipe_fd.take().filter(|fd| is_pipe(*fd)) {
                // SAFETY: the old image handed this descriptor over, open, for this job's
                // pipe, and nothing else in this image owns it.
                out.insert(name.clone(), unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        out
    }
}

fn is_socket(fd: RawFd) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: fstat only looks at the descriptor; a closed one is an error.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

fn is_pipe(fd: RawFd) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: fstat only looks at the descriptor; a closed one is an error.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

fn set_cloexec(fd: RawFd, on: bool) -> bool {
    use nix::fcntl::{F_SETFD, FdFlag, fcntl};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    // SAFETY: only the descriptor flags of a descriptor this daemon holds change.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(fd, F_SETFD(flags)).is_ok()
}

/// Whether `pid` is this process's child (field 4 of /proc/PID/stat).
fn is_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, after)) = stat.rsplit_once(')') else {
        return false;
    };
    after
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id())
}

impl Daemon {
    /// What `guardian reexec` and the client's wait for it read.
    pub(super) fn daemon_info(&self) -> DaemonInfo {
        DaemonInfo {
            version: crate::build::version().to_string(),
            pid: std::process::id(),
            exe: self
                .image
                .exe
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            generation: self.image.generation,
            reexec_attempts: self.image.attempts,
            reexec_failure: self.image.failure.clone(),
        }
    }

    /// A re-execution is asked for (`reply`: by `guardian reexec`; None: SIGUSR2). Refused
    /// at once when the binary is not there to execute, or the daemon shuts down.
    pub(super) fn ask_reexec(&mut self, reply: Option<oneshot::Sender<Response>>) {
        let refuse = |reply: Option<oneshot::Sender<Response>>, message: String| {
            tracing::error!("re-execution refused: {message}; guardian goes on as it is");
            if let Some(r) = reply {
                let _ = r.send(Response::Error { message });
            }
        };
        if self.shutdown.is_some() {
            return refuse(reply, "guardian is shutting down".into());
        }
        let Some(exe) = self.image.exe.clone() else {
            return refuse(reply, "the daemon's own binary cannot be found".into());
        };
        if let Err(e) = nix::unistd::access(&exe, nix::unistd::AccessFlags::X_OK)
            .map_err(std::io::Error::from)
            .and_then(|()| {
                if std::fs::metadata(&exe)?.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            })
        {
            self.image.attempts = self.image.attempts.saturating_add(1);
            let message = format!("cannot execute {}: {e}", exe.display());
            self.image.failure = Some(message.clone());
            return refuse(reply, message);
        }
        self.image.attempts = self.image.attempts.saturating_add(1);
        self.image.failure = None;
        match &mut self.image.pending {
            Some(p) => {
                // One exec answers both.
                if let Some(old) = std::mem::replace(&mut p.reply, reply) {
                    let _ = old.send(Response::Done {
                        message: "another re-execution was asked for; it is that one".into(),
                    });
                }
            }
            None => {
                tracing::info!(
                    "re-executing {} once every job is still (at most {}s)",
                    crate::logtext::EscPath(&exe),
                    SETTLE.as_secs()
                );
                self.image.pending = Some(Pending {
                    due_by: Instant::now() + SETTLE,
                    reply,
                });
            }
        }
    }

    /// When a pending re-execution must happen at the latest.
    pub(super) fn reexec_deadline(&self) -> Option<Instant> {
        self.image.pending.as_ref().map(|p| p.due_by)
    }

    /// Whether a pending re-execution is to happen now: every job still (running with
    /// no hook, or down), no client waiting on a job or a group; or its time is up.
    pub(super) fn reexec_due(&self) -> bool {
        let Some(p) = &self.image.pending else {
            return false;
        };
        if Instant::now() >= p.due_by {
            return true;
        }
        if self
            .group_commands
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            return false;
        }
        self.jobs.values().all(|j| {
            j.waiters.is_empty()
                && j.handover.is_none()
                && j.readiness.is_none()
                && match j.m.state() {
                    State::Running => j.m.hook().is_none(),
                    s => s.is_down(),
                }
        })
    }

    /// The exec is now: the `guardian reexec` client is told, and clients that wait on a
    /// job are told their wait is cut (the command was carried out).
    pub(super) fn reexec_begins(&mut self) {
        if let Some(p) = self.image.pending.as_mut()
            && let Some(reply) = p.reply.take()
        {
            let exe = self.image.exe.as_deref().unwrap_or(Path::new("?"));
            let _ = reply.send(Response::Done {
                message: format!("re-executing {}", exe.display()),
            });
        }
        for (name, job) in &mut self.jobs {
            for w in std::mem::take(&mut job.waiters) {
                let _ = w.tx.send(Err(format!(
                    "{name}: guardian re-executed while this waited: the command was carried out, its end was not waited for (`guardian status {name}`)"
                )));
            }
        }
    }

    /// Executes the binary again, handing over `listener_fd`, `lock_fd`, the HTTP
    /// listener `http_fd` and the jobs. Returns only if that failed: why. Everything is
    /// as it was before then.
    pub(super) fn exec_self(
        &mut self,
        listener_fd: RawFd,
        lock_fd: RawFd,
        http_fd: Option<RawFd>,
    ) -> String {
        self.image.pending = None;
        let Some(exe) = self.image.exe.clone() else {
            return "the daemon's own binary cannot be found".into();
        };
        let handover = self.handover(listener_fd, lock_fd, http_fd);
        let path = state_path(&self.config.settings.state_dir);
        if let Err(e) = write_state(&path, &handover) {
            return format!("cannot write {}: {e}", path.display());
        }
        let fds = handover.fds();
        let cleared: Vec<RawFd> = fds
            .iter()
            .copied()
            .filter(|fd| set_cloexec(*fd, false))
            .collect();
        let why = match exec_args(&exe, &self.image.argv, &path) {
            Ok((exe_c, argv, env)) => {
                let mut old_mask = SigSet::empty();
                let _ = nix::sys::signal::pthread_sigmask(
                    SigmaskHow::SIG_BLOCK,
                    Some(&held_signals()),
                    Some(&mut old_mask),
                );
                tracing::info!(
                    "re-executing {} (generation {})",
                    crate::logtext::EscPath(&exe),
                    handover.generation
                );
                let e = nix::unistd::execve(&exe_c, &argv, &env).err();
                let _ = nix::sys::signal::pthread_sigmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&old_mask),
                    None,
                );
                format!(
                    "cannot execute {}: {}",
                    exe.display(),
                    e.map_or_else(|| "it returned".to_string(), |e| e.desc().to_string())
                )
            }
            Err(e) => e,
        };
        for fd in cleared {
            set_cloexec(fd, true);
        }
        let _ = std::fs::remove_file(&path);
        why
    }

    /// The exec failed: said, and kept for `guardian reexec` to report.
    pub(super) fn reexec_failed(&mut self, why: String) {
        tracing::error!("re-execution failed: {why}; guardian goes on as it is");
        self.image.failure = Some(why);
    }

    fn handover(&self, listener_fd: RawFd, lock_fd: RawFd, http_fd: Option<RawFd>) -> Handover {
        let now = Instant::now();
        let jobs = self
            .jobs
            .iter()
            .map(|(name, j)| {
                let m = &j.m;
                let held = self
                    .held
                    .get(name)
                    .map(|h| {
                        h.iter()
                            .map(|h| HeldHand {
                                pid: h.pid,
                                start_time: h.start_time,
                                group: h.group.map(|g| g.0),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let hand = JobHand {
                    state: m.state().as_str().to_string(),
                    goal: match m.goal() {
                        Goal::Start => "start",
                        Goal::Stop => "stop",
                    }
                    .to_string(),
                    fingerprint: super::record::fingerprint(&j.spec),
                    main: m.main_pid(),
                    hook: m
                        .hook()
                        .and_then(|(p, pid)| pid.map(|pid| (p.as_str().to_string(), pid))),
                    up_ms: m.running_since().map(|t| {
                        u64::try_from(now.saturating_duration_since(t).as_millis())
                            .unwrap_or(u64::MAX)
                    }),
                    restarts: m.restarts(),
                    runs: m.runs(),
                    kill_signal: m.policy().kill_signal as i32,
                    kill_timeout_ms: u64::try_from(m.policy().kill_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    pipe_fd: j.log.fd(),
                    held,
                    start_env: j.start_env.clone(),
                    check_runs: j.checks.iter().map(|c| c.runs()).collect(),
                };
                (name.clone(), hand)
            })
            .collect();
        Handover {
            format: FORMAT,
            generation: self.image.generation.saturating_add(1),
            listener_fd,
            lock_fd,
            http_fd,
            jobs,
        }
    }

    /// In the new image, instead of recovering and starting up: takes every job back as
    /// the old image left it. A running job is running still, its main process the same
    /// child (or held process); a job in the middle of a move, or whose file changed, is
    /// ended cleanly and follows its goal; a job that had given up stays `failed`; a job
    /// new in the configuration starts as a reload would start it.
    pub(super) fn resume_handed(&mut self, h: Handover) {
        tracing::info!(
            "re-executed (generation {}): taking over {} jobs",
            h.generation,
            h.jobs.len()
        );
        let mut adopted: Vec<(u64, String)> = Vec::new();
        let mut handed: Vec<String> = Vec::new();
        let mut carried_runs: Vec<(String, Vec<u64>)> = Vec::new();
        for (name, j) in h.jobs {
            if !self.jobs.contains_key(&name) {
                self.end_handed_removed(&name, &j);
                continue;
            }
            handed.push(name.clone());
            if let Some(job) = self.jobs.get_mut(&name) {
                job.start_env = j.start_env.clone();
            }
            let changed = self
                .jobs
                .get(&name)
                .is_some_and(|job| super::record::fingerprint(&job.spec) != j.fingerprint);
            let goal_start = j.goal == "start";
            match (j.state.as_str(), j.main, &j.hook) {
                ("running", Some(pid), None) if goal_start && !changed => {
                    if self.take_back(&name, pid, &j) {
                        let up = j.up_ms.unwrap_or(0);
                        let now = self.os.now().mono;
                        let since = now.checked_sub(Duration::from_millis(up)).unwrap_or(now);
                        self.feed(
                            &name,
                            Input::Resume {
                                pid,
                                since,
                                runs: j.runs,
                                restarts: j.restarts,
                            },
                        );
                        adopted.push((up, name.clone()));
                        carried_runs.push((name.clone(), j.check_runs.clone()));
                    } else {
                        self.end_handed(&name, &j, changed);
                    }
                }
                ("failed", None, None) => {
                    if let Some(job) = self.jobs.get_mut(&name) {
                        job.m.restore_failed(j.restarts, j.runs);
                    }
                    self.note_record(&name);
                }
                ("waiting", None, None) if !goal_start => {}
                _ => self.end_handed(&name, &j, changed),
            }
        }
        // The longest running first: the shutdown stops the most recently started first.
        adopted.sort_by_key(|a| std::cmp::Reverse(a.0));
        for (_, name) in adopted {
            self.graph.started(&name);
        }
        for (name, runs) in carried_runs {
            if let Some(job) = self.jobs.get(&name)
                && job.checks.len() == runs.len()
            {
                for (c, n) in job.checks.iter().zip(runs) {
                    c.carry_runs(n);
                }
            }
        }
        // Watches set up now see the jobs as they are; new jobs start as on a reload.
        self.assume_watches();
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            let Some(job) = self.jobs.get(&name) else {
                continue;
            };
            if handed.contains(&name) {
                continue;
            }
            let holds = job.start_on.as_ref().is_none_or(|w| w.holds());
            if job.m.may_autostart(holds, AutoStart::Daemon) {
                self.work.push_back(super::Work::Feed(name, Input::Start));
            }
        }
        self.pump();
        self.book.dirty = true;
        // What exited while the exec went on is reaped and handled now.
        self.reap();
    }

    /// Takes `pid`, job `name`'s main process, back: as the child it is, or (a crashed
    /// daemon's process adopted before) through pidfds again. False if it is neither.
    fn take_back(&mut self, name: &str, pid: u32, j: &JobHand) -> bool {
        if j.held.is_empty() {
            if !is_child(pid) {
                tracing::warn!("{name}: main process {pid} is not guardian's child any more");
                return false;
            }
            self.pids.insert(
                pid,
                Owner::Job {
                    name: name.to_string(),
                    proc: Proc::Main,
                },
            );
            return true;
        }
        let mut any = false;
        for h in &j.held {
            any |= self.watch_held_again(name, *h);
        }
        any
    }

    fn watch_held_again(&mut self, name: &str, h: HeldHand) -> bool {
        self.watch_held(
            name,
            Held {
                pid: h.pid,
                start_time: h.start_time,
                group: h.group.filter(|g| *g > 1).map(Pgid),
            },
        )
    }

    /// Ends job `name`'s processes as the old image left them and lets it follow its
    /// goal (as after a crash: kill-signal, kill-timeout, SIGKILL, post-stop).
    fn end_handed(&mut self, name: &str, j: &JobHand, changed: bool) {
        if changed {
            tracing::info!("{name}: its configuration changed: ending it cleanly");
        } else if j.main.is_some() || j.hook.is_some() {
            tracing::info!("{name}: was {} at the exec: ending it cleanly", j.state);
        }
        let mut first = None;
        if !j.held.is_empty() {
            for h in &j.held {
                self.watch_held_again(name, *h);
            }
            first = self.held.get(name).and_then(|h| h.first()).map(|h| h.pid);
        }
        let children: Vec<u32> = j
            .main
            .into_iter()
            .chain(j.hook.as_ref().map(|(_, p)| *p))
            .filter(|p| is_child(*p))
            .collect();
        let mut extra = Vec::new();
        for pid in children {
            if first.is_none() {
                first = Some(pid);
                self.pids.insert(
                    pid,
                    Owner::Job {
                        name: name.to_string(),
                        proc: Proc::Main,
                    },
                );
            } else {
                self.pids.insert(
                    pid,
                    Owner::Former {
                        name: name.to_string(),
                    },
                );
                extra.push(pid);
            }
        }
        self.end_extra(&extra, j);
        let goal =
            if j.goal == "start" && !self.jobs.get(name).is_some_and(|job| job.m.manual_stop()) {
                Goal::Start
            } else {
                Goal::Stop
            };
        let post_stop = !["starting", "post-stop", "waiting", "failed"].contains(&j.state.as_str());
        self.feed(
            name,
            Input::Recover {
                pid: first,
                post_stop: post_stop && first.is_some(),
                goal,
                restarts: j.restarts,
            },
        );
    }

    /// Processes of a job besides the one its end waits for (a hook while the main
    /// process ran): kill-signal now, SIGKILL after the kill-timeout.
    fn end_extra(&mut self, pids: &[u32], j: &JobHand) {
        if pids.is_empty() {
            return;
        }
        let sig = Signal::try_from(j.kill_signal).unwrap_or(Signal::SIGTERM);
        let mut held = Vec::new();
        for &pid in pids {
            let Some(start_time) = self.os.start_time(pid) else {
                continue;
            };
            // Its own group (a hook leads one): signals go to all of it.
            let group = self.os.group_of(pid).filter(|g| g.0 == pid);
            let h = Held {
                pid,
                start_time,
                group,
            };
            match h.group {
                Some(g) => {
                    self.os.signal_group(g, sig);
                    self.os.signal_group(g, Signal::SIGCONT);
                }
                None => {
                    self.os.signal_pid(pid, sig);
                    self.os.signal_pid(pid, Signal::SIGCONT);
                }
            }
            held.push(h);
        }
        let timeout = Duration::from_millis(j.kill_timeout_ms).min(Duration::from_secs(86_400));
        let now = self.os.now().mono;
        self.timers.arm_in(now, timeout, Timer::Leftovers { held });
    }

    /// A job handed over that is gone from the configuration: what is left of it ends.
    fn end_handed_removed(&mut self, name: &str, j: &JobHand) {
        let mut pids: Vec<u32> = j
            .main
            .into_iter()
            .chain(j.hook.as_ref().map(|(_, p)| *p))
            .collect();
        pids.extend(j.held.iter().map(|h| h.pid));
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            return;
        }
        tracing::info!(
            "{name}: no longer configured: ending the {} process(es) left of it",
            pids.len()
        );
        self.end_extra(&pids, j);
    }
}

/// Writes the handover: 0600, in the state directory.
fn write_state(path: &Path, h: &Handover) -> std::io::Result<()> {
    let mut f = files::open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
        files::PRIVATE,
    )?;
    let bytes = serde_json::to_vec(h).map_err(std::io::Error::other)?;
    f.write_all(&bytes)
}

type ExecArgs = (CString, Vec<CString>, Vec<CString>);

/// The exec's path, arguments and environment: the daemon's own, with [`ENV`] naming
/// the state file.
fn exec_args(exe: &Path, argv: &[OsString], state: &Path) -> Result<ExecArgs, String> {
    let c = |b: &[u8]| CString::new(b).map_err(|_| "an argument holds a NUL byte".to_string());
    let exe_c = c(exe.as_os_str().as_bytes())?;
    let mut args = Vec::with_capacity(argv.len().max(1));
    for a in argv {
        args.push(c(a.as_bytes())?);
    }
    if args.is_empty() {
        args.push(exe_c.clone());
    }
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k == ENV {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        if let Ok(kv) = CString::new(kv) {
            env.push(kv);
        }
    }
    let mut kv = format!("{ENV}=").into_bytes();
    kv.extend_from_slice(state.as_os_str().as_bytes());
    env.push(c(&kv)?);
    Ok((exe_c, args, env))
}

/// The listener a re-execution keeps: a duplicate of the server's, taken before the
/// server lets its own go.
pub fn keep_listener(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the server holds `fd` open for as long as this runs.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fd.try_clone_to_owned()
}

/// The answer to a request that came while the old image handed over.
pub fn retry() -> Response {
    Response::Error {
        message: REEXECUTING.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exec_carries_the_state_file_and_not_an_old_one() {
        let (exe, argv, env) = exec_args(
            Path::new("/usr/bin/guardian"),
            &["guardian".into(), "-c".into(), "/etc/guardian".into()],
            Path::new("/var/lib/guardian/reexec.json"),
        )
        .expect("args");
        assert_eq!(exe.to_bytes(), b"/usr/bin/guardian");
        assert_eq!(argv.len(), 3);
        let ours: Vec<_> = env
            .iter()
            .filter(|kv| kv.to_bytes().starts_with(format!("{ENV}=").as_bytes()))
            .collect();
        assert_eq!(ours.len(), 1);
        assert!(ours[0].to_bytes().ends_with(b"/reexec.json"));
    }

    #[test]
    fn a_handover_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut jobs = BTreeMap::new();
        jobs.insert(
            "web".to_string(),
            JobHand {
                state: "running".into(),
                goal: "start".into(),
                fingerprint: 7,
                main: Some(10),
                hook: None,
                up_ms: Some(1500),
                restarts: 1,
                runs: 2,
                kill_signal: 15,
                kill_timeout_ms: 5000,
                pipe_fd: None,
                held: Vec::new(),
                start_env: vec![("A".into(), "1".into())],
                check_runs: vec![3],
            },
        );
        let h = Handover {
            format: FORMAT,
            generation: 2,
            listener_fd: 5,
            lock_fd: 6,
            http_fd: Some(7),
            jobs,
        };
        let path = state_path(dir.path());
        write_state(&path, &h).expect("written");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let back: Handover =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        assert_eq!(back.generation, 2);
        assert_eq!(back.jobs["web"].check_runs, vec![3]);
        assert_eq!(back.fds(), vec![5, 6, 7]);
        // A file of a release that handed no HTTP listener over still reads.
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        old.as_object_mut().expect("object").remove("http_fd");
        let old: Handover = serde_json::from_value(old).expect("an older file reads");
        assert_eq!(old.http_fd, None);
        assert_eq!(old.fds(), vec![5, 6]);
    }

    #[test]
    fn own_exe_is_a_path() {
        let exe = own_exe().expect("exe");
        assert!(exe.is_absolute());
        assert!(!exe.to_string_lossy().ends_with(" (deleted)"));
    }
}
