//! Processes that left their job's process group: found among guardian's own children.
//!
//! guardian is a child subreaper, so a process that double-forks out of a job (`setsid`,
//! a daemon's fork) and whose parent ended is re-parented to guardian. Such a child is
//! not one guardian spawned; its `GUARDIAN_JOB` variable ([`super::env::JOB_VAR`]),
//! inherited from the job's process it came from, says whose it is. Only guardian's
//! direct children are looked at (`/proc/self/task/*/children`), not all of /proc.

use checks::tree;

use std::cell::RefCell;

thread_local! {
    /// Within one turn of the daemon's loop ([`turn_begins`] to [`turn_ends`]): the
    /// children read first in that turn (None before). Outside a turn, nothing is kept.
    static TURN: RefCell<Option<Option<Vec<u32>>>> = const { RefCell::new(None) };
}

/// A turn of the daemon's loop begins: [`children`] reads /proc once in it, however
/// many jobs stop in it (a shutdown of 2,000 jobs asked some 6,000 times).
pub fn turn_begins() {
    TURN.with(|t| *t.borrow_mut() = Some(None));
}

/// The turn is over: what was read goes.
pub fn turn_ends() {
    TURN.with(|t| *t.borrow_mut() = None);
}

/// The children of guardian (of any of its threads), zombies among them: see [`live`].
/// Within a turn of the loop, as they were at its first call in the turn.
pub fn children() -> Vec<u32> {
    TURN.with(|t| {
        let mut t = t.borrow_mut();
        match t.as_mut() {
            None => read_children(),
            Some(Some(cached)) => cached.clone(),
            Some(slot) => {
                let now = read_children();
                *slot = Some(now.clone());
                now
            }
        }
    })
}

fn read_children() -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `pid` is there and not a zombie.
pub fn live(pid: u32) -> bool {
    tree::stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The job `pid`'s environment names, if any.
pub fn job_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{}=", super::env::JOB_VAR);
    environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The command line of `pid`, or its name in brackets (a kernel thread, a zombie);
/// `?` when it is gone.
pub fn command(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| crate::logtext::escape(&String::from_utf8_lossy(w)).into_owned())
        .collect();
    if !words.is_empty() {
        return words.join(" ");
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(c) => format!("[{}]", crate::logtext::escape(c.trim_end())),
        Err(_) => "?".into(),
    }
}

/// The short name of `pid` (`sleep`), for the log.
pub fn name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| crate::logtext::escape(c.trim_end()).into_owned())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_marked_child_is_found_with_its_job() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .env(super::super::env::JOB_VAR, "web")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut job = super::job_of(pid);
        while job.is_none() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
            job = super::job_of(pid);
        }
        let listed = super::children().contains(&pid) && super::live(pid);
        // Within a turn, one read serves every call.
        super::turn_begins();
        let first = super::children();
        let mut again = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep");
        let cached = super::children();
        super::turn_ends();
        let fresh = super::children();
        let _ = again.kill();
        let _ = again.wait();
        assert_eq!(first, cached);
        assert!(!cached.contains(&again.id()));
        assert!(fresh.contains(&again.id()));
        let command = super::command(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(listed);
        assert_eq!(job.as_deref(), Some("web"));
        assert_eq!(command, "sleep 10");
        assert_eq!(super::job_of(std::process::id()), None);
    }
}
