//! "At most `count` times within `interval`": the respawn limit and the checks' restart
//! limit are both this rule, on a clock the caller passes in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many times something may happen within how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub interval: Duration,
}

impl From<crate::config::job::RespawnLimit> for Rate {
    fn from(l: crate::config::job::RespawnLimit) -> Self {
        Rate {
            count: l.count,
            interval: l.interval,
        }
    }
}

/// The times something happened lately, to hold it to a [`Rate`].
///
/// A time counts while it is at most `interval` before the time asked about; a time
/// exactly `interval` ago still counts. The clock is whatever the caller passes, so a
/// caller may leave out time that must not count (the respawn limit leaves out the
/// respawn delays).
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    times: VecDeque<Instant>,
}

impl RateWindow {
    /// No time yet.
    pub const fn new() -> Self {
        RateWindow {
            times: VecDeque::new(),
        }
    }

    /// Whether it may happen once more at `at` within `rate`; if so, it is counted.
    /// When it may not, nothing is counted: asking again later, once older times have
    /// left the interval, may succeed.
    pub fn admit(&mut self, rate: Rate, at: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|t| at.saturating_duration_since(*t) > rate.interval)
        {
            self.times.pop_front();
        }
        if self.times.len() >= rate.count as usize {
            return false;
        }
        self.times.push_back(at);
        true
    }

    /// Forgets every time counted.
    pub fn clear(&mut self) {
        self.times.clear();
    }

    /// How many times are counted (some may have left the interval since).
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}
