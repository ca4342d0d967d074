//! Seamless restarts whose successor the pid file names only after the old master is
//! gone (as gunicorn does), with shell masters: the wait, its timeout, and a stand-in
//! that ends first.

use crate::util::{Conf, Daemon, alive, read, signal, wait_until};

/// A master that writes `pid` and, on USR2, starts a child that writes its own pid to
/// `child` and then runs `successor`, and exits 0 after removing `pid`.
fn master(pid: &str, child: &str, successor: &str, extra: &str) -> String {
    format!(
        "pidfile = \"{pid}\"\n{extra}\nscript = '''\n\
         echo $$ > {pid}\n\
         trap 'sh -c \"echo \\$\\$ > {child}; {successor}\" & rm -f {pid}; exit 0' USR2\n\
         while :; do sleep 0.05; done\n'''\n"
    )
}

fn pid_in(path: &str) -> Option<u32> {
    read(path).trim().parse().ok()
}

/// The job runs with its first master; USR2 is sent to it; the child it starts is
/// returned once it wrote its pid and the master is gone.
fn hand_over(d: &Daemon<'_>, job: &str, child: &str) -> (u32, u32) {
    d.wait_state(job, "running");
    let old = d.main_pid(job).expect("a master");
    signal(old, "USR2");
    wait_until("the child to write its pid", || pid_in(child).is_some());
    let new = pid_in(child).expect("the child");
    wait_until("the old master to exit", || !alive(old));
    (old, new)
}

#[test]
fn a_successor_named_after_the_master_exits_is_waited_for_and_followed() {
    let c = Conf::new();
    let pid = c.file("web.pid");
    let child = c.file("child");
    // The successor waits for the master to be gone, then some more, before it takes
    // the pid file over. The master's pid is its `$$`, expanded when the trap runs: the
    // successor's own `$PPID` would be guardian's when the master exits before the
    // successor's shell has started, as it does on a loaded machine.
    let successor = format!(
        "while kill -0 $$ 2>/dev/null; do sleep 0.05; done; sleep 0.3; mv {pid}.2 {pid}; exec sleep 600"
    );
    let successor = format!("echo \\$\\$ > {pid}.2; {successor}");
    c.job("web", &master(&pid, &child, &successor, "respawn = true"));
    let d = c.start();
    let (_, new) = hand_over(&d, "web", &child);
    d.wait_until("the successor to be followed", || {
        d.main_pid("web") == Some(new) && pid_in(&pid) == Some(new)
    });
    d.wait_until("the handover to be done", || {
        d.daemon_log().contains("web: handover done")
    });
    let s = d.status("web");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["restarts"], 0, "no restart: {s}\n{}", d.daemon_log());
    assert!(
        d.daemon_log().contains("processes remain; waiting up to"),
        "the gap was waited for:\n{}",
        d.daemon_log()
    );
    d.ok(&["stop", "web"], 0);
    assert!(!alive(new));
}

#[test]
fn a_successor_that_never_shows_up_ends_the_job_at_the_timeout_and_is_killed() {
    let c = Conf::new();
    let pid = c.file("web.pid");
    let child = c.file("child");
    c.job(
        "web",
        &master(
            &pid,
            &child,
            "exec sleep 600",
            "handover-timeout = \"400ms\"",
        ),
    );
    let d = c.start();
    let (_, new) = hand_over(&d, "web", &child);
    wait_until("the job to end", || d.state("web") == "waiting");
    assert!(
        d.daemon_log().contains("named no successor within 400ms"),
        "{}",
        d.daemon_log()
    );
    wait_until("what was left of it to be killed", || !alive(new));
    let s = d.status("web");
    assert_eq!(s["restarts"], 0, "{s}");
}

#[test]
fn a_stand_in_killed_before_the_successor_ends_the_job_as_the_master_did() {
    let c = Conf::new();
    let pid = c.file("web.pid");
    let child = c.file("child");
    // The master exited 0, a normal end: the job is not respawned, though the process
    // that stood in for it was killed.
    c.job(
        "web",
        &master(
            &pid,
            &child,
            "exec sleep 600",
            "respawn = true\nhandover-timeout = \"1m\"",
        ),
    );
    let d = c.start();
    let (_, new) = hand_over(&d, "web", &child);
    wait_until("the child to stand in", || d.main_pid("web") == Some(new));
    assert_eq!(d.state("web"), "running");
    signal(new, "KILL");
    wait_until("the job to end", || d.state("web") == "waiting");
    let s = d.status("web");
    assert_eq!(s["restarts"], 0, "not respawned: {s}\n{}", d.daemon_log());
}
