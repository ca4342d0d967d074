//! The test harness: a configuration directory in a temporary folder, the real guardian
//! binary run on it as a daemon, and the real CLI to talk to it. Waiting is polling
//! with a generous deadline, never a fixed sleep.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_guardian");

/// How long anything may take before a test gives up: generous, for a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// For [`Conf::settings`]: a host check of the root filesystem that always passes, run
/// often enough for a test to see its outcome soon.
pub const ROOT_DISK_CHECK: &str = "[[check]]\nname = \"root\"\ntype = \"disk\"\npath = \"/\"\n\
    max = \"100%\"\nevery = \"100ms\"\n";

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A configuration directory. The temporary directory is mode 0700 and the files are
/// written under the tests' umask 022 (0644, directories 0755), which guardian's rules
/// on who may write a configuration accept.
pub struct Conf {
    pub dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Conf {
    pub fn new() -> Conf {
        let dir = tempfile::Builder::new()
            .prefix("g")
            .tempdir()
            .expect("temporary directory");
        std::fs::create_dir(dir.path().join("jobs")).expect("jobs dir");
        let socket = dir.path().join("run/g.sock");
        let c = Conf { dir, socket };
        c.settings("");
        c
    }

    /// Writes guardian.toml: the socket, log and state directories every test uses,
    /// then `extra` (host checks, alerts, further settings).
    pub fn settings(&self, extra: &str) -> &Conf {
        std::fs::write(
            self.path().join("guardian.toml"),
            format!("socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n{extra}"),
        )
        .expect("guardian.toml");
        self
    }

    /// A configuration directory laid out by someone else, whose guardian.toml puts the
    /// control socket at `socket`.
    pub fn laid_out(dir: tempfile::TempDir, socket: PathBuf) -> Conf {
        Conf { dir, socket }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the configuration directory, as text for use in job files.
    pub fn file(&self, name: &str) -> String {
        self.path().join(name).display().to_string()
    }

    pub fn job(&self, name: &str, toml: &str) -> &Conf {
        std::fs::write(self.path().join("jobs").join(format!("{name}.toml")), toml)
            .expect("job file");
        self
    }

    pub fn remove_job(&self, name: &str) {
        std::fs::remove_file(self.path().join("jobs").join(format!("{name}.toml")))
            .expect("remove job file");
    }

    pub fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    /// Runs the CLI on this configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("-c")
            .arg(self.path())
            .args(args)
            .env_remove("GUARDIAN_SOCKET")
            .stdin(Stdio::null())
            .output()
            .expect("run the guardian CLI")
    }

    pub fn start(&self) -> Daemon<'_> {
        self.start_via(&[])
    }

    /// Starts the daemon through a wrapper that ends by exec-ing its arguments, e.g.
    /// `["sh", "-c", "umask 022 && exec \"$@\"", "sh"]`, so the pid is the daemon's.
    pub fn start_via(&self, wrapper: &[&str]) -> Daemon<'_> {
        let cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        self.start_cmd(cmd)
    }

    /// Starts the daemon from another copy of the binary, at `bin`.
    pub fn start_bin(&self, bin: &Path) -> Daemon<'_> {
        self.start_cmd(Command::new(bin))
    }

    fn start_cmd(&self, mut cmd: Command) -> Daemon<'_> {
        let log = std::fs::File::create(self.path().join("daemon.log")).expect("daemon log");
        let child = cmd
            .arg("-c")
            .arg(self.path())
            .env("GUARDIAN_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        let mut d = Daemon {
            conf: self,
            child: Some(child),
        };
        wait_until("the daemon's control socket", || {
            if let Some(Ok(Some(status))) = d.child.as_mut().map(Child::try_wait) {
                panic!("the daemon exited with {status}:\n{}", d.daemon_log());
            }
            UnixStream::connect(self.socket()).is_ok()
        });
        d
    }
}

pub struct Daemon<'a> {
    pub conf: &'a Conf,
    child: Option<Child>,
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Daemon<'_> {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.conf.cli(args)
    }

    /// Runs the CLI and insists it exits with `code`.
    pub fn ok(&self, args: &[&str], code: i32) -> Output {
        let out = self.cli(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "guardian {args:?}: {}",
            text(&out)
        );
        out
    }

    pub fn status(&self, job: &str) -> Value {
        let out = self.cli(&["status", job, "--json"]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json of {job}: {e}: {}", text(&out)))
    }

    pub fn all(&self) -> Vec<Value> {
        let out = self.ok(&["status", "--json"], 0);
        serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("status --json array")
    }

    pub fn state(&self, job: &str) -> String {
        self.status(job)["state"].as_str().unwrap_or("").to_string()
    }

    pub fn main_pid(&self, job: &str) -> Option<u32> {
        self.status(job)["pid"].as_u64().map(|p| p as u32)
    }

    pub fn wait_state(&self, job: &str, state: &str) {
        let start = Instant::now();
        while self.state(job) != state {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {job} to be {state}; the daemon's log:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`wait_until`], but a timeout shows the daemon's log, which says why.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; the daemon's log:\n{}{}",
                self.daemon_log(),
                self.other_logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The other `*.log` files of the configuration directory (a program's own log),
    /// each with its name, for a failure message.
    fn other_logs(&self) -> String {
        let mut out = String::new();
        let Ok(dir) = std::fs::read_dir(self.conf.path()) else {
            return out;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") && !path.ends_with("daemon.log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push_str(&format!("\n--- {}:\n{text}", path.display()));
            }
        }
        out
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.conf.path().join("daemon.log")).unwrap_or_default()
    }

    /// How many lines of the daemon's log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.daemon_log()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `more` further lines of the daemon's log contain `needle`: proof that
    /// the daemon went on working (a check ran again, say) before a test asserts that
    /// something did not happen.
    pub fn wait_log_more(&self, needle: &str, more: usize) {
        let target = self.log_count(needle) + more;
        let start = Instant::now();
        while self.log_count(needle) < target {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {more} more lines with {needle:?}; the daemon's log:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would, and waits until it is gone: its
    /// jobs are left running, re-parented.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("daemon still running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(DEADLINE)
    }

    /// Sends SIGTERM and waits up to `deadline` for the daemon to exit.
    pub fn terminate_within(&mut self, deadline: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon still running");
        signal(child.id(), libc_sig::TERM);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                panic!("daemon did not exit after SIGTERM:\n{}", self.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc_sig::TERM);
            let start = Instant::now();
            while start.elapsed() < DEADLINE {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub mod libc_sig {
    pub const TERM: &str = "TERM";
    pub const KILL: &str = "KILL";
    pub const STOP: &str = "STOP";
    pub const HUP: &str = "HUP";
}

/// Sends a signal with kill(1), so the tests need no unsafe code.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Whether a process exists (and is not a zombie).
/// The parent of `pid`, from /proc.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Sends raw bytes on a fresh connection and returns the first frame that comes back.
pub fn raw_exchange(socket: &Path, bytes: &[u8], half_close: bool) -> Option<Value> {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(bytes).expect("write");
    if half_close {
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    }
    let mut header = [0u8; 4];
    s.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

pub fn frame(json: &str) -> Vec<u8> {
    let mut v = (json.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v
}

/// The stand-in services script.
pub const SVC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/svc.py");

/// A TCP port nothing listens on right now, and one no other test of this process got:
/// tests that run as threads of one process (plain `cargo test`) never share a port.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The lines of a record file.
pub fn lines(path: &str) -> Vec<String> {
    read(path).lines().map(str::to_string).collect()
}

/// Where `line` stands in `lines`, failing the test when it is missing.
pub fn position(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} missing from {lines:?}"))
}

/// The bodies a [`webhook`] receiver has been sent, in the order they came.
pub type Bodies = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A webhook receiver on 127.0.0.1: answers every request 200 (and closes the
/// connection) and keeps the bodies. It serves until the test process ends.
pub fn webhook() -> (u16, Bodies) {
    use std::io::{BufRead, BufReader};
    let hook = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hook.local_addr().expect("addr").port();
    let bodies = Bodies::default();
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in hook.incoming() {
            let Ok(mut s) = stream else { continue };
            let Ok(clone) = s.try_clone() else { continue };
            let mut reader = BufReader::new(clone);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            if let Ok(mut b) = kept.lock() {
                b.push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}
