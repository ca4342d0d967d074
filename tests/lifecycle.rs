//! The supervisor end to end: the real binary, real processes, real signals.

use crate::util::{self, Conf, alive, frame, raw_exchange, read, signal, text, wait_until};

const SLEEP: &str = "exec = \"sleep 1000\"\n";

#[test]
fn kill_9_of_main_respawns_it() {
    let c = Conf::new();
    c.job("web", &format!("{SLEEP}respawn = true\n"));
    let d = c.start();
    d.wait_state("web", "running");
    let first = d.main_pid("web").expect("pid");
    signal(first, "KILL");
    wait_until("a new main process", || {
        d.main_pid("web").is_some_and(|p| p != first) && d.state("web") == "running"
    });
    let s = d.status("web");
    assert_eq!(s["restarts"], 1);
    assert_eq!(s["last_failure"]["process"], "main");
    assert_eq!(s["last_failure"]["status"], "killed by SIGKILL");
    assert!(!alive(first));
}

#[test]
fn hooks_run_in_order_around_the_main_process() {
    let c = Conf::new();
    let f = c.file("order");
    c.job(
        "app",
        &format!(
            r#"
pre-start = "echo pre-start >> {f}"
script = """
trap 'echo main-term >> {f}; exit 0' TERM
echo main >> {f}
while :; do sleep 0.05; done
"""
post-start = "echo post-start >> {f}"
pre-stop = "echo pre-stop >> {f}"
post-stop = "echo post-stop >> {f}"
"#
        ),
    );
    let d = c.start();
    d.wait_state("app", "running");
    wait_until("main to write", || read(&f).contains("main"));
    d.ok(&["stop", "app"], 0);
    assert_eq!(d.state("app"), "waiting");
    let lines: Vec<String> = read(&f).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "pre-start", "{lines:?}");
    let mut middle = lines[1..3].to_vec();
    middle.sort();
    assert_eq!(middle, ["main", "post-start"], "{lines:?}");
    assert_eq!(
        lines[3..],
        ["pre-stop", "main-term", "post-stop"],
        "{lines:?}"
    );
}

#[test]
fn a_stop_during_pre_start_never_runs_main_and_still_runs_post_stop() {
    let c = Conf::new();
    let f = c.file("trace");
    c.job(
        "slow",
        &format!(
            r#"
manual = true
pre-start = "echo pre-start >> {f}; sleep 30"
exec = "sh -c 'echo main >> {f}; exec sleep 1000'"
post-stop = "echo post-stop >> {f}"
"#
        ),
    );
    let d = c.start();
    d.ok(&["start", "slow", "--no-wait"], 0);
    d.wait_state("slow", "pre-start");
    wait_until("pre-start to run", || read(&f).contains("pre-start"));
    d.ok(&["stop", "slow"], 0);
    assert_eq!(read(&f), "pre-start\npost-stop\n");
}

#[test]
fn a_failing_pre_start_fails_the_start_and_is_recorded() {
    let c = Conf::new();
    let f = c.file("trace");
    c.job(
        "broken",
        &format!(
            r#"
manual = true
pre-start = "exit 3"
exec = "sh -c 'echo main >> {f}; exec sleep 1000'"
post-stop = "echo post-stop >> {f}"
"#
        ),
    );
    let d = c.start();
    let out = d.ok(&["start", "broken"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pre-start exited 3"), "{}", text(&out));
    let s = d.status("broken");
    assert_eq!(s["state"], "waiting");
    assert_eq!(s["last_failure"]["process"], "pre-start");
    assert_eq!(s["last_failure"]["status"], "exited 3");
    assert_eq!(read(&f), "post-stop\n", "main never ran, post-stop did");
}

#[test]
fn stop_kills_background_grandchildren_even_ones_that_ignore_term() {
    let c = Conf::new();
    let f = c.file("grandchildren");
    c.job(
        "spawner",
        &format!(
            r#"
script = """
sleep 1000 &
echo $! >> {f}
sh -c 'trap "" TERM; while :; do sleep 0.05; done' &
echo $! >> {f}
wait
"""
"#
        ),
    );
    let d = c.start();
    d.wait_state("spawner", "running");
    wait_until("two grandchildren", || read(&f).lines().count() == 2);
    let pids: Vec<u32> = read(&f).lines().filter_map(|l| l.parse().ok()).collect();
    assert!(pids.iter().all(|p| alive(*p)));
    d.ok(&["stop", "spawner"], 0);
    wait_until("the grandchildren to be gone", || {
        !pids.iter().any(|p| alive(*p))
    });
}

#[test]
fn a_stopped_sigstopped_process_still_dies_without_waiting_for_the_kill_timeout() {
    let c = Conf::new();
    c.job("frozen", &format!("{SLEEP}kill-timeout = \"60s\"\n"));
    let d = c.start();
    d.wait_state("frozen", "running");
    let pid = d.main_pid("frozen").expect("pid");
    signal(pid, "STOP");
    d.ok(&["stop", "frozen"], 0);
    assert!(!alive(pid));
}

#[test]
fn kill_timeout_escalates_to_sigkill() {
    let c = Conf::new();
    c.job(
        "stubborn",
        "script = \"trap '' TERM; while :; do sleep 0.05; done\"\nkill-timeout = \"300ms\"\n",
    );
    let d = c.start();
    d.wait_state("stubborn", "running");
    let pid = d.main_pid("stubborn").expect("pid");
    d.ok(&["stop", "stubborn"], 0);
    assert!(!alive(pid));
    assert!(
        d.daemon_log().contains("sending SIGKILL"),
        "{}",
        d.daemon_log()
    );
}

#[test]
fn respawn_limit_ends_in_failed_until_started_by_hand() {
    let c = Conf::new();
    c.job(
        "crasher",
        "script = \"exit 1\"\nrespawn = true\nrespawn-limit = { count = 3, interval = \"30s\" }\n",
    );
    let d = c.start();
    d.wait_state("crasher", "failed");
    let s = d.status("crasher");
    assert_eq!(s["restarts"], 3);
    assert_eq!(s["goal"], "stop");
    let status = s["last_failure"]["status"].as_str().unwrap_or_default();
    assert!(status.contains("giving up"), "{s}");
    // It stays failed: nothing restarts it by itself, no respawn is due...
    assert_eq!(s["respawn_in_secs"], serde_json::Value::Null, "{s}");
    // ...until a person starts it, which runs it (and, here, fails it) again.
    d.ok(&["start", "crasher"], 0);
    wait_until("it to fail again", || {
        let s = d.status("crasher");
        s["state"] == "failed" && s["restarts"].as_u64() > Some(3)
    });
}

#[test]
fn normal_exit_is_not_respawned_and_task_runs_to_completion() {
    let c = Conf::new();
    let f = c.file("ran");
    c.job(
        "oneshot",
        &format!("task = true\nscript = \"echo done >> {f}\"\n"),
    );
    c.job(
        "quits",
        "script = \"exit 7\"\nrespawn = true\nnormal-exit = [0, 7]\nmanual = true\n",
    );
    let d = c.start();
    wait_until("the task to finish", || read(&f) == "done\n");
    d.wait_state("oneshot", "waiting");
    // A task that ran reads `done`, not `unknown` like one that never ran, and `status`
    // says yes; `quits` (manual) never ran.
    d.wait_until("the task to read done", || {
        d.status("oneshot")["health"] == "done"
    });
    d.ok(&["status", "oneshot"], 0);
    assert_eq!(d.status("quits")["health"], "unknown");
    d.ok(&["status", "quits"], 1);
    let summary = String::from_utf8_lossy(&d.ok(&["summary"], 0).stdout).to_string();
    let line = summary
        .lines()
        .find(|l| l.starts_with("oneshot "))
        .unwrap_or_else(|| panic!("no oneshot in {summary}"));
    assert!(line.split_whitespace().nth(3) == Some("done"), "{summary}");
    let out = d.ok(&["start", "oneshot"], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ran to completion"));
    assert_eq!(
        read(&f),
        "done\ndone\n",
        "start waited for the task to finish"
    );
    d.ok(&["start", "quits"], 0);
    d.wait_state("quits", "waiting");
    assert_eq!(d.status("quits")["restarts"], 0);
}

#[test]
fn sigterm_stops_every_job_in_reverse_start_order_and_runs_post_stop() {
    let c = Conf::new();
    let f = c.file("stopped");
    for name in ["a", "b", "c"] {
        c.job(
            name,
            &format!("{SLEEP}post-stop = \"echo {name} >> {f}\"\n"),
        );
    }
    let mut d = c.start();
    for name in ["a", "b", "c"] {
        d.wait_state(name, "running");
    }
    let pids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .filter_map(|n| d.main_pid(n))
        .collect();
    let status = d.terminate();
    assert!(status.success(), "daemon exit {status:?}");
    assert_eq!(read(&f), "c\nb\na\n");
    assert!(pids.iter().all(|p| !alive(*p)));
    assert!(!c.socket().exists(), "the socket is removed on exit");
}

#[test]
fn manual_stop_and_unmonitor_survive_a_daemon_restart() {
    let c = Conf::new();
    c.job("api", SLEEP);
    c.job("worker", SLEEP);
    let mut d = c.start();
    d.wait_state("api", "running");
    d.ok(&["unmonitor", "api"], 0);
    d.ok(&["stop", "worker"], 0);
    assert!(d.terminate().success());
    drop(d);

    let d = c.start();
    d.wait_state("api", "running");
    let api = d.status("api");
    assert_eq!(api["monitored"], false);
    let worker = d.status("worker");
    assert_eq!(worker["state"], "waiting");
    assert_eq!(worker["manual_stop"], true);
    d.ok(&["start", "worker"], 0);
    d.ok(&["monitor", "api"], 0);
    assert_eq!(d.status("api")["monitored"], true);
}

#[test]
fn a_hundred_unmonitor_monitor_calls_end_monitored() {
    let c = Conf::new();
    c.job("nginx", SLEEP);
    let d = c.start();
    for i in 0..100 {
        let cmd = if i % 2 == 0 { "unmonitor" } else { "monitor" };
        d.ok(&[cmd, "nginx"], 0);
    }
    assert_eq!(d.status("nginx")["monitored"], true);
    // Repeats are harmless too.
    d.ok(&["monitor", "nginx"], 0);
    d.ok(&["start", "nginx"], 0);
    d.ok(&["stop", "nginx"], 0);
    d.ok(&["stop", "nginx"], 0);
}

#[test]
fn reload_adds_removes_and_changes_jobs_and_leaves_the_rest_alone() {
    let c = Conf::new();
    c.job("gone", SLEEP)
        .job("changed", SLEEP)
        .job("same", SLEEP);
    let d = c.start();
    for j in ["gone", "changed", "same"] {
        d.wait_state(j, "running");
    }
    let same = d.main_pid("same");
    let changed = d.main_pid("changed");
    let gone = d.main_pid("gone").expect("pid");

    c.remove_job("gone");
    c.job("changed", "exec = \"sleep 2000\"\n");
    c.job("new", SLEEP);
    let out = d.ok(&["reload"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 added, 1 removed, 1 changed, 1 unchanged"),
        "{}",
        text(&out)
    );
    wait_until("the new job and the changed one to run", || {
        d.all().len() == 3
            && d.state("new") == "running"
            && d.state("changed") == "running"
            && d.main_pid("changed") != changed
    });
    assert_eq!(d.main_pid("same"), same, "an unchanged job is untouched");
    assert!(!alive(gone));
    let out = d.cli(&["status", "gone"]);
    assert_eq!(out.status.code(), Some(2));

    // A configuration with errors changes nothing and says why.
    c.job("bad", "exec = \"sleep 1\"\nkill-timout = \"5s\"\n");
    c.remove_job("same");
    let out = d.ok(&["reload"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2:1"), "{}", text(&out));
    assert_eq!(d.main_pid("same"), same);
}

#[test]
fn sighup_reloads_too() {
    let c = Conf::new();
    c.job("first", SLEEP);
    let d = c.start();
    d.wait_state("first", "running");
    c.job("second", SLEEP);
    signal(d.pid(), "HUP");
    wait_until("the added job", || {
        d.all()
            .iter()
            .any(|j| j["name"] == "second" && j["state"] == "running")
    });
}

#[test]
fn config_errors_are_all_reported_with_positions_and_nothing_starts() {
    let c = Conf::new();
    let f = c.file("ran");
    c.job(
        "web",
        &format!("exec = \"sh -c 'touch {f}'\"\nkill-timout = \"5s\"\nkill-signal = \"TREM\"\n"),
    );
    c.job(
        "db",
        "exec = \"no-such-program-here --flag\"\nnice = 40\nsetuid = \"no-such-user\"\n",
    );
    c.job("all", SLEEP);
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "web.toml:2:1: unknown key `kill-timout`",
        "did you mean `kill-timeout`?",
        "web.toml:3:15: `kill-signal`: `TREM` is not a signal",
        "did you mean `TERM`?",
        "db.toml:1:8: `exec`: program `no-such-program-here` not found in PATH",
        "db.toml:2:8: `nice` must be between -20 and 19",
        "db.toml:3:10: `setuid`: no user `no-such-user` on this host",
        "`all` is not a valid job name",
        "6 errors",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The daemon refuses to start from it.
    let out = std::process::Command::new(util::BIN)
        .arg("-c")
        .arg(c.path())
        .output()
        .expect("daemon");
    assert_eq!(out.status.code(), Some(2));
    assert!(!std::path::Path::new(&f).exists(), "nothing started");

    let ok = Conf::new();
    ok.job("web", SLEEP);
    let out = ok.cli(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 job OK"));
}

#[test]
fn garbage_on_the_socket_gets_an_error_reply_and_harms_nothing() {
    let c = Conf::new();
    c.job("web", SLEEP);
    let d = c.start();
    d.wait_state("web", "running");
    let sock = c.socket();

    // Text where a frame should be: its "length" is far over the limit.
    let r = raw_exchange(&sock, b"GET / HTTP/1.1\r\n\r\n", false).expect("reply");
    assert_eq!(r["response"], "error", "{r}");
    // A frame that is not JSON.
    let r = raw_exchange(&sock, &frame("{{{ not json"), false).expect("reply");
    assert_eq!(r["response"], "error");
    // Valid JSON, but no hello first.
    let r =
        raw_exchange(&sock, &frame(r#"{"request":"status","job":null}"#), false).expect("reply");
    assert_eq!(r["response"], "error");
    // A wrong protocol version.
    let r =
        raw_exchange(&sock, &frame(r#"{"request":"hello","version":999}"#), false).expect("reply");
    assert!(
        r["message"].as_str().unwrap_or("").contains("version"),
        "{r}"
    );
    // A truncated frame after a good hello: the hello is answered, then an error.
    let mut bytes = frame(r#"{"request":"hello","version":1}"#);
    bytes.extend_from_slice(&100u32.to_be_bytes());
    bytes.extend_from_slice(b"{\"requ");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    use std::io::{Read, Write};
    s.write_all(&bytes).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("half close");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    let text_back = String::from_utf8_lossy(&all);
    assert!(
        text_back.contains("\"hello\"") && text_back.contains("\"error\""),
        "{text_back}"
    );
    // An unknown request after a good hello.
    let mut bytes = frame(r#"{"request":"hello","version":1}"#);
    bytes.extend_from_slice(&frame(r#"{"request":"explode"}"#));
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    s.write_all(&bytes).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("half close");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    assert!(String::from_utf8_lossy(&all).contains("malformed request"));

    // The daemon is unharmed.
    assert_eq!(d.state("web"), "running");
    // Unknown jobs are errors with a suggestion, exit 2.
    let out = d.ok(&["start", "wbe"], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `web`?"));
}

#[test]
fn a_second_daemon_refuses_and_a_stale_socket_is_replaced() {
    let c = Conf::new();
    c.job("web", SLEEP);
    std::fs::create_dir_all(c.path().join("run")).expect("run dir");
    // A socket file left behind by a daemon that died.
    drop(std::os::unix::net::UnixListener::bind(c.socket()).expect("stale socket"));
    assert!(c.socket().exists());
    let d = c.start();
    d.wait_state("web", "running");
    let out = std::process::Command::new(util::BIN)
        .arg("-c")
        .arg(c.path())
        .output()
        .expect("second daemon");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        text(&out)
    );
    assert_eq!(d.state("web"), "running");
}

#[test]
fn logs_env_and_custom_commands() {
    let c = Conf::new();
    c.job(
        "talker",
        r#"
script = "for i in 1 2 3 4 5; do echo line $i; done; echo to-stderr >&2; exec sleep 1000"
env = { GREETING = "hi there" }
[commands]
greet = "echo \"$GREETING from $GUARDIAN_JOB\""
fail = "echo nope; exit 4"
"#,
    );
    let d = c.start();
    d.wait_state("talker", "running");
    wait_until("the log", || {
        read(&c.file("log/talker.log")).contains("to-stderr")
    });
    let out = d.ok(&["logs", "talker", "-n", "2"], 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line 5\nto-stderr\n");

    let out = d.ok(&["env", "talker"], 0);
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(env.contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    assert!(env.contains("GREETING=hi there"));
    assert!(env.contains("GUARDIAN_JOB=talker"));

    let out = d.ok(&["run", "talker", "greet"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi there from talker\n"
    );
    let out = d.ok(&["run", "talker", "fail"], 1);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "nope\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("exited 4"));
    let out = d.ok(&["run", "talker", "nosuch"], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("greet"));
}

/// One pipe per job for its whole life: output of every run, of a hook spawned while the
/// main process runs, of a process that escaped the job's group (it lives as long as
/// its run: a run's end ends it, see tests/cgroup.rs), and a line left unfinished by one
/// run all reach the log, while the daemon holds one descriptor of the pipe per job.
#[test]
fn log_pipe_carries_every_process_across_respawns() {
    let c = Conf::new();
    let (count, hooked) = (c.file("count"), c.file("hooked"));
    let (escaped, orphan) = (c.file("escaped"), c.file("orphan-go"));
    c.job(
        "phoenix",
        &format!(
            r#"
respawn = true
respawn-limit = "unlimited"
respawn-delay = {{ initial = "50ms", max = "50ms", stable = "10s" }}
post-start = "echo hook; touch {hooked}"
script = """
n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}
echo run-$n
if [ $n = 1 ]; then
  printf half-
  exit 3
fi
if [ $n = 2 ]; then exit 3; fi
while [ ! -e {hooked} ]; do sleep 0.05; done
setsid sh -c 'touch {escaped}; while [ ! -e {orphan} ]; do sleep 0.05; done; echo from-orphan' &
while [ ! -e {escaped} ]; do sleep 0.05; done
echo main-after-hook
exec sleep 1000
"""
"#
        ),
    );
    c.job("quiet", "exec = \"sleep 1000\"\n");
    let d = c.start();
    let log = c.file("log/phoenix.log");
    wait_until("the third run after its hook", || {
        read(&log).contains("main-after-hook")
    });
    std::fs::write(&orphan, "").expect("orphan-go");
    wait_until("the escaped process's line", || {
        read(&log).contains("from-orphan")
    });
    let text = read(&log);
    for line in ["run-1", "run-3", "main-after-hook"] {
        assert!(text.lines().any(|l| l == line), "{line:?} in {text:?}");
    }
    // The unfinished line of run 1 waited in the pipe for the next line (run 2's, or a
    // hook's, whichever came first) instead of being lost or cut when run 1 ended.
    assert!(
        text.lines().any(|l| l.starts_with("half-") && l.len() > 5),
        "{text:?}"
    );
    // One descriptor of the pipe per job in the daemon: a job added costs one more.
    d.wait_state("quiet", "running");
    let before = pipe_fds(d.pid());
    c.job("added", "exec = \"sleep 1000\"\n");
    d.ok(&["reload"], 0);
    d.wait_state("added", "running");
    assert_eq!(pipe_fds(d.pid()), before + 1, "descriptors of pipes");
}

/// How many of `pid`'s descriptors are pipes, anonymous or FIFOs (the daemon may also
/// hold some it inherited).
pub fn pipe_fds(pid: u32) -> usize {
    use std::os::unix::fs::FileTypeExt;
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::metadata(e.ok()?.path()).ok())
                .filter(|m| m.file_type().is_fifo())
                .count()
        })
        .unwrap_or(usize::MAX)
}

/// A removed job's last words still reach its log, its unfinished line ended by a newline,
/// and the daemon lets go of its pipe.
#[test]
fn removed_job_log_gets_its_last_output() {
    let c = Conf::new();
    c.job(
        "leaving",
        "script = \"trap 'echo got-term; printf last-words; exit 0' TERM; echo up; while true; do sleep 0.05; done\"\n",
    );
    c.job("staying", "exec = \"sleep 1000\"\n");
    let d = c.start();
    let log = c.file("log/leaving.log");
    wait_until("the first line", || read(&log).contains("up"));
    d.wait_state("staying", "running");
    let before = pipe_fds(d.pid());
    c.remove_job("leaving");
    let out = d.ok(&["reload"], 0);
    assert!(text(&out).contains("1 removed"), "{}", text(&out));
    wait_until("the unfinished line, ended", || {
        read(&log).ends_with("got-term\nlast-words\n")
    });
    // Its reader ends once the last process holding the pipe is gone.
    wait_until("the removed job's pipe closed", || {
        pipe_fds(d.pid()) == before - 1
    });
}

#[test]
fn jobs_get_a_clean_environment_and_their_user() {
    let c = Conf::new();
    let f = c.file("out/env");
    let root = nix_is_root();
    let user = if root { "setuid = \"nobody\"\n" } else { "" };
    c.job(
        "clean",
        &format!("task = true\n{user}umask = \"027\"\nscript = \"env > {f}.tmp; id -u >> {f}.tmp; umask >> {f}.tmp; mv {f}.tmp {f}\"\n"),
    );
    std::fs::create_dir(c.path().join("out")).expect("out dir");
    if root {
        // nobody must be able to reach out/ and write there; the configuration
        // directory itself stays writable by its owner only, as guardian demands.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(c.path(), PermissionsExt::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(c.path().join("out"), PermissionsExt::from_mode(0o777))
            .expect("chmod");
    }
    let d = c.start();
    wait_until("the task's report", || !read(&f).is_empty());
    let report = read(&f);
    assert!(report.contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    assert!(
        !report.contains("GUARDIAN_LOG"),
        "the daemon's environment does not leak: {report}"
    );
    assert!(report.contains("0027"), "{report}");
    if root {
        assert!(report.contains("USER=nobody"), "{report}");
        assert!(report.contains("\n65534\n"), "{report}");
    }
    drop(d);
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn reload_job_sends_its_reload_signal_to_the_main_process() {
    let c = Conf::new();
    let f = c.file("reloaded");
    c.job(
        "nginx",
        &format!(
            "script = \"trap 'echo reloaded >> {f}' USR1; while :; do sleep 0.05; done\"\nreload-signal = \"USR1\"\n"
        ),
    );
    c.job("idle", "manual = true\nexec = \"sleep 1000\"\n");
    let d = c.start();
    d.wait_state("nginx", "running");
    let pid = d.main_pid("nginx");
    let out = d.ok(&["reload", "nginx"], 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent SIGUSR1"));
    wait_until("the trap to run", || read(&f) == "reloaded\n");
    assert_eq!(d.main_pid("nginx"), pid, "reloaded, not restarted");
    d.ok(&["reload", "idle"], 1);
}

#[test]
fn logs_follow_prints_new_lines_and_rotation_keeps_generations() {
    let c = Conf::new();
    std::fs::write(
        c.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\nlog-max-size = \"2KB\"\nlog-keep = 10\n",
    )
    .expect("guardian.toml");
    let f = c.file("go");
    c.job(
        "chatty",
        &format!(
            "script = \"echo first; while [ ! -e {f} ]; do sleep 0.05; done; i=0; while [ $i -lt 200 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; echo last; exec sleep 1000\"\n"
        ),
    );
    let d = c.start();
    wait_until("the first line", || {
        read(&c.file("log/chatty.log")).contains("first")
    });
    let mut follower = std::process::Command::new(util::BIN)
        .arg("-c")
        .arg(c.path())
        .args(["logs", "chatty", "-f", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut out = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let (following_tx, following) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.ends_with(b"first\n") {
                let _ = following_tx.send(());
            }
            if String::from_utf8_lossy(&seen).contains("last\n") {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    // The rest is written only once the follower has shown the last line so far.
    let _ = following.recv_timeout(util::DEADLINE);
    std::fs::write(&f, "").expect("go");
    let seen = rx.recv_timeout(util::DEADLINE).unwrap_or_default();
    let _ = follower.kill();
    let _ = follower.wait();
    // Every line, in order, although the log was rotated several times meanwhile.
    let expected: Vec<String> = std::iter::once("first".to_string())
        .chain((0..200).map(|i| format!("line-{i}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")))
        .chain(std::iter::once("last".to_string()))
        .collect();
    let got: Vec<&str> = seen.lines().collect();
    assert_eq!(got, expected);
    assert!(c.path().join("log/chatty.log.4").exists());
    for name in ["chatty.log", "chatty.log.1", "chatty.log.2"] {
        let text = read(&c.file(&format!("log/{name}")));
        assert!(text.len() <= 2000, "{name} is {} bytes", text.len());
        assert!(text.ends_with('\n'), "whole lines only in {name}");
    }
    drop(d);
}

#[test]
fn limits_and_nice_apply_to_the_job() {
    let c = Conf::new();
    let f = c.file("limits");
    c.job(
        "limited",
        &format!(
            "task = true\nnice = 5\nlimit = {{ nofile = [100, 200], core = 0 }}\nscript = \"ulimit -Sn > {f}.tmp; ulimit -Hn >> {f}.tmp; ulimit -c >> {f}.tmp; cut -d' ' -f19 /proc/self/stat >> {f}.tmp; mv {f}.tmp {f}\"\n"
        ),
    );
    let d = c.start();
    wait_until("the report", || !read(&f).is_empty());
    assert_eq!(read(&f), "100\n200\n0\n5\n");
    let out = d.ok(&["env", "limited"], 0);
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(
        env.contains("nofile") && env.contains("100") && env.contains("200"),
        "{env}"
    );
}

#[test]
fn all_keeps_intent_manual_jobs_and_manual_stops() {
    let c = Conf::new();
    c.job("a", SLEEP)
        .job("b", SLEEP)
        .job("by-hand", &format!("manual = true\n{SLEEP}"));
    let d = c.start();
    d.wait_state("a", "running");
    d.wait_state("b", "running");
    d.ok(&["stop", "b"], 0);
    let a = d.main_pid("a");
    d.ok(&["restart", "all"], 0);
    assert_ne!(d.main_pid("a"), a, "a was restarted");
    assert_eq!(
        d.state("b"),
        "waiting",
        "restart all does not undo a manual stop"
    );
    d.ok(&["stop", "all"], 0);
    assert!(d.all().iter().all(|j| j["state"] == "waiting"));
    d.ok(&["start", "all"], 0);
    assert_eq!(d.state("a"), "running");
    assert_eq!(d.state("b"), "running");
    assert_eq!(
        d.state("by-hand"),
        "waiting",
        "start all leaves manual jobs alone"
    );
}

#[test]
fn a_job_that_fails_at_once_backs_off_then_ends_failed() {
    // Its port is taken: the server fails as soon as it starts, every time.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let c = Conf::new();
    let f = c.file("starts");
    c.job(
        "web",
        &format!(
            "script = \"date +%s.%N >> {f}; exec python3 {} listen {port}\"\nrespawn = true\n\
             respawn-delay = {{ initial = \"100ms\", max = \"400ms\", stable = \"10s\" }}\n\
             respawn-limit = {{ count = 5, interval = \"1m\" }}\n",
            util::SVC
        ),
    );
    let d = c.start();
    // While it waits, status says when the next try is due.
    let mut seen_waiting = false;
    let mut seen_text = false;
    wait_until("the respawn limit to give up", || {
        let s = d.status("web");
        if s["state"] == "waiting" && s["goal"] == "start" {
            seen_waiting |= s["respawn_in_secs"].as_f64().is_some_and(|t| t <= 0.4);
            let out = d.cli(&["status", "web"]);
            seen_text |=
                String::from_utf8_lossy(&out.stdout).contains("next try:        respawn in");
        }
        s["state"] == "failed"
    });
    assert!(seen_waiting, "status --json showed respawn_in_secs");
    assert!(seen_text, "status showed the next try");
    let s = d.status("web");
    assert_eq!(s["restarts"], 5, "{s}");
    assert_eq!(s["respawn_in_secs"], serde_json::Value::Null, "{s}");
    let starts: Vec<f64> = read(&f)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(starts.len(), 6, "{starts:?}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // The delays double from 100 ms up to the 400 ms cap (and the start itself takes
    // a little on top of each).
    for (gap, least) in gaps.iter().zip([0.1, 0.2, 0.4, 0.4, 0.4]) {
        assert!(*gap >= least, "gaps {gaps:?}");
    }
    assert!(
        d.daemon_log()
            .contains("failing quickly; respawning in 400ms"),
        "{}",
        d.daemon_log()
    );
    drop(taken);
}

#[test]
fn a_stop_while_a_respawn_is_due_cancels_it() {
    let c = Conf::new();
    let f = c.file("starts");
    c.job(
        "crasher",
        &format!(
            "script = \"echo start >> {f}; exit 1\"\nrespawn = true\n\
             respawn-delay = {{ initial = \"1h\", max = \"1h\" }}\n"
        ),
    );
    let d = c.start();
    wait_until("a respawn to be due", || {
        d.status("crasher")["respawn_in_secs"]
            .as_f64()
            .is_some_and(|t| t > 60.0)
    });
    assert_eq!(d.state("crasher"), "waiting");
    assert_eq!(d.status("crasher")["goal"], "start");
    d.ok(&["stop", "crasher"], 0);
    let s = d.status("crasher");
    assert_eq!(s["goal"], "stop", "{s}");
    assert_eq!(s["respawn_in_secs"], serde_json::Value::Null, "{s}");
    // A start tries again at once.
    d.cli(&["start", "crasher"]);
    wait_until("the second start", || read(&f).lines().count() == 2);
}

#[test]
fn respawn_delay_handover_timeout_and_deadline_are_validated_with_positions() {
    let c = Conf::new();
    c.job(
        "web",
        "exec = \"sleep 1\"\nrespawn = true\nrespawn-delay = { initial = \"1s\", max = \"10ms\", stabel = \"1s\" }\nhandover-timeout = \"soon\"\n",
    );
    c.job(
        "db",
        "exec = \"sleep 1\"\n[[check]]\ntype = \"tcp\"\nport = 6379\ndeadline = \"1m\"\n",
    );
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "web.toml:3:49: unknown key `stabel`",
        "did you mean `stable`?",
        "web.toml:3:17: `respawn-delay`: `initial` (1s) is longer than `max` (10ms)",
        "web.toml:4:20: `handover-timeout`: `soon` is not a duration",
        "db.toml:5:12: `deadline` belongs to `flock` checks",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let ok = Conf::new();
    ok.job(
        "web",
        "exec = \"sleep 1\"\nrespawn = true\nrespawn-delay = { initial = \"50ms\" }\nhandover-timeout = \"0s\"\npidfile = \"/run/x.pid\"\n[[check]]\ntype = \"flock\"\npath = \"/run/x.lock\"\ndeadline = \"2m\"\n",
    );
    let out = ok.cli(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `logs` names a job, not a path: neither the daemon nor, without one, the CLI reads a file
/// outside the log directory, and a job that does not exist is an error, not "nothing yet".
#[test]
fn logs_of_a_job_that_does_not_exist_or_a_path_is_an_error() {
    let c = Conf::new();
    c.job("quiet", "exec = \"sleep 1000\"\n");
    std::fs::create_dir_all(c.path().join("state")).expect("state dir");
    std::fs::write(c.path().join("state/secret.log"), "private\n").expect("a file outside");
    // No daemon: the CLI judges the name itself.
    for name in ["../state/secret", "nosuch"] {
        let out = c.cli(&["logs", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("private"));
    }
    let out = c.cli(&["logs", "quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("logged nothing yet"));
    // With the daemon: the same answers.
    let d = c.start();
    d.wait_state("quiet", "running");
    for name in ["../state/secret", "nosuch"] {
        let out = d.cli(&["logs", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("private"));
    }
}

/// A mask line of /proc/PID/status (`SigBlk`, `SigIgn`, `SigCgt`), as a number.
fn sig_mask(pid: &str, field: &str) -> u64 {
    let text = read(&format!("/proc/{pid}/status"));
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {text}"));
    let hex = line.split_whitespace().nth(1).expect("a mask");
    u64::from_str_radix(hex, 16).expect("hex")
}

#[test]
fn spawn_hands_a_job_default_signals_and_an_empty_mask() {
    // The daemon catches signals (its own handlers) and ignores SIGPIPE; the spawn
    // clears its handlers in the child, puts SIGPIPE back and empties the mask, so
    // the job's program starts with nothing blocked or caught, and ignores only what
    // the daemon was started ignoring.
    let c = Conf::new();
    c.job("plain", SLEEP);
    let d = c.start();
    d.wait_state("plain", "running");
    let pid = d.main_pid("plain").expect("pid").to_string();
    wait_until("the job to have exec'd sleep", || {
        read(&format!("/proc/{pid}/comm")).trim() == "sleep"
    });
    let daemon = d.pid().to_string();
    assert_ne!(sig_mask(&daemon, "SigCgt"), 0, "the daemon catches signals");
    let sigpipe = 1u64 << (13 - 1);
    assert_eq!(sig_mask(&pid, "SigBlk"), 0);
    assert_eq!(sig_mask(&pid, "SigCgt"), 0);
    assert_eq!(
        sig_mask(&pid, "SigIgn"),
        sig_mask("self", "SigIgn") & !sigpipe
    );
}
