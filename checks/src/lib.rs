//! guardian's probes. This crate knows nothing about jobs: a probe looks at something
//! (a socket, a URL, a process tree) and says what it saw. This is the vocabulary shared
//! with the daemon; the probes themselves build on it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one run of a probe saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub passed: bool,
    /// For a person: "HTTP 503 from http://127.0.0.1:8000/health after 12 ms".
    pub reason: String,
    /// The measured value, where the probe measures one (bytes, percent, days...).
    pub value: Option<f64>,
    pub latency: Duration,
}

impl Outcome {
    pub fn pass(reason: impl Into<String>, latency: Duration) -> Self {
        Outcome {
            passed: true,
            reason: reason.into(),
            value: None,
            latency,
        }
    }

    pub fn fail(reason: impl Into<String>, latency: Duration) -> Self {
        Outcome {
            passed: false,
            reason: reason.into(),
            value: None,
            latency,
        }
    }

    pub fn with_value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }
}

/// A job's health as its checks tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Unhealthy,
    /// No check has said anything yet, or the job has no checks.
    #[default]
    Unknown,
}

impl Health {
    /// The health of a job whose checks last said `outcomes`.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Health {
        let mut health = Health::Unknown;
        for o in outcomes {
            if !o.passed {
                return Health::Unhealthy;
            }
            health = Health::Healthy;
        }
        health
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_of_outcomes() {
        let ok = Outcome::pass("ok", Duration::from_millis(1));
        let bad = Outcome::fail("HTTP 503", Duration::from_millis(2)).with_value(503.0);
        assert_eq!(Health::of([]), Health::Unknown);
        assert_eq!(Health::of([&ok]), Health::Healthy);
        assert_eq!(Health::of([&ok, &bad]), Health::Unhealthy);
        assert_eq!(bad.value, Some(503.0));
    }
}
