//! Real programs, started the way they really start: redis-server (in the foreground and
//! as a daemon), nginx with a master and workers (reload, binary upgrade), gunicorn
//! (seamless restart, a killed master), memcached as a daemon, and a Unicorn-style lock
//! holder. Each test asks the service a real question, checks guardian's state and
//! restart count, and that nothing of the service is left after `stop`.
//!
//! A test whose program is not installed says so and passes, except under CI (`CI=true`),
//! where `.ci/run` installs every one of them and a missing program fails the test.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{Conf, Daemon, alive, free_port, ppid, read, signal, wait_until};

/// Where `program` is, or None, after saying why the test does not run. Under CI a
/// missing program is a failure: CI installs them all.
fn require(program: &str) -> Option<String> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        for dir in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
            let p = Path::new(dir).join(program);
            if p.is_file() {
                return Some(p.display().to_string());
            }
        }
    }
    match found {
        Some(p) => Some(p.display().to_string()),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{program} is not installed, and CI=true: .ci/run should have installed it"
            );
            eprintln!("SKIPPED: {program} is not installed (bash .ci/run installs it)");
            None
        }
    }
}

/// The Python interpreter that can import gunicorn, and gunicorn's script beside it.
fn require_gunicorn() -> Option<(String, String)> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import gunicorn, os, sys; print(sys.executable); print(os.path.join(os.path.dirname(sys.executable), 'gunicorn'))",
        ])
        .output();
    let lines: Vec<String> = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match lines.as_slice() {
        [python, script] if Path::new(script).is_file() => Some((python.clone(), script.clone())),
        [python, _] => Some((python.clone(), String::new())),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "gunicorn is not installed for python3, and CI=true: .ci/run should have installed it"
            );
            eprintln!("SKIPPED: gunicorn is not installed (bash .ci/run installs it)");
            None
        }
    }
}

/// One exchange on a fresh connection: sends `request`, reads until the peer closes or
/// `until` shows up in the answer.
fn ask(port: u16, request: &str, until: &str) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if !until.is_empty() && String::from_utf8_lossy(&answer).contains(until) {
                    break;
                }
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// GET / over HTTP/1.0; the body when the answer is a 200.
fn get(port: u16) -> Result<String, String> {
    let answer = ask(
        port,
        "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "",
    )?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer: {answer:?}"))?;
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(body.to_string())
    } else {
        Err(format!("not a 200: {head:?}"))
    }
}

/// A client that sends one request after the other until told to stop (or for two
/// minutes, or 200,000 requests, whichever comes first), counting the answers.
struct Client {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Client {
    fn start(port: u16) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ok.clone());
        let thread = std::thread::spawn(move || {
            let began = Instant::now();
            let mut failures = Vec::new();
            let mut sent = 0u32;
            while !s.load(Ordering::Relaxed)
                && began.elapsed() < Duration::from_secs(120)
                && sent < 200_000
            {
                sent += 1;
                match get(port) {
                    Ok(body) if body.starts_with("ok") => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(body) => failures.push(format!("unexpected body {body:?}")),
                    Err(e) => failures.push(e),
                }
            }
            failures
        });
        Client {
            stop,
            ok,
            thread: Some(thread),
        }
    }

    fn answered(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` further requests were answered: the service works right now.
    fn wait_answers(&self, more: u64) {
        let target = self.answered() + more;
        wait_until("the client's requests to be answered", || {
            self.answered() >= target
        });
    }

    /// Stops the loop; the answered count and the failures.
    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .thread
            .take()
            .map(|t| t.join().unwrap_or_else(|_| vec!["client panicked".into()]))
            .unwrap_or_default();
        (self.answered(), failures)
    }
}

/// Every pid in /proc.
fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The live children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|p| ppid(*p) == Some(pid) && alive(*p))
        .collect()
}

/// `pid` and its live descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i]);
        out.extend(kids);
        i += 1;
    }
    out.retain(|p| alive(*p));
    out
}

/// Live processes whose command line contains `needle`.
fn with_cmdline(needle: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(needle) && alive(*p)
        })
        .collect()
}

/// The processes a service had, gathered as the test goes: after `stop` none may live.
#[derive(Default)]
struct Seen(BTreeSet<u32>);

impl Seen {
    fn note(&mut self, pids: impl IntoIterator<Item = u32>) {
        self.0.extend(pids);
    }

    fn assert_all_gone(&self, d: &Daemon<'_>, marker: &str) {
        let left: Vec<u32> = self.0.iter().copied().filter(|p| alive(*p)).collect();
        assert!(
            left.is_empty(),
            "after stop, processes of the service remain: {left:?}\n{}",
            d.daemon_log()
        );
        let left = with_cmdline(marker);
        assert!(
            left.is_empty(),
            "after stop, processes with {marker:?} in their command line remain: {left:?}"
        );
    }
}

fn restarts(d: &Daemon<'_>, job: &str) -> u64 {
    d.status(job)["restarts"].as_u64().unwrap_or(u64::MAX)
}

fn check_passed_since(d: &Daemon<'_>, job: &str, name: &str) -> bool {
    d.status(job)["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
        .is_some_and(|c| c["passed"] == true)
}

/// The live pid a pid file names.
fn pid_in(path: &str) -> Option<u32> {
    read(path).trim().parse().ok().filter(|p| alive(*p))
}

fn redis_ping(port: u16) -> Result<String, String> {
    ask(port, "PING\r\n", "\r\n")
}

#[test]
fn redis_in_the_foreground_answers_and_its_redis_cli_check_passes() {
    let Some(redis) = require("redis-server") else {
        return;
    };
    let Some(_) = require("redis-cli") else {
        return;
    };
    let c = Conf::new();
    let port = free_port();
    let dir = c.file("");
    c.job(
        "redis",
        &format!(
            "exec = \"{redis} --port {port} --bind 127.0.0.1 --save '' --appendonly no --dir {dir} --daemonize no\"\n\
             respawn = true\n\
             [ready]\ntype = \"tcp\"\nport = {port}\nsend = \"PING\\r\\n\"\nexpect = \"+PONG\"\n\
             [[check]]\nname = \"ping\"\ntype = \"program\"\nexec = \"redis-cli -p {port} ping\"\noutput = \"PONG\"\nevery = \"200ms\"\ntimeout = \"10s\"\n"
        ),
    );
    let d = c.start();
    d.wait_state("redis", "running");
    let pong = redis_ping(port).expect("redis answers PING");
    assert!(pong.starts_with("+PONG"), "{pong:?}");
    let set =
        ask(port, "SET guardian works\r\nGET guardian\r\n", "works\r\n").expect("SET and GET");
    assert!(set.contains("+OK") && set.contains("works"), "{set:?}");
    wait_until("the redis-cli check to pass", || {
        check_passed_since(&d, "redis", "ping")
    });
    let s = d.status("redis");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["health"], "healthy", "{s}");
    let pid = d.main_pid("redis").expect("a pid");
    let mut seen = Seen::default();
    seen.note(tree(pid));

    // A crash is respawned and the new server answers.
    signal(pid, "KILL");
    wait_until("a new redis-server", || {
        let s = d.status("redis");
        s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != u64::from(pid))
    });
    let pong = redis_ping(port).expect("the new redis answers PING");
    assert!(pong.starts_with("+PONG"), "{pong:?}");
    assert_eq!(restarts(&d, "redis"), 1);
    seen.note(tree(d.main_pid("redis").expect("a pid")));

    d.ok(&["stop", "redis"], 0);
    assert_eq!(d.state("redis"), "waiting");
    seen.assert_all_gone(&d, &format!("127.0.0.1:{port}"));
    assert!(redis_ping(port).is_err(), "nothing listens after stop");
}

#[test]
fn redis_as_a_daemon_is_followed_through_its_pid_file() {
    let Some(redis) = require("redis-server") else {
        return;
    };
    let c = Conf::new();
    let port = free_port();
    let dir = c.file("");
    let pidfile = c.file("redis.pid");
    c.job(
        "redis",
        &format!(
            "exec = \"{redis} --port {port} --bind 127.0.0.1 --save '' --appendonly no --dir {dir} --daemonize yes --pidfile {pidfile}\"\n\
             expect = \"fork\"\npidfile = \"{pidfile}\"\nrespawn = true\n\
             [[check]]\nname = \"ping\"\ntype = \"tcp\"\nport = {port}\nsend = \"PING\\r\\n\"\nexpect = \"+PONG\"\nevery = \"200ms\"\n"
        ),
    );
    let d = c.start();
    d.wait_state("redis", "running");
    let pid = d.main_pid("redis").expect("a pid");
    assert_eq!(pid_in(&pidfile), Some(pid), "guardian follows the daemon");
    let pong = redis_ping(port).expect("redis answers PING");
    assert!(pong.starts_with("+PONG"), "{pong:?}");
    wait_until("the PING check to pass", || {
        check_passed_since(&d, "redis", "ping")
    });
    let s = d.status("redis");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["health"], "healthy", "{s}");
    let mut seen = Seen::default();
    seen.note(tree(pid));
    d.ok(&["stop", "redis"], 0);
    seen.assert_all_gone(&d, &format!("127.0.0.1:{port}"));
    assert!(redis_ping(port).is_err(), "nothing listens after stop");
}

#[test]
fn memcached_as_a_daemon_answers_and_its_version_check_passes() {
    let Some(memcached) = require("memcached") else {
        return;
    };
    let c = Conf::new();
    let port = free_port();
    let pidfile = c.file("memcached.pid");
    c.job(
        "cache",
        &format!(
            "exec = \"{memcached} -d -P {pidfile} -u root -l 127.0.0.1 -p {port} -U 0 -m 16\"\n\
             pidfile = \"{pidfile}\"\nrespawn = true\n\
             [[check]]\nname = \"version\"\ntype = \"tcp\"\nport = {port}\nsend = \"version\\r\\n\"\nexpect = \"VERSION\"\nevery = \"200ms\"\n"
        ),
    );
    let d = c.start();
    d.wait_state("cache", "running");
    let pid = d.main_pid("cache").expect("a pid");
    assert_eq!(pid_in(&pidfile), Some(pid), "guardian follows the daemon");
    let stored = ask(port, "set guardian 0 0 5\r\nworks\r\n", "\r\n").expect("set");
    assert_eq!(stored, "STORED\r\n");
    let got = ask(port, "get guardian\r\n", "END\r\n").expect("get");
    assert!(got.contains("VALUE guardian 0 5\r\nworks\r\n"), "{got:?}");
    wait_until("the version check to pass", || {
        check_passed_since(&d, "cache", "version")
    });
    let s = d.status("cache");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["health"], "healthy", "{s}");
    let mut seen = Seen::default();
    seen.note(tree(pid));
    d.ok(&["stop", "cache"], 0);
    seen.assert_all_gone(&d, &format!("-p {port}"));
    assert!(
        ask(port, "version\r\n", "\r\n").is_err(),
        "nothing listens after stop"
    );
}

/// An nginx configuration in `prefix`: a master, two workers, answering "ok".
fn nginx_conf(prefix: &str, port: u16, daemon: bool) -> String {
    let daemon = if daemon { "on" } else { "off" };
    format!(
        "daemon {daemon};\nmaster_process on;\nworker_processes 2;\nuser root;\n\
         pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {prefix}/tmp/body;\n  proxy_temp_path {prefix}/tmp/proxy;\n\
           fastcgi_temp_path {prefix}/tmp/fastcgi;\n  uwsgi_temp_path {prefix}/tmp/uwsgi;\n\
           scgi_temp_path {prefix}/tmp/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n\
             location / {{ return 200 \"ok nginx\\n\"; }}\n  }}\n}}\n"
    )
}

/// A job running nginx on a configuration of its own.
/// The check runs every 200 ms with a timeout of its own: left to default to `every`,
/// one answer slower than 200 ms on a loaded machine failed the check and restarted
/// the job in the middle of a handover.
fn nginx_job(c: &Conf, nginx: &str, port: u16, daemon: bool) -> String {
    let prefix = c.file("nginx");
    std::fs::create_dir_all(format!("{prefix}/tmp")).expect("nginx prefix");
    std::fs::write(
        format!("{prefix}/nginx.conf"),
        nginx_conf(&prefix, port, daemon),
    )
    .expect("nginx.conf");
    let expect = if daemon { "expect = \"fork\"\n" } else { "" };
    format!(
        "exec = \"{nginx} -p {prefix}/ -c {prefix}/nginx.conf -e {prefix}/error.log\"\n\
         {expect}pidfile = \"{prefix}/nginx.pid\"\nrespawn = true\n\
         [ready]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nevery = \"50ms\"\n\
         [[check]]\nname = \"http\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nevery = \"200ms\"\ntimeout = \"5s\"\n"
    )
}

/// nginx's binary upgrade: USR2 to the master (it starts a new master from the binary,
/// which writes nginx.pid), WINCH to the old master (its workers finish and go), QUIT to
/// the old master. guardian must end up following the new master, with no restart and
/// no failed request. Returns the new master's pid.
fn nginx_binary_upgrade(d: &Daemon<'_>, prefix: &str, port: u16, seen: &mut Seen) -> u32 {
    let pidfile = format!("{prefix}/nginx.pid");
    let old = d.main_pid("web").expect("a pid");
    assert_eq!(pid_in(&pidfile), Some(old));
    let before = restarts(d, "web");
    let client = Client::start(port);
    client.wait_answers(20);
    signal(old, "USR2");
    wait_until("the new master to write nginx.pid", || {
        pid_in(&pidfile).is_some_and(|p| p != old)
    });
    let new = pid_in(&pidfile).expect("the new master");
    wait_until("the new master's workers", || children(new).len() == 2);
    seen.note(tree(new));
    client.wait_answers(20);
    // The old workers finish their requests and go; the old master stays, to go back to.
    signal(old, "WINCH");
    wait_until("the old workers to go", || children(old) == vec![new]);
    client.wait_answers(20);
    signal(old, "QUIT");
    wait_until("the old master to exit", || !alive(old));
    wait_until("guardian to follow the new master", || {
        d.main_pid("web") == Some(new)
    });
    client.wait_answers(50);
    let (answered, failures) = client.finish();
    eprintln!(
        "nginx binary upgrade: {answered} requests answered, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "requests failed during the upgrade: {failures:?}"
    );
    let s = d.status("web");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["restarts"], before, "no restart: {s}\n{}", d.daemon_log());
    assert_eq!(s["monitored"], true, "{s}");
    new
}

/// Under `daemon off` nginx refuses a binary upgrade ("the changing binary signal is
/// ignored") as long as its parent is the one it started with, which a supervisor always
/// is: the upgrade is tested with the daemon below.
#[test]
fn nginx_in_the_foreground_reloads_without_a_failed_request() {
    let Some(nginx) = require("nginx") else {
        return;
    };
    let c = Conf::new();
    let port = free_port();
    c.job("web", &nginx_job(&c, &nginx, port, false));
    let prefix = c.file("nginx");
    let d = c.start();
    d.wait_state("web", "running");
    assert_eq!(get(port).as_deref(), Ok("ok nginx\n"));
    let master = d.main_pid("web").expect("a pid");
    wait_until("two workers", || children(master).len() == 2);
    let mut seen = Seen::default();
    let workers = children(master);
    seen.note(tree(master));

    // `guardian reload web`: HUP, new workers, the same master, still answering.
    let client = Client::start(port);
    client.wait_answers(20);
    d.ok(&["reload", "web"], 0);
    wait_until("new workers after the reload", || {
        let now = children(master);
        now.len() == 2 && now.iter().all(|w| !workers.contains(w))
    });
    client.wait_answers(20);
    seen.note(tree(master));
    let (answered, failures) = client.finish();
    eprintln!(
        "nginx reload: {answered} requests answered, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "during the reload: {failures:?}");
    let s = d.status("web");
    assert_eq!(s["pid"], master);
    assert_eq!(s["restarts"], 0, "{s}");

    wait_until("the http check to pass", || {
        check_passed_since(&d, "web", "http")
    });
    d.ok(&["stop", "web"], 0);
    seen.assert_all_gone(&d, &prefix);
    assert!(get(port).is_err(), "nothing listens after stop");
}

#[test]
fn nginx_as_a_daemon_upgrades_its_binary_without_a_failed_request() {
    let Some(nginx) = require("nginx") else {
        return;
    };
    let c = Conf::new();
    let port = free_port();
    c.job("web", &nginx_job(&c, &nginx, port, true));
    let prefix = c.file("nginx");
    let d = c.start();
    d.wait_state("web", "running");
    let master = d.main_pid("web").expect("a pid");
    assert_eq!(
        ppid(master),
        Some(d.pid()),
        "the daemon, reaped by guardian"
    );
    assert_eq!(get(port).as_deref(), Ok("ok nginx\n"));
    wait_until("two workers", || children(master).len() == 2);
    let mut seen = Seen::default();
    seen.note(tree(master));
    let new = nginx_binary_upgrade(&d, &prefix, port, &mut seen);
    // Once more, from the new master.
    let newer = nginx_binary_upgrade(&d, &prefix, port, &mut seen);
    assert_ne!(new, newer);
    assert_eq!(restarts(&d, "web"), 0);
    d.ok(&["stop", "web"], 0);
    seen.assert_all_gone(&d, &prefix);
    assert!(get(port).is_err(), "nothing listens after stop");
}

/// A job serving tests/fixtures/wsgi_app.py with gunicorn; `daemon`: gunicorn
/// daemonizes itself (fork, setsid, fork) and is followed through its pid file.
/// The check runs every 200 ms with a timeout of its own: left to default to `every`,
/// one answer slower than 200 ms on a loaded machine failed the check and restarted
/// the job in the middle of a handover.
fn gunicorn_job(c: &Conf, gunicorn: &str, port: u16, daemon: bool) -> String {
    let pidfile = c.file("gunicorn.pid");
    let log = c.file("gunicorn.log");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let (flag, expect) = if daemon {
        (" --daemon", "expect = \"daemon\"\n")
    } else {
        ("", "")
    };
    format!(
        "exec = \"{gunicorn}{flag} --bind 127.0.0.1:{port} --workers 2 --graceful-timeout 5 --pid {pidfile} --error-logfile {log} --chdir {fixtures} wsgi_app:application\"\n\
         {expect}pidfile = \"{pidfile}\"\nrespawn = true\nreload-signal = \"USR2\"\n\
         [ready]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nevery = \"50ms\"\n\
         [[check]]\nname = \"http\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nevery = \"200ms\"\ntimeout = \"5s\"\n"
    )
}

/// How a gunicorn handover went: the new master, the requests answered, the failures.
struct Handover {
    new: u32,
    answered: u64,
    failures: Vec<String>,
}

/// gunicorn's seamless restart: `guardian reload` sends USR2 (a new master starts, as a
/// child of the old one, and writes PIDFILE.2); once its workers answer, `signals` go
/// to the old master (WINCH waits for its workers to go), the last of which makes it
/// exit and remove PIDFILE; the new master renames PIDFILE.2 over it when it notices,
/// up to a second later. guardian must follow the new master without a restart.
fn gunicorn_handover(d: &Daemon<'_>, pidfile: &str, port: u16, signals: &[&str]) -> Handover {
    let old = d.main_pid("web").expect("a pid");
    let before = restarts(d, "web");
    let client = Client::start(port);
    client.wait_answers(20);
    d.ok(&["reload", "web"], 0);
    let next = format!("{pidfile}.2");
    d.wait_until("the new master to write PIDFILE.2", || {
        pid_in(&next).is_some()
    });
    let new = pid_in(&next).expect("the new master");
    d.wait_until("the new master's workers", || children(new).len() == 2);
    // Its workers answer too: a response names a worker of the new master.
    d.wait_until("a worker of the new master to answer", || {
        get(port).is_ok_and(|body| {
            body.trim()
                .strip_prefix("ok ")
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|w| ppid(w) == Some(new))
        })
    });
    client.wait_answers(20);
    for sig in signals {
        signal(old, sig);
        if *sig == "WINCH" {
            d.wait_until("the old workers to go", || children(old) == vec![new]);
            client.wait_answers(20);
        }
    }
    d.wait_until("the old master to exit", || !alive(old));
    d.wait_until("guardian to follow the new master", || {
        d.main_pid("web") == Some(new) && pid_in(pidfile) == Some(new)
    });
    client.wait_answers(50);
    let (answered, failures) = client.finish();
    eprintln!(
        "gunicorn USR2 + {}: {answered} requests answered, {} failed",
        signals.join(" + "),
        failures.len()
    );
    let s = d.status("web");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["restarts"], before, "no restart: {s}\n{}", d.daemon_log());
    assert_eq!(s["monitored"], true, "{s}");
    Handover {
        new,
        answered,
        failures,
    }
}

#[test]
fn gunicorn_restarts_seamlessly_and_a_killed_master_is_respawned() {
    let Some((_python, gunicorn)) = require_gunicorn() else {
        return;
    };
    assert!(
        !gunicorn.is_empty(),
        "gunicorn imports, but its script is missing"
    );
    let c = Conf::new();
    let port = free_port();
    let pidfile = c.file("gunicorn.pid");
    c.job("web", &gunicorn_job(&c, &gunicorn, port, false));
    let d = c.start();
    d.wait_state("web", "running");
    assert!(get(port).is_ok_and(|b| b.starts_with("ok ")));
    let master = d.main_pid("web").expect("a pid");
    assert_eq!(pid_in(&pidfile), Some(master));
    wait_until("two workers", || children(master).len() == 2);
    let mut seen = Seen::default();
    seen.note(tree(master));

    // TERM is gunicorn's graceful stop: the old workers finish their requests.
    let h = gunicorn_handover(&d, &pidfile, port, &["TERM"]);
    assert!(
        h.failures.is_empty(),
        "requests failed during the handover: {:?}",
        h.failures
    );
    assert!(h.answered > 0);
    seen.note(tree(h.new));
    assert!(
        d.daemon_log().contains("handover done"),
        "the gap in the pid file was waited for:\n{}",
        d.daemon_log()
    );
    // QUIT is gunicorn's quick stop: the old workers drop what they serve (a 500, or a
    // closed connection), but the port never closes and guardian follows the new master.
    let h = gunicorn_handover(&d, &pidfile, port, &["QUIT"]);
    let refused: Vec<&String> = h
        .failures
        .iter()
        .filter(|f| f.starts_with("connect"))
        .collect();
    assert!(refused.is_empty(), "nothing listened: {refused:?}");
    let newer = h.new;
    seen.note(tree(newer));
    assert_eq!(restarts(&d, "web"), 0);

    // A master killed outright did not hand over: it is respawned and answers again.
    signal(newer, "KILL");
    wait_until("a respawned master", || {
        let s = d.status("web");
        s["state"] == "running" && s["restarts"] == 1
    });
    assert_ne!(d.main_pid("web"), Some(newer));
    wait_until("the respawned gunicorn to answer", || {
        get(port).is_ok_and(|b| b.starts_with("ok "))
    });
    let respawned = d.main_pid("web").expect("a pid");
    seen.note(tree(respawned));
    d.ok(&["stop", "web"], 0);
    seen.assert_all_gone(&d, &pidfile);
    assert!(get(port).is_err(), "nothing listens after stop");
}

/// Daemonized, gunicorn phases out the old workers on WINCH, as nginx does: USR2,
/// WINCH, QUIT then loses no request.
#[test]
fn gunicorn_as_a_daemon_restarts_with_usr2_winch_quit_without_a_failed_request() {
    let Some((_python, gunicorn)) = require_gunicorn() else {
        return;
    };
    let c = Conf::new();
    let port = free_port();
    let pidfile = c.file("gunicorn.pid");
    c.job("web", &gunicorn_job(&c, &gunicorn, port, true));
    let d = c.start();
    d.wait_state("web", "running");
    let master = d.main_pid("web").expect("a pid");
    assert_eq!(pid_in(&pidfile), Some(master));
    assert_eq!(
        ppid(master),
        Some(d.pid()),
        "the daemon, reaped by guardian"
    );
    assert!(get(port).is_ok_and(|b| b.starts_with("ok ")));
    wait_until("two workers", || children(master).len() == 2);
    let mut seen = Seen::default();
    seen.note(tree(master));
    for _ in 0..2 {
        let h = gunicorn_handover(&d, &pidfile, port, &["WINCH", "QUIT"]);
        assert!(
            h.failures.is_empty(),
            "requests failed during the handover: {:?}",
            h.failures
        );
        seen.note(tree(h.new));
    }
    assert_eq!(restarts(&d, "web"), 0);
    wait_until("the http check to pass", || {
        check_passed_since(&d, "web", "http")
    });
    d.ok(&["stop", "web"], 0);
    seen.assert_all_gone(&d, &pidfile);
    assert!(get(port).is_err(), "nothing listens after stop");
}

#[test]
fn a_killed_lock_holder_is_restarted_once_and_the_flock_check_waits_for_the_new_one() {
    let Some(flock) = require("flock") else {
        return;
    };
    let c = Conf::new();
    let lock = c.file("app.pid.lock");
    std::fs::write(&lock, "").expect("lock file");
    // A master that boots for a while, then forks the worker that holds the shared lock
    // (as Unicorn's before_fork does); the master lives on without the lock.
    c.job(
        "app",
        &format!(
            "script = \"\"\"\nsleep 0.3\n{flock} --shared --close {lock} sleep 100000 &\nwhile :; do sleep 1; done\n\"\"\"\n\
             [[check]]\ntype = \"flock\"\npath = \"{lock}\"\nevery = \"100ms\"\n"
        ),
    );
    let d = c.start();
    d.wait_state("app", "running");
    wait_until("the lock check to pass", || {
        check_passed_since(&d, "app", "flock")
    });
    let s = d.status("app");
    assert_eq!(s["restarts"], 0, "the check waited for the lock: {s}");
    let master = d.main_pid("app").expect("a pid");
    let holder = children(master)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "flock")
        })
        .expect("the lock holder");
    let mut seen = Seen::default();
    seen.note(tree(master));

    signal(holder, "KILL");
    wait_until("the restart and the new lock holder", || {
        let s = d.status("app");
        s["state"] == "running"
            && s["restarts"].as_u64() >= Some(1)
            && s["pid"].as_u64().is_some_and(|p| p != u64::from(master))
            && check_passed_since(&d, "app", "flock")
    });
    let s = d.status("app");
    assert_eq!(s["restarts"], 1, "one restart, no storm: {s}");
    assert_eq!(s["monitored"], true, "not unmonitored: {s}");
    assert_eq!(s["health"], "healthy", "{s}");
    let log = d.daemon_log();
    assert_eq!(
        log.matches("app: check flock failed (").count(),
        1,
        "the new process was not judged before it took the lock:\n{log}"
    );
    seen.note(tree(d.main_pid("app").expect("a pid")));
    d.ok(&["stop", "app"], 0);
    seen.assert_all_gone(&d, &lock);
    let free = Command::new(&flock)
        .args(["--nonblock", "--exclusive", &lock, "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(free, "nobody holds the lock after stop");
}
