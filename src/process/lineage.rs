//! Whose a process is, as /proc says: the live processes there are, whether guardian is
//! an ancestor of one, and whether its environment marks it as a job's. Readiness looks
//! here for the process a fork left behind, a handover for what is left of a job.

use checks::tree::{self, Stat};

/// Every live process but guardian itself (not a zombie, not one being torn down), with
/// what its stat says; nothing if /proc cannot be read.
pub fn live() -> impl Iterator<Item = (u32, Stat)> {
    let me = std::process::id();
    tree::pids()
        .into_iter()
        .flatten()
        .filter(move |&pid| pid != me)
        .filter_map(|pid| tree::stat(pid).map(|s| (pid, s)))
        .filter(|(_, s)| s.state != 'Z' && s.state != 'X')
}

/// Whether guardian is an ancestor of `pid`.
pub fn descends_from_guardian(pid: u32) -> bool {
    let me = std::process::id();
    let mut cur = pid;
    for _ in 0..64 {
        match tree::stat(cur).map(|s| s.ppid) {
            Some(ppid) if ppid == me => return true,
            Some(ppid) if ppid > 1 => cur = ppid,
            _ => return false,
        }
    }
    false
}

/// Whether the environment of `pid` says it belongs to `job` (every process of a job is
/// given `GUARDIAN_JOB`, and its children inherit it).
pub fn marked_for(pid: u32, job: &str) -> bool {
    let marker = format!("{}={job}\0", super::env::JOB_VAR);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    String::from_utf8_lossy(&environ).contains(&marker)
}

/// The job `pid` belongs to, as the `GUARDIAN_JOB` of its environment says.
pub fn job_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{}=", super::env::JOB_VAR);
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// A process left by a daemon that is gone: marked for a job, and re-parented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub job: String,
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub start_time: u64,
}

/// Every live process marked for one of `jobs` whose line of parents, up to PID 1 or to
/// an ancestor of guardian (a subreaper above it), holds only processes marked for one
/// of them: what a daemon that died left behind. A process under a live process that is
/// not a job's (another guardian, say) is someone else's and is left out.
pub fn leftovers(jobs: &dyn Fn(&str) -> bool) -> Vec<Leftover> {
    let mut ancestors = std::collections::HashSet::new();
    let mut cur = std::os::unix::process::parent_id();
    for _ in 0..64 {
        if cur <= 1 || !ancestors.insert(cur) {
            break;
        }
        match tree::stat(cur) {
            Some(s) => cur = s.ppid,
            None => break,
        }
    }
    let marked: std::collections::HashMap<u32, (Stat, String)> = live()
        .filter_map(|(pid, s)| job_of(pid).filter(|j| jobs(j)).map(|j| (pid, (s, j))))
        .collect();
    let orphaned = |pid: u32| {
        let mut cur = pid;
        for _ in 0..64 {
            match marked.get(&cur) {
                Some((s, _)) => cur = s.ppid,
                None => return cur <= 1 || ancestors.contains(&cur),
            }
        }
        false
    };
    let mut found: Vec<Leftover> = marked
        .iter()
        .filter(|(pid, _)| orphaned(**pid))
        .map(|(pid, (s, job))| Leftover {
            job: job.clone(),
            pid: *pid,
            ppid: s.ppid,
            pgid: s.pgrp,
            start_time: s.start_time,
        })
        .collect();
    found.sort_by_key(|l| l.pid);
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn guardian_is_not_among_the_live_and_its_child_descends_from_it() {
        let me = std::process::id();
        assert!(super::live().all(|(pid, _)| pid != me));
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .env(super::super::env::JOB_VAR, "web")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let found = super::live().any(|(p, s)| p == pid && s.ppid == me);
        let descends = super::descends_from_guardian(pid);
        // spawn returns once the kernel has begun the exec, which sets up the new
        // environment a moment later: until then /proc/PID/environ reads empty.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut marked = super::marked_for(pid, "web");
        while !marked && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
            marked = super::marked_for(pid, "web");
        }
        let other = super::marked_for(pid, "we");
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
        assert!(descends);
        assert!(marked && !other);
        assert!(!super::descends_from_guardian(1));
    }
}
