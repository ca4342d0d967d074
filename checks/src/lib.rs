//! guardian's probes. This crate knows nothing about jobs: a probe looks at something
//! (a socket, a URL, a program's verdict) and says what it saw, with a reason a person
//! can read, the measured value and how long it took.

pub mod backlog;
mod cert;
mod dns;
mod files;
mod http;
mod program;
pub mod resource;
pub mod sockdiag;
mod tcp;
pub mod tree;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use backlog::BacklogProbe;
pub use dns::DnsProbe;
pub use files::{
    FileProbe, FlockProbe, holders as flock_holders, wait_released as flock_wait_released,
};
pub use http::{HttpProbe, check_header, check_method, check_url};
pub use program::{ProgramProbe, Ran, Spawner};
pub use resource::{Amount, Resource};
pub use tcp::{Expect as TcpExpect, TcpProbe};

/// A regular expression, compared by its text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, String> {
        regex::Regex::new(text)
            .map(Pattern)
            .map_err(|e| e.to_string())
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// The HTTP client type probes share.
pub type HttpClient = reqwest::Client;

/// A configured probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Tcp(TcpProbe),
    Http(HttpProbe),
    Program(ProgramProbe),
    Dns(DnsProbe),
    File(FileProbe),
    Flock(FlockProbe),
    Resource(Resource),
    Backlog(BacklogProbe),
}

/// What a probe looks at that changes from run to run: the job's main process (for the
/// process-tree limits) and the previous CPU sample (for a rate); and what one check
/// keeps between its runs (an http:// check's request, address and connection).
#[derive(Debug, Default)]
pub struct Target {
    pub pid: Option<u32>,
    pub cpu_last: Option<(Instant, f64)>,
    http: http::HttpState,
    tcp: Option<tcp::Labels>,
    program: Option<Arc<str>>,
}

impl Target {
    /// How many connections this check's plain `http://` probe has opened (None for
    /// any other probe, or before its first run).
    pub fn http_connections(&self) -> Option<u64> {
        self.http.opened()
    }
}

impl Probe {
    /// The probe's type, as configured: `tcp`, `http`, `cpu`...
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp(_) => "tcp",
            Probe::Http(_) => "http",
            Probe::Program(_) => "program",
            Probe::Dns(_) => "dns",
            Probe::File(_) => "file",
            Probe::Flock(_) => "flock",
            Probe::Backlog(_) => "backlog",
            Probe::Resource(r) => match r {
                Resource::Cpu { .. } => "cpu",
                Resource::Memory { .. } => "memory",
                Resource::Children { .. } => "children",
                Resource::Load { .. } => "load",
                Resource::SystemMemory { .. } => "system-memory",
                Resource::Disk { .. } => "disk",
            },
        }
    }

    /// What the probe looks at, for messages: `tcp 127.0.0.1:6379`.
    pub fn describe(&self) -> String {
        match self {
            Probe::Tcp(p) => format!("tcp {}:{}", p.host, p.port),
            Probe::Http(p) => format!("http {}", p.url),
            Probe::Program(p) => format!("program {}", p.command),
            Probe::Dns(p) => format!("dns {}", p.name),
            Probe::File(p) => format!("file {}", p.path),
            Probe::Flock(p) => format!("flock {}", p.path),
            Probe::Resource(r) => r.describe(),
            Probe::Backlog(p) => p.describe(),
        }
    }

    /// Runs the probe once, for a probe without per-run state.
    pub async fn run(&self, ctx: &Context, timeout: Duration) -> Outcome {
        self.run_on(ctx, &mut Target::default(), timeout).await
    }

    /// Runs the probe once. It never takes longer than `timeout`: a probe that hangs
    /// fails with a reason that says so. Anything that blocks (reading /proc, statvfs)
    /// runs off the async workers.
    pub async fn run_on(&self, ctx: &Context, target: &mut Target, timeout: Duration) -> Outcome {
        let sleep = std::pin::pin!(tokio::time::sleep(timeout));
        self.run_timed(ctx, target, timeout, sleep).await
    }

    /// [`Probe::run_on`] with the caller's timer, reset to `timeout` from now: a check
    /// that runs again and again keeps one timer instead of making one a run.
    pub async fn run_timed(
        &self,
        ctx: &Context,
        target: &mut Target,
        timeout: Duration,
        mut sleep: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Outcome {
        let start = Instant::now();
        let at = start
            .checked_add(timeout)
            .or_else(|| start.checked_add(Duration::from_secs(30 * 365 * 86_400)))
            .unwrap_or(start);
        sleep.as_mut().reset(at.into());
        let work = async {
            match self {
                Probe::Tcp(p) => p.run(&mut target.tcp, start).await,
                Probe::Http(p) => p.run(ctx, &mut target.http, start).await,
                Probe::Program(p) => {
                    p.run(ctx.spawner.as_ref(), &mut target.program, timeout, start)
                        .await
                }
                Probe::Dns(p) => p.run(timeout, start).await,
                Probe::File(p) => {
                    let p = p.clone();
                    blocking(move || p.check(start), start).await
                }
                Probe::Flock(p) => {
                    let p = p.clone();
                    blocking(move || p.check(start), start).await
                }
                Probe::Backlog(p) => {
                    let (p, pid) = (p.clone(), target.pid);
                    blocking(move || p.check(pid, start), start).await
                }
                Probe::Resource(r) => {
                    if matches!(r, Resource::Cpu { .. }) && target.cpu_last.is_none() {
                        // A rate needs two samples: the first run takes one, waits a
                        // moment (half its timeout, at most a second) and measures, so
                        // that it judges what it saw rather than passing on nothing.
                        let _ = sample(r, target, start).await;
                        if target.cpu_last.is_some() {
                            tokio::time::sleep((timeout / 2).min(Duration::from_secs(1))).await;
                        }
                    }
                    sample(r, target, start).await
                }
            }
        };
        tokio::select! {
            biased;
            outcome = work => outcome,
            () = sleep => Outcome::fail(
                format!("{}: no answer within {}", self.describe(), millis(timeout)),
                start.elapsed(),
            ),
        }
    }
}

/// One sample of a resource, read off the async workers; `target` keeps what the next
/// sample needs (the CPU seen last).
async fn sample(r: &Resource, target: &mut Target, start: Instant) -> Outcome {
    let r = r.clone();
    let mut t = Target {
        pid: target.pid,
        cpu_last: target.cpu_last,
        ..Target::default()
    };
    let (o, t) = match tokio::task::spawn_blocking(move || {
        let o = r.sample(&mut t, start);
        (o, t)
    })
    .await
    {
        Ok(x) => x,
        Err(e) => return Outcome::fail(format!("sampling failed: {e}"), start.elapsed()),
    };
    target.cpu_last = t.cpu_last;
    o
}

async fn blocking(f: impl FnOnce() -> Outcome + Send + 'static, start: Instant) -> Outcome {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Outcome::fail(format!("probe failed: {e}"), start.elapsed()))
}

/// What probes share: one HTTP client for all of them (and one that skips certificate
/// verification, for `tls-verify = false`), and the way to run programs.
pub struct Context {
    pub http: HttpClient,
    pub http_insecure: Option<HttpClient>,
    pub spawner: Box<dyn Spawner>,
}

/// The HTTP client every probe shares (build it once: it holds the connection pool and
/// the TLS roots). Redirects are not followed: a 3xx is an answer.
pub fn http_client() -> Result<HttpClient, String> {
    http_builder()
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// The client for `tls-verify = false`: for self-signed certificates whose expiry is
/// still worth watching.
pub fn http_client_insecure() -> Result<HttpClient, String> {
    http_builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("guardian/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(32)
        .tls_info(true)
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
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub passed: bool,
    /// What was seen, rendered for a person by [`Outcome::reason`].
    pub seen: Reason,
    /// The measured value, where the probe measures one (bytes, percent, days...).
    pub value: Option<f64>,
    pub latency: Duration,
}

/// What a probe saw. The common passes keep only what they saw (the text is written
/// when someone reads it: `status`, a log line, an alert); the rest is text already.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Text(String),
    /// `HTTP 200 from URL after 3 ms`.
    Http {
        code: u16,
        url: Arc<str>,
    },
    /// `connected to HOST:PORT in 1 ms`.
    Connected(Arc<str>),
    /// `HOST:PORT answered with "+PONG" after 1 ms`.
    Answered {
        target: Arc<str>,
        expect: Arc<str>,
    },
    /// `` `COMMAND` exited 0 after 2 ms: SAID ``: a program, and the last line it
    /// printed, if any.
    Ran {
        command: Arc<str>,
        how: Cow<'static, str>,
        said: Option<Box<str>>,
    },
}

impl From<String> for Reason {
    fn from(s: String) -> Reason {
        Reason::Text(s)
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        Reason::Text(s.to_string())
    }
}

impl Outcome {
    pub fn pass(reason: impl Into<Reason>, latency: Duration) -> Self {
        Outcome {
            passed: true,
            seen: reason.into(),
            value: None,
            latency,
        }
    }

    pub fn fail(reason: impl Into<Reason>, latency: Duration) -> Self {
        Outcome {
            passed: false,
            seen: reason.into(),
            value: None,
            latency,
        }
    }

    pub fn with_value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }

    /// For a person: "HTTP 503 from http://127.0.0.1:8000/health after 12 ms".
    pub fn reason(&self) -> Cow<'_, str> {
        let t = millis(self.latency);
        match &self.seen {
            Reason::Text(s) => Cow::Borrowed(s),
            Reason::Http { code, url } => Cow::Owned(format!("HTTP {code} from {url} after {t}")),
            Reason::Connected(target) => Cow::Owned(format!("connected to {target} in {t}")),
            Reason::Answered { target, expect } => {
                Cow::Owned(format!("{target} answered with {expect} after {t}"))
            }
            Reason::Ran { command, how, said } => Cow::Owned(match said {
                Some(said) => format!("`{command}` {how} after {t}: {said}"),
                None => format!("`{command}` {how} after {t}"),
            }),
        }
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
        Health::of_passed(outcomes.into_iter().map(|o| o.passed))
    }

    /// The health of a job whose checks last passed or not as `passed` says.
    pub fn of_passed(passed: impl IntoIterator<Item = bool>) -> Health {
        let mut health = Health::Unknown;
        for p in passed {
            if !p {
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
