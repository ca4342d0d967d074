//! Upgrade in place: `guardian reexec` and SIGUSR2 make the daemon execute the binary
//! now at its path. The daemon runs from a copy of the binary in the test's directory;
//! the copy is replaced, as a package manager replaces a file, by another copy whose
//! build mark differs (the same bytes, the mark patched), so the new image can be told
//! from the old. Job names are unique to each test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{BIN, Conf, DEADLINE, alive, lines, signal, text};

/// The mark of a build made without GUARDIAN_BUILD_MARK (src/build.rs).
const UNMARKED: &[u8] = b"unmarked-guardian-build-00000000";

fn mark(n: u32) -> String {
    format!("unmarked-guardian-build-{n:08}")
}

/// Puts a copy of the binary with build mark `mark` at `to`, as a package manager
/// does: written beside it, then renamed over it (the running daemon keeps the old
/// inode, deleted).
fn install(to: &Path, mark: &str) {
    assert_eq!(mark.len(), UNMARKED.len());
    let mut bytes = std::fs::read(BIN).expect("read the binary");
    let at = marks();
    assert!(
        !at.is_empty(),
        "the unmarked build mark is not in the binary (built with GUARDIAN_BUILD_MARK?)"
    );
    for &i in at {
        bytes[i..i + UNMARKED.len()].copy_from_slice(mark.as_bytes());
    }
    write_executable(to, &bytes);
}

/// Where the mark is in the binary: found once (the binary is large, and a test build
/// is not optimised: the search jumps from one `u` to the next).
fn marks() -> &'static [usize] {
    static AT: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    AT.get_or_init(|| {
        let bytes = std::fs::read(BIN).expect("read the binary");
        let mut at = Vec::new();
        let mut from = 0;
        while let Some(p) = bytes[from..].iter().position(|&b| b == UNMARKED[0]) {
            let i = from + p;
            if bytes[i..].starts_with(UNMARKED) {
                at.push(i);
            }
            from = i + 1;
        }
        at
    })
}

fn write_executable(to: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = to.with_extension("new");
    std::fs::write(&tmp, bytes).expect("write the new binary");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, to).expect("rename the new binary into place");
}

fn bin_in(conf: &Conf) -> PathBuf {
    let dir = conf.path().join("bin");
    std::fs::create_dir_all(&dir).expect("bin dir");
    dir.join("guardian")
}

fn pid_of(v: &serde_json::Value) -> u64 {
    v["pid"].as_u64().expect("a pid")
}

fn check_runs(v: &serde_json::Value) -> u64 {
    v["checks"][0]["runs"].as_u64().expect("a check's runs")
}

/// The numbers a job that numbers its lines wrote, in order: 1, 2, 3, ... with none
/// missing, none twice.
fn assert_numbered(path: &str) -> usize {
    let got = lines(path);
    for (i, l) in got.iter().enumerate() {
        assert_eq!(
            l.trim(),
            (i + 1).to_string(),
            "line {} of {path} is {l:?}",
            i + 1
        );
    }
    got.len()
}

/// A client that asks `summary` in a loop until told to stop: how many calls, and
/// every failure (a call that exits non-zero) with what it said.
struct Asker {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

fn ask_in_a_loop(conf: &Conf) -> Asker {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let dir = conf.path().to_path_buf();
    let (s, c) = (stop.clone(), calls.clone());
    let thread = std::thread::spawn(move || {
        let mut failures = Vec::new();
        while !s.load(Ordering::Relaxed) {
            let out = std::process::Command::new(BIN)
                .arg("-c")
                .arg(&dir)
                .arg("summary")
                .env_remove("GUARDIAN_SOCKET")
                .output()
                .expect("run summary");
            c.fetch_add(1, Ordering::Relaxed);
            if !out.status.success() {
                failures.push(text(&out));
            }
        }
        failures
    });
    Asker {
        stop,
        calls,
        thread,
    }
}

impl Asker {
    fn wait_calls(&self, more: usize) {
        let target = self.calls.load(Ordering::Relaxed) + more;
        let start = Instant::now();
        while self.calls.load(Ordering::Relaxed) < target {
            assert!(start.elapsed() < DEADLINE, "summary calls did not go on");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the asking thread")
    }
}

#[test]
fn reexec_and_sigusr2_keep_every_job_its_pid_checks_go_on_and_no_client_fails() {
    let conf = Conf::new();
    conf.job(
        "rx-count",
        "exec = \"sh -c 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.01; done'\"\nrespawn = true\n",
    );
    conf.job(
        "rx-web",
        "exec = \"sleep 100000\"\nrespawn = true\n\n[[check]]\ntype = \"program\"\nexec = \"true\"\nevery = \"100ms\"\ntimeout = \"10s\"\n",
    );
    conf.job("rx-idle", "exec = \"sleep 100000\"\n");
    let ran = conf.file("ran");
    conf.job(
        "rx-once",
        &format!("exec = \"sh -c 'echo once >> {ran}'\"\ntask = true\n"),
    );
    let bin = bin_in(&conf);
    install(&bin, &mark(0));
    let d = conf.start_bin(&bin);
    d.wait_state("rx-count", "running");
    d.wait_state("rx-idle", "running");
    d.wait_until("the task to have run", || lines(&ran).len() == 1);
    d.wait_until("the check to run", || check_runs(&d.status("rx-web")) >= 3);
    // What a person decided holds across the exec.
    d.ok(&["unmonitor", "rx-count"], 0);
    d.ok(&["stop", "rx-idle"], 0);
    let count_pid = pid_of(&d.status("rx-count"));
    let web_pid = pid_of(&d.status("rx-web"));
    let asker = ask_in_a_loop(&conf);
    asker.wait_calls(3);

    // `guardian reexec`: the new file at the path runs, with the same pid.
    install(&bin, &mark(1));
    let runs_before = check_runs(&d.status("rx-web"));
    let out = d.ok(&["reexec"], 0);
    let said = text(&out);
    assert!(said.contains(&mark(1)), "{said}");
    assert!(said.contains(&format!("pid {}", d.pid())), "{said}");
    asker.wait_calls(3);
    d.wait_until("the check to go on after the exec", || {
        check_runs(&d.status("rx-web")) >= runs_before + 3
    });

    // SIGUSR2 does the same.
    install(&bin, &mark(2));
    signal(d.pid(), "USR2");
    let gen2 = format!("build {}) re-executed", mark(2));
    d.wait_until("the second new image", || d.daemon_log().contains(&gen2));
    let runs_before = check_runs(&d.status("rx-web"));
    d.wait_until("the check to go on after SIGUSR2", || {
        check_runs(&d.status("rx-web")) >= runs_before + 3
    });
    asker.wait_calls(3);
    let failures = asker.finish();
    assert!(
        failures.is_empty(),
        "summary failed during the exec:\n{}",
        failures.join("\n")
    );

    for (job, pid) in [("rx-count", count_pid), ("rx-web", web_pid)] {
        let s = d.status(job);
        assert_eq!(pid_of(&s), pid, "{job} has another main process: {s}");
        assert_eq!(s["restarts"], 0, "{job} was restarted: {s}");
        assert_eq!(s["state"], "running");
    }
    assert_eq!(
        d.log_count("re-executed (generation"),
        2,
        "{}",
        d.daemon_log()
    );
    // The new image keeps the stat files of the mains it was handed open again.
    let held: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .expect("the daemon's descriptors")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    for pid in [count_pid, web_pid] {
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        assert!(
            held.contains(&stat),
            "{} not held: {held:?}",
            stat.display()
        );
    }
    assert_eq!(d.status("rx-count")["monitored"], false);
    let idle = d.status("rx-idle");
    assert_eq!(
        (&idle["state"], &idle["manual_stop"]),
        (&"waiting".into(), &true.into())
    );
    // A task that ran to completion is not run again, nor is `startup` emitted again.
    assert_eq!(lines(&ran), vec!["once".to_string()]);
    assert_eq!(d.log_count("event: startup"), 1);
    // Not one line of the numbering job lost or written twice.
    let log = conf.file("log/rx-count.log");
    let n = assert_numbered(&log);
    d.wait_until("more numbered lines", || lines(&log).len() > n + 5);
    assert_numbered(&log);
}

/// The binary at the path is a script that kills the job's main process, then executes
/// guardian: the job ends while the daemon is between two images, and stays a zombie
/// until the new image reaps it and respawns the job.
#[test]
fn a_job_that_ends_during_the_exec_is_respawned_after_it() {
    let conf = Conf::new();
    conf.job("rx-die", "exec = \"sleep 100000\"\nrespawn = true\n");
    conf.job("rx-stay", "exec = \"sleep 100000\"\nrespawn = true\n");
    let bin = bin_in(&conf);
    install(&bin, &mark(0));
    let d = conf.start_bin(&bin);
    d.wait_state("rx-die", "running");
    d.wait_state("rx-stay", "running");
    let die = pid_of(&d.status("rx-die"));
    let stay = pid_of(&d.status("rx-stay"));
    let real = bin.with_file_name("guardian-3");
    install(&real, &mark(3));
    let script = format!("#!/bin/sh\nkill -9 {die}\nexec {} \"$@\"\n", real.display());
    write_executable(&bin, script.as_bytes());
    let said = text(&d.ok(&["reexec"], 0));
    assert!(said.contains(&mark(3)), "{said}");
    d.wait_until("rx-die respawned", || {
        let s = d.status("rx-die");
        s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != die)
    });
    let s = d.status("rx-die");
    assert_eq!(s["restarts"], 1, "{s}");
    assert!(
        !alive(u32::try_from(die).expect("pid")),
        "the old main is reaped"
    );
    // Its end was seen by the new image, as the child's end it was.
    let log = d.daemon_log();
    let exec_at = log.find("re-executed (generation 1)").expect("re-executed");
    let ended = format!("rx-die: main process {die} killed by SIGKILL");
    assert!(
        log[exec_at..].contains(&ended),
        "the new image did not see {ended:?}:\n{log}"
    );
    assert_eq!(pid_of(&d.status("rx-stay")), stay);
    assert_eq!(d.status("rx-stay")["restarts"], 0);
}

#[test]
fn a_failed_exec_leaves_the_old_daemon_running_and_says_why() {
    let conf = Conf::new();
    conf.job("rx-keep", "exec = \"sleep 100000\"\nrespawn = true\n");
    let bin = bin_in(&conf);
    install(&bin, &mark(0));
    let d = conf.start_bin(&bin);
    d.wait_state("rx-keep", "running");
    let pid = pid_of(&d.status("rx-keep"));

    // The binary removed: refused before anything is handed over.
    std::fs::remove_file(&bin).expect("remove the binary");
    let out = d.ok(&["reexec"], 2);
    let said = text(&out);
    assert!(
        said.contains("cannot execute") && said.contains("No such file"),
        "{said}"
    );
    // SIGUSR2 the same: said in the log.
    let refused = d.log_count("re-execution refused");
    signal(d.pid(), "USR2");
    d.wait_until("SIGUSR2 refused in the log", || {
        d.log_count("re-execution refused") > refused
    });

    // Not a program: the exec itself fails, and the old image takes everything back.
    write_executable(&bin, b"this is not a program\n");
    let out = d.ok(&["reexec"], 2);
    let said = text(&out);
    assert!(
        said.contains("re-execution failed") && said.contains("xec format error"),
        "{said}"
    );
    d.ok(&["summary"], 0);
    let s = d.status("rx-keep");
    assert_eq!((pid_of(&s), s["restarts"].as_u64()), (pid, Some(0)), "{s}");

    // Everything was taken back: a good binary now goes in.
    install(&bin, &mark(4));
    let said = text(&d.ok(&["reexec"], 0));
    assert!(said.contains(&mark(4)), "{said}");
    let s = d.status("rx-keep");
    assert_eq!((pid_of(&s), s["restarts"].as_u64()), (pid, Some(0)), "{s}");
}

/// What a client polling `GET /api/v1/jobs` saw, one fresh connection a request.
#[derive(Default)]
struct Polled {
    answered: usize,
    /// 503 "re-executing, ask again": a request the old image took as it handed over.
    ask_again: usize,
    /// Anything else: a refused or reset connection, no answer, another status.
    failures: Vec<String>,
}

fn poll_http(port: u16, token: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /api/v1/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("no answer: {text:?}"))?;
    match status {
        200 if text.contains("\"jobs\"") => Ok(200),
        503 if text.contains("re-executing") => Ok(503),
        _ => Err(format!("answered {status}: {text}")),
    }
}

/// The HTTP listener is handed over with the control socket: a client polling the API
/// through `guardian reexec`, a failed exec and SIGUSR2 is never refused, and every
/// connection is answered; a log stream open across the exec ends cleanly.
#[test]
fn the_http_listener_is_handed_over_and_no_http_client_is_refused() {
    use std::io::Read;
    let conf = Conf::new();
    let port = crate::util::free_port();
    let token = "admin-0123456789abcdef";
    std::fs::write(
        conf.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n[http]\nlisten = \"127.0.0.1:{port}\"\ntokens-file = \"tokens\"\n"
        ),
    )
    .expect("guardian.toml");
    std::fs::write(conf.path().join("tokens"), format!("admin {token}\n")).expect("tokens");
    conf.job(
        "rx-http",
        "exec = \"sh -c 'while true; do echo tick; sleep 0.2; done'\"\n",
    );
    let bin = bin_in(&conf);
    install(&bin, &mark(0));
    let d = conf.start_bin(&bin);
    d.wait_state("rx-http", "running");
    d.wait_until("the HTTP interface to answer", || {
        poll_http(port, token).is_ok()
    });

    // A log stream, open across the first exec.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    std::io::Write::write_all(
        &mut stream,
        format!("GET /api/v1/jobs/rx-http/logs?lines=1&follow=1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n").as_bytes(),
    )
    .expect("send");
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).expect("the stream's head");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));

    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let (s, c) = (stop.clone(), polls.clone());
    let poller = std::thread::spawn(move || {
        let mut seen = Polled::default();
        while !s.load(Ordering::Relaxed) {
            match poll_http(port, token) {
                Ok(200) => seen.answered += 1,
                Ok(_) => seen.ask_again += 1,
                Err(e) => seen.failures.push(e),
            }
            c.fetch_add(1, Ordering::Relaxed);
        }
        seen
    });
    let wait_polls = |more: usize| {
        let target = polls.load(Ordering::Relaxed) + more;
        let start = Instant::now();
        while polls.load(Ordering::Relaxed) < target {
            assert!(start.elapsed() < DEADLINE, "the HTTP polls did not go on");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_polls(5);

    install(&bin, &mark(5));
    let said = text(&d.ok(&["reexec"], 0));
    assert!(said.contains(&mark(5)), "{said}");
    wait_polls(5);
    // The stream ended, cleanly: the last chunk of a chunked body came.
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("the stream ends, not reset");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );

    // A failed exec: the old image serves again on the same listener.
    write_executable(&bin, b"this is not a program\n");
    let said = text(&d.ok(&["reexec"], 2));
    assert!(said.contains("xec format error"), "{said}");
    wait_polls(5);

    install(&bin, &mark(6));
    signal(d.pid(), "USR2");
    let new_image = format!("build {}) re-executed", mark(6));
    d.wait_until("the new image after SIGUSR2", || {
        d.daemon_log().contains(&new_image)
    });
    wait_polls(5);
    stop.store(true, Ordering::Relaxed);
    let seen = poller.join().expect("the poller");
    assert!(
        seen.failures.is_empty(),
        "{} of {} polls failed:\n{}",
        seen.failures.len(),
        seen.answered + seen.ask_again + seen.failures.len(),
        seen.failures.join("\n")
    );
    assert!(seen.answered >= 20, "{} answered", seen.answered);
    eprintln!(
        "{} polls answered, {} told to ask again",
        seen.answered, seen.ask_again
    );
    assert_eq!(
        d.log_count("was handed over: it serves on"),
        2,
        "the listener was not handed over at each exec:\n{}",
        d.daemon_log()
    );
}
