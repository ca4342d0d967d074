//! The control socket, permissions, private files and honest logs, tried as a new
//! operator and a hostile local user would: the real binary, real sockets, real users.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, BIN, Conf, DEADLINE, frame, read, text, wait_until};

const SLEEP: &str = "exec = \"sleep 1000\"\n";
const HELLO: &str = r#"{"request":"hello","version":1}"#;

/// Reads one frame, or None when the connection ends (or nothing comes in time).
fn read_frame(s: &mut UnixStream) -> Option<Value> {
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut header = [0u8; 4];
    s.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// A connection that has said hello.
fn hello(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.write_all(&frame(HELLO)).expect("hello");
    let answer = read_frame(&mut s).expect("hello answer");
    assert_eq!(answer["response"], "hello", "{answer}");
    s
}

/// Hello, then one request as raw JSON: its answer.
fn ask_raw(socket: &Path, request: &str) -> Value {
    let mut s = hello(socket);
    s.write_all(&frame(request)).expect("request");
    read_frame(&mut s).expect("an answer")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.mode() & 0o7777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// 200 idle clients (hello and nothing, nothing at all, half a frame) do not keep
/// `summary` out; the stalled frame and the silent clients are cut.
#[test]
fn summary_answers_within_2s_while_200_idle_clients_are_connected() {
    let c = Conf::new();
    c.job("web", SLEEP);
    let d = c.start();
    d.wait_state("web", "running");
    let socket = c.socket();
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(hello(&socket));
    }
    let mut silent = Vec::new();
    for _ in 0..99 {
        silent.push(UnixStream::connect(&socket).expect("connect"));
    }
    let mut half = UnixStream::connect(&socket).expect("connect");
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(br#"{"request""#);
    half.write_all(&partial).expect("half a frame");

    let start = Instant::now();
    let out = d.ok(&["summary"], 0);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "summary took {took:?} with 200 idle clients"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));

    // The half frame is cut with a reason, and so is the newest silent client.
    let cut = read_frame(&mut half).expect("an answer to the stalled frame");
    assert!(
        cut["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not end within 5s")),
        "{cut}"
    );
    let newest = silent.last_mut().expect("silent clients");
    let cut = read_frame(newest).expect("an answer to the silent client");
    assert!(
        cut["message"]
            .as_str()
            .is_some_and(|m| m.contains("no hello within 5s")),
        "{cut}"
    );
    // The oldest idle connection made room, and was closed without harm.
    let mut oldest = idle.remove(0);
    assert!(read_frame(&mut oldest).is_none(), "evicted: closed");
    d.ok(&["status", "web"], 0);
    drop((idle, silent));
}

/// A `stop` that waits for its job is not idle: a crowd of idle clients does not cut
/// it, and it gets its answer when the job is down.
#[test]
fn a_waiting_stop_is_not_cut_by_a_crowd_of_idle_clients() {
    let c = Conf::new();
    let release = c.file("release");
    c.job(
        "web",
        &format!("{SLEEP}pre-stop = \"while [ ! -e {release} ]; do sleep 0.05; done\"\n"),
    );
    let d = c.start();
    d.wait_state("web", "running");
    let stop = Command::new(BIN)
        .arg("-c")
        .arg(c.path())
        .args(["stop", "web"])
        .env_remove("GUARDIAN_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("guardian stop");
    d.wait_state("web", "pre-stop");
    let crowd: Vec<UnixStream> = (0..200).map(|_| hello(&c.socket())).collect();
    let start = Instant::now();
    d.ok(&["summary"], 0);
    assert!(start.elapsed() < Duration::from_secs(2));
    std::fs::write(&release, "").expect("release");
    let out = stop.wait_with_output().expect("stop ends");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("web: stopped"));
    drop(crowd);
}

/// When every connection is at work (128 `stop`s waiting for their job), a new
/// client is told "busy" at once, and none of the waiting requests is cut.
#[test]
fn a_new_client_is_told_busy_when_every_connection_waits_and_no_waiter_is_cut() {
    let c = Conf::new();
    let release = c.file("release");
    c.job(
        "web",
        &format!("{SLEEP}pre-stop = \"while [ ! -e {release} ]; do sleep 0.05; done\"\n"),
    );
    let d = c.start();
    d.wait_state("web", "running");
    let socket = c.socket();
    let stop = frame(r#"{"request":"stop","target":"web","wait":true}"#);
    let waiting = |socket: &Path| {
        let mut s = hello(socket);
        s.write_all(&stop).expect("stop");
        s
    };
    let mut waiters: Vec<UnixStream> = (0..128).map(|_| waiting(&socket)).collect();
    let start = Instant::now();
    let busy = loop {
        assert!(start.elapsed() < DEADLINE, "no busy answer");
        let probe_start = Instant::now();
        let mut probe = UnixStream::connect(&socket).expect("connect");
        let _ = probe.write_all(&frame(HELLO));
        let answer = read_frame(&mut probe).expect("an answer");
        if answer["response"] == "error" {
            break (answer, probe_start.elapsed());
        }
        // Admitted: one of the stops had not been read yet, and its connection made
        // room. Replace the ones that were closed.
        for w in &mut waiters {
            w.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 1];
            if matches!(w.read(&mut b), Ok(0)) {
                *w = waiting(&socket);
            }
            w.set_nonblocking(false).expect("blocking");
        }
    };
    let (answer, took) = busy;
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("guardian is busy")),
        "{answer}"
    );
    assert!(took < Duration::from_secs(1), "busy after {took:?}");
    std::fs::write(&release, "").expect("release");
    for w in &mut waiters {
        let answer = read_frame(w).expect("every waiting stop gets its answer");
        assert_eq!(answer["message"], "web: stopped", "{answer}");
    }
    d.ok(&["status", "web"], 1);
}

/// A listener the test makes itself: accepts, optionally answers the hello, then
/// holds every connection without a word.
fn mute_listener(path: &Path, answer_hello: bool) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            if answer_hello {
                let _ = read_frame(&mut s);
                let _ = s.write_all(&frame(r#"{"response":"hello","version":1,"daemon":"0"}"#));
            }
            held.push(s);
        }
    })
}

fn client(socket: &Path, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the guardian CLI");
    (out, start.elapsed())
}

/// The CLI has timeouts of its own, and says what it waited for.
#[test]
fn the_cli_gives_up_on_a_socket_that_never_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mute = dir.path().join("mute.sock");
    let _t = mute_listener(&mute, false);
    let (out, took) = client(&mute, &["--timeout", "1s", "summary"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let shown = mute.display().to_string();
    assert!(
        stderr(&out).contains(&format!(
            "no answer within 1s: waited for the daemon at {shown} to answer the hello"
        )),
        "{}",
        text(&out)
    );
    // Without --timeout, the hello has its own short bound.
    let (out, took) = client(&mute, &["stop", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        stderr(&out).contains("no answer within 5s"),
        "{}",
        text(&out)
    );

    // A daemon that takes the hello and never answers the command.
    let silent = dir.path().join("silent.sock");
    let _t2 = mute_listener(&silent, true);
    let (out, took) = client(&silent, &["--timeout", "1s", "stop", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        stderr(&out).contains("no answer within 1s: waited for guardian's answer to `stop web`"),
        "{}",
        text(&out)
    );
    let (out, _) = client(&silent, &["--timeout", "soon", "summary"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("--timeout"), "{}", text(&out));
}

/// No daemon, or a stale socket: said once, as what it is.
#[test]
fn connection_errors_say_the_real_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let none = dir.path().join("none.sock");
    let (out, _) = client(&none, &["summary"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("no guardian daemon at") && e.contains("no such socket"),
        "{e}"
    );
    assert_eq!(e.matches("guardian -c DIR").count(), 1, "{e}");
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let (out, _) = client(&stale, &["summary"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nothing listens on it"),
        "{}",
        text(&out)
    );
}

fn umask_022() -> [&'static str; 4] {
    ["sh", "-c", "umask 022 && exec \"$@\"", "sh"]
}

/// Under umask 022, what guardian writes is still private: logs (rotated too), state,
/// the outbox, the socket and its lock.
#[test]
fn logs_state_and_outbox_are_private_under_umask_022() {
    let c = Conf::new();
    let closed = util::free_port();
    std::fs::write(
        c.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\nlog-max-size = \"1KB\"\n\
             [alert]\nfrom = \"guardian@example.com\"\nto = [\"ops@example.com\"]\nsmtp = [\"127.0.0.1:{closed}\"]\ndigest = \"10ms\"\n"
        ),
    )
    .expect("guardian.toml");
    c.job(
        "web",
        "script = \"\"\"\nfor i in $(seq 1 60); do echo \"secret line $i of web's log\"; done\nexec sleep 1000\n\"\"\"\n",
    );
    let d = c.start_via(&umask_022());
    d.wait_state("web", "running");
    let log = c.path().join("log");
    wait_until("the log to rotate", || log.join("web.log.1").exists());
    d.ok(&["unmonitor", "web"], 0);
    let state = c.path().join("state");
    let outbox = state.join("outbox");
    wait_until("an alert in the outbox", || {
        std::fs::read_dir(&outbox).is_ok_and(|mut e| e.any(|f| f.is_ok()))
    });
    assert_eq!(mode(&log), 0o700, "log dir");
    assert_eq!(mode(&log.join("web.log")), 0o600, "log");
    assert_eq!(mode(&log.join("web.log.1")), 0o600, "rotated log");
    assert_eq!(mode(&state), 0o700, "state dir");
    assert_eq!(mode(&state.join("state.json")), 0o600, "state.json");
    assert_eq!(mode(&outbox), 0o700, "outbox dir");
    for f in std::fs::read_dir(&outbox).expect("outbox").flatten() {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
    assert_eq!(mode(&c.socket()), 0o600, "socket");
    assert_eq!(mode(&c.path().join("run/g.sock.lock")), 0o600, "lock");
    assert_eq!(mode(&c.path().join("run")), 0o755, "socket dir");
    d.ok(&["alerts"], 0);
}

/// `log-group` opens the logs to one group on purpose; a log left 0644 by an older
/// guardian is put right.
#[test]
fn log_group_makes_logs_0640_with_that_group() {
    let c = Conf::new();
    let gid = std::fs::metadata(c.path()).expect("meta").gid();
    let group = Command::new("id")
        .arg("-gn")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("id -gn");
    std::fs::write(
        c.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\nlog-group = \"{group}\"\n"
        ),
    )
    .expect("guardian.toml");
    c.job("web", "script = \"echo hello; exec sleep 1000\"\n");
    let d = c.start_via(&umask_022());
    d.wait_state("web", "running");
    let log = c.path().join("log");
    wait_until("the log", || {
        read(&log.join("web.log").display().to_string()).contains("hello")
    });
    assert_eq!(mode(&log), 0o750);
    assert_eq!(mode(&log.join("web.log")), 0o640);
    assert_eq!(
        std::fs::metadata(log.join("web.log")).expect("meta").gid(),
        gid
    );
    drop(d);

    // A log of an older guardian, 0644, is made 0640 when it is opened again.
    let old = log.join("web.log");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let d = c.start_via(&umask_022());
    d.wait_state("web", "running");
    wait_until("the log to be put right", || mode(&old) == 0o640);
    let bad = Conf::new();
    std::fs::write(
        bad.path().join("guardian.toml"),
        "log-group = \"no-such-group-here\"\n",
    )
    .expect("guardian.toml");
    let out = bad.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("guardian.toml:1:13: `log-group`: there is no group `no-such-group-here`"),
        "{}",
        text(&out)
    );
}

/// Client commands read only `socket` of guardian.toml: a guardian.toml whose
/// password file is missing does not stop `summary`, and `check` says what is wrong
/// once, not also "`user` and `password-file` go together".
#[test]
fn clients_read_only_the_socket_key_and_a_missing_password_file_is_one_error() {
    let c = Conf::new();
    c.job("web", SLEEP);
    let d = c.start();
    d.wait_state("web", "running");
    std::fs::write(
        c.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n\
         [alert]\nuser = \"guardian\"\npassword-file = \"no-such-password\"\n",
    )
    .expect("guardian.toml");
    let out = d.ok(&["summary"], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    let out = d.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(e.contains("`password-file`: cannot read"), "{e}");
    assert!(!e.contains("go together"), "{e}");
    assert!(e.contains("1 error"), "{e}");
}

/// What a client sends cannot forge log lines, and the protocol's limits hold in the
/// daemon, with an answer that says which limit.
#[test]
fn client_text_is_escaped_in_the_log_and_event_limits_hold_in_the_daemon() {
    let c = Conf::new();
    c.job("web", SLEEP);
    let d = c.start();
    d.wait_state("web", "running");
    let forged = "2030-01-01T00:00:00.000000Z  INFO forged: web: stopped";
    let var = format!("NOTE=ok\n{forged}\u{1b}[2J");
    let out = d.ok(&["emit", "deploy-done", &var], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no job waits for it"));
    let socket = c.socket();
    let error = |request: &str| -> String {
        let answer = ask_raw(&socket, request);
        assert_eq!(answer["response"], "error", "{answer}");
        answer["message"].as_str().unwrap_or("").to_string()
    };
    let emit = |event: &str, env: &str| {
        format!(r#"{{"request":"emit","event":"{event}","env":{env},"wait":false}}"#)
    };
    assert!(error(&emit("e", r#"[["A=B","1"]]"#)).contains("not a variable name"));
    assert!(error(&emit("e", r#"[["","1"]]"#)).contains("not a variable name"));
    assert!(error(&emit("", "[]")).contains("an event needs a name"));
    let long = "x".repeat(500_000);
    let message = error(&emit(&long, "[]"));
    assert!(message.contains("at most 128 bytes"), "{message}");
    assert!(message.len() < 300, "the name is not echoed whole");
    assert!(
        error(&emit("e", &format!(r#"[["K","{}"]]"#, "v".repeat(5000))))
            .contains("at most 4096 bytes")
    );
    assert!(error(&emit("e", r#"[["K","a\u0000b"]]"#)).contains("NUL"));
    let many: Vec<String> = (0..65).map(|i| format!(r#"["K{i}",""]"#)).collect();
    assert!(error(&emit("e", &format!("[{}]", many.join(",")))).contains("at most 64"));
    assert!(error(&emit("bad name", "[]")).contains("not an event name"));
    // The limits are the daemon's: the CLI gets the same answer.
    let out = d.cli(&["emit", "e", "1X=2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a variable name"),
        "{}",
        text(&out)
    );

    d.ok(&["summary"], 0);
    let log = d.daemon_log();
    assert!(
        log.contains("NOTE=ok\\n2030-01-01T00:00:00.000000Z  INFO forged: web: stopped\\u{1b}[2J"),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("2030-01-01")), "{log}");
    assert!(!log.contains('\u{1b}'), "no raw escape in the log");
    assert!(
        !log.contains(&"x".repeat(1000)),
        "the long name is not logged"
    );
}

/// `reload all` is one word away from `reload`: refused, and nothing is signalled;
/// `reload --all-jobs` says it on purpose; a job without `reload-signal` is told SIGHUP
/// is the default.
#[test]
fn reload_all_is_refused_and_reload_says_which_signal() {
    let c = Conf::new();
    let (fa, fb) = (c.file("a"), c.file("b"));
    let script = |f: &str| {
        format!(
            "script = \"\"\"\ntrap 'echo hup >> {f}' HUP\ntrap 'echo usr1 >> {f}' USR1\necho up >> {f}\nwhile :; do sleep 0.05; done\n\"\"\"\n"
        )
    };
    c.job("a", &format!("reload-signal = \"USR1\"\n{}", script(&fa)));
    c.job("b", &script(&fb));
    let d = c.start();
    d.wait_state("a", "running");
    d.wait_state("b", "running");
    wait_until("both to trap their signals", || {
        read(&fa).contains("up") && read(&fb).contains("up")
    });
    let pids = (d.main_pid("a"), d.main_pid("b"));

    let out = d.cli(&["reload", "all"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let e = stderr(&out);
    assert!(e.contains("`reload all` is not taken"), "{e}");
    assert!(e.contains("guardian reload --all-jobs"), "{e}");
    // An older client's `reload all` is refused by the daemon too.
    let answer = ask_raw(&c.socket(), r#"{"request":"reload-job","target":"all"}"#);
    assert_eq!(answer["response"], "error", "{answer}");

    let out = d.ok(&["reload", "b"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "b: sent SIGHUP (the default reload-signal: the job sets no `reload-signal`)"
        ),
        "{}",
        text(&out)
    );
    wait_until("b to get its SIGHUP", || read(&fb).contains("hup"));
    assert_eq!(read(&fa).trim(), "up", "a was not signalled");
    assert_eq!((d.main_pid("a"), d.main_pid("b")), pids, "nobody died");

    let out = d.ok(&["reload", "--all-jobs"], 0);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("a: sent SIGUSR1 (its reload-signal)"),
        "{said}"
    );
    wait_until("a to get its USR1", || read(&fa).contains("usr1"));
    wait_until("b to get a second SIGHUP", || {
        read(&fb).matches("hup").count() == 2
    });
    assert_eq!((d.main_pid("a"), d.main_pid("b")), pids, "nobody died");
    let out = d.ok(&["reload"], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded:"));
}

/// Users and groups made for one test, removed afterwards.
struct Accounts {
    users: Vec<String>,
    group: String,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).status();
            let _ = Command::new("groupdel").arg(u).status();
        }
        let _ = Command::new("groupdel").arg(&self.group).status();
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric uid")
}

fn gid_of(group: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("a numeric gid")
}

/// Runs the CLI as `user`, with its groups.
fn cli_as(user: &str, conf: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
            BIN,
            "-c",
        ])
        .arg(conf)
        .args(args)
        .env_remove("GUARDIAN_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
}

/// The peer's credentials decide: a member of `read-group` may read but not act, a
/// stranger is refused (by the socket's mode, and by the daemon when the mode would
/// let it in), and cannot read the logs either.
#[test]
fn peer_credentials_decide_who_may_read_and_who_may_act() {
    if !nix_is_root() {
        eprintln!(
            "SKIPPED peer_credentials_decide_who_may_read_and_who_may_act: needs root to create users (useradd)"
        );
        return;
    }
    let tag = std::process::id() % 100_000;
    let (reader, outsider, group) = (
        format!("gsr{tag}"),
        format!("gso{tag}"),
        format!("gsg{tag}"),
    );
    let accounts = Accounts {
        users: vec![reader.clone(), outsider.clone()],
        group: group.clone(),
    };
    run_ok(Command::new("groupadd").arg(&group));
    for (u, extra) in [(&reader, Some(&group)), (&outsider, None)] {
        let mut cmd = Command::new("useradd");
        cmd.args(["-M", "-U", "-s", "/usr/sbin/nologin"]);
        if let Some(g) = extra {
            cmd.args(["-G", g]);
        }
        run_ok(cmd.arg(u));
    }
    let outsider_uid = uid_of(&outsider);

    let c = Conf::new();
    std::fs::set_permissions(c.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = c.path().join("smtp-password");
    std::fs::write(&secret, "hunter2\n").expect("password");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(
        c.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\nread-group = \"{group}\"\n\
             [alert]\nuser = \"guardian\"\npassword-file = \"smtp-password\"\n"
        ),
    )
    .expect("guardian.toml");
    c.job(
        "web",
        "script = \"echo password=hunter2; exec sleep 1000\"\n",
    );
    let d = c.start();
    d.wait_state("web", "running");
    let pid = d.main_pid("web");
    let socket = c.socket();
    assert_eq!(mode(&socket), 0o660);
    assert_eq!(
        std::fs::metadata(&socket).expect("meta").gid(),
        gid_of(&group)
    );

    // The read-group reads, and may not act.
    let out = cli_as(&reader, c.path(), &["summary"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    let out = cli_as(&reader, c.path(), &["status", "web", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cli_as(&reader, c.path(), &["stop", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("permission denied: `stop` acts on jobs"),
        "{}",
        text(&out)
    );
    assert_eq!(d.state("web"), "running");
    assert_eq!(d.main_pid("web"), pid);

    // A stranger is stopped by the socket's mode, and told so: not about the password
    // file it may not read, not "is the daemon running?".
    let out = cli_as(&outsider, c.path(), &["summary"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let e = stderr(&out);
    assert!(e.contains("permission denied"), "{e}");
    assert!(e.contains(&socket.display().to_string()), "{e}");
    assert!(e.contains("mode 0660"), "{e}");
    assert!(
        !e.contains("password-file") && !e.contains("daemon running"),
        "{e}"
    );
    // Nor can it read the job's log.
    let log = c.path().join("log/web.log");
    wait_until("the log", || {
        read(&log.display().to_string()).contains("password")
    });
    let cat = Command::new("setpriv")
        .args([
            &format!("--reuid={outsider}"),
            &format!("--regid={outsider}"),
            "--init-groups",
            "cat",
        ])
        .arg(&log)
        .output()
        .expect("cat");
    assert!(!cat.status.success(), "the log is private: {}", text(&cat));

    // With the socket opened to everyone by mistake, the daemon still refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = cli_as(&outsider, c.path(), &["summary"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "permission denied: uid {outsider_uid} may not use guardian's control socket"
        )),
        "{}",
        text(&out)
    );
    let out = cli_as(&outsider, c.path(), &["stop", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(d.main_pid("web"), pid);
    drop(d);
    drop(accounts);
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A connection error says its cause once: the cause is in the message, not repeated as the
/// error's source when the CLI prints the whole chain.
#[test]
fn a_connection_error_names_its_cause_once() {
    let long = format!("/tmp/{}", "x".repeat(120));
    let out = Command::new(BIN)
        .args(["--socket", &long, "summary"])
        .stdin(Stdio::null())
        .output()
        .expect("run the CLI");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to guardian"), "{err}");
    assert_eq!(err.matches("shorter than").count(), 1, "{err}");
}
