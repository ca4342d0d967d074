//! Events between jobs: what a job's move emits, which jobs' `start-on` / `stop-on` it
//! sets off, and holding a job in `starting` / `stopping` until those have moved.

use crate::event::Event;
use crate::job::{self, AutoStart, Goal, Input, Machine, State};

use super::{Daemon, Work};

impl Daemon {
    /// The job `name` emitted `event`: log it and queue its dispatch.
    pub(super) fn emitted(&mut self, name: &str, event: job::Event) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let m = &job.m;
        let mut e = Event::new(match event {
            job::Event::Starting => "starting",
            job::Event::Started => "started",
            job::Event::Stopping => "stopping",
            job::Event::Stopped { .. } => "stopped",
        })
        .with("JOB", name);
        let failed = match event {
            job::Event::Stopping => m.run_failed(),
            job::Event::Stopped { failed } => failed,
            _ => false,
        };
        if matches!(event, job::Event::Stopping | job::Event::Stopped { .. }) {
            e = e.with("RESULT", if failed { "failed" } else { "ok" });
            if failed && let Some(f) = m.last_failure() {
                e = e.with("PROCESS", f.process.as_str());
                match f.end {
                    Some(job::ProcessEnd::Exited(c)) => e = e.with("EXIT_STATUS", c.to_string()),
                    Some(job::ProcessEnd::Signaled(s)) => {
                        e = e.with("EXIT_SIGNAL", crate::config::signal::name(s))
                    }
                    Some(job::ProcessEnd::Unknown) | None => {}
                }
            }
        }
        match event {
            job::Event::Started => {
                self.graph.started(name);
                match m.main_pid() {
                    Some(pid) => tracing::info!("{name}: running, pid {pid}"),
                    None => tracing::info!("{name}: running"),
                }
            }
            job::Event::Stopped { failed } => {
                let how = match (m.last_failure(), failed) {
                    (Some(f), true) => format!(" ({} {})", f.process.as_str(), f.status),
                    _ => String::new(),
                };
                let to = if m.state() == State::Failed {
                    "failed"
                } else {
                    "stopped"
                };
                tracing::info!("{name}: {to}{how}");
            }
            job::Event::Starting => tracing::debug!("{name}: starting"),
            job::Event::Stopping => {
                if m.goal() == Goal::Start
                    && let Some(f) = m.last_failure()
                {
                    tracing::warn!("{name}: {} {}, respawning", f.process.as_str(), f.status);
                } else {
                    tracing::debug!("{name}: stopping");
                }
            }
        }
        let blocks =
            matches!(event, job::Event::Starting | job::Event::Stopping).then(|| name.to_string());
        let also = self.set_event(name, event, &e).map(Box::new);
        self.work.push_back(Work::Dispatch {
            event: e,
            also,
            blocks,
        });
    }

    /// What the move `event` of `name` (told as `e`) means for the job file it is an
    /// instance of, if it is one: the instances as one job `web` are `starting` when the
    /// first begins to start, `started` once all run, `stopping` when one begins to stop
    /// and all the others are down or on their way down (not a restart or respawn of one
    /// alone), `stopped` when the last is down.
    fn set_event(&self, name: &str, event: job::Event, e: &Event) -> Option<Event> {
        let base = &self.jobs.get(name)?.spec.instance.as_ref()?.base;
        let others: Vec<&Machine> =
            crate::config::instances::members(base, self.jobs.iter().map(|(n, j)| (n, &j.spec)))
                .iter()
                .filter(|n| n.as_str() != name)
                .filter_map(|n| self.jobs.get(n).map(|j| &j.m))
                .collect();
        let tells = match event {
            job::Event::Starting => others.iter().all(|m| m.is_down()),
            job::Event::Started => others.iter().all(|m| m.state() == State::Running),
            job::Event::Stopping => others.iter().all(|m| m.is_down() || m.goal() == Goal::Stop),
            job::Event::Stopped { .. } => others.iter().all(|m| m.is_down()),
        };
        if !tells {
            return None;
        }
        let mut set = Event::new(&e.name).with("JOB", base.as_str());
        set.env
            .extend(e.env.iter().filter(|(k, _)| k != "JOB").cloned());
        set = set.with("INSTANCE", name);
        Some(set)
    }

    /// Offers `event` to every job's `start-on` and `stop-on`; jobs whose expression
    /// fires are started or stopped. If the event is a `starting` / `stopping`, its job
    /// waits until those jobs have finished moving.
    pub(super) fn dispatch(&mut self, event: Event, also: Option<Event>, blocks: Option<String>) {
        tracing::debug!("event: {event}");
        if let Some(a) = &also {
            tracing::debug!("event: {a}");
        }
        let mut moved = std::collections::BTreeSet::new();
        let shutting_down = self.shutdown.is_some();
        for name in self.graph.watchers() {
            if blocks.as_deref() == Some(name.as_str()) {
                continue;
            }
            let Some(job) = self.jobs.get_mut(name) else {
                continue;
            };
            let mut start = job.start_on.as_mut().is_some_and(|w| w.feed(&event));
            let mut stop = job.stop_on.as_mut().is_some_and(|w| w.feed(&event));
            if let Some(a) = &also {
                start |= job.start_on.as_mut().is_some_and(|w| w.feed(a));
                stop |= job.stop_on.as_mut().is_some_and(|w| w.feed(a));
            }
            if stop && !job.m.is_down() {
                if job.m.goal() == Goal::Start {
                    tracing::info!("{name}: stopping on `{event}`");
                    self.work.push_back(Work::Feed(name.clone(), Input::Stop));
                }
                // Already on its way down (a `stop all`, say): still waited for.
                moved.insert(name.clone());
            } else if !shutting_down && job.m.may_autostart(start, AutoStart::Daemon) {
                if job.m.goal() == Goal::Stop || job.m.state().is_down() {
                    tracing::info!("{name}: starting on `{event}`");
                    job.start_env = event.env.clone();
                    job.start_env
                        .push(("GUARDIAN_EVENT".to_string(), event.name.clone()));
                    self.work.push_back(Work::Feed(name.clone(), Input::Start));
                    moved.insert(name.clone());
                } else if !job.m.settled_up() {
                    moved.insert(name.clone());
                }
            }
        }
        let Some(waiting) = blocks else {
            return;
        };
        // Never wait on a job that (through others) waits on this one.
        if !self.graph.hold(&waiting, moved) {
            self.work.push_back(Work::Feed(waiting, Input::Proceed));
        }
    }

    /// `name` moved: jobs waiting on it may go on once all they wait for have moved.
    pub(super) fn unblock(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        if !job.m.settled() {
            return;
        }
        for waiting in self.graph.moved(name) {
            self.work.push_back(Work::Feed(waiting, Input::Proceed));
        }
    }

    /// `guardian emit`: a user event. Returns the jobs it started or stopped.
    pub(super) fn emit_user_event(&mut self, event: Event) -> Vec<String> {
        let before: Vec<(String, Goal)> = self
            .jobs
            .iter()
            .map(|(n, j)| (n.clone(), j.m.goal()))
            .collect();
        self.work.push_back(Work::Dispatch {
            event,
            also: None,
            blocks: None,
        });
        self.pump();
        before
            .into_iter()
            .filter(|(n, g)| self.jobs.get(n).is_some_and(|j| j.m.goal() != *g))
            .map(|(n, _)| n)
            .collect()
    }
}
