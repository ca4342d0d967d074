//! guardian's probes. This crate knows nothing about jobs: a probe looks at something
//! (a socket, a URL, a program's verdict) and says what it saw, with a reason a person
//! can read, the measured value and how long it took.

mod http;
mod program;
mod tcp;

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use http::HttpProbe;
pub use program::{ProgramProbe, Ran, Spawner};
pub use tcp::TcpProbe;

/// The HTTP client type probes share.
pub type HttpClient = reqwest::Client;

/// A configured probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Tcp(TcpProbe),
    Http(HttpProbe),
    Program(ProgramProbe),
}

impl Probe {
    /// What the probe looks at, for messages: `tcp 127.0.0.1:6379`.
    pub fn describe(&self) -> String {
        match self {
            Probe::Tcp(p) => format!("tcp {}:{}", p.host, p.port),
            Probe::Http(p) => format!("http {}", p.url),
            Probe::Program(p) => format!("program {}", p.command),
        }
    }

    /// Runs the probe once. It never takes longer than `timeout`: a probe that hangs
    /// fails with a reason that says so.
    pub async fn run(&self, ctx: &Context, timeout: Duration) -> Outcome {
        let start = Instant::now();
        let work = async {
            match self {
                Probe::Tcp(p) => p.run(start).await,
                Probe::Http(p) => p.run(&ctx.http, start).await,
                Probe::Program(p) => p.run(ctx.spawner.as_ref(), timeout, start).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::fail(
                format!("{}: no answer within {}", self.describe(), millis(timeout)),
                start.elapsed(),
            ),
        }
    }
}

/// What probes share: one HTTP client for all of them, and the way to run programs.
pub struct Context {
    pub http: HttpClient,
    pub spawner: Box<dyn Spawner>,
}

/// The HTTP client every probe shares (build it once: it holds the connection pool and
/// the TLS roots). Redirects are not followed: a 3xx is an answer.
pub fn http_client() -> Result<HttpClient, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("guardian/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// `12 ms`, `1.5 s`: durations as a reason reads them.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

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
