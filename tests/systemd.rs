//! guardian under a service manager: sd_notify on a socket the test binds as
//! NOTIFY_SOCKET, and what its jobs' environment keeps of the manager's variables.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{Conf, libc_sig, read, signal, wait_until};

/// Every datagram the socket receives, in order, collected by a thread.
struct Manager {
    path: String,
    got: Arc<Mutex<Vec<String>>>,
}

impl Manager {
    fn bind(c: &Conf) -> Manager {
        let path = c.file("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&got);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the test drops its side of the Arc.
            while Arc::strong_count(&keep) > 1 {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    keep.lock().expect("lock").push(msg);
                }
            }
        });
        Manager { path, got }
    }

    fn messages(&self) -> Vec<String> {
        self.got.lock().expect("lock").clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.starts_with(prefix))
            .count()
    }
}

#[test]
fn notify_ready_status_watchdog_reloading_and_stopping() {
    let c = Conf::new();
    let envfile = c.file("web.env");
    let notifyenv = c.file("n.env");
    c.job(
        "web",
        &format!(
            "script = \"env > {envfile}; exec sleep 1000\"\n\
             env = {{ LISTEN_FDS = \"3\", WATCHDOG_USEC = \"1\", APP = \"x\" }}\n"
        ),
    );
    // A job that says READY=1 itself: it gets a socket of guardian's, not the manager's.
    c.job(
        "n",
        &format!("script = \"env > {notifyenv}; exec sleep 1000\"\nexpect = \"notify\"\n"),
    );
    let m = Manager::bind(&c);
    let wrapper = [
        "env",
        &format!("NOTIFY_SOCKET={}", m.path),
        "WATCHDOG_USEC=400000",
        "LISTEN_FDS=2",
        "LISTEN_PID=1",
    ];
    let mut d = c.start_via(&wrapper);
    // READY=1 comes once the boot jobs are started: both were spawned by then. The
    // STATUS= that follows it is a datagram of its own, which the reader thread may not
    // have taken yet when READY=1 is seen: wait for both.
    wait_until("READY=1 and the next message", || {
        let got = m.messages();
        got.iter()
            .position(|s| s == "READY=1")
            .is_some_and(|i| got.len() > i + 1)
    });
    let first = m.messages();
    assert_eq!(first[0], "READY=1", "{first:?}");
    assert!(
        first[1].starts_with("STATUS=2 jobs: "),
        "the counts follow READY=1: {first:?}"
    );
    d.wait_state("web", "running");
    wait_until("STATUS= with web running", || {
        m.messages()
            .iter()
            .any(|s| s.starts_with("STATUS=2 jobs: 1 running, 0 failed, 0 unhealthy"))
    });
    // WATCHDOG_USEC=400000: WATCHDOG=1 every 200 ms, again and again.
    wait_until("WATCHDOG=1 repeatedly", || m.count("WATCHDOG=1") >= 3);

    // The jobs' environment has none of the manager's variables.
    wait_until("the jobs' environment files", || {
        read(&envfile).contains("GUARDIAN_JOB") && read(&notifyenv).contains("GUARDIAN_JOB")
    });
    for (name, file) in [("web", &envfile), ("n", &notifyenv)] {
        let env = read(file);
        for line in env.lines() {
            assert!(
                !line.starts_with("WATCHDOG_") && !line.starts_with("LISTEN_"),
                "{name} got {line}:\n{env}"
            );
        }
        assert!(
            !env.contains(&m.path),
            "{name} got the manager's socket:\n{env}"
        );
    }
    assert!(read(&envfile).contains("APP=x"));
    assert!(!read(&envfile).contains("NOTIFY_SOCKET="));
    assert!(
        read(&notifyenv).contains("NOTIFY_SOCKET="),
        "an expect = notify job still gets guardian's own socket"
    );

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC=, then READY=1 again.
    signal(d.pid(), libc_sig::HUP);
    wait_until("READY=1 after the reload", || m.count("READY=1") >= 2);
    let all = m.messages();
    let reloading = all
        .iter()
        .position(|s| s.starts_with("RELOADING=1\n"))
        .expect("RELOADING=1");
    assert!(
        all[reloading].lines().any(|l| l
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|u| u > 0))),
        "{all:?}"
    );
    let ready_again = all.iter().rposition(|s| s == "READY=1").expect("READY=1");
    assert!(ready_again > reloading, "{all:?}");

    let status = d.terminate();
    assert!(status.success(), "{status}");
    let all = m.messages();
    assert!(
        all.iter().any(|s| s.starts_with("STOPPING=1")),
        "STOPPING=1 at exit: {all:?}"
    );
}

#[test]
fn generate_writes_man_pages_and_completions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let man = dir.path().join("man");
    let out = std::process::Command::new(crate::util::BIN)
        .args(["generate", "man"])
        .arg(&man)
        .output()
        .expect("run generate");
    assert!(out.status.success(), "{}", crate::util::text(&out));
    for page in ["guardian.1", "guardian-restart.1", "guardian-check.1"] {
        let text = read(&man.join(page).display().to_string());
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}:\n{text}"
        );
    }
    assert!(
        !man.join("guardian-generate.1").exists(),
        "generate is hidden"
    );
    // groff parses them without a warning, where it is installed.
    if std::process::Command::new("groff")
        .arg("-v")
        .output()
        .is_ok()
    {
        let out = std::process::Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(man.join("guardian.1"))
            .output()
            .expect("groff");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            crate::util::text(&out)
        );
    }
    let comp = dir.path().join("completions");
    for (shell, file, needle) in [
        ("bash", "guardian.bash", "complete"),
        ("zsh", "_guardian", "#compdef guardian"),
        ("fish", "guardian.fish", "complete -c guardian"),
    ] {
        let out = std::process::Command::new(crate::util::BIN)
            .args(["generate", "completions", shell])
            .arg(&comp)
            .output()
            .expect("run generate");
        assert!(out.status.success(), "{}", crate::util::text(&out));
        let text = read(&comp.join(file).display().to_string());
        assert!(
            text.contains(needle) && text.contains("restart"),
            "{file}:\n{text}"
        );
    }
}
