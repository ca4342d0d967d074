//! Events: what jobs emit as they move (`starting`, `started`, `stopping`, `stopped`),
//! what the daemon emits (`startup`, `shutdown`) and what people emit (`guardian emit`);
//! and the `start-on` / `stop-on` expressions that wait for them.

pub mod expr;

use std::fmt;

/// One event: a name and its variables, in order (positional matches count them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub env: Vec<(String, String)>,
}

impl Event {
    pub fn new(name: &str) -> Self {
        Event {
            name: name.to_string(),
            env: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The job a job event is about.
    pub fn job(&self) -> Option<&str> {
        if JOB_EVENTS.contains(&self.name.as_str()) {
            self.get("JOB")
        } else {
            None
        }
    }
}

/// For people and the log: the name and `KEY=VALUE` pairs, with any control characters
/// in them escaped (they may come from a client).
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::logtext::Esc;
        write!(f, "{}", Esc(&self.name))?;
        for (k, v) in &self.env {
            write!(f, " {}={}", Esc(k), Esc(v))?;
        }
        Ok(())
    }
}

/// The events a job emits about itself.
pub const JOB_EVENTS: &[&str] = &["starting", "started", "stopping", "stopped"];
/// The events the daemon emits.
pub const DAEMON_EVENTS: &[&str] = &["startup", "shutdown"];
