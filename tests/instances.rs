//! `instances = N` with the real binary: N real HTTP servers (python3 -m http.server)
//! from one job file, a port each; `restart web` rolling through them while a poller
//! asks every instance all the time; `restart web@1` alone; a reload from 3 to 2; a
//! dependent that waits for `started web`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Conf, Daemon, alive, free_port, text};

/// A port `p` such that `p`, `p + 1` ... `p + n - 1` are all free now.
fn port_base(n: u16) -> u16 {
    loop {
        let p = free_port();
        if p.checked_add(n).is_none() {
            continue;
        }
        let free = (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok());
        if free {
            return p;
        }
    }
}

/// Whether an HTTP server answers a GET on `port` with 200.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.0 200")
}

/// A job file of `n` python HTTP servers on `base + $INSTANCE`, ready when the port
/// listens, with an HTTP check.
fn web(n: u16, base: u16) -> String {
    format!(
        r#"instances = {n}
description = "web server $INSTANCE"
exec = "python3 -m http.server --bind 127.0.0.1 $(({base} + INSTANCE))"
chdir = "/"
kill-timeout = "5s"

[ready]
type = "tcp"
port = "{base} + $INSTANCE"
timeout = "15s"

[[check]]
type = "http"
url = "http://127.0.0.1:$(({base} + INSTANCE))/"
every = "300ms"
"#
    )
}

fn pids(d: &Daemon<'_>, n: u16) -> Vec<u32> {
    (0..n)
        .map(|i| {
            d.main_pid(&format!("web@{i}"))
                .unwrap_or_else(|| panic!("web@{i} has no pid: {}", d.daemon_log()))
        })
        .collect()
}

fn all_running(d: &Daemon<'_>) -> Vec<Value> {
    d.all().into_iter().filter(|j| j["base"] == "web").collect()
}

#[test]
fn three_instances_answer_and_a_rolling_restart_keeps_two_up() {
    const N: u16 = 3;
    let base = port_base(N);
    let conf = Conf::new();
    conf.job("web", &web(N, base));
    let d = conf.start();
    d.wait_until("every instance running and healthy", || {
        let set = all_running(&d);
        set.len() == usize::from(N)
            && set
                .iter()
                .all(|j| j["state"] == "running" && j["health"] == "healthy")
    });
    for i in 0..N {
        assert!(answers(base + i), "web@{i} does not answer on {}", base + i);
    }
    // Each instance is a job of its own, with its number and base.
    let set = all_running(&d);
    let numbers: Vec<u64> = set.iter().filter_map(|j| j["instance"].as_u64()).collect();
    assert_eq!(numbers, vec![0, 1, 2]);
    let env = text(&d.ok(&["env", "web@2"], 0));
    assert!(env.contains("GUARDIAN_INSTANCE=2"), "{env}");
    let summary = text(&d.ok(&["summary"], 0));
    assert!(summary.contains("3/3 running"), "{summary}");
    assert!(
        !summary.contains("web@0"),
        "instances alike are one row: {summary}"
    );
    let listed = text(&d.ok(&["summary", "web"], 0));
    assert!(
        (0..N).all(|i| listed.contains(&format!("web@{i} "))),
        "{listed}"
    );
    assert!(
        conf.path().join("log/web@1.log").exists(),
        "each instance has its own log file"
    );

    // A poller asks every instance all the time; at no round may two be down.
    let before = pids(&d, N);
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            let mut worst = usize::from(N);
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let up: Vec<bool> = (0..N).map(|i| answers(base + i)).collect();
                let n = up.iter().filter(|u| **u).count();
                if n < usize::from(N - 1) {
                    bad.push(up);
                }
                worst = worst.min(n);
                rounds += 1;
            }
            (rounds, worst, bad)
        })
    };
    let out = d.ok(&["restart", "web"], 0);
    stop.store(true, Ordering::Relaxed);
    let (rounds, worst, bad) = poller.join().expect("the poller");
    let after = pids(&d, N);
    for i in 0..usize::from(N) {
        assert_ne!(
            before[i],
            after[i],
            "web@{i} was not restarted: {}",
            text(&out)
        );
        assert!(!alive(before[i]), "web@{i}'s old server still runs");
    }
    assert!(rounds > 10, "the poller ran only {rounds} rounds");
    assert!(
        bad.is_empty(),
        "rounds with fewer than {} instances answering: {bad:?}",
        N - 1
    );
    assert!(worst >= usize::from(N - 1));
    // One after another: web@1's restart began after web@0 ran again.
    let log = d.daemon_log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not in the daemon's log:\n{log}"))
    };
    let restart1 = at("web@1: restarting (rolling)");
    assert!(at(&format!("web@0: running, pid {}", after[0])) < restart1);
    assert!(restart1 < at("web@2: restarting (rolling)"));

    // `logs web`: each instance's last lines under its name.
    let logs = text(&d.ok(&["logs", "web", "-n", "3"], 0));
    assert!(
        (0..N).all(|i| logs.contains(&format!("==> web@{i} <=="))),
        "{logs}"
    );
    assert!(logs.contains("\"GET / HTTP/1."), "{logs}");

    // One instance: only its pid changes.
    let before = pids(&d, N);
    d.ok(&["restart", "web@1"], 0);
    let after = pids(&d, N);
    assert_eq!(before[0], after[0]);
    assert_ne!(before[1], after[1]);
    assert_eq!(before[2], after[2]);

    // All at once: every pid changes.
    d.ok(&["restart", "web", "--all-at-once"], 0);
    let again = pids(&d, N);
    assert!((0..usize::from(N)).all(|i| again[i] != after[i]));

    // stop and start name them all.
    d.ok(&["stop", "web"], 0);
    assert!(all_running(&d).iter().all(|j| j["state"] == "waiting"));
    d.ok(&["start", "web"], 0);
    assert!(all_running(&d).iter().all(|j| j["state"] == "running"));
}

#[test]
fn a_reload_from_three_to_two_stops_only_the_third() {
    let base = port_base(3);
    let conf = Conf::new();
    conf.job("web", &web(3, base));
    let d = conf.start();
    d.wait_until("three instances running", || {
        let set = all_running(&d);
        set.len() == 3 && set.iter().all(|j| j["state"] == "running")
    });
    let before = pids(&d, 3);
    conf.job("web", &web(2, base));
    d.ok(&["reload"], 0);
    d.wait_until("web@2 gone", || all_running(&d).len() == 2);
    d.wait_until("web@2's server ended", || !alive(before[2]));
    assert!(!answers(base + 2));
    assert_eq!(pids(&d, 2), before[..2], "web@0 and web@1 were left alone");
    let out = d.cli(&["status", "web@2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // And back to 3: web@2 comes back, the others still untouched.
    conf.job("web", &web(3, base));
    d.ok(&["reload"], 0);
    d.wait_until("web@2 back", || {
        d.all()
            .iter()
            .any(|j| j["name"] == "web@2" && j["state"] == "running")
    });
    assert_eq!(pids(&d, 2), before[..2]);
}

#[test]
fn started_web_waits_for_every_instance() {
    let base = port_base(3);
    let conf = Conf::new();
    conf.job("web", &web(3, base));
    let seen = conf.file("seen");
    // The dependent looks at every port as it starts: all must answer already.
    let probe = conf.file("probe.py");
    std::fs::write(
        &probe,
        format!(
            "import socket, sys\nup = 0\nfor p in range({base}, {base} + 3):\n    try:\n        socket.create_connection((\"127.0.0.1\", p), 2).close()\n        up += 1\n    except OSError:\n        pass\nopen(sys.argv[1], \"w\").write(str(up))\n"
        ),
    )
    .expect("probe.py");
    conf.job(
        "after",
        &format!("start-on = \"started web\"\ntask = true\nexec = \"python3 {probe} {seen}\"\n"),
    );
    let d = conf.start();
    d.wait_until("the dependent ran", || {
        std::fs::read_to_string(&seen).is_ok_and(|s| !s.is_empty())
    });
    let up = std::fs::read_to_string(&seen).unwrap_or_default();
    assert_eq!(up, "3", "`started web` came before every instance ran");
}

#[test]
fn bad_instances_are_errors_with_their_place() {
    let conf = Conf::new();
    conf.job(
        "web",
        "instances = 0\nexec = \"python3 -m http.server $((8000 + ))\"\n",
    );
    conf.job(
        "api",
        "instances = 2\nexec = \"/bin/sleep 100\"\n[ready]\ntype = \"tcp\"\nport = \"8000 + $PORT\"\n",
    );
    conf.job("db@1", "instances = 2\nexec = \"/bin/sleep 100\"\n");
    let out = conf.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.toml:1:13: `instances` must be 1 to 256"),
        "{err}"
    );
    assert!(err.contains("web.toml:2:8:"), "{err}");
    assert!(
        err.contains("api.toml:5:8: `port` must be an integer or an expression of INSTANCE"),
        "{err}"
    );
    assert!(err.contains("db@1.toml:1:13:"), "{err}");
    // One error per mistake, not one per instance.
    assert_eq!(err.matches("api.toml:5:8").count(), 1, "{err}");
}

#[test]
fn an_instance_name_taken_by_another_file_is_an_error() {
    let conf = Conf::new();
    conf.job("web", "instances = 2\nexec = \"/bin/sleep 100\"\n");
    conf.job("web@1", "exec = \"/bin/sleep 100\"\n");
    let out = conf.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = text(&out);
    assert!(err.contains("makes the job `web@1`, which"), "{err}");
}
