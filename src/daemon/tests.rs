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
        Ok(Spawned {
            pid,
            stdout: None,
            stderr: None,
        })
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
}

/// A daemon on a configuration of its own, with the fake system.
struct Harness {
    daemon: Daemon,
    world: Arc<Mutex<World>>,
    _internal: mpsc::UnboundedReceiver<Internal>,
    _dir: tempfile::TempDir,
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
        let config =
            crate::config::load(dir.path()).unwrap_or_else(|d| panic!("configuration: {d}"));
        let world = Arc::new(Mutex::new(World::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut daemon = Daemon::new(config, tx, Box::new(FakeOs(world.clone())))
            .unwrap_or_else(|e| panic!("daemon: {e:#}"));
        daemon.startup();
        Harness {
            daemon,
            world,
            _internal: rx,
            _dir: dir,
        }
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
