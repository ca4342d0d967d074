//! Processes: spawning a job's programs in their own process group with the job's user,
//! environment and limits; signalling groups; the process table, which owns every
//! `wait`; the [`os::Os`] trait the daemon does all of this through; watching files
//! with inotify.

pub mod cgroup;
pub mod clone;
pub mod env;
pub mod escaped;
pub mod lineage;
pub mod lock_watch;
pub mod os;
pub mod pidfd;
pub mod reaper;
pub mod spawn;
pub mod stat;
pub mod table;
pub mod watch;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A process group id. Every process guardian starts leads a group of its own, so a
/// group id is that leader's pid; kept apart from pids so the two cannot be confused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pgid(pub u32);

impl Pgid {
    pub fn of_leader(pid: u32) -> Self {
        Pgid(pid)
    }

    /// Sends `sig` to every process of the group. A group that is already empty is not
    /// an error: the processes are gone, which is what a stop wants.
    pub fn signal(self, sig: Signal) {
        let Ok(raw) = i32::try_from(self.0) else {
            return;
        };
        match killpg(Pid::from_raw(raw), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => tracing::warn!("cannot send {sig} to process group {raw}: {e}"),
        }
    }
}

/// The process group of `pid`, unless it is guardian's own (signalling that would
/// signal guardian).
pub fn group_of(pid: u32) -> Option<Pgid> {
    let raw = Pid::from_raw(i32::try_from(pid).ok()?);
    let group = nix::unistd::getpgid(Some(raw)).ok()?;
    let own = nix::unistd::getpgrp();
    (group != own && group.as_raw() > 1).then(|| Pgid(group.as_raw() as u32))
}

/// Sends `sig` to one process; a process already gone is not an error.
pub fn signal_pid(pid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {sig} to process {raw}: {e}"),
    }
}
