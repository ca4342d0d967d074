//! Configuration hardening: what a new operator or a hostile local user can put in the
//! configuration directory. `check` refuses each bad case with a clear error (file:line:col
//! where it has one), and a reload of it changes nothing: the daemon keeps answering and
//! its jobs keep running.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{BIN, Conf, DEADLINE, alive, text, wait_until};

const SLEEP: &str = "exec = \"sleep 1000\"\n";

/// What the harness writes in guardian.toml.
const GUARDIAN_TOML: &str = "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n";

/// Runs the CLI on `c`, failing the test (not hanging it) when it does not finish. The
/// socket is given on the command line, so that a client finds the daemon even while
/// guardian.toml is broken.
fn run_within(c: &Conf, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(c.path())
        .arg("--socket")
        .arg(c.socket())
        .args(args)
        .env_remove("GUARDIAN_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the guardian CLI");
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("guardian {args:?} did not finish within {DEADLINE:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for guardian {args:?}: {e}"),
        }
    }
    child.wait_with_output().expect("output")
}

/// Insists that `out` is a refusal (exit 2) whose errors hold each of `expect`.
fn refused(out: &Output, what: &str, expect: &[String]) {
    assert_eq!(out.status.code(), Some(2), "{what}: {}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    for e in expect {
        assert!(err.contains(e.as_str()), "{what}: {e:?} missing in:\n{err}");
    }
    assert!(
        !err.contains("panicked"),
        "{what}: guardian panicked:\n{err}"
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every job as `status --json` shows it.
fn jobs(c: &Conf) -> Vec<serde_json::Value> {
    let out = run_within(c, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("status --json")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// One bad configuration: how to make it, what its error says, how to undo it.
struct Case {
    name: &'static str,
    make: fn(&Conf),
    /// Substrings of the error; `{jobs}` stands for the jobs/ directory's path.
    expect: &'static [&'static str],
    undo: fn(&Conf),
}

fn bad_path(c: &Conf) -> std::path::PathBuf {
    c.path().join("jobs/bad.toml")
}

fn write_bad(c: &Conf, bytes: &[u8]) {
    std::fs::write(bad_path(c), bytes).expect("bad job file");
}

fn remove_bad(c: &Conf) {
    let _ = std::fs::remove_file(bad_path(c));
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        Case {
            name: "a non-ASCII character in start-on",
            make: |c| write_bad(c, format!("{SLEEP}start-on = \"é\"\n").as_bytes()),
            expect: &["bad.toml:2:13: `start-on`: `é` is not an event name"],
            undo: remove_bad,
        },
        Case {
            name: "8,000 nested parentheses in start-on",
            make: |c| {
                let deep = format!("{}started keep{}", "(".repeat(8000), ")".repeat(8000));
                write_bad(c, format!("{SLEEP}start-on = \"{deep}\"\n").as_bytes());
            },
            expect: &[
                "bad.toml:2:45: `start-on`: parentheses nested more than 32 deep (the limit)",
            ],
            undo: remove_bad,
        },
        Case {
            name: "a kill-timeout of u64::MAX seconds",
            make: |c| {
                write_bad(
                    c,
                    format!("{SLEEP}kill-timeout = \"18446744073709551615s\"\n").as_bytes(),
                )
            },
            expect: &[
                "bad.toml:2:16: `kill-timeout` is longer than the limit of 365 days for a duration",
            ],
            undo: remove_bad,
        },
        Case {
            name: "a readiness deadline of u64::MAX seconds",
            make: |c| {
                write_bad(
                    c,
                    format!("{SLEEP}[ready]\ntype = \"tcp\"\nport = 1\ndeadline = \"18446744073709551615s\"\n")
                        .as_bytes(),
                )
            },
            expect: &["bad.toml:5:12: `deadline` is longer than the limit of 365 days"],
            undo: remove_bad,
        },
        Case {
            name: "a job file that is a FIFO",
            make: |c| {
                nix::unistd::mkfifo(
                    &bad_path(c),
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                )
                .expect("mkfifo")
            },
            expect: &["bad.toml: is a FIFO, not a regular file"],
            undo: remove_bad,
        },
        Case {
            name: "a job file that links to /dev/zero",
            make: |c| std::os::unix::fs::symlink("/dev/zero", bad_path(c)).expect("symlink"),
            expect: &["bad.toml: is a character device, not a regular file"],
            undo: remove_bad,
        },
        Case {
            name: "a job file that is not UTF-8",
            make: |c| write_bad(c, b"exec = \"sleep 1000\"\n# caf\xe9 au lait\n"),
            expect: &["bad.toml:2:6: is not UTF-8: byte 0xe9"],
            undo: remove_bad,
        },
        Case {
            name: "a job file over 1 MiB",
            make: |c| {
                let mut bytes = SLEEP.as_bytes().to_vec();
                bytes.resize((1 << 20) + 1, b'\n');
                write_bad(c, &bytes);
            },
            expect: &["bad.toml: is larger than the limit of 1048576 bytes"],
            undo: remove_bad,
        },
        Case {
            name: "a group-writable job file",
            make: |c| {
                write_bad(c, SLEEP.as_bytes());
                chmod(&bad_path(c), 0o664);
            },
            expect: &[
                "bad.toml: is writable by its group (mode 0664, owner root (uid 0))",
                "chmod go-w",
            ],
            undo: remove_bad,
        },
        Case {
            name: "a symbolic link to a world-writable file",
            make: |c| {
                let target = c.path().join("elsewhere.toml");
                std::fs::write(&target, SLEEP).expect("target");
                chmod(&target, 0o666);
                std::os::unix::fs::symlink(&target, bad_path(c)).expect("symlink");
            },
            expect: &[
                "bad.toml: links to ",
                "elsewhere.toml, which is writable by group and others (mode 0666",
                "chmod go-w /",
            ],
            undo: |c| {
                remove_bad(c);
                let _ = std::fs::remove_file(c.path().join("elsewhere.toml"));
            },
        },
        Case {
            name: "a jobs/ directory of mode 0777",
            make: |c| chmod(&c.path().join("jobs"), 0o777),
            expect: &["jobs: is writable by group and others (mode 0777"],
            undo: |c| chmod(&c.path().join("jobs"), 0o755),
        },
        Case {
            name: "an env value with a NUL byte",
            make: |c| {
                write_bad(
                    c,
                    format!("{SLEEP}env = {{ A = \"x\\u0000y\" }}\n").as_bytes(),
                )
            },
            expect: &["bad.toml:2:13: `env A` holds a NUL byte"],
            undo: remove_bad,
        },
        Case {
            name: "an env name with `=`",
            make: |c| {
                write_bad(
                    c,
                    format!("{SLEEP}env = {{ \"A=B\" = \"x\" }}\n").as_bytes(),
                )
            },
            expect: &["bad.toml:2:9: `A=B` is not a valid variable name"],
            undo: remove_bad,
        },
        Case {
            name: "an exec word with a NUL byte",
            make: |c| write_bad(c, b"exec = \"sleep 1000\\u0000\"\n"),
            expect: &["bad.toml:1:8: `exec` holds a NUL byte"],
            undo: remove_bad,
        },
        Case {
            name: "a memory check of 500% of the host",
            make: |c| {
                write_bad(
                    c,
                    format!("{SLEEP}[[check]]\ntype = \"memory\"\nmax = \"500%\"\n").as_bytes(),
                )
            },
            expect: &["bad.toml:4:7: `500%`: a share of the host's memory is at most 100%"],
            undo: remove_bad,
        },
        Case {
            name: "a nofile limit of unlimited, which setrlimit refuses",
            make: |c| {
                write_bad(
                    c,
                    format!("{SLEEP}limit = {{ nofile = \"unlimited\" }}\n").as_bytes(),
                )
            },
            expect: &["bad.toml:2:20: limit `nofile`: at most"],
            undo: remove_bad,
        },
        Case {
            name: "an HTTP header that cannot be sent",
            make: |c| {
                write_bad(
                    c,
                    format!("{SLEEP}[[check]]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/\"\nheaders = {{ X-A = \"a\\nb\" }}\n")
                        .as_bytes(),
                )
            },
            expect: &["bad.toml:5:13: the value of header `X-A` holds a character a header cannot"],
            undo: remove_bad,
        },
        Case {
            name: "a program probe's exit status of 256",
            make: |c| {
                write_bad(
                    c,
                    format!(
                        "{SLEEP}[[check]]\ntype = \"program\"\nexec = \"true\"\nstatus = 256\n"
                    )
                    .as_bytes(),
                )
            },
            expect: &["bad.toml:5:10: an exit status is between 0 and 255"],
            undo: remove_bad,
        },
        Case {
            name: "a guardian.toml that is not UTF-8",
            make: |c| {
                let mut t = std::fs::read(c.path().join("guardian.toml")).expect("read");
                t.extend_from_slice(b"every = \"\xff\"\n");
                std::fs::write(c.path().join("guardian.toml"), t).expect("write");
            },
            expect: &["guardian.toml:4:10: is not UTF-8: byte 0xff"],
            undo: |c| std::fs::write(c.path().join("guardian.toml"), GUARDIAN_TOML).expect("write"),
        },
    ];
    if is_root() {
        v.push(Case {
            name: "a job file owned by an unprivileged user",
            make: |c| {
                write_bad(c, SLEEP.as_bytes());
                std::os::unix::fs::chown(bad_path(c), Some(65534), None).expect("chown");
            },
            expect: &["bad.toml: is owned by", "uid 65534", "chown root"],
            undo: remove_bad,
        });
    }
    v
}

#[test]
fn check_refuses_each_bad_case_with_its_position() {
    for case in cases() {
        let c = Conf::new();
        c.job("keep", SLEEP);
        (case.make)(&c);
        let expect: Vec<String> = case.expect.iter().map(|e| e.to_string()).collect();
        refused(&run_within(&c, &["check"]), case.name, &expect);
        (case.undo)(&c);
        let out = run_within(&c, &["check"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: undone: {}",
            case.name,
            text(&out)
        );
    }
}

#[test]
fn a_reload_of_each_bad_case_changes_nothing_and_the_daemon_keeps_running() {
    let c = Conf::new();
    c.job("keep", SLEEP);
    let mut d = c.start();
    d.wait_state("keep", "running");
    let pid = d.main_pid("keep").expect("pid");
    for case in cases() {
        (case.make)(&c);
        let expect: Vec<String> = case.expect.iter().map(|e| e.to_string()).collect();
        refused(&run_within(&c, &["reload"]), case.name, &expect);
        let summary = run_within(&c, &["summary"]);
        assert_eq!(
            summary.status.code(),
            Some(0),
            "{}: summary after the reload: {}\n{}",
            case.name,
            text(&summary),
            d.daemon_log()
        );
        let all = jobs(&c);
        let keep = all.iter().find(|j| j["name"] == "keep").expect("keep");
        assert_eq!(keep["state"], "running", "{}", case.name);
        assert_eq!(keep["pid"], u64::from(pid), "{}", case.name);
        assert!(alive(pid), "{}: the job's process is gone", case.name);
        assert_eq!(all.len(), 1, "{}: nothing of it was taken", case.name);
        (case.undo)(&c);
    }
    // The daemon still takes a good configuration, and still stops on SIGTERM.
    c.job("late", SLEEP);
    let out = run_within(&c, &["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    d.wait_state("late", "running");
    assert_eq!(d.main_pid("keep"), Some(pid));
    assert!(d.terminate().success(), "{}", d.daemon_log());
    assert!(!alive(pid));
}

#[test]
fn the_largest_durations_accepted_run_and_stop() {
    let c = Conf::new();
    let marker = c.file("ready");
    c.job(
        "slow",
        &format!(
            "script = \"trap 'exit 0' TERM; touch {marker}; while :; do sleep 0.05; done\"\n\
             kill-timeout = \"365d\"\nrespawn-limit = {{ count = 10000, interval = \"365d\" }}\n\
             [ready]\ntype = \"file\"\npath = \"{marker}\"\ndeadline = \"365d\"\n\
             [[check]]\ntype = \"memory\"\nmax = \"100%\"\nevery = \"365d\"\ngrace = \"365d\"\n"
        ),
    );
    let out = run_within(&c, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let d = c.start();
    d.wait_state("slow", "running");
    let out = run_within(&c, &["stop", "slow"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(d.state("slow"), "waiting");
    let out = run_within(&c, &["summary"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_symlink_to_a_safe_regular_file_is_a_job() {
    let c = Conf::new();
    let target = c.path().join("web.toml");
    std::fs::write(&target, SLEEP).expect("target");
    std::os::unix::fs::symlink(&target, c.path().join("jobs/web.toml")).expect("symlink");
    let d = c.start();
    d.wait_state("web", "running");
}

#[test]
fn guardian_toml_the_directory_and_the_password_file_are_judged_too() {
    // The configuration directory itself.
    let c = Conf::new();
    chmod(c.path(), 0o777);
    refused(
        &run_within(&c, &["check"]),
        "a config directory of mode 0777",
        &[format!(
            "{}: is writable by group and others (mode 0777",
            c.path().display()
        )],
    );
    chmod(c.path(), 0o755);
    // guardian.toml, which the client commands read too to find the socket.
    chmod(&c.path().join("guardian.toml"), 0o646);
    let out = c.cli(&["summary"]);
    refused(
        &out,
        "a world-writable guardian.toml",
        &["guardian.toml: is writable by others (mode 0646".into()],
    );
    std::fs::remove_file(c.path().join("guardian.toml")).expect("rm");
    nix::unistd::mkfifo(
        &c.path().join("guardian.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    refused(
        &run_within(&c, &["check"]),
        "guardian.toml as a FIFO",
        &["guardian.toml: is a FIFO, not a regular file".into()],
    );
    // A password file that is a FIFO, and one that others can write.
    std::fs::remove_file(c.path().join("guardian.toml")).expect("rm");
    let pw = c.path().join("pw");
    nix::unistd::mkfifo(&pw, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    std::fs::write(
        c.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\n[alert]\nuser = \"u\"\npassword-file = \"pw\"\n",
    )
    .expect("guardian.toml");
    refused(
        &run_within(&c, &["check"]),
        "a password file that is a FIFO",
        &[format!(
            "guardian.toml:4:17: `password-file`: {} is a FIFO, not a regular file",
            pw.display()
        )],
    );
    std::fs::remove_file(&pw).expect("rm");
    std::fs::write(&pw, "secret\n").expect("pw");
    chmod(&pw, 0o622);
    refused(
        &run_within(&c, &["check"]),
        "a world-writable password file",
        &["is writable by group and others (mode 0622".into()],
    );
    chmod(&pw, 0o600);
    let out = run_within(&c, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_pid_file_that_is_a_fifo_does_not_stall_the_daemon() {
    let c = Conf::new();
    let pidfile = c.file("app.pid");
    c.job(
        "app",
        &format!(
            "exec = \"sh -c 'mkfifo {pidfile}; exec sleep 1000'\"\npidfile = \"{pidfile}\"\n\
             [ready]\ntype = \"tcp\"\nport = 1\ndeadline = \"3s\"\n"
        ),
    );
    let d = c.start();
    wait_until("the FIFO", || Path::new(&pidfile).exists());
    // While the daemon keeps looking at the FIFO, it answers.
    let start = Instant::now();
    let out = run_within(&c, &["summary"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(start.elapsed() < Duration::from_secs(10));
    // And it gives up at the deadline, as with any pid file that never names a process.
    wait_until("the start to fail", || d.state("app") != "spawned");
    assert_ne!(d.state("app"), "running", "{}", d.daemon_log());
}
