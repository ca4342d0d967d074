//! What the daemon knows of how jobs depend on each other at run time: the order in
//! which they last reached `running` (a shutdown stops them in reverse), and which jobs
//! are held in `starting` / `stopping` until others have finished moving.
//!
//! Which events set off which jobs is decided by their watches (`events.rs`); this
//! holds only what follows from that, by name, and which jobs have watches at all, so
//! that an event is offered to those only: with thousands of jobs and few watches, a
//! job's start costs the same as with ten.

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Default)]
pub(super) struct Graph {
    /// When each job last reached `running`, as a count of such moves.
    started: HashMap<String, u64>,
    moves: u64,
    /// Jobs held until these jobs have finished moving.
    blocked: BTreeMap<String, BTreeSet<String>>,
    /// Jobs with a `start-on` or `stop-on`.
    watchers: BTreeSet<String>,
}

impl Graph {
    /// `name` reached `running`: it is now the most recently started.
    pub fn started(&mut self, name: &str) {
        self.moves += 1;
        match self.started.get_mut(name) {
            Some(at) => *at = self.moves,
            None => {
                self.started.insert(name.to_string(), self.moves);
            }
        }
    }

    /// Whether `name` has a `start-on` or `stop-on` (and so is offered events).
    pub fn set_watches(&mut self, name: &str, watches: bool) {
        if watches {
            if !self.watchers.contains(name) {
                self.watchers.insert(name.to_string());
            }
        } else {
            self.watchers.remove(name);
        }
    }

    /// The jobs that events are offered to, by name.
    pub fn watchers(&self) -> &BTreeSet<String> {
        &self.watchers
    }

    /// Holds `waiting` until every job in `on` has moved, leaving out those that
    /// (through others) wait on `waiting`, which would never move. Says whether it is
    /// held: false if there is nothing left to wait for.
    pub fn hold(&mut self, waiting: &str, mut on: BTreeSet<String>) -> bool {
        on.retain(|m| !self.waits_on(m, waiting));
        if on.is_empty() {
            return false;
        }
        tracing::debug!(
            "{waiting}: waits for {} to move first",
            on.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        self.blocked.insert(waiting.to_string(), on);
        true
    }

    /// Whether `job` is held, directly or through other held jobs, until `other` moves.
    pub fn waits_on(&self, job: &str, other: &str) -> bool {
        let mut stack = vec![job];
        let mut seen = BTreeSet::new();
        while let Some(j) = stack.pop() {
            if j == other {
                return true;
            }
            if !seen.insert(j) {
                continue;
            }
            if let Some(on) = self.blocked.get(j) {
                stack.extend(on.iter().map(String::as_str));
            }
        }
        false
    }

    /// `name` has finished moving: the jobs that waited only for it may go on.
    pub fn moved(&mut self, name: &str) -> Vec<String> {
        let mut freed = Vec::new();
        for (waiting, on) in self.blocked.iter_mut() {
            if on.remove(name) && on.is_empty() {
                freed.push(waiting.clone());
            }
        }
        for waiting in &freed {
            self.blocked.remove(waiting);
        }
        freed
    }

    /// `name` is gone from the configuration.
    pub fn remove(&mut self, name: &str) {
        self.started.remove(name);
        self.blocked.remove(name);
        self.watchers.remove(name);
    }

    /// The order to stop jobs in at shutdown, the first to stop last: the jobs of `up`
    /// that never reached `running` (stopped first), then the others in the order
    /// they reached it.
    pub fn shutdown_order<'a>(&self, up: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut queue: Vec<String> = up
            .filter(|n| !self.started.contains_key(*n))
            .map(str::to_string)
            .collect();
        let mut order: Vec<(&u64, &String)> = self.started.iter().map(|(n, at)| (at, n)).collect();
        order.sort_unstable();
        queue.extend(order.into_iter().map(|(_, n)| n.clone()));
        queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_held_job_goes_on_once_all_it_waits_for_moved() {
        let mut g = Graph::default();
        assert!(g.hold("web", set(&["db", "cache"])));
        assert!(g.moved("db").is_empty());
        assert_eq!(g.moved("cache"), vec!["web".to_string()]);
        assert!(g.moved("cache").is_empty(), "freed once");
    }

    #[test]
    fn a_job_never_waits_on_one_that_waits_on_it() {
        let mut g = Graph::default();
        assert!(g.hold("a", set(&["b"])));
        assert!(g.hold("b", set(&["c"])));
        // c waiting on a would close a circle through b: it is not held.
        assert!(!g.hold("c", set(&["a"])));
        assert!(g.waits_on("a", "c"));
        assert!(!g.waits_on("c", "a"));
    }

    #[test]
    fn shutdown_stops_the_most_recently_started_first() {
        let mut g = Graph::default();
        g.started("a");
        g.started("b");
        g.started("a");
        // `c` is up but never reached running; `gone` was removed.
        g.started("gone");
        g.remove("gone");
        let q = g.shutdown_order(["a", "b", "c"].into_iter());
        // Popped from the end: a first, then b, then c.
        assert_eq!(q, vec!["c", "b", "a"]);
    }

    #[test]
    fn only_jobs_with_watches_are_offered_events_and_removal_forgets_them() {
        let mut g = Graph::default();
        g.set_watches("celery", true);
        g.set_watches("redis", false);
        g.set_watches("celery", true);
        assert_eq!(g.watchers().iter().collect::<Vec<_>>(), vec!["celery"]);
        g.set_watches("celery", false);
        assert!(g.watchers().is_empty());
        g.set_watches("beat", true);
        g.remove("beat");
        assert!(g.watchers().is_empty());
    }
}
