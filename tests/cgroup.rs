//! Nothing of a job outlives it: a process that left the job's process group (`setsid`
//! and a double fork) is ended by `stop`, by `restart` and at the daemon's shutdown,
//! with a cgroup per job and with `cgroups = "off"` (process groups and the subreaper).

use std::path::Path;

use crate::util::{Conf, Daemon, alive, read, wait_until};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Cgroup,
    Off,
}

#[derive(Clone, Copy)]
enum End {
    Stop,
    Restart,
    Shutdown,
}

/// A job whose script leaves two processes outside its process group, each in a
/// session of its own and re-parented to guardian: one a plain `sleep`, one that
/// ignores SIGTERM. Their pids go to `esc1` and `esc2` in the configuration directory.
fn conf(mode: Mode) -> Conf {
    let c = Conf::new();
    if mode == Mode::Off {
        let toml = c.path().join("guardian.toml");
        let mut text = read(&toml.display().to_string());
        text.push_str("cgroups = \"off\"\n");
        std::fs::write(&toml, text).expect("guardian.toml");
    }
    let (e1, e2) = (c.file("esc1"), c.file("esc2"));
    c.job(
        "web",
        &format!(
            r#"kill-timeout = "3s"
script = """
rm -f {e1} {e2}
setsid sh -c 'sleep 600 & echo $! > {e1}.new && mv {e1}.new {e1}'
setsid sh -c 'trap "" TERM; sleep 600 & echo $! > {e2}.new && mv {e2}.new {e2}'
exec sleep 600
"""
"#
        ),
    );
    c
}

/// The parent and session of `pid`.
fn parent_and_session(pid: u32) -> (u32, u32) {
    let stat = read(&format!("/proc/{pid}/stat"));
    let fields: Vec<u32> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(4)
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields[..] {
        [ppid, _pgrp, session, ..] => (ppid, session),
        _ => (0, 0),
    }
}

/// The pids of the two escapees, other than `old`, once both are written, live and
/// re-parented to the daemon (the `sh` that started each has ended).
fn escapees(d: &Daemon<'_>, old: &[u32]) -> [u32; 2] {
    let c = d.conf;
    let mut pids = [0, 0];
    d.wait_until("both escapees, re-parented to guardian", || {
        for (i, f) in ["esc1", "esc2"].iter().enumerate() {
            pids[i] = read(&c.file(f)).trim().parse().unwrap_or(0);
        }
        pids.iter()
            .all(|&p| p != 0 && !old.contains(&p) && alive(p) && parent_and_session(p).0 == d.pid())
    });
    for p in pids {
        // In a session of their own, not the job's.
        let main = d.main_pid("web").unwrap_or(0);
        assert_ne!(parent_and_session(p).1, parent_and_session(main).1);
    }
    pids
}

/// The job's cgroup as `status` names it, or None (with the reason printed) when this
/// host gives the daemon none.
fn cgroup_of(d: &Daemon<'_>) -> Option<String> {
    let cg = d.status("web")["cgroup"].as_str().map(String::from);
    if cg.is_none() {
        let log = d.daemon_log();
        let why = log
            .lines()
            .find(|l| l.contains("no cgroup per job"))
            .unwrap_or("the daemon named no cgroup for the job");
        println!("skipped: no writable cgroup v2 hierarchy here: {why}");
    }
    cg
}

fn procs_in(cg: &str) -> Vec<u32> {
    read(&format!("{cg}/cgroup.procs"))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn scenario(mode: Mode, end: End) {
    let c = conf(mode);
    let mut d = c.start();
    d.wait_state("web", "running");
    let esc = escapees(&d, &[]);

    // `status web` lists them, in text and in JSON.
    let listed: Vec<u64> = d.status("web")["processes"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["pid"].as_u64()).collect())
        .unwrap_or_default();
    let text = crate::util::text(&d.ok(&["status", "web"], 0));
    for p in esc {
        assert!(listed.contains(&u64::from(p)), "{p} not in {listed:?}");
        assert!(text.contains(&format!(" {p} ")), "{p} not listed:\n{text}");
    }
    assert!(text.contains("sleep 600"), "{text}");

    let cg = match mode {
        Mode::Cgroup => {
            let Some(cg) = cgroup_of(&d) else { return };
            assert!(Path::new(&cg).is_dir(), "{cg}");
            let inside = procs_in(&cg);
            for p in esc {
                assert!(inside.contains(&p), "{p} not in {cg}: {inside:?}");
            }
            Some(cg)
        }
        Mode::Off => {
            assert!(d.status("web")["cgroup"].is_null());
            None
        }
    };

    match end {
        End::Stop => {
            d.ok(&["stop", "web"], 0);
            wait_until("the escapees ended by stop", || {
                esc.iter().all(|&p| !alive(p))
            });
            if let Some(cg) = &cg {
                wait_until("the cgroup removed", || !Path::new(cg).exists());
            }
            let what = match mode {
                Mode::Cgroup => "left in the job's cgroup",
                Mode::Off => "that left the job's process group",
            };
            d.wait_until("the end logged", || {
                d.daemon_log()
                    .lines()
                    .any(|l| l.contains("web: ended ") && l.contains(what) && l.contains("(sleep)"))
            });
        }
        End::Restart => {
            d.ok(&["restart", "web"], 0);
            wait_until("the escapees ended by restart", || {
                esc.iter().all(|&p| !alive(p))
            });
            let again = escapees(&d, &esc);
            if let Some(cg) = &cg {
                let inside = procs_in(cg);
                for p in again {
                    assert!(inside.contains(&p), "{p} not in {cg}: {inside:?}");
                }
            }
            assert_eq!(d.state("web"), "running");
            d.terminate();
            wait_until("the new escapees ended at shutdown", || {
                again.iter().all(|&p| !alive(p))
            });
        }
        End::Shutdown => {
            assert!(d.terminate().success());
            wait_until("the escapees ended at shutdown", || {
                esc.iter().all(|&p| !alive(p))
            });
            if let Some(cg) = &cg {
                assert!(!Path::new(cg).exists(), "{cg} left at exit");
                let base = Path::new(cg)
                    .parent()
                    .expect("the daemon's cgroup directory");
                assert!(!base.exists(), "{} left at exit", base.display());
            }
        }
    }
}

#[test]
fn setsid_escapee_ended_by_stop_with_cgroup() {
    scenario(Mode::Cgroup, End::Stop);
}

#[test]
fn setsid_escapee_ended_by_restart_with_cgroup() {
    scenario(Mode::Cgroup, End::Restart);
}

#[test]
fn setsid_escapee_ended_at_shutdown_with_cgroup() {
    scenario(Mode::Cgroup, End::Shutdown);
}

#[test]
fn setsid_escapee_ended_by_stop_without_cgroup() {
    scenario(Mode::Off, End::Stop);
}

#[test]
fn setsid_escapee_ended_by_restart_without_cgroup() {
    scenario(Mode::Off, End::Restart);
}

#[test]
fn setsid_escapee_ended_at_shutdown_without_cgroup() {
    scenario(Mode::Off, End::Shutdown);
}

#[test]
fn a_cgroups_value_other_than_auto_or_off_is_an_error_at_its_place() {
    let c = Conf::new();
    let toml = c.path().join("guardian.toml");
    let mut text = read(&toml.display().to_string());
    text.push_str("cgroups = \"sometimes\"\n");
    std::fs::write(&toml, text).expect("guardian.toml");
    let out = c.cli(&["check"]);
    let all = crate::util::text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("guardian.toml:4:"), "{all}");
    assert!(all.contains("`cgroups` is \"auto\" or \"off\""), "{all}");
}
