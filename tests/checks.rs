//! Checks against real things on 127.0.0.1: HTTP servers that answer, fail and hang, a
//! TCP listener, a DNS server, a process that eats memory, one that drops its flock.

use std::time::{Duration, Instant};

use crate::util::{Conf, SVC, free_port, read, signal, text, wait_until};

fn svc(record: &str, name: &str, args: &str) -> String {
    format!("exec = \"python3 {SVC} {args} --record {record} --name {name}\"\nrespawn = true\n")
}

fn check(s: &serde_json::Value, name: &str) -> serde_json::Value {
    s["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_default()
}

#[test]
fn a_healthy_http_server_is_healthy_and_a_failing_one_is_restarted() {
    let c = Conf::new();
    let r = c.file("record");
    let (good, bad) = (free_port(), free_port());
    c.job(
        "good",
        &format!(
            "{}[[check]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{good}/health\"\nevery = \"100ms\"\n",
            svc(&r, "good", &format!("listen {good}"))
        ),
    );
    c.job(
        "bad",
        &format!(
            "{}[[check]]\nname = \"health\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{bad}/health\"\nevery = \"100ms\"\nfailures = 2\naction = \"restart\"\n",
            svc(&r, "bad", &format!("listen {bad} --status 500"))
        ),
    );
    let d = c.start();
    wait_until("good to be healthy", || {
        d.status("good")["health"] == "healthy"
    });
    d.ok(&["status", "good"], 0);
    // The latency is in milliseconds to the microsecond, not a float's tail.
    let ms = check(&d.status("good"), "http")["latency_ms"].as_f64();
    let ms = ms.unwrap_or_else(|| panic!("a latency: {}", d.status("good")));
    assert!(
        ms > 0.0
            && ms
                .to_string()
                .split('.')
                .nth(1)
                .is_none_or(|f| f.len() <= 3),
        "{ms}"
    );
    wait_until("bad to be restarted by its check", || {
        d.status("bad")["restarts"].as_u64() >= Some(1)
    });
    let s = d.status("bad");
    let health = check(&s, "health");
    assert_eq!(health["type"], "http");
    let out = d.ok(&["summary"], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy"));
    wait_until("bad to show its failure", || {
        let h = check(&d.status("bad"), "health");
        h["passed"] == false && h["reason"].as_str().unwrap_or("").contains("HTTP 500 from")
    });
    assert!(
        d.daemon_log()
            .contains("check health failed (2 of the last 2)"),
        "{}",
        d.daemon_log()
    );
}

#[test]
fn a_hung_server_is_cut_at_the_timeout_and_replaced() {
    let c = Conf::new();
    let r = c.file("record");
    let port = free_port();
    c.job(
        "api",
        &format!(
            "{}kill-timeout = \"1s\"\n[[check]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nevery = \"200ms\"\ntimeout = \"200ms\"\nfailures = 2\n",
            svc(&r, "api", &format!("listen {port}"))
        ),
    );
    let d = c.start();
    wait_until("api to be healthy", || {
        d.status("api")["health"] == "healthy"
    });
    let pid = d.main_pid("api").expect("pid");
    signal(pid, "STOP");
    let stopped = Instant::now();
    wait_until("a replacement", || {
        let s = d.status("api");
        s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != u64::from(pid))
    });
    assert!(stopped.elapsed() < Duration::from_secs(10));
    wait_until("the replacement to be healthy", || {
        d.status("api")["health"] == "healthy"
    });
}

#[test]
fn tcp_checks_and_an_alert_that_leaves_the_job_running() {
    let c = Conf::new();
    let r = c.file("record");
    let (port, closed) = (free_port(), free_port());
    // Running once it listens: its tcp check (restart on the first failure) judges a
    // server that is up.
    c.job(
        "db",
        &format!(
            "{}[ready]\ntype = \"tcp\"\nport = {port}\n[[check]]\ntype = \"tcp\"\nport = {port}\nevery = \"100ms\"\n[[check]]\nname = \"replica\"\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\naction = \"alert\"\n",
            svc(&r, "db", &format!("listen {port}"))
        ),
    );
    let d = c.start();
    wait_until("the replica check to fail and the other to pass", || {
        let s = d.status("db");
        check(&s, "replica")["failing"] == true && check(&s, "tcp")["passed"] == true
    });
    let s = d.status("db");
    assert_eq!(s["health"], "unhealthy");
    assert_eq!(check(&s, "tcp")["passed"], true);
    assert_eq!(s["restarts"], 0, "alert only");
    let out = d.ok(&["status", "db"], 1);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILING"),
        "{}",
        text(&out)
    );
    assert!(d.daemon_log().contains("alert: db: check replica failed"));
}

#[test]
fn a_dns_server_that_stops_answering_is_restarted() {
    let c = Conf::new();
    let r = c.file("record");
    let port = free_port();
    c.job(
        "dns",
        &format!(
            "{}kill-timeout = \"1s\"\n[[check]]\ntype = \"dns\"\nhost = \"app.test\"\nserver = \"127.0.0.1:{port}\"\nexpect = \"10.0.0.7\"\nevery = \"200ms\"\ntimeout = \"300ms\"\nfailures = 2\n",
            svc(&r, "dns", &format!("dns {port} app.test 10.0.0.7"))
        ),
    );
    let d = c.start();
    wait_until("dns to be healthy", || {
        d.status("dns")["health"] == "healthy"
    });
    let reason = check(&d.status("dns"), "dns")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("app.test resolves to 10.0.0.7"), "{reason}");
    signal(d.main_pid("dns").expect("pid"), "STOP");
    wait_until("a restart", || {
        d.status("dns")["restarts"].as_u64() >= Some(1)
    });
    wait_until("healthy again", || d.status("dns")["health"] == "healthy");
}

#[test]
fn a_process_that_eats_memory_is_restarted() {
    let c = Conf::new();
    let r = c.file("record");
    c.job(
        "hog",
        &format!(
            "{}[[check]]\ntype = \"memory\"\nmax = \"60MB\"\nevery = \"100ms\"\ntimeout = \"10s\"\n",
            svc(&r, "hog", "hog --step 10")
        ),
    );
    let d = c.start();
    wait_until("a restart for memory", || {
        d.status("hog")["restarts"].as_u64() >= Some(1)
    });
    // The reason of the failure that acted, as logged when it acted: the check's latest
    // outcome belongs to the new start by now. The timeout is long, so that on a loaded
    // machine no run is cut before it read the memory (a cut run fails for another
    // reason, and could be the one that acted).
    let log = d.daemon_log();
    let acted = log
        .lines()
        .find(|l| l.contains("hog: check memory failed") && l.ends_with("; restart"))
        .unwrap_or_default();
    assert!(
        acted.contains("memory of") && acted.contains("limit 60.0 MB"),
        "{log}"
    );
}

#[test]
fn a_dropped_flock_is_seen_at_once_not_at_the_next_check() {
    let c = Conf::new();
    let r = c.file("record");
    let lock = c.file("app.lock");
    std::fs::write(&lock, "").expect("lock file");
    c.job(
        "unicorn",
        &format!(
            "{}[[check]]\ntype = \"flock\"\npath = \"{lock}\"\nevery = \"60s\"\naction = \"alert\"\n",
            svc(&r, "unicorn", &format!("locker {lock} --drop-after 1.5"))
        ),
    );
    let d = c.start();
    wait_until("the first check", || {
        check(&d.status("unicorn"), "flock")["passed"] == true
    });
    wait_until("the drop to be seen", || {
        check(&d.status("unicorn"), "flock")["failing"] == true
    });
    let dropped: f64 = read(&r)
        .lines()
        .find_map(|l| {
            l.strip_prefix("unlocked unicorn ")
                .and_then(|t| t.parse().ok())
        })
        .expect("the drop time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    assert!(
        now - dropped < 5.0,
        "seen {:.1}s after the drop, with every = 60s",
        now - dropped
    );
    assert_eq!(
        d.state("unicorn"),
        "running",
        "the process itself still runs"
    );
}

#[test]
fn unmonitor_suspends_actions_and_monitor_rearms_them() {
    let c = Conf::new();
    let f = c.file("acted");
    let closed = free_port();
    c.job(
        "web",
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\nname = \"port\"\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\nfailures = 2\naction = {{ script = \"echo $GUARDIAN_CHECK >> {f}\" }}\n"
        ),
    );
    let d = c.start();
    d.ok(&["unmonitor", "web"], 0);
    wait_until("the check to fail", || {
        check(&d.status("web"), "port")["failing"] == true
    });
    // The verdict that would have acted, and two more failed runs after it.
    wait_until("the verdict", || {
        d.log_count("unmonitored, so no exec") >= 1
    });
    d.wait_log_more("web: check port failed: ", 2);
    assert_eq!(read(&f), "", "no action while unmonitored");
    d.ok(&["monitor", "web"], 0);
    wait_until("the action once monitored", || read(&f) == "port\n");
    // Stopped by hand: checks stop and nothing resurrects it, while the checks of
    // another job go on running.
    d.ok(&["stop", "web"], 0);
    assert_eq!(d.state("web"), "waiting");
    assert_eq!(d.status("web")["health"], "unknown");
    c.job(
        "other",
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\nname = \"port\"\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\naction = \"alert\"\n"
        ),
    );
    d.ok(&["reload"], 0);
    d.wait_log_more("other: check port failed: ", 3);
    assert_eq!(d.state("web"), "waiting");
    assert!(!d.daemon_log().contains("web: starting on"));
}

#[test]
fn a_restart_loop_ends_unmonitored() {
    let c = Conf::new();
    let closed = free_port();
    c.job(
        "loop",
        &format!(
            "exec = \"sleep 1000\"\nrestart-limit = {{ count = 2, interval = \"1m\" }}\n[[check]]\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\n"
        ),
    );
    let d = c.start();
    wait_until("the job to be unmonitored", || {
        d.status("loop")["monitored"] == false
    });
    let s = d.status("loop");
    assert_eq!(s["restarts"], 2);
    assert_eq!(s["state"], "running", "kept running, no longer restarted");
    assert!(
        d.daemon_log()
            .contains("restarted 2 times within 1m by its checks; unmonitored")
    );
}

#[test]
fn checks_are_validated_with_positions() {
    let c = Conf::new();
    c.job(
        "web",
        "exec = \"sleep 1\"\n[[check]]\ntype = \"htp\"\n[[check]]\ntype = \"http\"\nurl = \"ftp://x\"\n[[check]]\ntype = \"tcp\"\nport = 80\nfailures = 3\nwithin = 2\naction = \"reboot\"\n",
    );
    std::fs::write(
        c.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\nevery = \"10s\"\n[[check]]\ntype = \"memory\"\nmax = \"1GB\"\n",
    )
    .expect("guardian.toml");
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "web.toml:3:8: no probe type `htp`",
        "did you mean `http`?",
        "web.toml:6:7: `url` must start with http:// or https://",
        "web.toml:11:10: `within` (2) must be at least `failures` (3)",
        "guardian.toml:3:1: a `memory` check belongs in a job file",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_stop_action_keeps_the_job_down_until_a_person_starts_it() {
    let c = Conf::new();
    let closed = free_port();
    c.job(
        "runaway",
        &format!(
            "exec = \"sleep 1000\"\nkill-timeout = \"10s\"\n[[check]]\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\naction = \"stop\"\n"
        ),
    );
    let mut d = c.start();
    d.wait_state("runaway", "waiting");
    assert_eq!(d.status("runaway")["manual_stop"], true);
    assert!(
        !d.daemon_log()
            .contains("still alive after its kill timeout"),
        "it died on TERM"
    );
    assert!(d.terminate().success());
    drop(d);
    // The daemon answers only once its start-up is done: had it started the job, the
    // job would no longer be `waiting` by the first answer.
    let d = c.start();
    assert_eq!(
        d.state("runaway"),
        "waiting",
        "still down after a daemon restart"
    );
    assert_eq!(d.status("runaway")["goal"], "stop");
}

#[test]
fn a_check_gives_a_new_process_one_every_before_judging_it() {
    // No readiness probe: the job is running at once, and the server binds 300 ms later.
    // The check (restart on the first failure) runs first one `every` later, when the
    // server listens; it used to run at once and restart the job in a loop.
    let c = Conf::new();
    let r = c.file("record");
    let port = free_port();
    c.job(
        "late",
        &format!(
            "{}[[check]]\ntype = \"tcp\"\nport = {port}\nevery = \"2s\"\n",
            svc(&r, "late", &format!("listen {port} --delay 0.3"))
        ),
    );
    let d = c.start();
    wait_until("the first check", || {
        check(&d.status("late"), "tcp")["passed"] == true
    });
    let s = d.status("late");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["health"], "healthy");
}

#[test]
fn restarts_by_checks_are_one_per_start_and_each_start_gets_its_chance() {
    // Two checks that always fail, both restarting: each start is restarted once, and
    // only after one `every`, until the restart limit unmonitors the job.
    let c = Conf::new();
    let (a, b) = (free_port(), free_port());
    c.job(
        "loop",
        &format!(
            "exec = \"sleep 1000\"\nrestart-limit = {{ count = 3, interval = \"1m\" }}\n\
             [[check]]\nname = \"a\"\ntype = \"tcp\"\nport = {a}\nevery = \"200ms\"\n\
             [[check]]\nname = \"b\"\ntype = \"tcp\"\nport = {b}\nevery = \"200ms\"\n"
        ),
    );
    let d = c.start();
    wait_until("the job to be unmonitored", || {
        d.status("loop")["monitored"] == false
    });
    let s = d.status("loop");
    assert_eq!(s["restarts"], 3, "{s}");
    assert_eq!(s["state"], "running");
    // When each run started and when its checks restarted it: never sooner than one
    // `every` after the start.
    let log = d.daemon_log();
    let stamp = |l: &str| -> Option<f64> {
        // 2026-01-01T10:00:00.123456Z: seconds within the day are enough here.
        let t = l
            .split_whitespace()
            .next()?
            .split('T')
            .nth(1)?
            .trim_end_matches('Z');
        let mut p = t.split(':');
        let (h, m, s) = (p.next()?, p.next()?, p.next()?);
        Some(
            h.parse::<f64>().ok()? * 3600.0
                + m.parse::<f64>().ok()? * 60.0
                + s.parse::<f64>().ok()?,
        )
    };
    let runs: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("loop: running, pid"))
        .filter_map(stamp)
        .collect();
    let restarts: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("loop: check") && l.contains("; restart"))
        .filter_map(stamp)
        .collect();
    // Three restarts, and the fourth verdict, which the restart limit turned into
    // unmonitoring.
    assert_eq!(runs.len(), 4, "{log}");
    assert_eq!(restarts.len(), 4, "one restart per start:\n{log}");
    for (run, restart) in runs.iter().zip(&restarts) {
        // (Past midnight the seconds within the day start over.)
        let after = (restart - run).rem_euclid(86_400.0);
        assert!(
            after >= 0.19,
            "restarted {after:.3}s after it started:\n{log}"
        );
    }
}

#[test]
fn a_lock_nobody_takes_is_reported_once_and_restarts_nothing() {
    let c = Conf::new();
    let lock = c.file("app.lock");
    std::fs::write(&lock, "").expect("lock file");
    c.job(
        "app",
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\ntype = \"flock\"\npath = \"{lock}\"\nevery = \"100ms\"\ndeadline = \"500ms\"\n"
        ),
    );
    let d = c.start();
    wait_until("the report", || {
        check(&d.status("app"), "flock")["failing"] == true
    });
    let s = d.status("app");
    let reason = check(&s, "flock")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        reason.contains("no process has held the lock since the job started"),
        "{reason}"
    );
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["state"], "running");
    assert_eq!(s["monitored"], true);
    assert_eq!(s["health"], "unhealthy");
    assert!(d.daemon_log().contains("alert: app: check flock failed"));
    // Once a process takes the lock, the check is armed, passes, and has recovered.
    let file = std::fs::File::open(&lock).expect("open the lock file");
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared)
        .map_err(|(_, e)| e)
        .expect("a shared lock");
    wait_until("the check to pass", || {
        check(&d.status("app"), "flock")["passed"] == true
    });
    let s = d.status("app");
    assert_eq!(check(&s, "flock")["failing"], false, "{s}");
    assert_eq!(s["restarts"], 0);
    assert!(d.daemon_log().contains("alert: app: check flock recovered"));
    drop(held);
}

#[test]
fn an_exec_action_runs_its_words_without_a_shell() {
    let c = Conf::new();
    let f = c.file("acted");
    let closed = free_port();
    // Each word arrives as one argument, quotes, spaces and `$` as written; the check's
    // name and reason come in the environment.
    let job = format!(
        "exec = \"sleep 1000\"\n[[check]]\nname = \"port\"\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\n\
         action = {{ exec = '''sh -c 'printf \"%s|\" \"$@\" \"$GUARDIAN_CHECK\" >> {f}' sh \"a b\" \"it's\" '$HOME' ''' }}\n"
    );
    c.job("web", &job);
    let d = c.start();
    wait_until("the action to run", || read(&f) == "a b|it's|$HOME|port|");
    assert_eq!(
        d.state("web"),
        "running",
        "an exec action leaves the job running"
    );
}

/// A keep-alive HTTP server (Python's http.server speaking HTTP/1.1) that logs each
/// request to `record` with the number of the connection it came on (`req 3`); with
/// `close`, it closes each connection after one answer, without saying so beforehand.
const KEEPALIVE_PY: &str = r#"
import http.server, itertools, socketserver, sys
port, record, close = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "close"
numbers = itertools.count(1)
def log(line):
    with open(record, "a") as f:
        f.write(line + "\n")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.n = next(numbers)
    def do_GET(self):
        body = b"alive"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        log(f"req {self.n}")
        if close:
            self.close_connection = True
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", port), H).serve_forever()
"#;

/// The connection of each request a [`KEEPALIVE_PY`] server logged, in order.
fn conns(path: &str) -> Vec<u32> {
    read(path)
        .lines()
        .filter_map(|l| l.strip_prefix("req ")?.parse().ok())
        .collect()
}

#[test]
fn an_http_check_keeps_its_connection_across_runs() {
    let c = Conf::new();
    let script = c.file("keepalive.py");
    std::fs::write(&script, KEEPALIVE_PY).expect("write the server");
    let (kept, closed) = (free_port(), free_port());
    let (rk, rc) = (c.file("kept"), c.file("closed"));
    for (name, port, record, how) in [
        ("kept", kept, &rk, "keep"),
        ("closed", closed, &rc, "close"),
    ] {
        c.job(
            name,
            &format!(
                "exec = \"python3 {script} {port} {record} {how}\"\n\
                 [ready]\ntype = \"tcp\"\nport = {port}\nevery = \"50ms\"\n\
                 [[check]]\nname = \"web\"\ntype = \"http\"\n\
                 url = \"http://127.0.0.1:{port}/\"\ncontains = \"alive\"\nevery = \"50ms\"\ntimeout = \"5s\"\nfailures = 1\naction = \"restart\"\n"
            ),
        );
    }
    let d = c.start();
    wait_until("20 requests on each server", || {
        conns(&rk).len() >= 20 && conns(&rc).len() >= 20
    });
    let k = conns(&rk);
    assert!(
        k.iter().all(|n| *n == k[0]),
        "one connection serves every run: {k:?}"
    );
    let all = conns(&rc);
    let mut c = all.clone();
    c.dedup();
    assert_eq!(
        c.len(),
        all.len(),
        "a server that closes gets a connection a run: {all:?}"
    );
    for job in ["kept", "closed"] {
        let s = d.status(job);
        assert_eq!(s["restarts"], 0, "no run failed: {s}");
        assert_eq!(check(&s, "web")["passed"], true, "{s}");
    }
    assert!(
        !d.daemon_log().contains("check web failed"),
        "{}",
        d.daemon_log()
    );
    // Every run is counted, those that changed nothing too: once the checks stop, the
    // count is what the server answered (one run may have been cut by the stop).
    d.ok(&["stop", "kept"], 0);
    d.wait_state("kept", "waiting");
    let runs = check(&d.status("kept"), "web")["runs"]
        .as_u64()
        .unwrap_or(0);
    let answered = conns(&rk).len() as u64;
    assert!(
        runs == answered || runs + 1 == answered,
        "{runs} runs counted, {answered} answered"
    );
}

#[test]
fn a_program_probe_runs_without_a_shell_unless_its_text_needs_one() {
    let c = Conf::new();
    let (direct, shell) = (c.file("direct"), c.file("shell"));
    // The probe writes its parent's command name: guardian's own for a direct run,
    // sh's for text with shell syntax.
    let script = c.file("parent.sh");
    std::fs::write(&script, "#!/bin/sh\nps -o comm= -p $PPID > \"$1\"\n").expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    c.job(
        "app",
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\nname = \"direct\"\ntype = \"program\"\nexec = \"{script} {direct}\"\nevery = \"100ms\"\ntimeout = \"10s\"\n\
             [[check]]\nname = \"shell\"\ntype = \"program\"\nexec = \"{script} {shell} && exit 3\"\nstatus = 3\nevery = \"100ms\"\ntimeout = \"10s\"\n"
        ),
    );
    let d = c.start();
    wait_until("both probes to pass", || {
        let s = d.status("app");
        check(&s, "direct")["passed"] == true && check(&s, "shell")["passed"] == true
    });
    wait_until("both to say who ran them", || {
        !read(&direct).is_empty() && !read(&shell).is_empty()
    });
    assert_eq!(read(&shell).trim(), "sh", "shell syntax runs with sh");
    assert_ne!(read(&direct).trim(), "sh", "plain words run directly");
}

#[test]
fn host_checks_show_in_summary_as_a_system_line_and_in_its_json() {
    let c = Conf::new();
    let missing = c.file("no-such-heartbeat");
    std::fs::write(
        c.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n\
             [[check]]\nname = \"root\"\ntype = \"disk\"\npath = \"/\"\nmax = \"100%\"\nevery = \"100ms\"\n\
             [[check]]\nname = \"beat\"\ntype = \"file\"\npath = \"{missing}\"\nevery = \"100ms\"\n"
        ),
    )
    .expect("guardian.toml");
    c.job("web", "exec = \"sleep 600\"\n");
    let d = c.start();
    d.wait_state("web", "running");
    d.wait_until("both host checks to have run", || {
        let out = d.ok(&["summary", "--json"], 0);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let host = v["host"].as_array().cloned().unwrap_or_default();
        host.len() == 2 && host.iter().all(|h| !h["passed"].is_null())
    });
    let out = d.ok(&["summary", "--json"], 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["jobs"][0]["name"], "web", "{v}");
    let by = |name: &str| {
        v["host"]
            .as_array()
            .and_then(|a| a.iter().find(|h| h["name"] == name).cloned())
            .unwrap_or_default()
    };
    assert_eq!(by("root")["passed"], true, "{v}");
    assert_eq!(by("beat")["passed"], false, "{v}");

    let text = String::from_utf8_lossy(&d.ok(&["summary"], 0).stdout).to_string();
    let system = text
        .lines()
        .find(|l| l.starts_with("system "))
        .unwrap_or_else(|| panic!("no system line in {text}"));
    assert_eq!(
        system.split_whitespace().nth(3),
        Some("unhealthy"),
        "{text}"
    );
    assert!(
        text.contains("check root (disk /, then alert): ok"),
        "{text}"
    );
    assert!(text.contains("check beat ("), "{text}");
    // `status --json` stays an array of jobs.
    assert_eq!(d.all().len(), 1);
}

#[test]
fn a_program_probe_reads_stdout_and_stderr_as_written_with_the_jobs_environment() {
    let c = Conf::new();
    let dir = c.path().join("work");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let runs = c.file("runs");
    // One line to stdout, one to stderr, one to stdout again: one pipe keeps their
    // order. The last line carries what the probe saw of its environment.
    let script = c.file("probe.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho out1\necho err2 >&2\necho \"$GUARDIAN_PROBE $GUARDIAN_JOB $HOME_SEEN $(pwd)\"\necho run >> {runs}\n"
        ),
    )
    .expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let dir_s = dir.display().to_string();
    c.job(
        "app",
        &format!(
            "exec = \"sleep 1000\"\nchdir = \"{dir_s}\"\nenv = {{ HOME_SEEN = \"yes\" }}\n\
             [[check]]\nname = \"order\"\ntype = \"program\"\nexec = \"{script}\"\n\
             output = \"^out1\\nerr2\\n1 app yes {dir_s}\\n$\"\nevery = \"50ms\"\ntimeout = \"10s\"\n"
        ),
    );
    let d = c.start();
    // The spawn made at the first run serves the next ones: many runs, each passing.
    wait_until("five runs of the probe", || {
        read(&runs).lines().count() >= 5
    });
    wait_until("the probe to pass", || {
        check(&d.status("app"), "order")["passed"] == true
    });
    let s = d.status("app");
    let reason = check(&s, "order")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        reason.starts_with(&format!("`{script}` exited 0 after "))
            && reason.ends_with(&format!(": 1 app yes {dir_s}")),
        "{reason}"
    );
    assert!(
        !d.daemon_log().contains("check order failed"),
        "{}",
        d.daemon_log()
    );
}

#[test]
fn a_program_probe_that_prints_more_than_is_kept_is_read_to_its_end() {
    let c = Conf::new();
    // 2 MiB of output, more than is kept: the probe is read to its end (not left
    // blocked on a full pipe until its timeout) and fails with its own status.
    c.job(
        "app",
        "exec = \"sleep 1000\"\n\
         [[check]]\nname = \"big\"\ntype = \"program\"\n\
         exec = \"yes x | head -c 2097152; exit 4\"\n\
         every = \"200ms\"\ntimeout = \"30s\"\n",
    );
    let d = c.start();
    wait_until("the probe to fail", || {
        check(&d.status("app"), "big")["passed"] == false
    });
    let reason = check(&d.status("app"), "big")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("exited 4 after"), "{reason}");
    assert!(reason.ends_with(": x"), "{reason}");
}
