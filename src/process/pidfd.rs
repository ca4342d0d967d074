//! Watching a process that is not guardian's child: after the daemon's own crash, the
//! processes of its jobs were re-parented (to PID 1 or a subreaper above guardian), so
//! no SIGCHLD and no `wait` tells their end. A pidfd (`pidfd_open`) does: it becomes
//! readable when the process exits. No exit status can be had this way.
//!
//! Also what /proc says of a process's start, so that a recorded pid is known to be the
//! same process and not a later one that reused its number.

use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::Pin;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// A future that resolves once the watched process has exited.
pub type Exit = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Opens a pidfd on `pid`. Its process is the one that had the pid at this moment: check
/// its start time *after* opening, so that what is checked is what is watched.
pub fn open(pid: u32) -> io::Result<OwnedFd> {
    let raw = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd_open: bad descriptor"))?;
    // SAFETY: the descriptor was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resolves when the process of `fd` has exited (the pidfd is readable). Must be
/// polled within a tokio runtime.
pub fn exited(fd: OwnedFd) -> io::Result<Exit> {
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open, the same descriptor, until
    // the AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    Ok(Box::pin(async move {
        // Readable means exited; an error of the reactor is taken as the end too, so
        // that a job is never left waiting for an exit that can no longer be seen.
        let _ = fd.readable().await;
    }))
}

/// When `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    checks::tree::stat(pid).map(|s| s.start_time)
}

/// How long ago a process that started at `start_time` (clock ticks after boot) did.
pub fn age(start_time: u64) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    let now = Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    );
    let started = Duration::from_secs_f64(start_time as f64 / checks::tree::clock_ticks());
    now.saturating_sub(started)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_pidfd_says_when_a_process_that_is_not_waited_for_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let started = super::start_time(pid).expect("start time");
        assert!(super::age(started) < std::time::Duration::from_secs(30));
        let fd = super::open(pid).expect("pidfd");
        let mut exit = super::exited(fd).expect("watch");
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), &mut exit).await;
        let _ = child.kill();
        assert!(early.is_err(), "readable while the process lives");
        let watched = tokio::time::timeout(std::time::Duration::from_secs(20), exit).await;
        let _ = child.wait();
        assert!(watched.is_ok(), "the exit was never seen");
    }
}
