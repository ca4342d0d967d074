//! The one owner of `wait`. guardian is a child subreaper: its own children and every
//! orphan below them come to it, and it reaps them all here, nowhere else.
//!
//! Reaping is done in two steps: [`peek`] names an exited child without reaping it, so
//! that the caller can still signal that child's process group (a zombie leader keeps its
//! pid, and so its group id, from being reused), then [`reap`] collects it.

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::job::ProcessEnd;

/// Makes this process the reaper of every orphan among its descendants.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// The pid of a child that has exited and waits to be reaped, if any.
pub fn peek() -> Option<u32> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::All, flags) {
        Ok(status) => status.pid().and_then(|p| u32::try_from(p.as_raw()).ok()),
        Err(nix::errno::Errno::EINTR) => peek(),
        Err(_) => None,
    }
}

/// Reaps the child `pid`, which [`peek`] named, and says how it ended.
pub fn reap(pid: u32) -> Option<ProcessEnd> {
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
