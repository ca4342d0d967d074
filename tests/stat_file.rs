//! The daemon keeps each running job's `/proc/PID/stat` open: the figures a status
//! gives are those of the main process now, never of one it had before, and no job's
//! process inherits one of those descriptors.

use crate::util::{Conf, read};

/// What `/proc/PID/fd` of `pid` points at.
fn fd_links(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

fn is_stat_file(link: &str) -> bool {
    link.starts_with("/proc/") && link.ends_with("/stat")
}

/// Resident bytes and clock ticks from the test's own read of `/proc/PID/stat`.
fn proc_figures(pid: u32) -> (u64, u64) {
    let text = read(&format!("/proc/{pid}/stat"));
    let rest = &text[text.rfind(')').expect("stat's command name") + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Fields 14, 15 (utime, stime) and 24 (rss) of stat(5), counted from state (3).
    let ticks = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    (f[21].parse::<u64>().expect("rss") * page, ticks)
}

fn job_of<'a>(all: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    all.iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("{name} in status --json"))
}

#[test]
fn after_a_restart_status_gives_the_new_mains_figures_and_no_child_has_a_stat_file() {
    let c = Conf::new();
    let mark = c.file("burned");
    // The first run burns CPU time before it becomes `sleep` (the time stays with the
    // process across exec); the run after the restart is a fresh `sleep`.
    c.job(
        "burn",
        &format!(
            r#"script = """
if [ -e {mark} ]; then exec sleep 1000; fi
: > {mark}
i=0
while [ $i -lt 300000 ]; do i=$((i+1)); done
exec sleep 1000
"""
"#
        ),
    );
    for name in ["a", "b"] {
        c.job(name, "exec = \"sleep 1000\"\n");
    }
    let d = c.start();
    for name in ["burn", "a", "b"] {
        d.wait_state(name, "running");
    }
    let first = d.main_pid("burn").expect("burn's pid");
    d.wait_until("burn's first run to burn and exec sleep", || {
        read(&format!("/proc/{first}/comm")).trim() == "sleep"
    });
    let all = d.all();
    let before = job_of(&all, "burn");
    assert_eq!(before["pid"], first);
    assert_eq!(before["cpu_from"], "main");
    let cpu_before = before["cpu_secs"].as_f64().expect("cpu of the first run");
    assert!(cpu_before > 0.0, "the first run used CPU time: {before}");

    d.ok(&["restart", "burn"], 0);
    d.wait_state("burn", "running");
    let second = d.main_pid("burn").expect("burn's new pid");
    assert_ne!(second, first);
    d.wait_until("burn's second run to exec sleep", || {
        read(&format!("/proc/{second}/comm")).trim() == "sleep"
    });

    // The daemon keeps the new main's stat file, and the old one's no longer.
    let daemon = fd_links(d.pid());
    assert!(
        daemon.contains(&format!("/proc/{second}/stat")),
        "the daemon keeps /proc/{second}/stat: {daemon:?}"
    );
    assert!(
        !daemon.contains(&format!("/proc/{first}/stat")),
        "the daemon let go of /proc/{first}/stat: {daemon:?}"
    );
    for name in ["a", "b"] {
        let pid = d.main_pid(name).expect("pid");
        assert!(
            daemon.contains(&format!("/proc/{pid}/stat")),
            "{name}: {daemon:?}"
        );
    }

    // An idle `sleep` holds still: the daemon's figures are the test's own.
    let all = d.all();
    let after = job_of(&all, "burn");
    assert_eq!(after["pid"], second);
    assert_eq!(after["cpu_from"], "main");
    assert_eq!(after["rss_from"], "main");
    let (rss, ticks) = proc_figures(second);
    assert_eq!(after["rss_bytes"].as_u64(), Some(rss), "{after}");
    let cpu = after["cpu_secs"].as_f64().expect("cpu of the second run");
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    assert!(
        cpu < cpu_before && (cpu - ticks as f64 / hz).abs() < 0.05,
        "the second run's figures, not the first's: {after} (before {cpu_before})"
    );
    // No job's process holds a stat file, whichever was spawned after the others'
    // were opened.
    for name in ["burn", "a", "b"] {
        let pid = d.main_pid(name).expect("pid");
        let links = fd_links(pid);
        assert!(!links.is_empty(), "{name}: /proc/{pid}/fd is readable");
        assert!(
            !links.iter().any(|l| is_stat_file(l)),
            "{name}'s process {pid} inherited a stat file: {links:?}"
        );
    }
}

/// The hard limit on open files of process `pid`, from `/proc/PID/limits`.
fn hard_nofile(pid: u32) -> Option<u64> {
    read(&format!("/proc/{pid}/limits"))
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_ascii_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
}

#[test]
fn without_room_for_stat_files_none_is_kept_and_status_still_gives_figures() {
    let c = Conf::new();
    let names = ["a", "b", "c"];
    for name in names {
        c.job(name, "exec = \"sleep 1000\"\n");
    }
    // Three jobs would want 3 * 4 + 256 descriptors; a hard limit of 200 runs them
    // but leaves no room to keep a stat file for each, and cannot be raised.
    let d = c.start_via(&["sh", "-c", "ulimit -n 200 && exec \"$@\"", "sh"]);
    assert_eq!(hard_nofile(d.pid()), Some(200), "the daemon's hard limit");
    for name in names {
        d.wait_state(name, "running");
    }

    let check = |what: &str| {
        for name in names {
            let pid = d.main_pid(name).expect("pid");
            d.wait_until(&format!("{name}'s sleep to exec"), || {
                read(&format!("/proc/{pid}/comm")).trim() == "sleep"
            });
        }
        let all = d.all();
        for name in names {
            let pid = d.main_pid(name).expect("pid");
            let job = job_of(&all, name);
            assert_eq!(job["pid"], pid, "{what}: {job}");
            assert_eq!(job["rss_from"], "main", "{what}: {job}");
            assert_eq!(job["cpu_from"], "main", "{what}: {job}");
            let rss = job["rss_bytes"].as_u64().expect("rss_bytes");
            assert!(rss > 0, "{what}: {name} has resident memory: {job}");
            // An idle `sleep` holds still: the daemon's read is the test's own.
            assert_eq!(rss, proc_figures(pid).0, "{what}: {job}");
            assert!(job["cpu_secs"].as_f64().is_some(), "{what}: {job}");
        }
        let daemon = fd_links(d.pid());
        assert!(!daemon.is_empty(), "{what}: the daemon's fd is readable");
        assert!(
            !daemon.iter().any(|l| is_stat_file(l)),
            "{what}: the daemon keeps no stat file: {daemon:?}"
        );
    };
    check("at start");

    let first = d.main_pid("a").expect("a's pid");
    d.ok(&["restart", "a"], 0);
    d.wait_until("a to run again under a new pid", || {
        d.state("a") == "running" && d.main_pid("a").is_some_and(|p| p != first)
    });
    check("after a restart");
    assert_ne!(job_of(&d.all(), "a")["pid"], first);
}
