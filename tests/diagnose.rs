//! Reports on hung jobs and the passive `backlog` probe, with real programs: a stdlib
//! Python HTTP server whose handler blocks on a lock, gunicorn with a view that sleeps
//! for ever, py-spy as the job's `diagnose` command, and plain servers that stop
//! accepting (SIGSTOP, or never calling accept()).
//!
//! py-spy and gunicorn come from PyPI (.ci/run installs them); without them the tests
//! that need them say so and pass, except under CI.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::util::{Conf, Daemon, free_port, signal, text, webhook};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The python3 the tests run, as an absolute path (a job's PATH is guardian's
/// default, and pyenv's shims need pyenv on it).
fn python() -> String {
    Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/bin/python3".into())
}

/// py-spy's binary, or None after saying why a test does not use it (a failure
/// under CI, which installs it).
fn py_spy() -> Option<String> {
    let out = Command::new(python())
        .args([
            "-c",
            "import os, sys, sysconfig; p = os.path.join(sysconfig.get_path('scripts'), 'py-spy'); print(p if os.path.isfile(p) else '')",
        ])
        .output();
    let found = out
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "py-spy is not installed, and CI=true: .ci/run should have installed it"
        );
        eprintln!("SKIPPED: py-spy is not installed (bash .ci/run installs it)");
    }
    found
}

/// gunicorn's script beside the python3 that imports it.
fn gunicorn() -> Option<String> {
    let out = Command::new(python())
        .args([
            "-c",
            "import gunicorn, os, sys, sysconfig; print(os.path.join(sysconfig.get_path('scripts'), 'gunicorn'))",
        ])
        .output();
    let found = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| Path::new(p).is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "gunicorn is not installed, and CI=true: .ci/run should have installed it"
        );
        eprintln!("SKIPPED: gunicorn is not installed (bash .ci/run installs it)");
    }
    found
}

/// Opens up to `n` connections to `port` (those the kernel no longer completes are
/// given up after a moment); returns those that connected.
fn connect_many(port: u16, n: usize) -> Vec<TcpStream> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok())
        .collect()
}

/// Sends a request whose handling hangs, and keeps its connection.
fn hang(port: u16) -> TcpStream {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /slow HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("send");
    s
}

fn json(d: &Daemon<'_>, args: &[&str]) -> Value {
    let out = d.ok(args, 0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out)))
}

fn restarts(d: &Daemon<'_>, job: &str) -> u64 {
    d.status(job)["restarts"].as_u64().unwrap_or(0)
}

/// Every thread of every process of a report, as (wchan, syscall).
fn waits(r: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in r["processes"].as_array().into_iter().flatten() {
        for t in p["threads"].as_array().into_iter().flatten() {
            out.push((
                t["wchan"].as_str().unwrap_or("").to_string(),
                t["syscall"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

fn full_listener(r: &Value) -> Option<(u64, u64)> {
    r["listeners"].as_array()?.iter().find_map(|l| {
        let (q, b) = (l["queue"].as_u64()?, l["backlog"].as_u64()?);
        (q > b).then_some((q, b))
    })
}

/// py-spy may be slow on a loaded machine: a 5 s deadline, for the tests that use it.
fn generous_deadline(conf: &Conf) {
    std::fs::write(
        conf.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\nreport-deadline = \"5s\"\n",
    )
    .expect("guardian.toml");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).map(|m| m.mode() & 0o777).unwrap_or(0)
}

#[test]
fn a_report_before_the_restart_names_the_lock_wait_the_full_queue_and_the_python_stack() {
    let spy = py_spy();
    let port = free_port();
    let conf = Conf::new();
    generous_deadline(&conf);
    let diagnose = spy
        .as_ref()
        .map(|s| format!("diagnose = \"{s} dump --pid $MAINPID\"\ndiagnose-timeout = \"4s\"\n"))
        .unwrap_or_default();
    conf.job(
        "web",
        &format!(
            "exec = \"{py} -u {FIXTURES}/locked_server.py {port}\"\n{diagnose}\
             [ready]\ntype = \"tcp\"\nport = {port}\n\
             [[check]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/health\"\n\
             every = \"1s\"\ntimeout = \"700ms\"\nfailures = 2\n",
            py = python()
        ),
    );
    let d = conf.start();
    d.wait_state("web", "running");
    let _held = hang(port);
    let queued = connect_many(port, 8);
    assert!(
        queued.len() >= 5,
        "the kernel took {} connections",
        queued.len()
    );
    d.wait_until("the check's restart", || restarts(&d, "web") >= 1);

    let r = json(&d, &["reports", "web", "LAST", "--json"]);
    let why = r["why"].as_str().unwrap_or("");
    assert!(why.starts_with("check http failed"), "{why}");
    assert!(why.ends_with("action restart"), "{why}");
    // The server's main thread waits on the lock: a futex.
    let main = &r["processes"][0]["threads"][0];
    let (wchan, syscall) = (
        main["wchan"].as_str().unwrap_or(""),
        main["syscall"].as_str().unwrap_or(""),
    );
    assert!(
        wchan.contains("futex") || syscall == "futex",
        "main thread in {wchan} / {syscall}: {r:#}"
    );
    // Its accept queue is full: 5 was its backlog.
    let (q, b) = full_listener(&r).unwrap_or_else(|| panic!("no full queue: {r:#}"));
    assert_eq!(b, 5, "{r:#}");
    assert!(q > b);
    let log: Vec<&str> = r["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(log.contains(&"waiting for the lock"), "{log:?}");
    let summary = r["summary"].as_str().unwrap_or("");
    assert!(summary.contains("futex"), "{summary}");
    assert!(
        summary.contains(&format!("accept queue {q}/5 on 127.0.0.1:{port} (full)")),
        "{summary}"
    );
    assert!(
        summary.contains("last log line: waiting for the lock"),
        "{summary}"
    );
    if spy.is_some() {
        let out = r["diagnose"]["output"].as_str().unwrap_or("");
        assert!(
            out.contains("wait_for_the_lock"),
            "py-spy: {:#}",
            r["diagnose"]
        );
        assert_eq!(r["diagnose"]["status"], "exited 0", "{:#}", r["diagnose"]);
    }
    // Kept privately, and named in the alert with its summary.
    let path = r["path"].as_str().unwrap_or("").to_string();
    assert_eq!(mode(Path::new(&path)), 0o600);
    assert_eq!(
        mode(Path::new(&path).parent().unwrap_or(Path::new("/"))),
        0o700
    );
    let alert = d
        .daemon_log()
        .lines()
        .find(|l| l.contains("alert: web: check http failed"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(alert.contains(&format!("report: {path}")), "{alert}");
    assert!(alert.contains("accept queue"), "{alert}");
    eprintln!(
        "report on the locked server took {} ms",
        r["took_ms"].as_f64().unwrap_or(-1.0)
    );
}

#[test]
fn gunicorn_stuck_in_a_view_is_caught_and_py_spy_names_the_view() {
    let Some(gunicorn) = gunicorn() else {
        return;
    };
    let spy = py_spy();
    let port = free_port();
    let conf = Conf::new();
    generous_deadline(&conf);
    let diagnose = spy
        .as_ref()
        .map(|s| {
            format!(
                "diagnose = \"{s} dump --subprocesses --pid $MAINPID\"\ndiagnose-timeout = \"4s\"\n"
            )
        })
        .unwrap_or_default();
    conf.job(
        "app",
        &format!(
            "exec = \"{py} {gunicorn} --chdir {FIXTURES} -w 1 --backlog 4 --graceful-timeout 1 -b 127.0.0.1:{port} sleepy_wsgi:application\"\n\
             kill-timeout = \"3s\"\n{diagnose}\
             [ready]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\ndeadline = \"30s\"\n\
             [[check]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\n\
             every = \"1s\"\ntimeout = \"700ms\"\nfailures = 2\n",
            py = python()
        ),
    );
    let d = conf.start();
    d.wait_state("app", "running");
    let _held = hang(port);
    let queued = connect_many(port, 7);
    assert!(
        queued.len() >= 4,
        "the kernel took {} connections",
        queued.len()
    );
    d.wait_until("the check's restart", || restarts(&d, "app") >= 1);
    let r = json(&d, &["reports", "app", "LAST", "--json"]);
    // The worker sleeps in the kernel's timer wait.
    let w = waits(&r);
    assert!(
        w.iter().any(|(wchan, sys)| wchan.contains("nanosleep")
            || sys.contains("nanosleep")
            || sys == "select"),
        "{w:?}"
    );
    assert!(
        r["processes"].as_array().is_some_and(|p| p.len() >= 2),
        "master and worker: {r:#}"
    );
    let (q, b) = full_listener(&r).unwrap_or_else(|| panic!("no full queue: {r:#}"));
    assert_eq!(b, 4);
    assert!(q > 4);
    let log: Vec<&str> = r["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        log.iter().any(|l| l.contains("sleeping for ever")),
        "{log:?}"
    );
    if spy.is_some() {
        let out = r["diagnose"]["output"].as_str().unwrap_or("");
        assert!(out.contains("sleep_forever"), "py-spy: {:#}", r["diagnose"]);
    }
}

/// Processes whose environment marks them as a report's `diagnose` command.
fn diagnose_processes() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == b"GUARDIAN_DIAGNOSE=1"))
                .unwrap_or(false)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(4).any(|w| w == b"61.5"))
        })
        .collect()
}

#[test]
fn a_hung_diagnose_command_is_cut_and_the_restart_is_not_delayed_past_the_deadline() {
    let port = free_port();
    let conf = Conf::new();
    std::fs::write(
        conf.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\nreport-deadline = \"1s\"\n",
    )
    .expect("guardian.toml");
    // Nothing listens on the port: the check fails at its first run.
    conf.job(
        "stuck",
        &format!(
            "exec = \"sleep 1000\"\ndiagnose = \"sleep 61.5\"\ndiagnose-timeout = \"30s\"\n\
             [[check]]\ntype = \"tcp\"\nport = {port}\nevery = \"500ms\"\n"
        ),
    );
    let d = conf.start();
    d.wait_state("stuck", "running");
    let first = d.main_pid("stuck");
    d.wait_until("the check's restart", || {
        restarts(&d, "stuck") >= 1 && d.state("stuck") == "running" && d.main_pid("stuck") != first
    });
    let restarted_at = SystemTime::now()
        - Duration::from_secs_f64(d.status("stuck")["uptime_secs"].as_f64().unwrap_or(0.0));
    let r = json(&d, &["reports", "stuck", "LAST", "--json"]);
    let status = r["diagnose"]["status"].as_str().unwrap_or("");
    assert!(
        status.starts_with("timed out after 900ms"),
        "{:#}",
        r["diagnose"]
    );
    let took = r["took_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(took < 1500.0, "took {took} ms with a 1 s deadline");
    let taken_at = humantime::parse_rfc3339(r["time"].as_str().unwrap_or("")).expect("time");
    let delay = restarted_at
        .duration_since(taken_at)
        .unwrap_or(Duration::ZERO);
    // The deadline, then the stop (sleep ends at SIGTERM) and the spawn.
    assert!(
        delay < Duration::from_secs(3),
        "restarted {delay:?} after the report began"
    );
    eprintln!(
        "report with a hung diagnose took {took:.0} ms; the restart came {delay:?} after it began"
    );
    // The hung command was killed at its timeout.
    let start = Instant::now();
    while !diagnose_processes().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the diagnose command outlived its timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn diagnose_on_demand_and_reports_listing() {
    let conf = Conf::new();
    conf.job("idle", "exec = \"sleep 1000\"\n");
    conf.job("down", "exec = \"sleep 1000\"\nmanual = true\n");
    let d = conf.start();
    d.wait_state("idle", "running");
    let pid = d.main_pid("idle").expect("pid");
    let out = d.ok(&["diagnose", "idle"], 0);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("process {pid} ")), "{shown}");
    assert!(shown.contains("why: guardian diagnose"), "{shown}");
    assert!(shown.contains("main thread sleeping in"), "{shown}");
    let r = json(&d, &["diagnose", "idle", "--json"]);
    assert_eq!(r["main_pid"].as_u64(), Some(u64::from(pid)));
    assert_eq!(r["complete"], true, "{r:#}");
    let list = json(&d, &["reports", "idle", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list:#}");
    let last = json(&d, &["reports", "idle", "LAST", "--json"]);
    let newest = json(&d, &["reports", "idle", "1", "--json"]);
    assert_eq!(last["time"], r["time"]);
    assert_eq!(newest["time"], r["time"]);
    let by_name = list[0]["name"].as_str().unwrap_or("").to_string();
    let oldest = json(&d, &["reports", "idle", &by_name, "--json"]);
    assert_ne!(oldest["time"], r["time"]);
    let table = String::from_utf8_lossy(&d.ok(&["reports", "idle"], 0).stdout).to_string();
    assert!(
        table.contains(&by_name) && table.contains("guardian diagnose"),
        "{table}"
    );
    // Errors say what is wrong.
    let out = d.ok(&["reports", "idle", "3"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("N is 1 (the newest) to 2"),
        "{}",
        text(&out)
    );
    let out = d.ok(&["reports", "idle", "../../x"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no report"),
        "{}",
        text(&out)
    );
    let out = d.ok(&["reports", "nope"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no job named `nope`"),
        "{}",
        text(&out)
    );
    d.ok(&["reports", "down"], 0);
    // A job that is down: a report that says so.
    let r = json(&d, &["diagnose", "down", "--json"]);
    assert!(
        r["summary"]
            .as_str()
            .unwrap_or("")
            .starts_with("no process of the job"),
        "{r:#}"
    );
}

/// The count a `listen_only.py accept` server wrote.
fn seen(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn check_of(d: &Daemon<'_>, job: &str) -> Value {
    d.status(job)["checks"][0].clone()
}

#[test]
fn backlog_catches_a_stopped_server_without_a_connection_of_its_own() {
    let port = free_port();
    let conf = Conf::new();
    let count = conf.path().join("seen");
    conf.job(
        "srv",
        &format!(
            "exec = \"{py} -u {FIXTURES}/listen_only.py {port} 3 {} accept\"\n\
             [ready]\ntype = \"file\"\npath = \"{}\"\n\
             [[check]]\ntype = \"backlog\"\nevery = \"300ms\"\nfailures = 3\naction = \"alert\"\n",
            count.display(),
            count.display(),
            py = python()
        ),
    );
    let d = conf.start();
    d.wait_state("srv", "running");
    d.wait_until("5 passing runs", || {
        let c = check_of(&d, "srv");
        c["runs"].as_u64().unwrap_or(0) >= 5 && c["passed"] == true
    });
    assert_eq!(seen(&count), Some(0), "the probe connected");
    let pid = d.main_pid("srv").expect("pid");
    signal(pid, "STOP");
    let clients = connect_many(port, 6);
    let n = clients.len() as u64;
    assert!(n >= 4, "the kernel completed {n} handshakes");
    d.wait_until("the check failing", || {
        check_of(&d, "srv")["failing"] == true
    });
    assert_eq!(
        d.log_count("check backlog failed (3 of the last 3)"),
        1,
        "{}",
        d.daemon_log()
    );
    let reason = check_of(&d, "srv")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        reason.contains("/3 on 127.0.0.1:") && reason.contains("full"),
        "{reason}"
    );
    signal(pid, "CONT");
    d.wait_until("the queue drained", || seen(&count) == Some(n));
    d.wait_until("the check recovered", || {
        check_of(&d, "srv")["failing"] == false
    });
    let runs = check_of(&d, "srv")["runs"].as_u64().unwrap_or(0);
    d.wait_until("3 more runs", || {
        check_of(&d, "srv")["runs"].as_u64().unwrap_or(0) >= runs + 3
    });
    assert_eq!(
        seen(&count),
        Some(n),
        "the server saw only the test's {n} connections"
    );
}

#[test]
fn backlog_catches_a_server_that_never_accepts_and_restarts_it() {
    let port = free_port();
    let conf = Conf::new();
    let count = conf.path().join("seen");
    conf.job(
        "deaf",
        &format!(
            "exec = \"{py} -u {FIXTURES}/listen_only.py {port} 2 {}\"\n\
             [ready]\ntype = \"file\"\npath = \"{}\"\n\
             [[check]]\ntype = \"backlog\"\nevery = \"300ms\"\nfailures = 2\n",
            count.display(),
            count.display(),
            py = python()
        ),
    );
    let d = conf.start();
    d.wait_state("deaf", "running");
    d.wait_until("4 passing runs", || {
        let c = check_of(&d, "deaf");
        c["runs"].as_u64().unwrap_or(0) >= 4 && c["passed"] == true
    });
    // The server never accepts: a connection of the probe's would still be queued.
    let queue = || {
        ::checks::sockdiag::tcp_listeners()
            .ok()
            .and_then(|l| {
                l.into_iter()
                    .find(|l| l.addr.is_some_and(|(_, p)| p == port))
            })
            .map(|l| (l.queue, l.backlog))
    };
    assert_eq!(
        queue(),
        Some((0, 2)),
        "the probe left a connection in the queue"
    );
    let _clients = connect_many(port, 6);
    d.wait_until("the restart", || restarts(&d, "deaf") >= 1);
    assert_eq!(
        d.log_count("check backlog failed (2 of the last 2)"),
        1,
        "{}",
        d.daemon_log()
    );
    let r = json(&d, &["reports", "deaf", "LAST", "--json"]);
    let (q, b) = full_listener(&r).unwrap_or_else(|| panic!("no full queue: {r:#}"));
    assert!(b == 2 && q == 3, "queue {q}/{b}");
}

#[test]
fn the_restart_alert_carries_the_report_summary_and_its_path() {
    let (hook, bodies) = webhook();
    let conf = Conf::new();
    std::fs::write(
        conf.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n\
             [[alert.webhook]]\nurl = \"http://127.0.0.1:{hook}/hook\"\non = [\"check-failed\"]\n"
        ),
    )
    .expect("guardian.toml");
    conf.job(
        "web",
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\ntype = \"tcp\"\nport = {}\nevery = \"300ms\"\n",
            free_port()
        ),
    );
    let d = conf.start();
    d.wait_until("the check-failed webhook", || {
        bodies
            .lock()
            .map(|b| b.iter().any(|x| x.contains("\"check-failed\"")))
            .unwrap_or(false)
    });
    let body = bodies
        .lock()
        .ok()
        .and_then(|b| b.iter().find(|x| x.contains("check-failed")).cloned())
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["action"], "restart");
    let description = v["description"].as_str().unwrap_or("");
    assert!(description.contains("cannot connect"), "{description}");
    assert!(
        description.contains("main thread sleeping in"),
        "{description}"
    );
    let path = description
        .rsplit_once("; report: ")
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let kept: Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).expect("the report");
    assert_eq!(kept["job"], "web");
    assert!(
        description.contains(kept["summary"].as_str().unwrap_or("?")),
        "{description}"
    );
}

#[test]
fn a_check_that_stops_its_job_takes_a_report_first() {
    let conf = Conf::new();
    conf.job(
        "web",
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\ntype = \"tcp\"\nport = {}\nevery = \"300ms\"\naction = \"stop\"\n",
            free_port()
        ),
    );
    let d = conf.start();
    d.wait_state("web", "running");
    let pid = d.main_pid("web").expect("pid");
    d.wait_until("the stop", || {
        let s = d.status("web");
        s["state"] == "waiting" && s["manual_stop"] == true
    });
    let r = json(&d, &["reports", "web", "LAST", "--json"]);
    assert!(
        r["why"].as_str().unwrap_or("").ends_with("action stop"),
        "{r:#}"
    );
    // Taken while the process still ran.
    assert_eq!(
        r["processes"][0]["pid"].as_u64(),
        Some(u64::from(pid)),
        "{r:#}"
    );
}

#[test]
fn backlog_catches_a_unix_socket_server_that_never_accepts() {
    let conf = Conf::new();
    let count = conf.path().join("seen");
    let sock = conf.path().join("app.sock");
    conf.job(
        "deaf",
        &format!(
            "exec = \"{py} -u {FIXTURES}/listen_only.py {} 2 {}\"\n\
             [ready]\ntype = \"file\"\npath = \"{}\"\n\
             [[check]]\ntype = \"backlog\"\nevery = \"300ms\"\nfailures = 2\n",
            sock.display(),
            count.display(),
            count.display(),
            py = python()
        ),
    );
    let d = conf.start();
    d.wait_state("deaf", "running");
    d.wait_until("3 passing runs", || {
        let c = check_of(&d, "deaf");
        c["runs"].as_u64().unwrap_or(0) >= 3 && c["passed"] == true
    });
    let reason = check_of(&d, "deaf")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(reason, format!("accept queue 0/2 on {}", sock.display()));
    // A Unix connect blocks once the queue is full: three fit (2 + the one past it).
    let clients: Vec<_> = (0..3)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).expect("connect"))
        .collect();
    d.wait_until("the restart", || restarts(&d, "deaf") >= 1);
    let r = json(&d, &["reports", "deaf", "LAST", "--json"]);
    let l = &r["listeners"][0];
    assert_eq!(l["kind"], "unix", "{r:#}");
    assert_eq!(
        (l["queue"].as_u64(), l["backlog"].as_u64()),
        (Some(3), Some(2)),
        "{r:#}"
    );
    drop(clients);
}
