//! The daemon's timers: what is due when. One heap, ordered by deadline; the loop sleeps
//! until the next deadline and takes what is due. A timer names the run (`generation`)
//! or failure (`episode`) it was armed for, so one that outlived its reason is told
//! apart when it fires, and nothing has to be cancelled.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Kill {
        job: String,
        generation: u64,
    },
    ReadyDeadline {
        job: String,
        generation: u64,
    },
    /// A job that failed quickly may be respawned now.
    Respawn {
        job: String,
        generation: u64,
    },
    /// A followed daemon's successor did not show up in its pid file in time.
    Handover {
        job: String,
        generation: u64,
    },
    /// The kill-timeout of what a job gone from the configuration left when the
    /// previous daemon died: SIGKILL to what is still there.
    Leftovers {
        held: Vec<super::recovery::Held>,
    },
    /// A reminder to `to` is due, if the failure (`check` of `job`, or with none the
    /// job in `failed`) still lasts: the same one, told by its `episode`.
    Remind {
        job: String,
        check: Option<String>,
        to: String,
        episode: u64,
    },
    /// Alertmanager is due to hear again of an alert that fires, if it still does.
    Resend {
        lasting: super::alerts::Lasting,
        episode: u64,
    },
}

#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    /// Arms `timer` to be due at `at`.
    pub fn arm(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// Arms `timer` to be due `after` from `now` (as late as the clock can go, if it
    /// cannot go that far).
    pub fn arm_in(&mut self, now: Instant, after: Duration, timer: Timer) {
        self.arm(crate::config::limits::deadline_from(now, after), timer);
    }

    /// When the next timer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// A timer due at `now`, taken off the heap; the earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.next_deadline()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, timer))| timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(job: &str) -> Timer {
        Timer::Kill {
            job: job.into(),
            generation: 1,
        }
    }

    #[test]
    fn timers_come_due_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm_in(t0, Duration::from_secs(2), kill("late"));
        t.arm_in(t0, Duration::from_secs(1), kill("early"));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None, "nothing is due yet");
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(t.pop_due(t2), Some(kill("early")));
        assert_eq!(t.pop_due(t2), Some(kill("late")));
        assert_eq!(t.pop_due(t2), None);
        assert_eq!(t.next_deadline(), None);
    }
}
