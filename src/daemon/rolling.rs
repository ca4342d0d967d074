//! A rolling restart: `guardian restart web` of a job file's instances restarts them one
//! after another, each only once the one before runs again and (if it has checks) every
//! check of its new start has passed, so that all but one instance serve throughout.
//!
//! The loop is never held: each step arms a wait (a waiter on the job, or a wait for
//! its checks) whose end a small task brings back as [`Internal::Rolled`].

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::control::protocol::Response;
use crate::job::{Input, State, Until};

use super::runtime::{Job, Outcome, Waiter};
use super::{Daemon, Internal};

/// How long a restarted instance's checks may take to pass before the rolling restart
/// stops, leaving the instances after it as they were.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(60);

/// A rolling restart under way.
pub(crate) struct Rolling {
    /// The instances not restarted yet, in order.
    names: VecDeque<String>,
    /// What each restart said, for the reply.
    lines: Vec<String>,
    /// The client's reply, when it waits.
    reply: Option<oneshot::Sender<Response>>,
}

/// How one step of a rolling restart ended.
pub(crate) enum Step {
    /// The instance's restart ended (running again, or why not).
    Restarted(Outcome),
    /// Whether every check of the instance's new start passed in time.
    Healthy(bool),
}

/// A client waiting for every check of a job's start `start` to pass.
pub(super) struct HealthWaiter {
    start: u64,
    passed: Vec<bool>,
    tx: Option<oneshot::Sender<()>>,
}

impl Job {
    /// A check of the job's start `start` had an outcome: the waits for its checks that
    /// are over now are told so.
    pub(super) fn health_seen(&mut self, idx: usize, start: u64, passed: bool) {
        if self.health_waiters.is_empty() {
            return;
        }
        for w in &mut self.health_waiters {
            if w.start == start
                && let Some(p) = w.passed.get_mut(idx)
            {
                *p = passed;
            }
            if w.passed.iter().all(|p| *p)
                && let Some(tx) = w.tx.take()
            {
                let _ = tx.send(());
            }
        }
        self.health_waiters
            .retain(|w| w.tx.as_ref().is_some_and(|t| !t.is_closed()));
        self.watch_checks();
    }

    /// Every pass goes to the loop while someone waits for the checks.
    fn watch_checks(&self) {
        let on = !self.health_waiters.is_empty();
        for c in &self.checks {
            c.watch(on);
        }
    }

    /// The job moved: a wait for the checks of a start that is over ends unanswered.
    pub(super) fn health_settle(&mut self) {
        let runs = self.m.runs();
        let running = self.m.state() == State::Running;
        if self.health_waiters.is_empty() {
            return;
        }
        self.health_waiters.retain(|w| {
            running && w.start == runs && w.tx.as_ref().is_some_and(|t| !t.is_closed())
        });
        self.watch_checks();
    }
}

impl Daemon {
    /// Begins a rolling restart of `names`.
    pub(super) fn roll(&mut self, names: Vec<String>, reply: Option<oneshot::Sender<Response>>) {
        let r = Rolling {
            names: names.into(),
            lines: Vec::new(),
            reply,
        };
        self.roll_next(Box::new(r));
    }

    /// Restarts the next instance, or answers when none is left.
    fn roll_next(&mut self, mut r: Box<Rolling>) {
        if self.shutdown.is_some() {
            return finish(*r, false, "guardian is shutting down".into());
        }
        let Some(name) = r.names.pop_front() else {
            return finish(*r, true, String::new());
        };
        let Some(job) = self.jobs.get_mut(&name) else {
            r.lines
                .push(format!("{name}: removed from the configuration"));
            return self.roll_next(r);
        };
        let (tx, rx) = oneshot::channel();
        job.waiters.push(Waiter {
            until: Until::UpAgain(job.m.runs()),
            tx,
        });
        job.m.set_manual_stop(false);
        tracing::info!("{name}: restarting (rolling)");
        self.feed(&name, Input::Restart);
        self.save_state();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let outcome = rx
                .await
                .unwrap_or_else(|_| Err("guardian is shutting down".into()));
            let _ = internal.send(Internal::Rolled {
                rolling: r,
                name,
                step: Step::Restarted(outcome),
            });
        });
    }

    /// A step of a rolling restart ended.
    pub(super) fn rolled(&mut self, mut r: Box<Rolling>, name: String, step: Step) {
        match step {
            Step::Restarted(Err(line)) => {
                r.lines.push(line);
                finish(*r, false, String::new())
            }
            Step::Restarted(Ok(line)) => {
                r.lines.push(line);
                let Some(job) = self.jobs.get_mut(&name) else {
                    return self.roll_next(r);
                };
                if job.checks.is_empty() || job.m.state() != State::Running {
                    return self.roll_next(r);
                }
                let (tx, rx) = oneshot::channel();
                let start = job.m.runs();
                let passed: Vec<bool> = job
                    .checks
                    .iter()
                    .map(|c| c.start == start && c.passed_since_launch())
                    .collect();
                if passed.iter().all(|p| *p) {
                    return self.roll_next(r);
                }
                job.health_waiters.push(HealthWaiter {
                    start,
                    passed,
                    tx: Some(tx),
                });
                job.watch_checks();
                let internal = self.internal.clone();
                tokio::spawn(async move {
                    let ok = matches!(tokio::time::timeout(HEALTH_DEADLINE, rx).await, Ok(Ok(())));
                    let _ = internal.send(Internal::Rolled {
                        rolling: r,
                        name,
                        step: Step::Healthy(ok),
                    });
                });
            }
            Step::Healthy(true) => self.roll_next(r),
            Step::Healthy(false) => {
                r.lines.push(format!(
                    "{name}: its checks did not all pass within {}s of its restart",
                    HEALTH_DEADLINE.as_secs()
                ));
                finish(*r, false, String::new())
            }
        }
    }
}

/// Answers the client of a rolling restart: what each restart said, and which
/// instances it did not get to.
fn finish(mut r: Rolling, ok: bool, why: String) {
    if !why.is_empty() {
        r.lines.push(why);
    }
    if !r.names.is_empty() {
        let left: Vec<&str> = r.names.iter().map(String::as_str).collect();
        r.lines
            .push(format!("not restarted, as they were: {}", left.join(", ")));
    }
    let message = r.lines.join("\n");
    if let Some(reply) = r.reply {
        let _ = reply.send(if ok {
            Response::Done { message }
        } else {
            Response::No { message }
        });
    } else if !ok {
        tracing::warn!("rolling restart stopped: {message}");
    }
}
