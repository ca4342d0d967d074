//! The daemon without processes: a configuration made in a temporary directory, loaded
//! as the daemon loads it, run with a fake operating system that records what is
//! spawned and signalled and is told which child exited how, on tokio's paused clock.
//!
//! Only the children and the clock are fake: the configuration loader, the machines,
//! the event graph, the timers, the shutdown and the request handlers are the daemon's
//! own, and each job's log pipe is real (its reader is a task on the test's runtime).
//! Readiness, handovers and checks are not driven here (`tests/` does, with real
//! processes).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use crate::config::{JobSpec, Program};
use crate::control::protocol::{Request, Response};
use crate::job::{Goal, Now, ProcessEnd, State};
use crate::process::Pgid;
use crate::process::lineage::Leftover;
use crate::process::os::Os;
use crate::process::spawn::{Output, Spawned};

use super::{Daemon, Internal};

/// Pids the fake hands out: far above any real one, so nothing real is ever named.
const FIRST_PID: u32 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Group(u32),
    Pid(u32),
}

#[derive(Debug, Clone)]
struct Spawn {
    job: String,
    /// `main`, or the hook's name.
    process: String,
    argv: Vec<String>,
    pid: u32,
    at: tokio::time::Instant,
}

/// What the fake system has seen and what it is to report.
#[derive(Default)]
struct World {
    spawns: Vec<Spawn>,
    signals: Vec<(Target, Signal)>,
    /// Children that exited and are not reaped yet, in the order they exited.
    ended: Vec<(u32, ProcessEnd)>,
    /// Live processes that are not children (a previous daemon's), with their start
    /// times, and what /proc shows of them.
    alive: std::collections::HashMap<u32, u64>,
    leftovers: Vec<Leftover>,
    /// Processes watched through a (fake) pidfd: send to say it exited.
    watches: std::collections::HashMap<u32, oneshot::Sender<()>>,
}

struct FakeOs(Arc<Mutex<World>>);

fn lock(w: &Mutex<World>) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Os for FakeOs {
    fn spawn(
        &self,
        spec: &JobSpec,
        program: &Program,
        extra_env: &[(&str, &str)],
        _output: Output,
    ) -> std::io::Result<Spawned> {
        let mut w = lock(&self.0);
        let pid = FIRST_PID + w.spawns.len() as u32;
        let process = extra_env
            .iter()
            .find(|(k, _)| *k == "GUARDIAN_PROCESS")
            .map_or("main", |(_, v)| v)
            .to_string();
        w.spawns.push(Spawn {
            job: spec.name.clone(),
            process,
            argv: program.command_line().1,
            pid,
            at: tokio::time::Instant::now(),
        });
        Ok(Spawned { pid, output: None })
    }

    fn spawn_ready(
        &self,
        ready: &crate::process::spawn::Ready,
        _output: Output,
    ) -> std::io::Result<Spawned> {
        let mut w = lock(&self.0);
        let pid = FIRST_PID + w.spawns.len() as u32;
        w.spawns.push(Spawn {
            job: ready.job().to_string(),
            process: "probe".to_string(),
            argv: ready.argv().to_vec(),
            pid,
            at: tokio::time::Instant::now(),
        });
        Ok(Spawned { pid, output: None })
    }

    fn signal_group(&self, group: Pgid, sig: Signal) {
        lock(&self.0).signals.push((Target::Group(group.0), sig));
    }

    fn signal_pid(&self, pid: u32, sig: Signal) {
        lock(&self.0).signals.push((Target::Pid(pid), sig));
    }

    fn group_of(&self, pid: u32) -> Option<Pgid> {
        // Every process the fake spawned leads its own group, as a real one would.
        let w = lock(&self.0);
        w.spawns
            .iter()
            .any(|s| s.pid == pid)
            .then_some(Pgid::of_leader(pid))
    }

    fn ids_of(&self, pid: u32) -> Option<(u32, u32)> {
        self.group_of(pid).map(|g| (g.0, g.0))
    }

    fn exited(&self) -> Option<u32> {
        lock(&self.0).ended.first().map(|(pid, _)| *pid)
    }

    fn reap(&self, pid: u32) -> Option<ProcessEnd> {
        let mut w = lock(&self.0);
        let i = w.ended.iter().position(|(p, _)| *p == pid)?;
        Some(w.ended.remove(i).1)
    }

    fn stopped(&self, _pid: u32) -> bool {
        false
    }

    fn now(&self) -> Now {
        Now {
            mono: tokio::time::Instant::now().into_std(),
            wall: SystemTime::now(),
        }
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        let w = lock(&self.0);
        if let Some(t) = w.alive.get(&pid) {
            return Some(*t);
        }
        // A child the fake spawned started at its pid's tick.
        w.spawns
            .iter()
            .any(|s| s.pid == pid)
            .then_some(u64::from(pid))
    }

    fn age(&self, _start_time: u64) -> Duration {
        Duration::from_secs(3600)
    }

    fn watch_exit(&self, pid: u32) -> std::io::Result<crate::process::pidfd::Exit> {
        let mut w = lock(&self.0);
        if !w.alive.contains_key(&pid) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        let (tx, rx) = oneshot::channel();
        w.watches.insert(pid, tx);
        Ok(Box::pin(async move {
            let _ = rx.await;
        }))
    }

    fn leftovers(&self, jobs: &dyn Fn(&str) -> bool) -> Vec<Leftover> {
        let w = lock(&self.0);
        w.leftovers
            .iter()
            .filter(|l| jobs(&l.job) && w.alive.get(&l.pid) == Some(&l.start_time))
            .cloned()
            .collect()
    }
}

/// A daemon on a configuration of its own, with the fake system.
struct Harness {
    daemon: Daemon,
    world: Arc<Mutex<World>>,
    internal: mpsc::UnboundedReceiver<Internal>,
    dir: tempfile::TempDir,
}

impl Harness {
    /// A daemon with `jobs` (name, job file), started as the binary starts it.
    fn start(jobs: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let at = |p: &str| dir.path().join(p);
        for d in ["jobs", "log", "state"] {
            std::fs::create_dir(at(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
        let settings = "socket = \"g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n";
        std::fs::write(at("guardian.toml"), settings)
            .unwrap_or_else(|e| panic!("guardian.toml: {e}"));
        for (name, text) in jobs {
            std::fs::write(at(&format!("jobs/{name}.toml")), text)
                .unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        }
        Harness::launch(dir, World::default())
    }

    /// The daemon on `dir`, started as the binary starts it, in `world`.
    fn launch(dir: tempfile::TempDir, world: World) -> Harness {
        let config =
            crate::config::load(dir.path()).unwrap_or_else(|d| panic!("configuration: {d}"));
        let world = Arc::new(Mutex::new(world));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut daemon = Daemon::new(config, tx, Box::new(FakeOs(world.clone())))
            .unwrap_or_else(|e| panic!("daemon: {e:#}"));
        daemon.recover();
        daemon.startup();
        daemon.flush_record();
        Harness {
            daemon,
            world,
            internal: rx,
            dir,
        }
    }

    /// The daemon dies (no clean exit) and a new one starts on the same configuration
    /// and state. Of the processes the dead one started, those of `left` (job, pid) are
    /// still alive, re-parented, and found in /proc; nothing else is.
    fn crash_and_restart(self, left: &[(&str, u32)]) -> Harness {
        let mut world = World::default();
        for (job, pid) in left {
            let start_time = u64::from(*pid);
            world.alive.insert(*pid, start_time);
            world.leftovers.push(Leftover {
                job: job.to_string(),
                pid: *pid,
                ppid: 1,
                pgid: *pid,
                start_time,
            });
        }
        // New pids go on from where the dead daemon's ended.
        let spawned = self.world().spawns.clone();
        world.spawns = spawned
            .into_iter()
            .map(|mut s| {
                s.job = format!("(previous daemon) {}", s.job);
                s
            })
            .collect();
        // A crash: the daemon goes without writing its clean exit mark.
        let Harness { daemon, dir, .. } = self;
        drop(daemon);
        Harness::launch(dir, world)
    }

    /// Process `pid`, not a child, exits: its pidfd says so, as the loop takes it.
    async fn held_exits(&mut self, pid: u32) {
        let tx = self.world().watches.remove(&pid);
        self.world().alive.remove(&pid);
        let tx = tx.unwrap_or_else(|| panic!("{pid} is not watched"));
        let _ = tx.send(());
        let_tasks_run().await;
        while let Ok(msg) = self.internal.try_recv() {
            self.daemon.internal(msg);
        }
    }

    /// The spawns of this daemon (not the previous one's).
    fn new_spawns(&self) -> Vec<Spawn> {
        self.spawns()
            .into_iter()
            .filter(|s| !s.job.starts_with("(previous daemon)"))
            .collect()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    fn spawns(&self) -> Vec<Spawn> {
        self.world().spawns.clone()
    }

    fn spawns_of(&self, job: &str) -> Vec<Spawn> {
        self.spawns().into_iter().filter(|s| s.job == job).collect()
    }

    fn signals(&self) -> Vec<(Target, Signal)> {
        self.world().signals.clone()
    }

    fn state(&self, job: &str) -> State {
        self.daemon.jobs[job].m.state()
    }

    fn main_pid(&self, job: &str) -> u32 {
        self.daemon.jobs[job]
            .m
            .main_pid()
            .unwrap_or_else(|| panic!("{job} has no main process"))
    }

    /// Child `pid` exited with `end`: SIGCHLD, as the loop takes it.
    fn exits(&mut self, pid: u32, end: ProcessEnd) {
        self.world().ended.push((pid, end));
        self.daemon.reap();
    }

    /// Lets `d` pass on the paused clock, then fires what came due, as the loop does.
    async fn advance(&mut self, d: Duration) {
        tokio::time::advance(d).await;
        self.daemon.fire_timers();
    }

    fn request(&mut self, request: Request) -> oneshot::Receiver<Response> {
        let (tx, rx) = oneshot::channel();
        self.daemon.request(request, tx);
        rx
    }
}

/// Lets the tasks the daemon spawned (a client's answer collector) run.
async fn let_tasks_run() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

const SLEEPER: &str = "exec = \"sleep 3600\"\n";

#[tokio::test(start_paused = true)]
async fn a_job_is_spawned_at_start_and_runs_as_that_process() {
    let h = Harness::start(&[
        ("web", SLEEPER),
        ("by-hand", "manual = true\nexec = \"sleep 1\"\n"),
    ]);
    let spawns = h.spawns();
    assert_eq!(
        spawns.len(),
        1,
        "only the job that starts by itself: {spawns:?}"
    );
    assert_eq!(spawns[0].job, "web");
    assert_eq!(spawns[0].process, "main");
    assert_eq!(spawns[0].argv, ["sleep", "3600"]);
    assert_eq!(h.state("web"), State::Running);
    assert_eq!(h.main_pid("web"), spawns[0].pid);
    assert_eq!(h.state("by-hand"), State::Waiting);
    assert!(
        h.signals().is_empty(),
        "nothing was signalled: {:?}",
        h.signals()
    );
}

#[tokio::test(start_paused = true)]
async fn a_main_that_fails_quickly_is_respawned_after_the_delay() {
    let job = "respawn = true\nrespawn-delay = { initial = \"300ms\" }\nexec = \"sleep 3600\"\n";
    let mut h = Harness::start(&[("worker", job)]);
    let first = h.main_pid("worker");
    h.exits(first, ProcessEnd::Exited(1));
    // What the group left behind goes with its leader.
    assert!(
        h.signals()
            .contains(&(Target::Group(first), Signal::SIGKILL)),
        "{:?}",
        h.signals()
    );
    assert_eq!(h.state("worker"), State::Waiting);
    assert_eq!(h.daemon.jobs["worker"].m.goal(), Goal::Start);
    h.advance(Duration::from_millis(299)).await;
    assert_eq!(h.spawns().len(), 1, "respawned before its delay");
    h.advance(Duration::from_millis(1)).await;
    let spawns = h.spawns();
    assert_eq!(spawns.len(), 2, "respawned once the delay is over");
    assert_eq!(spawns[1].at - spawns[0].at, Duration::from_millis(300));
    assert_eq!(h.state("worker"), State::Running);
    assert_eq!(h.main_pid("worker"), spawns[1].pid);
}

#[tokio::test(start_paused = true)]
async fn a_stop_sends_the_kill_signal_then_sigkill_after_the_kill_timeout() {
    let job = "kill-signal = \"INT\"\nkill-timeout = \"2s\"\nexec = \"sleep 3600\"\n";
    let mut h = Harness::start(&[("db", job)]);
    let pid = h.main_pid("db");
    let mut answer = h.request(Request::Stop {
        target: "db".into(),
        group: None,
        wait: true,
    });
    let sent = h.signals();
    assert!(
        sent.contains(&(Target::Group(pid), Signal::SIGINT)),
        "the kill-signal goes to the group: {sent:?}"
    );
    assert!(!sent.iter().any(|(_, s)| *s == Signal::SIGKILL), "{sent:?}");
    h.advance(Duration::from_millis(1999)).await;
    assert!(
        !h.signals().iter().any(|(_, s)| *s == Signal::SIGKILL),
        "SIGKILL before the kill timeout: {:?}",
        h.signals()
    );
    let_tasks_run().await;
    assert!(
        answer.try_recv().is_err(),
        "answered before the job is down"
    );
    h.advance(Duration::from_millis(1)).await;
    assert!(
        h.signals().contains(&(Target::Group(pid), Signal::SIGKILL)),
        "{:?}",
        h.signals()
    );
    h.exits(pid, ProcessEnd::Signaled(Signal::SIGKILL));
    assert_eq!(h.state("db"), State::Waiting);
    assert!(h.daemon.jobs["db"].m.manual_stop());
    let answer = tokio::time::timeout(Duration::from_secs(5), answer).await;
    assert!(
        matches!(answer, Ok(Ok(Response::Done { .. }))),
        "the client is told the job is down: {answer:?}"
    );
    assert_eq!(h.spawns().len(), 1, "a stopped job is not respawned");
}

#[tokio::test(start_paused = true)]
async fn a_main_that_ends_within_its_kill_timeout_gets_no_sigkill() {
    let mut h = Harness::start(&[("db", "kill-timeout = \"2s\"\nexec = \"sleep 3600\"\n")]);
    let pid = h.main_pid("db");
    let _answer = h.request(Request::Stop {
        target: "db".into(),
        group: None,
        wait: false,
    });
    h.advance(Duration::from_millis(500)).await;
    h.exits(pid, ProcessEnd::Signaled(Signal::SIGTERM));
    assert_eq!(h.state("db"), State::Waiting);
    let before = h.signals();
    h.advance(Duration::from_secs(3)).await;
    assert_eq!(
        h.signals(),
        before,
        "nothing is signalled once the job is down"
    );
    let kills: Vec<_> = before
        .iter()
        .filter(|(_, s)| *s == Signal::SIGKILL)
        .collect();
    // Only the clean-up of the ended leader's group, never the kill timeout's.
    assert_eq!(kills, [&(Target::Group(pid), Signal::SIGKILL)]);
    assert!(before.contains(&(Target::Group(pid), Signal::SIGTERM)));
}

#[tokio::test(start_paused = true)]
async fn a_dependent_starts_only_once_its_dependency_is_running() {
    let db = "exec = \"sleep 3600\"\npost-start = \"echo up\"\n";
    let web = "start-on = \"started db\"\nexec = \"sleep 3600\"\n";
    let mut h = Harness::start(&[("db", db), ("web", web)]);
    let spawns = h.spawns();
    let what: Vec<(&str, &str)> = spawns
        .iter()
        .map(|s| (s.job.as_str(), s.process.as_str()))
        .collect();
    assert_eq!(what, [("db", "main"), ("db", "post-start")]);
    assert_eq!(h.state("web"), State::Waiting);
    // post-start is done: db is running, and `started db` starts web.
    h.exits(spawns[1].pid, ProcessEnd::Exited(0));
    assert_eq!(h.state("db"), State::Running);
    let web = h.spawns_of("web");
    assert_eq!(web.len(), 1, "{:?}", h.spawns());
    assert_eq!(h.state("web"), State::Running);
    assert!(
        h.daemon.jobs["web"]
            .start_env
            .iter()
            .any(|(k, v)| k == "GUARDIAN_EVENT" && v == "started"),
        "web knows the event that started it"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_most_recently_started_first_one_at_a_time() {
    // zeta starts after alpha, though it sorts after it.
    let zeta = "start-on = \"started alpha\"\nexec = \"sleep 3600\"\n";
    let mut h = Harness::start(&[("alpha", SLEEPER), ("zeta", zeta)]);
    let (alpha, zeta) = (h.main_pid("alpha"), h.main_pid("zeta"));
    h.daemon.begin_shutdown(1);
    let term = |t: &Target| (*t, Signal::SIGTERM);
    assert!(h.signals().contains(&term(&Target::Group(zeta))));
    assert!(
        !h.signals().contains(&term(&Target::Group(alpha))),
        "alpha is stopped only once zeta is down: {:?}",
        h.signals()
    );
    assert!(!h.daemon.finished());
    h.exits(zeta, ProcessEnd::Signaled(Signal::SIGTERM));
    assert_eq!(h.state("zeta"), State::Waiting);
    assert!(h.signals().contains(&term(&Target::Group(alpha))));
    assert!(!h.daemon.finished(), "alpha is not down yet");
    h.exits(alpha, ProcessEnd::Signaled(Signal::SIGTERM));
    assert!(h.daemon.finished(), "every job is down");
    assert_eq!(h.spawns().len(), 2, "nothing started during the shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_second_stop_request_kills_every_job_at_once() {
    let mut h = Harness::start(&[("a", SLEEPER), ("b", SLEEPER)]);
    let (a, b) = (h.main_pid("a"), h.main_pid("b"));
    h.daemon.begin_shutdown(1);
    h.daemon.begin_shutdown(2);
    for pid in [a, b] {
        assert!(
            h.signals().contains(&(Target::Group(pid), Signal::SIGKILL)),
            "{pid}: {:?}",
            h.signals()
        );
        assert!(h.signals().contains(&(Target::Pid(pid), Signal::SIGKILL)));
    }
    h.exits(a, ProcessEnd::Signaled(Signal::SIGKILL));
    h.exits(b, ProcessEnd::Signaled(Signal::SIGKILL));
    assert!(h.daemon.finished());
}

const RESPAWNER: &str = "respawn = true\nexec = \"sleep 3600\"\n";

#[tokio::test(start_paused = true)]
async fn a_job_running_at_the_crash_is_adopted_and_its_end_is_a_crash() {
    let h = Harness::start(&[
        ("web", RESPAWNER),
        ("idle", "manual = true\nexec = \"sleep 1\"\n"),
    ]);
    let pid = h.main_pid("web");
    let mut h = h.crash_and_restart(&[("web", pid)]);
    assert!(
        h.new_spawns().is_empty(),
        "nothing started twice: {:?}",
        h.new_spawns()
    );
    assert_eq!(h.state("web"), State::Running);
    assert_eq!(h.main_pid("web"), pid, "the same process");
    assert_eq!(h.state("idle"), State::Waiting);
    assert!(h.signals().is_empty(), "{:?}", h.signals());
    let up = h.daemon.jobs["web"]
        .m
        .running_since()
        .map(|t| t.elapsed())
        .unwrap_or_default();
    assert!(
        up >= Duration::from_secs(3600),
        "uptime from its start time: {up:?}"
    );
    // The adopted process dies: a crash of unknown status, respawned.
    h.held_exits(pid).await;
    assert!(
        h.signals().contains(&(Target::Group(pid), Signal::SIGKILL)),
        "what it left in its group goes with it: {:?}",
        h.signals()
    );
    let spawns = h.new_spawns();
    assert_eq!(spawns.len(), 1, "{spawns:?}");
    assert_eq!(h.state("web"), State::Running);
    assert_eq!(h.main_pid("web"), spawns[0].pid);
    let failure = h.daemon.jobs["web"]
        .m
        .last_failure()
        .map(|f| f.status.clone());
    assert_eq!(failure.as_deref(), Some("exited, status unknown"));
}

#[tokio::test(start_paused = true)]
async fn an_adopted_job_is_stopped_through_its_group_and_its_pidfd() {
    let job = "kill-timeout = \"2s\"\nexec = \"sleep 3600\"\n";
    let h = Harness::start(&[("db", job)]);
    let pid = h.main_pid("db");
    let mut h = h.crash_and_restart(&[("db", pid)]);
    let _answer = h.request(Request::Stop {
        target: "db".into(),
        group: None,
        wait: false,
    });
    assert!(
        h.signals().contains(&(Target::Group(pid), Signal::SIGTERM)),
        "{:?}",
        h.signals()
    );
    h.advance(Duration::from_secs(2)).await;
    assert!(
        h.signals().contains(&(Target::Group(pid), Signal::SIGKILL)),
        "{:?}",
        h.signals()
    );
    h.held_exits(pid).await;
    assert_eq!(h.state("db"), State::Waiting);
    assert!(
        h.new_spawns().is_empty(),
        "a stopped job is not started again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_file_changed_meanwhile_is_ended_cleanly_and_started_anew() {
    let h = Harness::start(&[(
        "web",
        "kill-timeout = \"2s\"\npost-stop = \"true\"\nexec = \"sleep 3600\"\n",
    )]);
    let pid = h.main_pid("web");
    std::fs::write(
        h.dir.path().join("jobs/web.toml"),
        "kill-timeout = \"2s\"\npost-stop = \"true\"\nexec = \"sleep 7200\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut h = h.crash_and_restart(&[("web", pid)]);
    assert!(
        h.signals().contains(&(Target::Group(pid), Signal::SIGTERM)),
        "{:?}",
        h.signals()
    );
    assert!(
        h.new_spawns().is_empty(),
        "nothing new before the old one is gone"
    );
    h.advance(Duration::from_secs(2)).await;
    assert!(
        h.signals().contains(&(Target::Group(pid), Signal::SIGKILL)),
        "{:?}",
        h.signals()
    );
    h.held_exits(pid).await;
    let spawns = h.new_spawns();
    assert_eq!(spawns.len(), 1, "post-stop first: {spawns:?}");
    assert_eq!(spawns[0].process, "post-stop");
    h.exits(spawns[0].pid, ProcessEnd::Exited(0));
    let spawns = h.new_spawns();
    assert_eq!(spawns.len(), 2, "{spawns:?}");
    assert_eq!(spawns[1].argv, ["sleep", "7200"], "the new configuration");
    assert_eq!(h.state("web"), State::Running);
}

#[tokio::test(start_paused = true)]
async fn a_job_caught_in_its_post_start_is_ended_and_started_again() {
    let job = "exec = \"sleep 3600\"\npost-start = \"sleep 60\"\n";
    let h = Harness::start(&[("web", job)]);
    assert_eq!(h.state("web"), State::PostStart);
    let spawns = h.spawns();
    let (main, hook) = (spawns[0].pid, spawns[1].pid);
    let mut h = h.crash_and_restart(&[("web", main), ("web", hook)]);
    for pid in [main, hook] {
        assert!(
            h.signals().contains(&(Target::Group(pid), Signal::SIGTERM)),
            "{pid}: {:?}",
            h.signals()
        );
    }
    h.held_exits(hook).await;
    assert!(h.new_spawns().is_empty(), "the main process is still there");
    h.held_exits(main).await;
    let what: Vec<String> = h.new_spawns().iter().map(|s| s.process.clone()).collect();
    assert_eq!(what, ["main", "post-start"]);
    assert_eq!(h.state("web"), State::PostStart);
}

#[tokio::test(start_paused = true)]
async fn a_stale_record_adopts_nothing_and_signals_nothing() {
    let h = Harness::start(&[("web", SLEEPER)]);
    let pid = h.main_pid("web");
    // The recorded pid is gone (or another process has it): /proc finds nothing of web.
    let h = h.crash_and_restart(&[]);
    assert!(h.signals().is_empty(), "{:?}", h.signals());
    let spawns = h.new_spawns();
    assert_eq!(spawns.len(), 1, "started anew: {spawns:?}");
    assert_ne!(spawns[0].pid, pid);
    assert_eq!(h.state("web"), State::Running);
}

#[tokio::test(start_paused = true)]
async fn the_record_holds_every_job_that_is_not_at_rest() {
    let mut h = Harness::start(&[
        ("web", SLEEPER),
        ("idle", "manual = true\nexec = \"sleep 1\"\n"),
    ]);
    let pid = h.main_pid("web");
    let (rec, _) = super::record::load(&h.dir.path().join("state"));
    let rec = rec.unwrap_or_else(|| panic!("no record"));
    assert!(!rec.clean_exit);
    assert_eq!(rec.jobs.keys().collect::<Vec<_>>(), ["web"]);
    let web = &rec.jobs["web"];
    assert_eq!((&*web.state, &*web.goal), ("running", "start"));
    assert_eq!(
        web.main.map(|m| (m.pid, m.start_time, m.pgid)),
        Some((pid, u64::from(pid), pid))
    );
    let _answer = h.request(Request::Stop {
        target: "web".into(),
        group: None,
        wait: false,
    });
    h.exits(pid, ProcessEnd::Signaled(Signal::SIGTERM));
    h.daemon.flush_record();
    let (rec, _) = super::record::load(&h.dir.path().join("state"));
    assert!(rec.is_some_and(|r| r.jobs.is_empty()));
}
