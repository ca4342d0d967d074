//! What the daemon does to the operating system, behind one trait: start a job's
//! process, signal a process group or a process, ask what group and session a process
//! is in, collect ended children (through the process table), and read the clocks.
//!
//! [`RealOs`] is the system itself. The daemon holds one `Box<dyn Os>`, so a test can
//! give it a fake child instead and drive the daemon without a process, on tokio's
//! paused clock.

use std::io;
use std::os::fd::BorrowedFd;

use nix::sys::signal::Signal;

use crate::config::{JobSpec, Program};
use crate::job::{Now, ProcessEnd};

use super::Pgid;
use super::lineage::Leftover;
use super::pidfd::Exit;
use super::spawn::{Output, Ready, Spawned};

pub trait Os: Send {
    /// Starts `program` of the job `spec` as the leader of a new process group (see
    /// [`super::spawn::spawn`]). It is never waited for here.
    fn spawn(
        &self,
        spec: &JobSpec,
        program: &Program,
        extra_env: &[(&str, &str)],
        output: Output,
    ) -> io::Result<Spawned>;

    /// [`Os::spawn`], the child in the cgroup whose directory is `cgroup`
    /// before it execs (see [`super::spawn::spawn_into`]). Without a cgroup of its own
    /// a system has nothing to join.
    fn spawn_into(
        &self,
        spec: &JobSpec,
        program: &Program,
        extra_env: &[(&str, &str)],
        output: Output,
        cgroup: Option<BorrowedFd<'_>>,
    ) -> io::Result<Spawned> {
        let _ = cgroup;
        self.spawn(spec, program, extra_env, output)
    }

    /// Starts a program made [`super::spawn::ready`] once for many runs (a probe
    /// program), as [`Os::spawn`] would start it.
    fn spawn_ready(&self, ready: &Ready, output: Output) -> io::Result<Spawned>;

    /// Sends `sig` to every process of `group`; an empty group is not an error.
    fn signal_group(&self, group: Pgid, sig: Signal);

    /// Sends `sig` to one process; one already gone is not an error.
    fn signal_pid(&self, pid: u32, sig: Signal);

    /// The process group of `pid`, unless it is guardian's own.
    fn group_of(&self, pid: u32) -> Option<Pgid>;

    /// The process group and session `pid` is in.
    fn ids_of(&self, pid: u32) -> Option<(u32, u32)>;

    /// A child that has exited and waits to be reaped, if any; it is not reaped.
    fn exited(&self) -> Option<u32>;

    /// Reaps the child `pid` and says how it ended; None if it cannot be.
    fn reap(&self, pid: u32) -> Option<ProcessEnd>;

    /// Whether the child `pid` has stopped (SIGSTOP) since this was last asked.
    fn stopped(&self, pid: u32) -> bool;

    /// The clocks, read once per input.
    fn now(&self) -> Now;

    /// When `pid` started, in clock ticks after boot; None when it is gone.
    fn start_time(&self, pid: u32) -> Option<u64>;

    /// How long ago a process that started at `start_time` did.
    fn age(&self, start_time: u64) -> std::time::Duration;

    /// Watches `pid`, which is not guardian's child: the future resolves once it has
    /// exited. The process watched is the one that has the pid now.
    fn watch_exit(&self, pid: u32) -> io::Result<Exit>;

    /// What a daemon that died left of the jobs `jobs` accepts (see
    /// [`super::lineage::leftovers`]): one scan of /proc, at start only.
    fn leftovers(&self, jobs: &dyn Fn(&str) -> bool) -> Vec<Leftover>;
}

/// The operating system itself.
pub struct RealOs;

impl Os for RealOs {
    fn spawn(
        &self,
        spec: &JobSpec,
        program: &Program,
        extra_env: &[(&str, &str)],
        output: Output,
    ) -> io::Result<Spawned> {
        super::spawn::spawn(spec, program, extra_env, output)
    }

    fn spawn_into(
        &self,
        spec: &JobSpec,
        program: &Program,
        extra_env: &[(&str, &str)],
        output: Output,
        cgroup: Option<BorrowedFd<'_>>,
    ) -> io::Result<Spawned> {
        super::spawn::spawn_into(spec, program, extra_env, output, cgroup)
    }

    fn spawn_ready(&self, ready: &Ready, output: Output) -> io::Result<Spawned> {
        super::spawn::spawn_ready(ready, output)
    }

    fn signal_group(&self, group: Pgid, sig: Signal) {
        group.signal(sig);
    }

    fn signal_pid(&self, pid: u32, sig: Signal) {
        super::signal_pid(pid, sig);
    }

    fn group_of(&self, pid: u32) -> Option<Pgid> {
        super::group_of(pid)
    }

    fn ids_of(&self, pid: u32) -> Option<(u32, u32)> {
        checks::tree::stat(pid).map(|s| (s.pgrp, s.session))
    }

    fn exited(&self) -> Option<u32> {
        super::table::wait_exited()
    }

    fn reap(&self, pid: u32) -> Option<ProcessEnd> {
        super::table::wait_reap(pid)
    }

    fn stopped(&self, pid: u32) -> bool {
        super::table::wait_stopped(pid)
    }

    fn now(&self) -> Now {
        Now::read()
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        super::pidfd::start_time(pid)
    }

    fn age(&self, start_time: u64) -> std::time::Duration {
        super::pidfd::age(start_time)
    }

    fn watch_exit(&self, pid: u32) -> io::Result<Exit> {
        super::pidfd::exited(super::pidfd::open(pid)?)
    }

    fn leftovers(&self, jobs: &dyn Fn(&str) -> bool) -> Vec<Leftover> {
        super::lineage::leftovers(jobs)
    }
}
