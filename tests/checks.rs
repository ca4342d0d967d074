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
    c.job(
        "db",
        &format!(
            "{}[[check]]\ntype = \"tcp\"\nport = {port}\nevery = \"100ms\"\n[[check]]\nname = \"replica\"\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\naction = \"alert\"\n",
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
            "{}[[check]]\ntype = \"memory\"\nmax = \"60MB\"\nevery = \"100ms\"\n",
            svc(&r, "hog", "hog --step 10")
        ),
    );
    let d = c.start();
    wait_until("a restart for memory", || {
        d.status("hog")["restarts"].as_u64() >= Some(1)
    });
    let reason = check(&d.status("hog"), "memory")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        reason.contains("memory of") && reason.contains("limit 60.0 MB"),
        "{reason}"
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
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(&f), "", "no action while unmonitored");
    d.ok(&["monitor", "web"], 0);
    wait_until("the action once monitored", || read(&f) == "port\n");
    // Stopped by hand: checks stop and nothing resurrects it.
    d.ok(&["stop", "web"], 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.state("web"), "waiting");
    assert_eq!(d.status("web")["health"], "unknown");
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
    let d = c.start();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.state("runaway"),
        "waiting",
        "still down after a daemon restart"
    );
}
