//! The daemon: one loop that owns every job's state. Inputs (a child exited, a signal,
//! a control request, a timer, a message from a helper task) arrive here one at a time;
//! each job's state machine says what to do, and this module does it. No locks, no
//! polling of job state.
//!
//! Work that one input causes for other jobs (an event that starts a dependent, a
//! blocked job that may go on) is queued and done in order before the next input is
//! taken, so no job's machine is ever entered twice at once.

mod alerts;
mod checking;
mod events;
mod fifo;
mod graph;
mod handover;
mod logs;
mod notify;
mod ready;
mod record;
mod recovery;
pub mod reexec;
mod reports;
mod requests;
mod rest;
mod rolling;
mod run;
mod runtime;
mod shutdown;
pub mod state;
mod status;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

use anyhow::Context;
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, JobSpec};
use crate::control::server::{self, Bound};
use crate::event::Event;
use crate::files;
use crate::job::{AutoStart, Effect, FailureKind, Input, Now, Proc, ProcessEnd, State};
use crate::process::os::{Os, RealOs};
use crate::process::spawn::Output;
use crate::process::table::ProcessTable;
use crate::process::{Pgid, reaper};

use fifo::PipeDir;
use graph::Graph;
use logs::{LogPipe, LogSpec};
use runtime::{After, Job, Outcome, Waiter};
use shutdown::Shutdown;
use state::Persisted;
use timers::{Timer, Timers};

/// Who a child process belongs to, in the process table.
enum Owner {
    Job {
        name: String,
        proc: Proc,
    },
    /// A custom command or a probe program: its end goes to whoever waits for it.
    Command(oneshot::Sender<ProcessEnd>),
    /// A job's former main process, which handed over to the one followed now (a
    /// starter that outlives the daemon it started): its end means nothing.
    Former {
        name: String,
    },
}

/// Messages from the daemon's helper tasks to its loop.
pub(crate) enum Internal {
    /// A readiness step finished: for the run `generation` of `job`.
    Ready {
        job: String,
        generation: u64,
        result: Result<ready::Found, String>,
    },
    /// A check's probe program must be run as a child of the daemon.
    Probe(run::ProbeRun),
    /// A check ran (or, `unheld`, a flock check's lock was not held by its deadline).
    Checked {
        owner: checking::CheckOwner,
        idx: usize,
        generation: u64,
        /// The job's start (its run count) the result belongs to.
        start: u64,
        unheld: bool,
        outcome: checks::Outcome,
    },
    /// The pid file of a job waiting for a handover names this live process.
    Handover {
        job: String,
        generation: u64,
        pid: u32,
    },
    /// A process of `job` that is not guardian's child (a previous daemon's) exited.
    Gone { job: String, pid: u32 },
    /// A report on a job was taken; what waited for it goes on.
    Diagnosed(Box<reports::Diagnosed>),
    /// A request the daemon sends itself: a step of a command on a group's jobs.
    Ask(
        crate::control::protocol::Request,
        oneshot::Sender<crate::control::protocol::Response>,
    ),
    /// Nothing to do: the loop looks again at what waits for a quiet moment (a
    /// re-execution).
    Wake,
    /// A step of a rolling restart ended.
    Rolled {
        rolling: Box<rolling::Rolling>,
        name: String,
        step: rolling::Step,
    },
}

enum Work {
    Feed(String, Input),
    Record(String, Proc, FailureKind, String),
    Dispatch {
        event: Event,
        /// The same move told of the job file whose instance moved (see
        /// `Daemon::set_event`), offered with it.
        also: Option<Box<Event>>,
        /// The job whose `starting` / `stopping` waits for what the event sets off.
        blocks: Option<String>,
    },
}

pub struct Daemon {
    config: Config,
    /// Boxed: a job is large, and a map node holds eleven of them inline.
    jobs: BTreeMap<String, Box<Job>>,
    /// Every child and who it belongs to; the one owner of `wait`.
    pids: ProcessTable<Owner>,
    /// What the daemon does to the system goes through here.
    os: Box<dyn Os>,
    timers: Timers,
    persisted: Persisted,
    /// The order jobs started in, and which wait for others to move.
    graph: Graph,
    shutdown: Option<Shutdown>,
    work: VecDeque<Work>,
    pumping: bool,
    internal: mpsc::UnboundedSender<Internal>,
    http: Option<(checks::HttpClient, checks::HttpClient)>,
    host_checks: Vec<checking::CheckRt>,
    /// The outbox's sender, when alerts go anywhere.
    alerts: Option<mpsc::UnboundedSender<crate::alert::Msg>>,
    /// Jobs in `failed`, with the episode their reminders belong to.
    failed_episode: HashMap<String, u64>,
    /// The alerts Alertmanager is told still fire, each re-sent on a timer of its own.
    am_firing: HashMap<alerts::Lasting, alerts::Firing>,
    /// `state-dir/pipes`: the jobs' log pipes, which outlive the daemon.
    pipes: PipeDir,
    /// The jobs' cgroups, and what of a job is outside its process group.
    rest: rest::Rest,
    /// What `state-dir/running.json` says, between writes.
    book: recovery::Book,
    /// Processes of jobs that a previous daemon started, watched through pidfds.
    held: HashMap<String, Vec<recovery::Held>>,
    /// The daemon's own session, which the jobs' processes share.
    own_sid: u32,
    /// The service manager to tell READY=1, STATUS=, RELOADING=1, STOPPING=1.
    notify: Option<notify::Notifier>,
    /// The binary and arguments to execute again on `reexec`, and how that went.
    image: reexec::SelfImage,
    /// Log pipes the image before an exec handed over, until each job takes its own.
    handed_pipes: HashMap<String, std::os::fd::OwnedFd>,
    /// Commands on a group under way: a re-execution waits for them as it waits for
    /// clients waiting on a job.
    group_commands: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Binds the control socket `config` names (open to its `read-group`), for [`run`].
/// The socket file is removed when the [`Bound`] is dropped.
pub fn bind(config: &Config) -> anyhow::Result<Bound> {
    let s = &config.settings;
    let read_gid = s.read_group.as_ref().map(|g| g.gid);
    Ok(server::bind(&s.socket, read_gid)?)
}

/// Runs the daemon on the control socket `listener` until `shutdown` resolves and every
/// job is down. `shutdown` does what SIGTERM does to the binary: the `shutdown` event,
/// then every job stopped, most recently started first. SIGTERM and SIGINT are left to
/// the caller (SIGCHLD and SIGHUP are the daemon's). Connections still open are given
/// [`server::CLOSE_TIMEOUT`] to take their last answers; `listener` is dropped last, so
/// the socket is there until the daemon is gone.
///
/// The daemon makes the calling process a child subreaper and reaps every child of it:
/// run it in a process that has no children of its own to wait for.
pub async fn run(
    config: Config,
    listener: Bound,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve(config, listener, Once(Some(Box::pin(shutdown))), None).await
}

/// The daemon as the binary runs it: SIGTERM or SIGINT stops it as [`run`]'s
/// `shutdown` does, and a second one kills every job at once. `handed`: what the image
/// of the daemon before an exec handed over (`guardian reexec`), the socket's
/// descriptors already taken into `listener`.
pub async fn run_until_signalled(
    config: Config,
    listener: Bound,
    handed: Option<reexec::Handover>,
) -> anyhow::Result<()> {
    let stops = Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
    };
    serve(config, listener, stops, handed).await
}

/// Where requests to stop come from. The first stops every job in order; another,
/// while they stop, kills them.
trait StopRequests {
    /// Resolves at the next request. Cancel-safe: a request is not lost when the
    /// future is dropped before it resolves.
    async fn next(&mut self);
}

/// One request, when the future resolves; none after it.
struct Once<F>(Option<std::pin::Pin<Box<F>>>);

impl<F: Future<Output = ()>> StopRequests for Once<F> {
    async fn next(&mut self) {
        match self.0.as_mut() {
            Some(f) => {
                f.as_mut().await;
                self.0 = None;
            }
            None => std::future::pending().await,
        }
    }
}

/// SIGTERM and SIGINT, each signal a request.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopRequests for Signals {
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Runs the daemon until it has been told to stop and every job is down.
async fn serve(
    config: Config,
    mut bound: Bound,
    mut stops: impl StopRequests,
    mut handed: Option<reexec::Handover>,
) -> anyhow::Result<()> {
    let s = &config.settings;
    let log_access = files::Access::private_or_group(s.log_group.as_ref().map(|g| g.gid));
    for (dir, access) in [(&s.log_dir, log_access), (&s.state_dir, files::PRIVATE)] {
        files::create_dir(dir, access)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if let Some(g) = &s.log_group {
        warn_if_closed(&s.log_dir, g);
    }
    let access = server::Access {
        owner: nix::unistd::geteuid().as_raw(),
        read_group: s.read_group.clone(),
    };
    if let Err(e) = reaper::become_subreaper() {
        tracing::warn!("cannot become a child subreaper ({e}): orphans of jobs go to init");
    }
    // Each job holds its log pipe (one end), its log file and its main's stat file;
    // leave room for sockets. Without room for them, no stat file is kept.
    crate::process::stat::set_keeping(crate::process::spawn::raise_nofile(nofile_needed(
        config.jobs.len(),
    )));
    // Low in the descriptor table, before any job's pipe: what a child keeps of it.
    crate::process::clone::reserve_slots();

    let mut sigchld = signal(SignalKind::child())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;
    // Signals an image before an exec left blocked have their handlers now.
    reexec::unblock_signals();
    let (tx, mut rx) = mpsc::channel::<server::Envelope>(256);
    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
    // The HTTP interface sends its requests into the same channel as the socket. After
    // an exec it serves the listener the image before handed over, so that the port was
    // never closed.
    let handed_http = handed.as_mut().and_then(reexec::Handover::take_http);
    let mut http = match &config.settings.http {
        Some(h) => {
            let listener = match handed_http.and_then(|l| crate::http::adopt(h, l)) {
                Some(l) => l,
                None => crate::http::bind(h)
                    .with_context(|| format!("cannot listen on {} ([http] listen)", h.listen))?,
            };
            Some(crate::http::start(h.clone(), listener, tx.clone())?)
        }
        None => None,
    };

    let pipes = handed.as_mut().map(reexec::Handover::take_pipes);
    let generation = handed.as_ref().map_or(0, |h| h.generation);
    let mut daemon = Daemon::with(
        config,
        internal_tx,
        Box::new(RealOs),
        pipes.unwrap_or_default(),
        generation,
    )?;
    daemon.open_cgroups();
    tracing::info!(
        "guardian {} {}: {} jobs, control socket {}",
        crate::build::version(),
        if generation > 0 {
            "re-executed"
        } else {
            "started"
        },
        daemon.jobs.len(),
        crate::logtext::EscPath(&bound.path)
    );
    let listener = bound
        .listener
        .take()
        .context("control socket already in use")?;
    let mut listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let lock_fd = bound.lock_fd();
    let mut server = Some(server::start(listener, tx.clone(), access.clone()));
    daemon.start_alerts();
    match handed {
        Some(h) => daemon.resume_handed(h),
        None => {
            daemon.recover();
            daemon.startup();
        }
    }
    daemon.flush_record();
    daemon.start_host_checks();
    daemon.notify = notify::Notifier::from_env();
    let mut notify_tick = daemon.notify_ready();
    release_free_memory();
    // A re-execution is the same daemon going on: no "started" alert.
    if generation == 0 {
        daemon.alert(
            alerts::About::Daemon,
            crate::alert::Kind::DaemonStarted,
            None,
            format!(
                "guardian {} started with {} jobs",
                env!("CARGO_PKG_VERSION"),
                daemon.jobs.len()
            ),
            None,
        );
    }

    let mut stops_seen = 0;
    let mut record_written = std::time::Instant::now();
    while !daemon.finished() {
        // While nobody asks, the record is written at most once per RECORD_PACE (a
        // start or a shutdown of many jobs moves some every turn): the wake-up for it
        // is one of the loop's deadlines.
        let record_due = daemon
            .book
            .dirty
            .then(|| record_written.checked_add(RECORD_PACE))
            .flatten();
        let next = match (daemon.timers.next_deadline(), record_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut asked = daemon.has_waiters();
        crate::process::escaped::turn_begins();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let reexec_by = daemon.reexec_deadline();
        let reexec_due = async {
            match reexec_by {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigchld.recv() => daemon.reap(),
            _ = stops.next() => { stops_seen += 1; daemon.begin_shutdown(stops_seen); }
            _ = sighup.recv() => {
                if let Some(h) = &http {
                    h.reload();
                }
                match daemon.reload() {
                    Ok(m) => tracing::info!("reloaded on SIGHUP: {m}"),
                    Err(e) => tracing::error!("reload on SIGHUP refused, nothing changed:\n{e}"),
                }
            }
            Some((request, reply)) = rx.recv() => {
                asked = true;
                // `guardian reload` re-reads the HTTP interface's files as SIGHUP does.
                if let (Some(h), crate::control::protocol::Request::ReloadConfig) = (&http, &request) {
                    h.reload();
                }
                daemon.request(request, reply)
            }
            Some(msg) = internal_rx.recv() => daemon.internal(msg),
            _ = sleep => daemon.fire_timers(),
            _ = notify::tick(&mut notify_tick) => daemon.notify_tick(),
            _ = sigusr2.recv() => daemon.ask_reexec(None),
            _ = reexec_due => {}
        }
        crate::process::escaped::turn_ends();
        // Before this turn's answers reach their clients (they are sent once the loop
        // waits again): status never shows a job running that the record does not hold.
        // A turn that took a request, or one while a client waits for a job to move,
        // writes it now; any other turn once RECORD_PACE has passed since the last.
        if daemon.book.dirty && (asked || record_written.elapsed() >= RECORD_PACE) {
            daemon.flush_record();
            record_written = std::time::Instant::now();
        }
        if daemon.reexec_due() && daemon.shutdown.is_none() {
            let socket = (listener_fd, lock_fd, &tx, &access);
            let again = reexec_turn(&mut daemon, server, &mut http, &mut rx, socket).await;
            server = again.map(|(server, fd)| {
                listener_fd = fd;
                server
            });
            if server.is_none() {
                // The socket could not be taken back: nothing more can be asked.
                tracing::error!("the control socket is lost; guardian stops");
                daemon.begin_shutdown(1);
            }
        }
    }
    daemon.rest_at_exit();
    daemon.record_clean_exit();
    daemon.flush_alerts().await;
    // What still waits for the daemon (a client's answer, a request not taken yet) is
    // told it is shutting down; then the connections end.
    drop(daemon);
    drop(rx);
    if let Some(h) = http {
        h.close().await;
    }
    if let Some(server) = server {
        server.close(server::CLOSE_TIMEOUT).await;
    }
    // Remove the socket and release its lock only now: a new daemon may take over.
    drop(bound);
    tracing::info!("every job is down; guardian exits");
    Ok(())
}

/// How often the record is written at most while no client asks anything.
const RECORD_PACE: std::time::Duration = std::time::Duration::from_millis(100);

/// The exec of a re-execution: the server stops accepting and answers what it took
/// but the loop did not carry out with [`reexec::retry`], then the binary is executed
/// with the socket's descriptors. Returns only if the exec failed, with the server
/// running again on the same socket, and the listener's descriptor now (None if that
/// could not be).
async fn reexec_turn(
    daemon: &mut Daemon,
    server: Option<server::Server>,
    http: &mut Option<crate::http::Http>,
    rx: &mut mpsc::Receiver<server::Envelope>,
    (listener_fd, lock_fd, tx, access): (
        std::os::fd::RawFd,
        std::os::fd::RawFd,
        &mpsc::Sender<server::Envelope>,
        &server::Access,
    ),
) -> Option<(server::Server, std::os::fd::RawFd)> {
    let kept = match reexec::keep_listener(listener_fd) {
        Ok(fd) => fd,
        Err(e) => {
            daemon.image.pending = None;
            daemon.reexec_failed(format!("cannot keep the control socket: {e}"));
            return server.map(|s| (s, listener_fd));
        }
    };
    daemon.reexec_begins();
    // Both servers stop accepting (clients that connect now wait in the backlogs) and
    // finish what their connections were at; requests that reach the loop meanwhile are
    // told to ask again.
    let http_settings = http.as_ref().map(|h| h.shared.settings.clone());
    let handing = http.take();
    let closed = async {
        let (_, listener) = tokio::join!(
            async {
                if let Some(server) = server {
                    server.close(std::time::Duration::from_secs(2)).await;
                }
            },
            async {
                match handing {
                    Some(h) => h.hand_over().await,
                    None => None,
                }
            },
        );
        listener
    };
    tokio::pin!(closed);
    let http_listener = loop {
        tokio::select! {
            l = &mut closed => break l,
            Some((_, reply)) = rx.recv() => { let _ = reply.send(reexec::retry()); }
        }
    };
    while let Ok((_, reply)) = rx.try_recv() {
        let _ = reply.send(reexec::retry());
    }
    daemon.flush_record();
    let http_fd = http_listener.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let why = daemon.exec_self(std::os::fd::AsRawFd::as_raw_fd(&kept), lock_fd, http_fd);
    daemon.reexec_failed(why);
    if let Some(settings) = http_settings {
        *http = serve_http_again(settings, http_listener, tx);
    }
    let listener = std::os::unix::net::UnixListener::from(kept);
    let started = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener));
    match started {
        Ok(l) => {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
            Some((server::start(l, tx.clone(), access.clone()), fd))
        }
        Err(e) => {
            tracing::error!("cannot serve the control socket again: {e}");
            None
        }
    }
}

/// The exec failed: the HTTP interface serves again, on the listener it kept (or a new
/// one, if that was lost). None, said, if it cannot.
fn serve_http_again(
    settings: crate::config::http::HttpSettings,
    kept: Option<std::net::TcpListener>,
    tx: &mpsc::Sender<server::Envelope>,
) -> Option<crate::http::Http> {
    let listener = match kept {
        Some(l) => Ok(l),
        None => crate::http::bind(&settings),
    };
    let started = listener
        .map_err(anyhow::Error::from)
        .and_then(|l| crate::http::start(settings, l, tx.clone()));
    match started {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(
                "http: cannot serve again after the failed re-execution: {e:#}; the HTTP interface is off until guardian restarts"
            );
            None
        }
    }
}

impl Daemon {
    /// Whether a client waits for a job to reach a state (`start --wait`, ...): its
    /// answer can come in any turn.
    fn has_waiters(&self) -> bool {
        self.jobs.values().any(|j| !j.waiters.is_empty())
    }

    #[cfg(test)]
    fn new(
        config: Config,
        internal: mpsc::UnboundedSender<Internal>,
        os: Box<dyn Os>,
    ) -> anyhow::Result<Daemon> {
        Daemon::with(config, internal, os, HashMap::new(), 0)
    }

    /// A daemon of `config`; `handed_pipes` and `generation` come from the image before
    /// an exec (none and 0 for a daemon just started).
    fn with(
        config: Config,
        internal: mpsc::UnboundedSender<Internal>,
        os: Box<dyn Os>,
        handed_pipes: HashMap<String, std::os::fd::OwnedFd>,
        generation: u64,
    ) -> anyhow::Result<Daemon> {
        let (persisted, warning) = state::load(&config.settings.state_dir);
        if let Some(w) = warning {
            tracing::error!("{w}");
        }
        let pipes = PipeDir::open(&config.settings.state_dir);
        let mut daemon = Daemon {
            jobs: BTreeMap::new(),
            pids: ProcessTable::new(),
            os,
            timers: Timers::default(),
            persisted,
            graph: Graph::default(),
            shutdown: None,
            config,
            work: VecDeque::new(),
            pumping: false,
            internal,
            http: None,
            host_checks: Vec::new(),
            alerts: None,
            failed_episode: HashMap::new(),
            am_firing: HashMap::new(),
            pipes,
            rest: rest::Rest::default(),
            book: recovery::Book::default(),
            held: HashMap::new(),
            own_sid: nix::unistd::getsid(None).map_or(0, |s| s.as_raw().unsigned_abs()),
            notify: None,
            image: reexec::SelfImage::new(generation),
            handed_pipes,
            group_commands: Default::default(),
        };
        // The specs move into the jobs: the loaded configuration keeps only its settings.
        let specs = std::mem::take(&mut daemon.config.jobs);
        for spec in specs.into_values() {
            daemon.add_job(spec)?;
        }
        // Every job's pipe that exists is open before anything is spawned, so what waited
        // in it while no daemon ran is logged first. The missing ones are made on a thread
        // of their own, in the order the jobs start, while the first jobs already run.
        daemon.pipes.make_ahead(
            daemon
                .jobs
                .values()
                .filter(|j| !j.log.is_open())
                .map(|j| j.spec.name.clone())
                .collect(),
        );
        // Pipes of jobs removed meanwhile are read, then go.
        for name in daemon.pipes.stale(|n| daemon.jobs.contains_key(n)) {
            LogPipe::drain(&daemon.pipes, &name, daemon.log_spec(&name));
        }
        // Pipes handed over for jobs gone from the configuration: read above, if FIFOs.
        daemon.handed_pipes.clear();
        Ok(daemon)
    }

    /// Where job `name`'s output goes.
    fn log_spec(&self, name: &str) -> LogSpec {
        let s = &self.config.settings;
        LogSpec {
            path: self.log_path(name),
            max_size: s.log_max_size,
            keep: s.log_keep,
            access: files::Access::private_or_group(s.log_group.as_ref().map(|g| g.gid)),
        }
    }

    fn add_job(&mut self, spec: JobSpec) -> anyhow::Result<()> {
        let log = match self.handed_pipes.remove(&spec.name) {
            Some(fd) => LogPipe::handed(fd, self.log_spec(&spec.name)),
            None => LogPipe::open(&self.pipes, &spec.name, self.log_spec(&spec.name)),
        }
        .with_context(|| format!("{}: cannot set up its log", spec.name))?;
        let stopped = self.persisted.stopped.contains(&spec.name);
        let monitored = !self.persisted.unmonitored.contains(&spec.name);
        let job = Job::new(spec, log, stopped, monitored);
        self.graph.set_watches(&job.spec.name, job.watches());
        self.jobs.insert(job.spec.name.clone(), Box::new(job));
        Ok(())
    }

    /// The daemon's start: jobs without `start-on` start now, then `startup` is emitted
    /// for the others.
    fn startup(&mut self) {
        let names: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.m.may_autostart(j.start_on.is_none(), AutoStart::Daemon))
            .map(|j| j.spec.name.clone())
            .collect();
        self.make_cgroups_ahead(&names);
        for name in names {
            self.work.push_back(Work::Feed(name, Input::Start));
        }
        self.work.push_back(Work::Dispatch {
            event: Event::new("startup"),
            also: None,
            blocks: None,
        });
        self.pump();
    }

    /// Feeds one input to a job and carries out everything that follows from it.
    fn feed(&mut self, name: &str, input: Input) {
        self.work.push_back(Work::Feed(name.to_string(), input));
        self.pump();
    }

    /// Does queued work until there is none. Re-entrant calls only queue.
    fn pump(&mut self) {
        if self.pumping {
            return;
        }
        self.pumping = true;
        while let Some(w) = self.work.pop_front() {
            match w {
                Work::Feed(name, input) => self.step(&name, input),
                Work::Record(name, p, kind, text) => {
                    if let Some(job) = self.jobs.get_mut(&name) {
                        job.m.record_failure(p, kind, text, self.os.now());
                    }
                }
                Work::Dispatch {
                    event,
                    also,
                    blocks,
                } => self.dispatch(event, also.map(|e| *e), blocks),
            }
        }
        self.pumping = false;
    }

    fn step(&mut self, name: &str, input: Input) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let now = self.os.now();
        let before = job.m.state();
        let effects = job.m.handle(input, now);
        // Before the effects (a hook they spawn is not the rest): a stop that reached
        // its kill signals the rest of the job, one that is over ends it.
        self.rest_after_step(name, before);
        // Spawn results go first, ahead of work other jobs queued meanwhile.
        let mut follow: Vec<Work> = Vec::new();
        for effect in effects {
            match effect {
                Effect::Spawn(p) => match self.spawn_proc(name, p) {
                    Ok(pid) => follow.push(Work::Feed(name.into(), Input::Spawned(p, pid))),
                    Err(e) => {
                        tracing::warn!(
                            "{name}: cannot start {}: {}",
                            p.as_str(),
                            crate::logtext::Esc(&e.to_string())
                        );
                        follow.push(Work::Feed(name.into(), Input::SpawnFailed(p)));
                        follow.push(Work::Record(
                            name.into(),
                            p,
                            FailureKind::SpawnFailed,
                            format!("spawn failed: {e}"),
                        ));
                    }
                },
                Effect::Signal(p, sig) => self.signal_proc(name, p, sig),
                Effect::ArmKillTimer(generation, after) => {
                    let timer = Timer::Kill {
                        job: name.to_string(),
                        generation,
                    };
                    self.timers.arm_in(now.mono, after, timer);
                }
                Effect::Emit(event) => self.emitted(name, event),
                Effect::GaveUp => {
                    tracing::error!("{name}: respawning too fast, giving up (state failed)");
                }
                Effect::AwaitReady => self.await_ready(name),
                Effect::ArmRespawnTimer(generation, after) => {
                    tracing::warn!(
                        "{name}: failing quickly; respawning in {}",
                        humantime::format_duration(after)
                    );
                    let timer = Timer::Respawn {
                        job: name.to_string(),
                        generation,
                    };
                    self.timers.arm_in(now.mono, after, timer);
                }
            }
        }
        for w in follow.into_iter().rev() {
            self.work.push_front(w);
        }
        self.settle(name);
    }

    fn spawn_proc(&mut self, name: &str, p: Proc) -> std::io::Result<u32> {
        if p == Proc::Main {
            self.prepare_main(name)?;
        }
        if self.jobs.get(name).is_some_and(|j| !j.log.is_open()) {
            let log = self.log_spec(name);
            if let Some(job) = self.jobs.get_mut(name) {
                job.log.ready(&self.pipes, name, log)?;
            }
        }
        let cgroup = self.cgroup_to_join(name);
        let job = self
            .jobs
            .get(name)
            .ok_or_else(|| std::io::Error::other("job is gone"))?;
        let program = job
            .program(p)
            .ok_or_else(|| std::io::Error::other("nothing to run"))?;
        let extra = job.extra_env(p);
        let spawned = self.os.spawn_into(
            &job.spec,
            program,
            &extra,
            Output::Log(job.log.writer()?),
            cgroup.as_ref().map(std::os::fd::AsFd::as_fd),
        )?;
        self.pids.insert(
            spawned.pid,
            Owner::Job {
                name: name.to_string(),
                proc: p,
            },
        );
        Ok(spawned.pid)
    }

    fn signal_proc(&self, name: &str, p: Proc, sig: Signal) {
        if p == Proc::Main && self.signal_held_job(name, sig) {
            tracing::debug!(
                "{name}: SIG{} to what is left of the previous daemon's run",
                crate::config::signal::name(sig)
            );
            return;
        }
        let Some(pid) = self.jobs.get(name).and_then(|j| j.m.pid_of(p)) else {
            return;
        };
        tracing::debug!(
            "{name}: SIG{} to the {} process group of {pid}",
            crate::config::signal::name(sig),
            p.as_str()
        );
        // A followed daemon may have left the group guardian made for its leader.
        match self.os.group_of(pid) {
            Some(group) => self.os.signal_group(group, sig),
            None => self.os.signal_pid(pid, sig),
        }
    }

    /// Asks the process table what ended and routes each end to its owner; first, the
    /// table says whether a main process waited for stopped itself.
    fn reap(&mut self) {
        self.check_stopped_children();
        while let Some((pid, owner)) = self.pids.peek(&*self.os) {
            // A followed main process may hand over to a process in its own group, so its
            // group is only cleaned up once it is clear that it did not.
            let mut followed_group = None;
            let mut followed_ids = None;
            let clean_group = match owner {
                Some(Owner::Job { name, proc }) => {
                    let follows =
                        *proc == Proc::Main && self.jobs.get(name).is_some_and(|j| j.follows());
                    if follows {
                        followed_group = self.os.group_of(pid);
                        followed_ids = self.os.ids_of(pid);
                    }
                    !follows
                }
                Some(Owner::Command(_)) => true,
                Some(Owner::Former { .. }) | None => false,
            };
            if clean_group {
                // The leader is a zombie, so its group id cannot be reused yet: whatever
                // it left behind in its group goes with it.
                self.os.signal_group(Pgid::of_leader(pid), Signal::SIGKILL);
            }
            let Some((end, owner)) = self.pids.reap(&*self.os, pid) else {
                break;
            };
            self.route_end(pid, end, owner, followed_group, followed_ids);
        }
        self.rest_reaped();
    }

    /// Where the end of child `pid`, which `owner` had, goes.
    fn route_end(
        &mut self,
        pid: u32,
        end: ProcessEnd,
        owner: Option<Owner>,
        followed_group: Option<Pgid>,
        followed_ids: Option<(u32, u32)>,
    ) {
        match owner {
            Some(Owner::Job { name, proc })
                if proc == Proc::Main
                    && self
                        .jobs
                        .get(&name)
                        .is_some_and(|j| j.m.main_pid() != Some(pid)) =>
            {
                tracing::debug!("{name}: former main process {pid} {end}");
            }
            Some(Owner::Job { name, proc }) => {
                tracing::debug!("{name}: {} process {pid} {end}", proc.as_str());
                // While a handover was waited for, the process followed meanwhile
                // stood in for the one that exited: the job ends as that one did.
                let first = self
                    .jobs
                    .get(&name)
                    .and_then(|j| j.handover.as_ref())
                    .map(|h| h.end())
                    .filter(|_| proc == Proc::Main);
                if proc == Proc::Main && self.main_handed_over(&name, pid, end, followed_ids) {
                    return;
                }
                let end = first.unwrap_or(end);
                if let Some(group) = followed_group {
                    self.os.signal_group(group, Signal::SIGKILL);
                }
                self.feed(&name, Input::Exited(proc, end));
            }
            Some(Owner::Command(tx)) => {
                let _ = tx.send(end);
            }
            Some(Owner::Former { name }) => {
                tracing::debug!("{name}: former main process {pid} {end}");
            }
            None => {
                tracing::debug!("reaped orphan {pid} ({end})");
                self.orphan_reaped();
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.os.now().mono;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Kill { job, generation } => {
                    if self
                        .jobs
                        .get(&job)
                        .is_some_and(|j| j.m.kill_timer_armed(generation))
                    {
                        tracing::warn!(
                            "{job}: still alive after its kill timeout, sending SIGKILL"
                        );
                        self.feed(&job, Input::KillTimeout(generation));
                        self.rest_kill_timeout(&job);
                    }
                }
                Timer::ReadyDeadline { job, generation } => self.ready_deadline(&job, generation),
                Timer::Respawn { job, generation } => {
                    self.feed(&job, Input::RespawnDue(generation));
                }
                Timer::Handover { job, generation } => self.handover_deadline(&job, generation),
                Timer::Leftovers { held } => self.kill_leftovers(held),
                Timer::Remind {
                    job,
                    check,
                    to,
                    episode,
                } => self.remind(job, check, to, episode),
                Timer::Resend { lasting, episode } => self.am_resend(lasting, episode),
            }
        }
    }

    fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Ready {
                job,
                generation,
                result,
            } => self.ready_step(&job, generation, result),
            Internal::Probe(run) => self.run_probe(run),
            Internal::Checked {
                owner,
                idx,
                generation,
                start,
                unheld,
                outcome,
            } => self.checked(owner, idx, generation, start, unheld, outcome),
            Internal::Handover {
                job,
                generation,
                pid,
            } => self.handover_found(&job, generation, pid),
            Internal::Gone { job, pid } => self.held_gone(&job, pid),
            Internal::Diagnosed(d) => self.diagnosed(*d),
            Internal::Ask(request, reply) => self.request(request, reply),
            Internal::Wake => {}
            Internal::Rolled {
                rolling,
                name,
                step,
            } => self.rolled(rolling, name, step),
        }
    }

    /// After a job moved: answer the clients waiting on it, let go of jobs blocked on
    /// it, apply what waits for it to be down, and go on with a shutdown.
    fn settle(&mut self, name: &str) {
        self.note_record(name);
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if job.readiness.is_some() && job.m.state() != State::Spawned {
            job.readiness = None;
        }
        self.settle_handover(name);
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        job.health_settle();
        for w in std::mem::take(&mut job.waiters) {
            match requests::outcome(w.until, &job.m, name) {
                Some(outcome) => {
                    let _ = w.tx.send(outcome);
                }
                None => job.waiters.push(w),
            }
        }
        self.unblock(name);
        self.sync_stat(name);
        self.sync_checks(name);
        self.alert_failure(name);
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        if job.m.is_down() {
            match std::mem::replace(&mut job.after, After::Nothing) {
                After::Nothing => {}
                After::Remove => {
                    self.pipes.remove(name);
                    if let Some(job) = self.jobs.remove(name) {
                        if job.recorded.is_some() {
                            self.book.dirty = true;
                        }
                        for w in job.waiters {
                            let _ =
                                w.tx.send(Err(format!("{name}: removed from the configuration")));
                        }
                    }
                    self.graph.remove(name);
                    tracing::info!("{name}: removed");
                }
                After::Replace(spec) => {
                    job.apply(*spec);
                    self.graph.set_watches(name, job.watches());
                    tracing::info!("{name}: configuration changed, starting again");
                    self.work
                        .push_back(Work::Feed(name.to_string(), Input::Start));
                }
            }
        }
        self.advance_shutdown();
    }

    fn save_state(&mut self) {
        self.persisted = Persisted::of(self.jobs.iter().map(|(n, j)| (n.as_str(), &j.m)));
        if let Err(e) = state::save(&self.config.settings.state_dir, &self.persisted) {
            tracing::error!(
                "cannot save state in {}: {e}",
                crate::logtext::EscPath(&self.config.settings.state_dir)
            );
        }
    }

    /// Re-reads the configuration. With errors nothing changes and they are returned.
    fn reload(&mut self) -> Result<String, String> {
        self.notify_reloading();
        let result = self.reread();
        self.notify_reloaded();
        result
    }

    fn reread(&mut self) -> Result<String, String> {
        let new = crate::config::load(&self.config.dir).map_err(|d| d.to_string())?;
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        if new.settings != self.config.settings {
            tracing::warn!(
                "guardian.toml changed: socket, directories and log settings take effect when the daemon restarts"
            );
        }
        let keep = crate::process::spawn::raise_nofile(nofile_needed(new.jobs.len()));
        crate::process::stat::set_keeping(keep);
        if !keep {
            for job in self.jobs.values_mut() {
                job.stat = None;
            }
        }
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        let old_names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in &old_names {
            if !new.jobs.contains_key(name) {
                removed += 1;
                if let Some(job) = self.jobs.get_mut(name) {
                    job.after = After::Remove;
                }
                self.work.push_back(Work::Feed(name.clone(), Input::Stop));
            }
        }
        let up: BTreeMap<String, bool> = self
            .jobs
            .iter()
            .map(|(n, j)| (n.clone(), j.m.state() == State::Running))
            .collect();
        for (name, spec) in &new.jobs {
            match self.jobs.get_mut(name) {
                None => {
                    added += 1;
                    if let Err(e) = self.add_job(spec.clone()) {
                        tracing::error!("{e:#}");
                        continue;
                    }
                    if let Some(job) = self.jobs.get_mut(name) {
                        if let Some(w) = &mut job.start_on {
                            w.assume(|j| up.get(j).copied());
                        }
                        let holds = job.start_on.as_ref().is_none_or(|w| w.holds());
                        if job.m.may_autostart(holds, AutoStart::Daemon) && self.shutdown.is_none()
                        {
                            self.work.push_back(Work::Feed(name.clone(), Input::Start));
                        }
                    }
                }
                Some(job) if job.spec != *spec && only_groups_differ(&job.spec, spec) => {
                    // Which groups a job is in says nothing about how it runs.
                    changed += 1;
                    job.spec.groups = spec.groups.clone();
                    job.spec.fingerprint = spec.fingerprint;
                }
                Some(job) if job.spec != *spec => {
                    changed += 1;
                    if job.m.is_down() {
                        job.apply(spec.clone());
                        self.graph.set_watches(name, job.watches());
                        if let Some(w) = &mut job.start_on {
                            w.assume(|j| up.get(j).copied());
                        }
                    } else {
                        job.after = After::Replace(Box::new(spec.clone()));
                        self.work.push_back(Work::Feed(name.clone(), Input::Stop));
                    }
                }
                Some(_) => {}
            }
        }
        self.pump();
        let unchanged = new.jobs.len() - added - changed;
        let settings = self.config.settings.clone();
        self.config = new;
        self.config.settings = settings;
        self.config.jobs.clear();
        release_free_memory();
        Ok(format!(
            "{added} added, {removed} removed, {changed} changed, {unchanged} unchanged"
        ))
    }

    /// The clocks, as the daemon reads them: once per input.
    fn now(&self) -> Now {
        self.os.now()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.config.settings.log_dir.join(format!("{name}.log"))
    }

    /// What a job's probes run with (its checks, its readiness probe).
    fn probe_context(&mut self, job: &str) -> Result<checks::Context, String> {
        self.probe_context_of(&checking::CheckOwner::Job(job.to_string()))
    }

    /// What a check's probes run with: the shared HTTP clients (built on first use) and
    /// a spawner that runs probe programs as the job's children of the daemon.
    fn probe_context_of(
        &mut self,
        owner: &checking::CheckOwner,
    ) -> Result<checks::Context, String> {
        let (http, insecure) = match &self.http {
            Some(pair) => pair.clone(),
            None => {
                let pair = (checks::http_client()?, checks::http_client_insecure()?);
                self.http = Some(pair.clone());
                pair
            }
        };
        Ok(checks::Context {
            http,
            http_insecure: Some(insecure),
            spawner: Box::new(run::JobSpawner {
                owner: owner.clone(),
                tx: self.internal.clone(),
                probe: std::sync::OnceLock::new(),
            }),
        })
    }
}

/// The descriptors `jobs` jobs may hold: four a job (its log pipe's end, its log file,
/// its main's stat file and one spare) and room for sockets.
fn nofile_needed(jobs: usize) -> u64 {
    u64::try_from(jobs)
        .unwrap_or(u64::MAX)
        .saturating_mul(4)
        .saturating_add(256)
}

/// An existing log directory (guardian leaves the mode of directories it did not create
/// alone) that the `log-group` cannot enter: said once at start.
fn warn_if_closed(dir: &std::path::Path, group: &crate::config::settings::GroupRef) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.mode();
    let enters = (meta.gid() == group.gid && mode & 0o050 == 0o050) || mode & 0o005 == 0o005;
    if !enters {
        tracing::warn!(
            "log-group `{}` cannot read the logs: {} is mode {:o}, group {}; for example: chgrp {} {} && chmod g+rx {}",
            crate::logtext::Esc(&group.name),
            crate::logtext::EscPath(dir),
            mode & 0o7777,
            meta.gid(),
            crate::logtext::Esc(&group.name),
            crate::logtext::EscPath(dir),
            crate::logtext::EscPath(dir),
        );
    }
}

/// Gives the memory that reading the configuration used (every job file parsed, then
/// dropped) back to the system: the allocator keeps freed memory otherwise, and for a
/// daemon that lives for months that is memory held for nothing.
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether `a` and `b` are the same job but for the groups it is in.
fn only_groups_differ(a: &JobSpec, b: &JobSpec) -> bool {
    let mut b = b.clone();
    b.groups = a.groups.clone();
    *a == b
}
