//! The CLI's side of the control socket: blocking, one connection per command, and
//! never waiting without a bound: connecting and the hello within
//! [`CONNECT_TIMEOUT`] (or less), every answer within the time the caller gives.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frame::{self, FrameError};
use super::protocol::{PROTOCOL_VERSION, Request, Response};

/// Connecting and the hello: a daemon that is up answers them at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket's path: the daemon is not running there.
    #[error("no guardian daemon at {}: {why}", path.display())]
    NoDaemon { path: PathBuf, why: String },
    #[error("permission denied: {0}")]
    Permission(String),
    // The causes are in the messages, and not also given as sources: `{:#}` would print
    // each of them twice.
    #[error("cannot connect to guardian at {}: {error}", path.display())]
    Connect { path: PathBuf, error: io::Error },
    /// The daemon did not answer in time; `what` says what was waited for.
    #[error("no answer within {}: waited for {what}{hint}", humantime::format_duration(*after))]
    Timeout {
        what: String,
        after: Duration,
        hint: String,
    },
    #[error("talking to guardian: {0}")]
    Frame(FrameError),
    #[error("guardian sent something this client does not understand: {0}")]
    Decode(serde_json::Error),
    #[error("{0}")]
    Refused(String),
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        ClientError::Frame(e)
    }
}

impl From<serde_json::Error> for ClientError {
    fn from(e: serde_json::Error) -> Self {
        ClientError::Decode(e)
    }
}

impl ClientError {
    /// Whether no daemon is running at the socket (so a command may fall back on the
    /// configuration), as opposed to one that cannot be reached or did not answer.
    pub fn no_daemon(&self) -> bool {
        matches!(self, ClientError::NoDaemon { .. })
    }
}

/// Reads and writes that give up at a deadline, however the bytes trickle in.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub struct Client {
    stream: UnixStream,
    path: PathBuf,
}

impl Client {
    /// Connects and shakes hands, within `timeout` (at most [`CONNECT_TIMEOUT`]).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let timeout = timeout.min(CONNECT_TIMEOUT);
        let stream = connect_within(path, timeout)?;
        let mut client = Client {
            stream,
            path: path.to_path_buf(),
        };
        let what = format!("the daemon at {} to answer the hello", path.display());
        let answer = client.exchange(
            &Request::Hello {
                version: PROTOCOL_VERSION,
            },
            timeout,
            what,
            String::new(),
        )?;
        match answer {
            Response::Hello { .. } => Ok(client),
            Response::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Refused(format!(
                "unexpected answer to hello: {other:?}"
            ))),
        }
    }

    /// Sends `request` and waits at most `timeout` for its answer.
    pub fn call(&mut self, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
        let what = format!("guardian's answer to {}", describe(request));
        let hint = format!(
            " (the daemon at {} may still be carrying it out: `guardian status` shows where jobs are; --timeout DURATION waits longer)",
            self.path.display()
        );
        self.exchange(request, timeout, what, hint)
    }

    fn exchange(
        &mut self,
        request: &Request,
        timeout: Duration,
        what: String,
        hint: String,
    ) -> Result<Response, ClientError> {
        let mut io = Deadline {
            stream: &self.stream,
            until: Instant::now() + timeout,
        };
        let late = |what: String| ClientError::Timeout {
            what,
            after: timeout,
            hint: hint.clone(),
        };
        let request = frame::encode(request, 256).map_err(FrameError::Io)?;
        let sent = io.write_all(&request);
        // A daemon that refused the connection (busy, not allowed) may have answered
        // and closed before the request was written: its answer is still to be read.
        if let Err(e) = &sent {
            if timed_out(e) {
                return Err(late(what));
            }
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                return Err(ClientError::Frame(FrameError::Io(io::Error::new(
                    e.kind(),
                    e.to_string(),
                ))));
            }
        }
        match frame::read_sync(&mut io) {
            Ok(answer) => Ok(decode(&answer)?),
            Err(FrameError::Io(e)) if timed_out(&e) => Err(late(what)),
            Err(e) => match sent {
                Err(write) => Err(ClientError::Frame(FrameError::Io(write))),
                Ok(()) => Err(e.into()),
            },
        }
    }
}

/// The daemon's answer. serde reads an internally tagged enum by first copying the whole
/// answer into a tree of its own; a list of jobs or of summary rows (2,000 of them on a
/// large host) is read straight into its structs instead. The daemon writes the tag
/// first.
fn decode(answer: &[u8]) -> serde_json::Result<Response> {
    use crate::control::protocol::{CheckReport, JobRow, JobStatus};
    #[derive(serde::Deserialize)]
    struct Jobs {
        #[allow(dead_code)]
        response: serde::de::IgnoredAny,
        jobs: Vec<JobStatus>,
        #[serde(default)]
        host: Vec<CheckReport>,
    }
    #[derive(serde::Deserialize)]
    struct Summary {
        #[allow(dead_code)]
        response: serde::de::IgnoredAny,
        rows: Vec<JobRow>,
        #[serde(default)]
        host: Vec<CheckReport>,
    }
    if answer.starts_with(br#"{"response":"jobs","#)
        && let Ok(Jobs { jobs, host, .. }) = serde_json::from_slice(answer)
    {
        return Ok(Response::Jobs { jobs, host });
    }
    if answer.starts_with(br#"{"response":"summary","#)
        && let Ok(Summary { rows, host, .. }) = serde_json::from_slice(answer)
    {
        return Ok(Response::Summary { rows, host });
    }
    serde_json::from_slice(answer)
}

/// `stop web`, `status`, `emit deploy-done`: the command a request comes from.
fn describe(request: &Request) -> String {
    let object = match request {
        Request::Status { group: Some(g), .. }
        | Request::Summary { group: Some(g) }
        | Request::Start { group: Some(g), .. }
        | Request::Stop { group: Some(g), .. }
        | Request::Restart { group: Some(g), .. }
        | Request::Monitor { group: Some(g), .. }
        | Request::Unmonitor { group: Some(g), .. } => format!(" -g {g}"),
        Request::Status { job: Some(j), .. }
        | Request::Logs { job: j }
        | Request::Env { job: j }
        | Request::Config { job: j, .. } => {
            format!(" {j}")
        }
        Request::Start { target, .. }
        | Request::Stop { target, .. }
        | Request::Restart { target, .. }
        | Request::ReloadJob { target }
        | Request::Monitor { target, .. }
        | Request::Unmonitor { target, .. } => format!(" {target}"),
        Request::ReloadAllJobs => " --all-jobs".to_string(),
        Request::Run { job, command } => format!(" {job} {command}"),
        Request::Emit { event, .. } => format!(" {event}"),
        _ => String::new(),
    };
    format!("`{}{}`", request.verb(), crate::logtext::escape(&object))
}

/// Connects within `timeout`. A blocking connect waits while the daemon's backlog is
/// full, so it runs on a thread of its own that is left behind if it takes too long.
fn connect_within(path: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(UnixStream::connect(&target));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(connect_error(path, e)),
        Err(_) => Err(ClientError::Timeout {
            what: format!("the daemon at {} to accept the connection", path.display()),
            after: timeout,
            hint: " (its backlog is full: it is not accepting connections)".into(),
        }),
    }
}

/// The one real cause of a failed connect, said once.
fn connect_error(path: &Path, e: io::Error) -> ClientError {
    let shown = path.display();
    match e.kind() {
        io::ErrorKind::NotFound => ClientError::NoDaemon {
            path: path.to_path_buf(),
            why: "no such socket (is the daemon running? start it with `guardian -c DIR`; \
                  clients find its socket with the same -c DIR, --socket PATH or GUARDIAN_SOCKET)"
                .into(),
        },
        io::ErrorKind::ConnectionRefused => ClientError::NoDaemon {
            path: path.to_path_buf(),
            why: "the socket file is there but nothing listens on it (the daemon is not running)"
                .into(),
        },
        io::ErrorKind::PermissionDenied => {
            let uid = nix::unistd::getuid().as_raw();
            ClientError::Permission(match std::fs::metadata(path) {
                Ok(meta) => format!(
                    "uid {uid} may not connect to guardian's control socket {shown} (mode {:04o}, owner {}, group {}): \
                     root and guardian's own user may; `read-group` in the daemon's guardian.toml lets a group read",
                    meta.mode() & 0o7777,
                    user_name(meta.uid()),
                    group_name(meta.gid()),
                ),
                Err(_) => format!(
                    "uid {uid} cannot reach guardian's control socket {shown}: {}",
                    closed_dir(path).unwrap_or_else(|| "a directory on its way is closed".into())
                ),
            })
        }
        _ => ClientError::Connect {
            path: path.to_path_buf(),
            error: e,
        },
    }
}

/// The directory on the way to `path` that this user cannot enter, as words.
fn closed_dir(path: &Path) -> Option<String> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if nix::unistd::access(dir, nix::unistd::AccessFlags::X_OK).is_err() {
            let mode = std::fs::metadata(dir)
                .map(|m| {
                    format!(
                        " (mode {:04o}, owner {})",
                        m.mode() & 0o7777,
                        user_name(m.uid())
                    )
                })
                .unwrap_or_default();
            return Some(format!("it cannot enter {}{mode}", dir.display()));
        }
    }
    None
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(gid.into()) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{Goal, JobState, JobStatus};

    #[test]
    fn a_list_of_jobs_decodes_as_the_enum_does() {
        let jobs = Response::Jobs {
            jobs: vec![JobStatus {
                name: "web".into(),
                description: Some("the site".into()),
                groups: vec!["frontend".into()],
                goal: Goal::Start,
                state: JobState::Running,
                pid: Some(42),
                monitored: true,
                health: "healthy".into(),
                restarts: 3,
                respawn_in_secs: None,
                uptime_secs: Some(1.5),
                cpu_secs: Some(0.25),
                rss_bytes: Some(4096),
                manual_stop: false,
                last_failure: None,
                checks: Vec::new(),
                cgroup: Some("/sys/fs/cgroup/guardian@x/web.job".into()),
                cpu_from: Some("cgroup".into()),
                rss_from: Some("main".into()),
                processes: Some(vec![crate::control::protocol::ProcessReport {
                    pid: 42,
                    ppid: 1,
                    command: "sleep 600".into(),
                }]),
                instance: None,
                base: None,
            }],
            host: vec![crate::control::protocol::CheckReport {
                name: "root".into(),
                kind: "disk".into(),
                target: "disk /".into(),
                action: "alert".into(),
                passed: Some(true),
                reason: Some("/ is 40% full".into()),
                value: Some(40.0),
                latency_ms: Some(0.012),
                at: None,
                failing: false,
                runs: 3,
                failures: 0,
            }],
        };
        let bytes = serde_json::to_vec(&jobs).unwrap_or_default();
        assert!(bytes.starts_with(br#"{"response":"jobs","#));
        assert_eq!(decode(&bytes).ok(), Some(jobs));
        let done = Response::Done {
            message: "ok".into(),
        };
        let bytes = serde_json::to_vec(&done).unwrap_or_default();
        assert_eq!(decode(&bytes).ok(), Some(done));
        assert!(decode(br#"{"response":"jobs","jobs":7}"#).is_err());
    }

    #[test]
    fn summary_rows_decode_as_the_enum_does() {
        let summary = Response::Summary {
            rows: vec![crate::control::protocol::JobRow {
                name: "web@1".into(),
                goal: Goal::Start,
                state: JobState::Running,
                health: "unknown".into(),
                pid: Some(7),
                uptime_secs: Some(3.25),
                cpu_secs: Some(0.0),
                rss_bytes: Some(1 << 20),
                monitored: false,
                instance: Some(1),
                base: Some("web".into()),
            }],
            host: Vec::new(),
        };
        let bytes = serde_json::to_vec(&summary).unwrap_or_default();
        assert!(bytes.starts_with(br#"{"response":"summary","#));
        assert_eq!(decode(&bytes).ok(), Some(summary));
        let empty = br#"{"response":"summary","rows":[]}"#;
        assert_eq!(
            decode(empty).ok(),
            Some(Response::Summary {
                rows: Vec::new(),
                host: Vec::new()
            })
        );
    }
}
