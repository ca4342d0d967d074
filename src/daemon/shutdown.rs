//! Shutting the daemon down: the `shutdown` event, then every job stopped one at a
//! time, the most recently started first, each only once the one before is down. A
//! second request to stop kills whatever is left at once.

use nix::sys::signal::Signal;

use crate::event::Event;
use crate::job::Input;
use crate::process::Pgid;

use super::{Daemon, Work, alerts};

/// A shutdown under way.
pub(super) struct Shutdown {
    /// Jobs still to stop, the next one last.
    queue: Vec<String>,
    current: Option<String>,
}

impl Shutdown {
    /// A shutdown that stops the jobs of `queue`, the last one first.
    pub fn new(queue: Vec<String>) -> Shutdown {
        Shutdown {
            queue,
            current: None,
        }
    }

    /// The next job to stop, once the one being stopped is down (`is_up` says which
    /// jobs are not): None while it is not, or when there is none left.
    pub fn next(&mut self, is_up: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(cur) = &self.current {
            if is_up(cur) {
                return None;
            }
            self.current = None;
        }
        while let Some(next) = self.queue.pop() {
            if is_up(&next) {
                self.current = Some(next.clone());
                return Some(next);
            }
        }
        None
    }

    /// Whether every job it was to stop has been stopped.
    pub fn done(&self) -> bool {
        self.queue.is_empty() && self.current.is_none()
    }
}

impl Daemon {
    /// The `stops`-th request to stop: the first begins the shutdown, another kills every
    /// job now.
    pub(super) fn begin_shutdown(&mut self, stops: u32) {
        if stops > 1 {
            self.kill_all();
            return;
        }
        tracing::info!("stopping every job, most recently started first");
        if let Some(n) = self.notify.as_mut() {
            n.stopping();
        }
        self.alert(
            alerts::About::Daemon,
            crate::alert::Kind::DaemonStopping,
            None,
            "guardian is stopping every job and exiting".into(),
            None,
        );
        let up = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.m.is_down())
            .map(|(n, _)| n.as_str());
        let queue = self.graph.shutdown_order(up);
        self.shutdown = Some(Shutdown::new(queue));
        self.work.push_back(Work::Dispatch {
            event: Event::new("shutdown"),
            also: None,
            blocks: None,
        });
        self.pump();
        self.advance_shutdown();
    }

    /// The second request to stop: SIGKILL to every process group guardian started and
    /// to every main process it follows.
    fn kill_all(&mut self) {
        tracing::warn!("second stop signal: killing every job now");
        for owner_pid in self.pids.keys() {
            self.os
                .signal_group(Pgid::of_leader(*owner_pid), Signal::SIGKILL);
        }
        for (name, job) in &self.jobs {
            if let Some(pid) = job.m.main_pid() {
                self.os.signal_pid(pid, Signal::SIGKILL);
            }
            self.signal_held_job(name, Signal::SIGKILL);
        }
        self.kill_all_rest();
    }

    /// Stops the next job once the current one is down.
    pub(super) fn advance_shutdown(&mut self) {
        loop {
            let Some(sd) = self.shutdown.as_mut() else {
                return;
            };
            let jobs = &self.jobs;
            let Some(next) = sd.next(|n| jobs.get(n).is_some_and(|j| !j.m.is_down())) else {
                return;
            };
            self.work.push_back(Work::Feed(next, Input::Stop));
            self.pump();
        }
    }

    /// Whether the daemon may exit: it was told to stop and every job is down.
    pub(super) fn finished(&self) -> bool {
        self.shutdown.as_ref().is_some_and(Shutdown::done)
            && self.jobs.values().all(|j| j.m.is_down())
    }
}
