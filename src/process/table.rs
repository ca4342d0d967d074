//! The process table: who each child of guardian's belongs to, and the one place that
//! calls `wait`. guardian is a child subreaper: its own children and every orphan below
//! them come to it, and it reaps them all here, nowhere else.
//!
//! Reaping is done in two steps: [`ProcessTable::peek`] names an exited child without
//! reaping it, so that the caller can still signal that child's process group (a zombie
//! leader keeps its pid, and so its group id, from being reused), then
//! [`ProcessTable::reap`] collects it and hands back its owner. A child that stopped
//! itself (SIGSTOP, for `expect = "stop"`) is seen with [`ProcessTable::stopped`].
//!
//! The owner type is the caller's: the table knows pids, not jobs. The waiting itself
//! goes through the daemon's [`Os`] (for the system, [`super::os::RealOs`], which calls
//! this module's `wait_` functions), so a test can stand in for the children.

use std::collections::HashMap;

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::job::ProcessEnd;

use super::os::Os;

/// Children of guardian's and who they belong to.
pub struct ProcessTable<O> {
    pids: HashMap<u32, O>,
}

impl<O> Default for ProcessTable<O> {
    fn default() -> Self {
        ProcessTable {
            pids: HashMap::new(),
        }
    }
}

impl<O> ProcessTable<O> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `pid` as `owner`'s; says who owned it before, if anyone.
    pub fn insert(&mut self, pid: u32, owner: O) -> Option<O> {
        self.pids.insert(pid, owner)
    }

    pub fn get(&self, pid: &u32) -> Option<&O> {
        self.pids.get(pid)
    }

    pub fn contains_key(&self, pid: &u32) -> bool {
        self.pids.contains_key(pid)
    }

    /// Forgets `pid` without reaping it.
    pub fn remove(&mut self, pid: &u32) -> Option<O> {
        self.pids.remove(pid)
    }

    /// Every pid the table knows.
    pub fn keys(&self) -> impl Iterator<Item = &u32> {
        self.pids.keys()
    }

    /// A child that has exited and waits to be reaped, if any, with its owner. It stays
    /// a zombie until [`ProcessTable::reap`].
    pub fn peek(&self, os: &dyn Os) -> Option<(u32, Option<&O>)> {
        let pid = os.exited()?;
        Some((pid, self.pids.get(&pid)))
    }

    /// Reaps the child `pid`, which [`ProcessTable::peek`] named: how it ended, and its
    /// owner, who is forgotten. None if it cannot be reaped (then it stays known).
    pub fn reap(&mut self, os: &dyn Os, pid: u32) -> Option<(ProcessEnd, Option<O>)> {
        let end = os.reap(pid)?;
        Some((end, self.pids.remove(&pid)))
    }

    /// Whether the child `pid` has stopped (SIGSTOP) since this was last asked. The
    /// child is not reaped, and a child that exited is not reported here.
    pub fn stopped(&self, os: &dyn Os, pid: u32) -> bool {
        os.stopped(pid)
    }
}

/// Whether the child `pid` has stopped (SIGSTOP) since this was last asked.
pub(super) fn wait_stopped(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG;
    loop {
        match waitid(Id::Pid(Pid::from_raw(raw)), flags) {
            Ok(WaitStatus::Stopped(_, _)) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return false,
        }
    }
}

/// The pid of a child that has exited and waits to be reaped, if any.
pub(super) fn wait_exited() -> Option<u32> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::All, flags) {
            Ok(status) => return status.pid().and_then(|p| u32::try_from(p.as_raw()).ok()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Reaps the child `pid` and says how it ended.
pub(super) fn wait_reap(pid: u32) -> Option<ProcessEnd> {
    let raw = Pid::from_raw(i32::try_from(pid).ok()?);
    loop {
        match waitpid(raw, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(ProcessEnd::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(ProcessEnd::Signaled(sig)),
            Ok(_) => return None,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::os::RealOs;

    // These tests fork real children of the test process; each waits for its own pid
    // only through the table, and the table never waits for a pid it was not given
    // except in `peek`, which the tests do not call (other tests' children may exist).

    // The table reaps it: that is what is tested.
    #[allow(clippy::zombie_processes)]
    fn spawn_sh(script: &str) -> u32 {
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
        child.id()
    }

    fn reap_within(
        t: &mut ProcessTable<&'static str>,
        pid: u32,
    ) -> (ProcessEnd, Option<&'static str>) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(r) = t.reap(&RealOs, pid) {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "{pid} never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn reaps_and_forgets_the_owner() {
        let mut t = ProcessTable::new();
        let pid = spawn_sh("exit 3");
        assert!(t.insert(pid, "job").is_none());
        assert!(t.contains_key(&pid));
        let (end, owner) = reap_within(&mut t, pid);
        assert_eq!(end, ProcessEnd::Exited(3));
        assert_eq!(owner, Some("job"));
        assert!(!t.contains_key(&pid));
    }

    #[test]
    fn sees_a_child_that_stopped_itself() {
        let mut t = ProcessTable::new();
        let pid = spawn_sh("kill -STOP $$; exit 0");
        t.insert(pid, "stopper");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !t.stopped(&RealOs, pid) {
            assert!(std::time::Instant::now() < deadline, "never saw the stop");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!t.stopped(&RealOs, pid), "a stop is reported once");
        crate::process::signal_pid(pid, nix::sys::signal::Signal::SIGCONT);
        let (end, owner) = reap_within(&mut t, pid);
        assert_eq!(end, ProcessEnd::Exited(0));
        assert_eq!(owner, Some("stopper"));
    }
}
