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
    /// Every job, or one, or the jobs of a group.
    Status {
        job: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    /// What `summary` shows of every job, or of a group's jobs: a [`JobRow`] each, and
    /// the host checks with every job's. Daemons before it answer it as unknown (see
    /// [`unknown_request`]); the client then asks for `Status`.
    Summary {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Start {
        #[serde(default)]
        target: String,
        /// A group's jobs instead (`-g GROUP`): then `target` is empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        wait: bool,
    },
    Stop {
        #[serde(default)]
        target: String,
        /// A group's jobs instead (`-g GROUP`): then `target` is empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        wait: bool,
    },
    Restart {
        #[serde(default)]
        target: String,
        /// A group's jobs instead (`-g GROUP`): then `target` is empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        wait: bool,
        /// For the instances of a job file: all at once, not one after another.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all_at_once: bool,
    },
    /// Send the job's reload signal to its main process. Not `all`: see `ReloadAllJobs`.
    ReloadJob {
        target: String,
    },
    /// Send every running job its reload signal (`guardian reload --all-jobs`).
    ReloadAllJobs,
    /// Re-read the configuration directory.
    ReloadConfig,
    Monitor {
        #[serde(default)]
        target: String,
        /// A group's jobs instead (`-g GROUP`): then `target` is empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Unmonitor {
        #[serde(default)]
        target: String,
        /// A group's jobs instead (`-g GROUP`): then `target` is empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Logs {
        job: String,
    },
    Env {
        job: String,
    },
    /// The job's configuration as the daemon runs it, every default filled in
    /// (`guardian config JOB`). With `hide_secrets`, the values of `env` and of checks'
    /// HTTP headers read "(hidden)".
    Config {
        job: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        hide_secrets: bool,
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
    /// Take a report on what the job's processes are doing now, and keep it.
    Diagnose {
        job: String,
    },
    /// The job's reports (`which`: None), or one: `LAST`, `N` or a file name.
    Reports {
        job: String,
        which: Option<String>,
    },
    /// What the daemon is: its version and build, pid, how many times it re-executed.
    Daemon,
    /// Execute the binary at the daemon's path again, in place, keeping every job
    /// (`guardian reexec`). Answered before the exec; see [`DaemonInfo`] for its end.
    Reexec,
    /// Prometheus's exposition of every job, its checks and the host's (`/metrics`),
    /// written by the loop straight from the jobs. Asked only by the HTTP interface,
    /// in the daemon: never on the wire, so neither written nor read by serde.
    #[serde(skip)]
    Metrics,
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
        /// The host checks (disk, load, system memory), with every job's status only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        host: Vec<CheckReport>,
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
    /// A job's configuration: the text of its file and the same keys as one object.
    Config {
        job: String,
        text: String,
        config: serde_json::Value,
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
    /// One report, and where it is kept (null when it could not be written).
    Report {
        path: Option<String>,
        report: Box<crate::diagnose::Report>,
    },
    /// A job's reports, oldest first.
    Reports {
        job: String,
        reports: Vec<crate::diagnose::Entry>,
    },
    Daemon {
        info: DaemonInfo,
    },
    /// The answer to `Summary`.
    Summary {
        rows: Vec<JobRow>,
        /// The host checks, with every job's summary only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        host: Vec<CheckReport>,
    },
    /// An answer the daemon's loop has already encoded as its frame (the rows of
    /// `summary`, written straight from the jobs): sent as it is. Never on the wire as
    /// itself, so neither written nor read by serde.
    #[serde(skip)]
    Encoded(Encoded),
    /// The answer to `Metrics`: the exposition's text. Never on the wire.
    #[serde(skip)]
    Metrics(String),
}

/// A whole frame, length and JSON, made by [`super::frame::encode`].
#[derive(Clone, PartialEq)]
pub struct Encoded(pub Vec<u8>);

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.0.len())
    }
}

/// Whether `message`, the error a daemon answered a request with, says that it does not
/// know the request `verb` (a daemon older than the request): a client may then ask
/// in the older way. The daemon closes the connection after such an answer.
pub fn unknown_request(message: &str, verb: &str) -> bool {
    message
        .strip_prefix("malformed request: unknown variant `")
        .and_then(|rest| rest.strip_prefix(verb))
        .is_some_and(|rest| rest.starts_with('`'))
}

/// The start of the error a daemon gives, while it re-executes, to a request it has not
/// carried out: asking again (the new image answers) is safe. The client does so itself
/// for a short time.
pub const REEXECUTING: &str = "guardian is re-executing; nothing was done, ask again";

/// The daemon, as `guardian reexec` follows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonInfo {
    /// `0.1.0 (build MARK)`, as `guardian --version` says it.
    pub version: String,
    pub pid: u32,
    /// The binary it executes again on `reexec`.
    pub exe: String,
    /// How many times this daemon re-executed itself (0 for one just started).
    pub generation: u64,
    /// Re-executions tried by this image (each failed, or it would not answer).
    pub reexec_attempts: u64,
    /// Why the last one failed.
    #[serde(default)]
    pub reexec_failure: Option<String>,
}

/// Where a job is headed, as `status` shows it: `start` or `stop`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    Start,
    Stop,
}

impl Goal {
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Start => "start",
            Goal::Stop => "stop",
        }
    }
}

/// Where a job is in its lifecycle, as `status` shows it: Upstart's words, and
/// `failed` when a respawn limit gave up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Waiting,
    Starting,
    PreStart,
    Spawned,
    PostStart,
    Running,
    PreStop,
    Stopping,
    Killed,
    PostStop,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 11] = [
        JobState::Waiting,
        JobState::Starting,
        JobState::PreStart,
        JobState::Spawned,
        JobState::PostStart,
        JobState::Running,
        JobState::PreStop,
        JobState::Stopping,
        JobState::Killed,
        JobState::PostStop,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Starting => "starting",
            JobState::PreStart => "pre-start",
            JobState::Spawned => "spawned",
            JobState::PostStart => "post-start",
            JobState::Running => "running",
            JobState::PreStop => "pre-stop",
            JobState::Stopping => "stopping",
            JobState::Killed => "killed",
            JobState::PostStop => "post-stop",
            JobState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `health` of a task that ran to completion.
pub const HEALTH_DONE: &str = "done";

/// One job as `status --json` shows it. Scripts rely on these names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobStatus {
    pub name: String,
    pub description: Option<String>,
    /// The groups the job is in (`groups` of its file), in the file's order.
    #[serde(default)]
    pub groups: Vec<String>,
    pub goal: Goal,
    pub state: JobState,
    pub pid: Option<u32>,
    pub monitored: bool,
    pub health: String,
    pub restarts: u64,
    /// A job that failed quickly waits before it is respawned: seconds until the next
    /// try, null when none is due.
    #[serde(default)]
    pub respawn_in_secs: Option<f64>,
    pub uptime_secs: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub manual_stop: bool,
    pub last_failure: Option<FailureReport>,
    pub checks: Vec<CheckReport>,
    /// The job's cgroup, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Where `cpu_secs` and `rss_bytes` come from: `cgroup` (every process of the job)
    /// or `main` (the main process, from /proc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_from: Option<String>,
    /// Every process of the job (`status JOB` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessReport>>,
    /// For an instance of a job file with `instances`: its number (2 for `web@2`)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// ... and the job file's name (`web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// One job as `summary` shows it: a line of its table, no more. The names are those of
/// [`JobStatus`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRow {
    pub name: String,
    pub goal: Goal,
    pub state: JobState,
    pub health: String,
    pub pid: Option<u32>,
    pub uptime_secs: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub monitored: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// A [`JobRow`] over the daemon's own data, to be written without a copy: the same
/// JSON, field for field.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct JobRowRef<'a> {
    pub name: &'a str,
    pub goal: Goal,
    pub state: JobState,
    pub health: &'a str,
    pub pid: Option<u32>,
    pub uptime_secs: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub monitored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<&'a str>,
}

impl From<&JobStatus> for JobRow {
    fn from(j: &JobStatus) -> JobRow {
        JobRow {
            name: j.name.clone(),
            goal: j.goal,
            state: j.state,
            health: j.health.clone(),
            pid: j.pid,
            uptime_secs: j.uptime_secs,
            cpu_secs: j.cpu_secs,
            rss_bytes: j.rss_bytes,
            monitored: j.monitored,
            instance: j.instance,
            base: j.base.clone(),
        }
    }
}

/// One process of a job, as `status JOB` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessReport {
    pub pid: u32,
    pub ppid: u32,
    pub command: String,
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
    /// How many runs it has had since its job's checks were set up.
    #[serde(default)]
    pub runs: u64,
    /// How many of those runs failed.
    #[serde(default)]
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureReport {
    pub process: String,
    pub status: String,
    pub at: String,
}

/// The longest event name `emit` takes, in bytes.
pub const MAX_EVENT_NAME: usize = 128;
/// The longest variable name of an event, in bytes.
pub const MAX_VAR_NAME: usize = 64;
/// The longest value of an event's variable, in bytes.
pub const MAX_VAR_VALUE: usize = 4096;
/// The most variables one event may have.
pub const MAX_VARS: usize = 64;
/// The longest job, target or command name a request may carry, in bytes.
pub const MAX_NAME: usize = 256;

/// Why a frame's payload is not a request this daemon carries out.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A limit or a rule of the protocol, said in words.
    #[error("{0}")]
    Invalid(String),
}

/// Decodes one request from a frame's payload and checks it against the protocol's
/// limits. Pure: no I/O, no state; whatever the bytes, an answer.
pub fn decode_request(payload: &[u8]) -> Result<Request, RequestError> {
    let request: Request = serde_json::from_slice(payload)?;
    request.validate().map_err(RequestError::Invalid)?;
    Ok(request)
}

/// The start of a text too long to be shown whole, escaped, for an error message.
fn preview(text: &str) -> String {
    let mut cut = text.len().min(40);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let more = if cut < text.len() { "..." } else { "" };
    format!("{}{more}", crate::logtext::escape(&text[..cut]))
}

/// An event name `guardian emit` may use: 1 to 128 bytes of letters, digits and
/// `-_.:@`.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an event needs a name".into());
    }
    if name.len() > MAX_EVENT_NAME {
        return Err(format!(
            "event name `{}` is {} bytes long: event names are at most {MAX_EVENT_NAME} bytes",
            preview(name),
            name.len()
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
    {
        return Err(format!(
            "`{}` is not an event name: event names use letters, digits and `-_.:@`",
            preview(name)
        ));
    }
    Ok(())
}

/// An event's variable: a name such as a shell variable's (`[A-Za-z_][A-Za-z0-9_]*`, at
/// most 64 bytes) and a value of at most 4 KiB without NUL.
pub fn check_var(name: &str, value: &str) -> Result<(), String> {
    let shell_like = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shell_like {
        return Err(format!(
            "`{}` is not a variable name: variable names are like a shell's, a letter or `_` then letters, digits and `_` (KEY=VALUE)",
            preview(name)
        ));
    }
    if name.len() > MAX_VAR_NAME {
        return Err(format!(
            "variable name `{}` is {} bytes long: variable names are at most {MAX_VAR_NAME} bytes",
            preview(name),
            name.len()
        ));
    }
    if value.len() > MAX_VAR_VALUE {
        return Err(format!(
            "the value of `{name}` is {} bytes long: values are at most {MAX_VAR_VALUE} bytes (4 KiB)",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!(
            "the value of `{name}` holds a NUL byte, which no environment can carry"
        ));
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!(
            "{what} `{}` is {} bytes long: names in requests are at most {MAX_NAME} bytes",
            preview(name),
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{}` holds control characters, which no name has",
            preview(name)
        ));
    }
    Ok(())
}

impl Request {
    /// Checks the request against the protocol's limits; the error says which.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Request::Hello { .. }
            | Request::Status {
                job: None,
                group: None,
            }
            | Request::Summary { group: None }
            | Request::ReloadConfig
            | Request::ReloadAllJobs
            | Request::Alerts
            | Request::TestAlert
            | Request::Daemon
            | Request::Reexec
            | Request::Metrics => Ok(()),
            Request::Status {
                job: Some(_),
                group: Some(_),
            } => Err("a status is of one job or of a group, not both".into()),
            Request::Status {
                job: None,
                group: Some(group),
            }
            | Request::Summary { group: Some(group) } => check_name("group", group),
            Request::Status {
                job: Some(job),
                group: None,
            }
            | Request::Logs { job }
            | Request::Env { job }
            | Request::Config { job, .. }
            | Request::Diagnose { job }
            | Request::Reports { job, which: None } => check_name("job", job),
            Request::Reports {
                job,
                which: Some(which),
            } => {
                check_name("job", job)?;
                check_name("report", which)
            }
            Request::Start { target, group, .. }
            | Request::Stop { target, group, .. }
            | Request::Restart { target, group, .. }
            | Request::Monitor { target, group }
            | Request::Unmonitor { target, group } => match group {
                None => check_name("job", target),
                Some(_) if !target.is_empty() => Err(format!(
                    "`{}` asks for a job and a group at once: name one or the other",
                    self.verb()
                )),
                Some(group) => check_name("group", group),
            },
            Request::ReloadJob { target } => check_name("job", target),
            Request::Run { job, command } => {
                check_name("job", job)?;
                check_name("command", command)
            }
            Request::Emit { event, env, .. } => {
                check_event_name(event)?;
                if env.len() > MAX_VARS {
                    return Err(format!(
                        "{} variables: an event has at most {MAX_VARS}",
                        env.len()
                    ));
                }
                env.iter().try_for_each(|(k, v)| check_var(k, v))
            }
        }
    }

    /// Whether the request only reads: what members of the `read-group` may ask.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::Hello { .. }
                | Request::Status { .. }
                | Request::Summary { .. }
                | Request::Logs { .. }
                | Request::Env { .. }
                | Request::Config { .. }
                | Request::Alerts
                | Request::Reports { .. }
                | Request::Daemon
                | Request::Metrics
        )
    }

    /// The command that sends this request, for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Status { .. } => "status",
            Request::Summary { .. } => "summary",
            Request::Start { .. } => "start",
            Request::Stop { .. } => "stop",
            Request::Restart { .. } => "restart",
            Request::ReloadJob { .. } | Request::ReloadAllJobs | Request::ReloadConfig => "reload",
            Request::Monitor { .. } => "monitor",
            Request::Unmonitor { .. } => "unmonitor",
            Request::Logs { .. } => "logs",
            Request::Env { .. } => "env",
            Request::Config { .. } => "config",
            Request::Run { .. } => "run",
            Request::Emit { .. } => "emit",
            Request::Alerts => "alerts",
            Request::TestAlert => "test-alert",
            Request::Diagnose { .. } => "diagnose",
            Request::Reports { .. } => "reports",
            Request::Daemon => "daemon",
            Request::Reexec => "reexec",
            Request::Metrics => "metrics",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit(event: &str, env: &[(&str, &str)]) -> Vec<u8> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serde_json::to_vec(&Request::Emit {
            event: event.into(),
            env,
            wait: false,
        })
        .unwrap_or_default()
    }

    fn refused(payload: &[u8]) -> String {
        match decode_request(payload) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("accepted {r:?}"),
        }
    }

    #[test]
    fn limits_of_events() {
        assert!(decode_request(&emit("deploy-done", &[("ENV", "prod"), ("_X1", "")])).is_ok());
        assert!(refused(&emit("", &[])).contains("needs a name"));
        assert!(refused(&emit(&"x".repeat(129), &[])).contains("at most 128 bytes"));
        assert!(decode_request(&emit(&"x".repeat(128), &[])).is_ok());
        assert!(refused(&emit("a b", &[])).contains("not an event name"));
        assert!(refused(&emit("e", &[("A=B", "1")])).contains("not a variable name"));
        assert!(refused(&emit("e", &[("", "1")])).contains("not a variable name"));
        assert!(refused(&emit("e", &[("1A", "1")])).contains("not a variable name"));
        assert!(refused(&emit("e", &[(&"K".repeat(65), "1")])).contains("at most 64 bytes"));
        assert!(refused(&emit("e", &[("K", &"v".repeat(4097))])).contains("at most 4096"));
        assert!(decode_request(&emit("e", &[("K", &"v".repeat(4096))])).is_ok());
        assert!(refused(&emit("e", &[("K", "a\0b")])).contains("NUL"));
        let many: Vec<(String, String)> =
            (0..65).map(|i| (format!("K{i}"), String::new())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(refused(&emit("e", &many)).contains("at most 64"));
        // A long name is not echoed whole.
        assert!(refused(&emit(&"y".repeat(500_000), &[])).len() < 200);
    }

    #[test]
    fn malformed_and_names() {
        assert!(refused(b"{").starts_with("malformed request"));
        assert!(refused(br#"{"request":"nope"}"#).starts_with("malformed request"));
        let stop = serde_json::to_vec(&Request::Stop {
            target: "a\nb".into(),
            group: None,
            wait: true,
        })
        .unwrap_or_default();
        assert!(refused(&stop).contains("control characters"));
        let both = serde_json::to_vec(&Request::Start {
            target: "web".into(),
            group: Some("frontend".into()),
            wait: true,
        })
        .unwrap_or_default();
        assert!(refused(&both).contains("a job and a group at once"));
        let status = serde_json::to_vec(&Request::Status {
            job: Some("web".into()),
            group: Some("frontend".into()),
        })
        .unwrap_or_default();
        assert!(refused(&status).contains("not both"));
        // A group's request names no job; an older client's names no group.
        assert!(decode_request(br#"{"request":"stop","group":"frontend","wait":true}"#).is_ok());
        assert!(decode_request(br#"{"request":"stop","target":"web","wait":true}"#).is_ok());
        let long = format!(r#"{{"request":"monitor","group":"{}"}}"#, "g".repeat(300));
        assert!(refused(long.as_bytes()).contains("group"));
    }

    #[test]
    fn a_borrowed_row_is_written_as_a_row() {
        let rows = [
            JobRowRef {
                name: "web@2",
                goal: Goal::Start,
                state: JobState::Running,
                health: "healthy",
                pid: Some(42),
                uptime_secs: Some(1.5),
                cpu_secs: Some(0.25),
                rss_bytes: Some(4096),
                monitored: true,
                instance: Some(2),
                base: Some("web"),
            },
            JobRowRef {
                name: "cron",
                goal: Goal::Stop,
                state: JobState::Waiting,
                health: HEALTH_DONE,
                pid: None,
                uptime_secs: None,
                cpu_secs: None,
                rss_bytes: None,
                monitored: false,
                instance: None,
                base: None,
            },
        ];
        for r in rows {
            let json = serde_json::to_string(&r).unwrap_or_default();
            let back: Option<JobRow> = serde_json::from_str(&json).ok();
            let owned = JobRow {
                name: r.name.into(),
                goal: r.goal,
                state: r.state,
                health: r.health.into(),
                pid: r.pid,
                uptime_secs: r.uptime_secs,
                cpu_secs: r.cpu_secs,
                rss_bytes: r.rss_bytes,
                monitored: r.monitored,
                instance: r.instance,
                base: r.base.map(String::from),
            };
            assert_eq!(back.as_ref(), Some(&owned), "{json}");
            assert_eq!(serde_json::to_string(&owned).unwrap_or_default(), json);
        }
    }

    #[test]
    fn an_older_daemon_says_it_does_not_know_summary() {
        // What a daemon without `Summary` answers to it, word for word.
        let older = r#"malformed request: unknown variant `summary`, expected one of `hello`, `status`, `start` at line 1 column 20"#;
        assert!(unknown_request(older, "summary"));
        assert!(!unknown_request(older, "sum"));
        assert!(!unknown_request("no group named `x`", "summary"));
        // This daemon knows it.
        let here = refused(br#"{"request":"summarise"}"#);
        assert!(unknown_request(&here, "summarise"), "{here}");
        let summary = Request::Summary { group: None };
        let bytes = serde_json::to_vec(&summary).unwrap_or_default();
        assert_eq!(bytes, br#"{"request":"summary"}"#);
        assert!(summary.is_read_only());
        assert_eq!(decode_request(&bytes).ok(), Some(summary));
        let of_group = Request::Summary {
            group: Some("web".into()),
        };
        let bytes = serde_json::to_vec(&of_group).unwrap_or_default();
        assert_eq!(decode_request(&bytes).ok(), Some(of_group));
        let bad = br#"{"request":"summary","group":"a\nb"}"#;
        assert!(refused(bad).contains("control characters"));
    }

    #[test]
    fn an_encoded_answer_is_never_written_by_serde() {
        let e = Response::Encoded(Encoded(vec![0, 0, 0, 2, b'{', b'}']));
        assert!(serde_json::to_vec(&e).is_err());
        assert_eq!(format!("{e:?}"), "Encoded(Encoded(6 bytes))");
    }

    #[test]
    fn the_metrics_request_is_the_http_interface_s_alone() {
        // Not on the socket: a client cannot ask the loop for it, nor be answered with it.
        let asked = serde_json::from_slice::<Request>(br#"{"request":"metrics"}"#);
        assert!(asked.is_err(), "{asked:?}");
        assert!(serde_json::to_vec(&Request::Metrics).is_err());
        assert!(serde_json::to_vec(&Response::Metrics("x 1\n".into())).is_err());
        assert!(Request::Metrics.is_read_only());
        assert_eq!(Request::Metrics.validate(), Ok(()));
    }

    #[test]
    fn states_and_goals_are_written_as_words() {
        for s in JobState::ALL {
            let json = serde_json::to_value(s).unwrap_or_default();
            assert_eq!(json, serde_json::Value::String(s.as_str().into()));
            assert_eq!(serde_json::from_value::<JobState>(json).ok(), Some(s));
        }
        for (g, word) in [(Goal::Start, "start"), (Goal::Stop, "stop")] {
            assert_eq!(g.as_str(), word);
            assert_eq!(
                serde_json::to_value(g).unwrap_or_default(),
                serde_json::Value::String(word.into())
            );
        }
    }
}
