//! The messages of the control protocol. Each is one JSON document in one frame (see
//! [`super::frame`]). A connection opens with `Hello` both ways; a client whose major
//! version differs is told so and disconnected.

use serde::{Deserialize, Serialize};

use crate::process::env::EnvReport;

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    Hello {
        version: u32,
    },
    /// Every job, or one.
    Status {
        job: Option<String>,
    },
    Start {
        target: String,
        wait: bool,
    },
    Stop {
        target: String,
        wait: bool,
    },
    Restart {
        target: String,
        wait: bool,
    },
    /// Send the job's reload signal to its main process.
    ReloadJob {
        target: String,
    },
    /// Re-read the configuration directory.
    ReloadConfig,
    Monitor {
        target: String,
    },
    Unmonitor {
        target: String,
    },
    Logs {
        job: String,
    },
    Env {
        job: String,
    },
    Run {
        job: String,
        command: String,
    },
    /// A user event, with its variables in order.
    Emit {
        event: String,
        env: Vec<(String, String)>,
        wait: bool,
    },
    /// The alerts waiting in the outbox.
    Alerts,
    /// Send a test alert to every recipient and webhook now.
    TestAlert,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    Hello {
        version: u32,
        daemon: String,
    },
    Jobs {
        jobs: Vec<JobStatus>,
    },
    /// Done as asked.
    Done {
        message: String,
    },
    /// The answer is no: the job did not start, is not running...
    No {
        message: String,
    },
    /// The request was wrong or could not be carried out.
    Error {
        message: String,
    },
    LogFile {
        path: String,
    },
    Env {
        report: Box<EnvReport>,
    },
    Ran {
        /// `exited 0`, `killed by SIGKILL`, `timed out after 60s`
        status: String,
        success: bool,
        output: String,
    },
    Alerts {
        pending: Vec<crate::alert::Delivery>,
    },
}

/// One job as `status --json` shows it. Scripts rely on these names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobStatus {
    pub name: String,
    pub description: Option<String>,
    pub goal: String,
    pub state: String,
    pub pid: Option<u32>,
    pub monitored: bool,
    pub health: String,
    pub restarts: u64,
    pub uptime_secs: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub manual_stop: bool,
    pub last_failure: Option<FailureReport>,
    pub checks: Vec<CheckReport>,
}

/// One check of a job as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckReport {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// What it looks at: `http http://127.0.0.1:8000/health`.
    pub target: String,
    pub action: String,
    /// The last outcome; null before the first.
    pub passed: Option<bool>,
    pub reason: Option<String>,
    pub value: Option<f64>,
    pub latency_ms: Option<f64>,
    pub at: Option<String>,
    /// The policy says failing (and the action was taken, if monitored).
    pub failing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureReport {
    pub process: String,
    pub status: String,
    pub at: String,
}

/// Decodes a request from a frame's payload: what the server does with each frame.
pub fn decode_request(body: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed request: {e}"))
}
