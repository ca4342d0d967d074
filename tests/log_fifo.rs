//! A job's output outlives the daemon: its pipe is a FIFO in `state-dir/pipes`, which the
//! job itself holds read-write, so a daemon killed with SIGKILL costs the job neither its
//! life (SIGPIPE) nor its lines, and the next daemon logs them.

use std::process::Command;

use crate::util::{self, Conf, alive, read, signal, wait_until};

/// Kills a process group when the test ends, however it ends: the orphan that a killed
/// daemon leaves behind must not outlive the test.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// The number in a side file a process of the job writes after each line (0 if none yet).
fn counter(path: &str) -> u64 {
    read(path).trim().parse().unwrap_or(0)
}

/// A job that numbers its lines with its own pid: `PID 1`, `PID 2`, ... every 10 ms. While
/// `hold` exists it writes `PID held-`, an unfinished line, and waits; then it finishes
/// that line with `resumed` and goes on counting.
fn counting_job(c: &Conf) -> (String, String) {
    let (side, hold) = (c.file("count"), c.file("hold"));
    c.job(
        "counter",
        &format!(
            r#"
script = """
p=$$; i=0
while :; do
  if [ -e {hold} ]; then
    printf '%s held-' $p
    while [ -e {hold} ]; do sleep 0.01; done
    echo resumed
  fi
  i=$((i+1))
  echo "$p $i"
  echo $i > {side}.$p
  sleep 0.01
done
"""
"#
        ),
    );
    (side, hold)
}

#[test]
fn lines_written_while_the_daemon_is_down_reach_the_log() {
    let c = Conf::new();
    let (side, hold) = counting_job(&c);
    let log = c.file("log/counter.log");
    let d = c.start();
    d.wait_state("counter", "running");
    let first = d.main_pid("counter").expect("a main pid");
    let _orphan = KillGroup(first);
    let count = format!("{side}.{first}");
    d.wait_until("some lines", || counter(&count) >= 5);

    // The job leaves a line unfinished and stays quiet, so that nothing is on its way
    // between the pipe and the file when the daemon is killed; the half line is in the
    // log already (bytes are written as they come).
    std::fs::write(&hold, "").expect("hold");
    let held = format!("{first} held-");
    d.wait_until("the unfinished line in the log", || {
        read(&log).ends_with(&held)
    });
    let before = counter(&count);
    signal(d.pid(), "KILL");
    drop(d);

    // Nobody reads the pipe now. The job goes on: it neither dies of SIGPIPE nor blocks,
    // the pipe has room.
    std::fs::remove_file(&hold).expect("release");
    wait_until("the orphan counting while no daemon runs", || {
        counter(&count) >= before + 50
    });
    assert!(alive(first), "the job outlived its daemon");
    assert!(
        read(&log).ends_with(&held),
        "no daemon logged anything meanwhile"
    );

    // The pipe is the FIFO under state-dir, raised to 1 MiB (pipe-max-size allowing).
    let fifo = c.path().join("state/pipes/counter");
    let size = pipe_size(&fifo);
    let max: usize = read("/proc/sys/fs/pipe-max-size")
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(size, max.min(1024 * 1024), "size of {}", fifo.display());

    // A new daemon on the same configuration adopts the job and picks its output up
    // where the old daemon stopped.
    let d = c.start();
    let after = counter(&count) + 20;
    let target = format!("{first} {after}");
    d.wait_until("lines of the first copy from after the restart", || {
        read(&log).lines().any(|l| l == target)
    });
    assert!(alive(first));
    let text = read(&log);
    let prefix = format!("{first} ");
    let ours: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    // Every number the first copy wrote, up to one written after the restart, exactly
    // once and in order, and the line left unfinished at the crash finished in place.
    let mut expected: Vec<String> = (1..=before).map(|n| n.to_string()).collect();
    expected.push("held-resumed".to_string());
    expected.extend((before + 1..=after).map(|n| n.to_string()));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(
        ours.get(..expected.len()),
        Some(&expected[..]),
        "the first copy's lines in {}",
        c.file("log/counter.log")
    );
    // Every line is whole and the job's own: nothing glued, nothing cut, no second copy.
    for line in text.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", ""));
        assert!(
            pid.parse::<u32>().is_ok() && (rest == "held-resumed" || rest.parse::<u64>().is_ok()),
            "a whole line: {line:?}"
        );
    }
    assert!(
        text.lines().all(|l| l.starts_with(&prefix)),
        "only the adopted job wrote: {text}"
    );
    assert_eq!(
        d.main_pid("counter"),
        Some(first),
        "adopted, not started again"
    );
}

/// The size of the pipe behind a FIFO.
fn pipe_size(fifo: &std::path::Path) -> usize {
    use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
    // Read-write and non-blocking: opening neither waits nor takes anything from the pipe.
    let fd = open(
        fifo,
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open the FIFO");
    fcntl(&fd, FcntlArg::F_GETPIPE_SZ).map_or(0, |n| n as usize)
}

/// A job removed from the configuration while no daemon ran: what its orphan wrote in the
/// gap is logged by the next daemon, and its FIFO goes.
#[test]
fn a_job_removed_while_the_daemon_was_down_gets_its_last_lines() {
    let c = Conf::new();
    let (said, go) = (c.file("said"), c.file("go"));
    c.job(
        "leaving",
        &format!(
            "script = \"echo up; while [ ! -e {go} ]; do sleep 0.01; done; echo last-words; touch {said}; exec sleep 1000\"\n"
        ),
    );
    c.job("staying", "exec = \"sleep 1000\"\n");
    let log = c.file("log/leaving.log");
    let d = c.start();
    d.wait_state("leaving", "running");
    d.wait_state("staying", "running");
    let pid = d.main_pid("leaving").expect("a main pid");
    let _orphan = KillGroup(pid);
    let _other = KillGroup(d.main_pid("staying").expect("a main pid"));
    d.wait_until("the first line", || read(&log) == "up\n");
    signal(d.pid(), "KILL");
    drop(d);
    c.remove_job("leaving");
    std::fs::write(&go, "").expect("go");
    wait_until("the orphan's last words, said to no daemon", || {
        std::path::Path::new(&said).exists()
    });
    assert_eq!(read(&log), "up\n");
    let fifo = c.path().join("state/pipes/leaving");
    assert!(fifo.exists());
    let d = c.start();
    d.wait_until("the last words in the log", || {
        read(&log) == "up\nlast-words\n"
    });
    assert!(
        !fifo.exists(),
        "the FIFO of a job no longer configured is removed"
    );
    assert!(c.path().join("state/pipes/staying").exists());
    d.wait_state("staying", "running");
}

/// Something other than a FIFO in the job's place under `state-dir/pipes` is an error for
/// that job, said in the daemon's log; the job runs and its output is still logged.
#[test]
fn a_planted_file_in_the_pipes_directory_is_refused_not_used() {
    let c = Conf::new();
    c.job(
        "planted",
        "exec = \"sh -c 'echo still-logged; exec sleep 1000'\"\n",
    );
    c.job(
        "linked",
        "exec = \"sh -c 'echo also-logged; exec sleep 1000'\"\n",
    );
    let pipes = c.path().join("state/pipes");
    std::fs::create_dir_all(&pipes).expect("pipes dir");
    std::fs::write(pipes.join("planted"), "not a pipe").expect("planted file");
    let elsewhere = c.path().join("elsewhere");
    nix::unistd::mkfifo(&elsewhere, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("mkfifo");
    std::os::unix::fs::symlink(&elsewhere, pipes.join("linked")).expect("symlink");
    let d = c.start();
    d.wait_until("the first job's line", || {
        read(&c.file("log/planted.log")) == "still-logged\n"
    });
    d.wait_until("the second job's line", || {
        read(&c.file("log/linked.log")) == "also-logged\n"
    });
    let daemon_log = d.daemon_log();
    assert!(
        daemon_log.contains("a regular file, not a FIFO"),
        "{daemon_log}"
    );
    assert!(
        daemon_log.contains("a symbolic link, not a FIFO"),
        "{daemon_log}"
    );
    assert_eq!(
        read(&pipes.join("planted").display().to_string()),
        "not a pipe"
    );
    assert!(util::alive(d.pid()));
}
