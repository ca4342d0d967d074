//! The daemon's side of the control socket: one small task per connection that turns
//! frames into [`Request`]s for the daemon's loop and its answers back into frames.
//! Whatever a client sends, the worst it gets is an error reply and a closed connection.
//!
//! No client can starve the others:
//!
//! - every read and every write has a deadline: the hello must be complete within
//!   [`HELLO_TIMEOUT`], a frame that has begun must be complete within
//!   [`FRAME_TIMEOUT`], an answer must be taken within [`WRITE_TIMEOUT`], and a
//!   connection that sends no new request for [`IDLE_TIMEOUT`] is closed;
//! - at most [`MAX_CONNECTIONS`] are open at once. When one more comes, the connection
//!   that has been waiting longest for its client (before its hello, between two
//!   requests or in the middle of a frame) is closed to make room. A connection whose
//!   request the daemon is working on (a `stop` that waits for the job to be down) is
//!   never closed for that; only when all of them are such does a new client get a
//!   "busy" answer at once.
//!
//! Who may do what is decided by the peer's credentials (SO_PEERCRED): root and the
//! daemon's own user may do everything, members of the `read-group` may only read, and
//! everyone else is refused after the hello.
//!
//! A failed `accept` (out of file descriptors, say) is tried again after a pause that
//! doubles from [`ACCEPT_BACKOFF_FIRST`] to [`ACCEPT_BACKOFF_MAX`] and is said once per
//! run of failures. Every connection's task is kept: when the daemon exits,
//! [`Server::close`] stops accepting, ends the connections that wait for their client,
//! and waits (a bounded time) for those still writing an answer.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::conns::{Connections, Room, Ticket};
use super::frame::{self, FrameError};
use super::protocol::{self, PROTOCOL_VERSION, Request, Response};
use crate::config::settings::GroupRef;
use crate::files;
use crate::logtext::Esc;

/// A request on its way to the daemon's loop, with where its answer goes.
pub type Envelope = (Request, oneshot::Sender<Response>);

/// Connections open at once; one more closes the one idle longest.
pub const MAX_CONNECTIONS: usize = 128;
/// From connecting to a complete hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// From the first byte of a frame to its last.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// From an answer's first byte to its last: a client must read what it asked for.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Between an answer and the next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// When the daemon exits: how long connections get to take their last answers.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause after a failed `accept`; it doubles with each failure in a row...
pub const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// ...up to this, and starts again from the first after a connection is accepted.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Who may use the socket.
#[derive(Debug, Clone)]
pub struct Access {
    /// The daemon's own user: may do everything, as root may.
    pub owner: u32,
    /// Its members may read.
    pub read_group: Option<GroupRef>,
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Everything,
    Read,
}

/// The credentials of the process at the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Its supplementary groups, as the kernel knows them.
    pub groups: Vec<u32>,
}

impl Access {
    pub fn role(&self, peer: &Peer) -> Option<Role> {
        if peer.uid == 0 || peer.uid == self.owner {
            return Some(Role::Everything);
        }
        let g = self.read_group.as_ref()?.gid;
        (peer.gid == g || peer.groups.contains(&g)).then_some(Role::Read)
    }

    fn who_may(&self) -> String {
        let owner = if self.owner == 0 {
            "root".to_string()
        } else {
            format!("root and guardian's own user (uid {})", self.owner)
        };
        match &self.read_group {
            Some(g) => format!(
                "{owner} may use it, and members of the read-group `{}` may read",
                g.name
            ),
            None => format!("{owner} may use it (`read-group` in guardian.toml lets a group read)"),
        }
    }

    /// Why `peer` may not send `request`, if it may not.
    fn refusal(&self, peer: &Peer, role: Role, request: &Request) -> Option<String> {
        if role == Role::Everything || request.is_read_only() {
            return None;
        }
        let group = self.read_group.as_ref().map_or("", |g| g.name.as_str());
        Some(format!(
            "permission denied: `{}` acts on jobs, and uid {} may only read (as a member of the read-group `{group}`): summary, status, logs, env, config, alerts, graph",
            request.verb(),
            peer.uid
        ))
    }
}

/// The socket, bound: holds the lock that keeps a second daemon off it.
pub struct Bound {
    pub listener: Option<UnixListener>,
    pub path: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Bound {
    /// The lock's descriptor, to hand over across an exec.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    /// The socket at `path` that the image of this daemon before an exec bound and
    /// handed over: its listener and its lock (still held: the lock belongs to the open
    /// file, which the exec kept). Must run inside the runtime.
    pub fn handed(
        path: &Path,
        listener: std::os::fd::OwnedFd,
        lock: std::os::fd::OwnedFd,
    ) -> io::Result<Bound> {
        let std_listener = std::os::unix::net::UnixListener::from(listener);
        std_listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std_listener)?;
        let lock = match nix::fcntl::Flock::lock(
            std::fs::File::from(lock),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(l) => l,
            Err((_, e)) => return Err(io::Error::from(e)),
        };
        Ok(Bound {
            listener: Some(listener),
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another guardian is already running on {0}")]
    InUse(PathBuf),
    #[error("cannot use the control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Binds the control socket at `path`: mode 0600, or 0660 with group `read_gid` when
/// there is a read-group. A lock file beside it (mode 0600) decides which daemon owns
/// the path; a socket file left by a daemon that died is replaced.
pub fn bind(path: &Path, read_gid: Option<u32>) -> Result<Bound, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        files::create_dir(dir, files::Access::passable()).map_err(io_err)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = files::open(
        Path::new(&lock_path),
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
        files::PRIVATE,
    )
    .map_err(io_err)?;
    let lock = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        Err((_, e)) => return Err(io_err(io::Error::from(e))),
    };
    // With the lock held, a socket file that is still there was left by a dead daemon
    // (or a daemon of another build that did not lock): connect to tell which.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    // The group first, then the mode that opens the socket to it. Until then the umask
    // decides; the peer's credentials are checked on every connection all the same.
    let mode = match read_gid {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err)?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(io_err)?;
    Ok(Bound {
        listener: Some(listener),
        path: path.to_path_buf(),
        _lock: lock,
    })
}

/// The pause after failed accepts: doubling while they fail, reset by a success.
#[derive(Debug, Default)]
struct Backoff {
    /// The pause after the last failure; None when the last accept succeeded.
    delay: Option<Duration>,
    /// Failures in a row.
    failures: u32,
    /// The error last said (its OS code), so that a run of failures is said once.
    said: Option<Option<i32>>,
}

impl Backoff {
    /// A failed accept: how long to wait before the next, and whether to say so (the
    /// first failure of a run, or one that differs from the last said).
    fn failed(&mut self, e: &io::Error) -> (Duration, bool) {
        let delay = self.delay.map_or(ACCEPT_BACKOFF_FIRST, |d| {
            d.saturating_mul(2).min(ACCEPT_BACKOFF_MAX)
        });
        self.delay = Some(delay);
        self.failures = self.failures.saturating_add(1);
        let code = e.raw_os_error();
        let say = self.said != Some(code);
        self.said = Some(code);
        (delay, say)
    }

    /// An accepted connection: the number of failures before it, if there were any.
    fn succeeded(&mut self) -> Option<u32> {
        self.delay = None;
        self.said = None;
        let failures = std::mem::take(&mut self.failures);
        (failures > 0).then_some(failures)
    }
}

/// Whether an accept failed for want of file descriptors, the daemon's or the system's.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The control socket's accept loop, running in a task of its own.
pub struct Server {
    /// None while running; the time connections get to finish once it closes.
    closing: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

/// Starts accepting connections on `listener`; their requests go to `to_daemon`.
pub fn start(listener: UnixListener, to_daemon: mpsc::Sender<Envelope>, access: Access) -> Server {
    let (closing, closing_rx) = watch::channel(None);
    let task = tokio::spawn(serve(listener, to_daemon, access, closing_rx));
    Server { closing, task }
}

impl Server {
    /// Stops accepting; connections waiting for their client end at once, and those
    /// working on an answer get up to `within` to write it before they are cut. Returns
    /// when every connection is gone. The listener is dropped, but the socket file stays
    /// until its [`Bound`] is dropped.
    pub async fn close(self, within: Duration) {
        let _ = self.closing.send(Some(within));
        // The task bounds its own wait; this one only guards against a task that
        // cannot be reached.
        let task = self.task;
        let abort = task.abort_handle();
        if tokio::time::timeout(within.saturating_add(Duration::from_secs(1)), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Resolves once the server is closing (or gone), with the time connections have left.
async fn closed(closing: &mut watch::Receiver<Option<Duration>>) -> Duration {
    match closing.wait_for(Option::is_some).await {
        Ok(within) => within.unwrap_or_default(),
        Err(_) => Duration::ZERO,
    }
}

/// Accepts connections until told to close, then waits for them to end.
async fn serve(
    listener: UnixListener,
    to_daemon: mpsc::Sender<Envelope>,
    access: Access,
    mut closing: watch::Receiver<Option<Duration>>,
) {
    let registry = Connections::default();
    let access = Arc::new(access);
    let mut connections: JoinSet<()> = JoinSet::new();
    let mut backoff = Backoff::default();
    let within = loop {
        let accepted = tokio::select! {
            within = closed(&mut closing) => break within,
            // Finished connections leave the set as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                if let Some(n) = backoff.succeeded() {
                    tracing::info!("control socket: accepting again after {n} failed accepts");
                }
                stream
            }
            Err(e) => {
                let (pause, say) = backoff.failed(&e);
                if say && out_of_descriptors(&e) {
                    tracing::warn!(
                        "control socket: accept failed: {e}; new clients wait until descriptors are free (retrying, at most every {}s)",
                        ACCEPT_BACKOFF_MAX.as_secs()
                    );
                } else if say {
                    tracing::warn!("control socket: accept failed: {e} (retrying)");
                } else {
                    tracing::debug!("control socket: accept failed again: {e}");
                }
                tokio::select! {
                    within = closed(&mut closing) => break within,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        match registry.make_room(MAX_CONNECTIONS) {
            Room::Free => {}
            Room::Made => tracing::debug!(
                "control socket: {MAX_CONNECTIONS} connections open; closed the one that waited longest for its client"
            ),
            Room::Full => {
                busy(&stream);
                continue;
            }
        }
        let ticket = registry.admit();
        let id = ticket.id();
        let tx = to_daemon.clone();
        let access = access.clone();
        let conn_closing = closing.clone();
        let task = connections.spawn(async move {
            if let Err(e) = connection(stream, tx, &access, &ticket, conn_closing).await {
                tracing::debug!("control connection ended: {}", Esc(&e.to_string()));
            }
            drop(ticket);
        });
        registry.serving(id, task);
    };
    drop(listener);
    drop(to_daemon);
    let left = connections.len();
    let all_ended = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(within, all_ended).await.is_err() {
        tracing::warn!(
            "control socket: {} of {left} connections did not finish within {}s; closing them",
            connections.len(),
            within.as_secs()
        );
    }
    connections.shutdown().await;
}

/// Every connection is working on a request: say so at once, without waiting for the
/// client. A new connection's buffer is empty, so the small answer fits.
fn busy(stream: &UnixStream) {
    let answer = Response::Error {
        message: format!(
            "guardian is busy: all {MAX_CONNECTIONS} connections are waiting for commands to finish; try again shortly"
        ),
    };
    if let Ok(bytes) = frame::encode(&answer, 256) {
        let _ = stream.try_write(&bytes);
    }
    tracing::warn!("control socket: {MAX_CONNECTIONS} connections all busy; a client was told");
}

/// The credentials of the connection's peer. Its supplementary groups come from
/// SO_PEERGROUPS; a kernel without it (before 4.13) gives only the primary group.
fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        groups: peer_groups(stream.as_raw_fd()).unwrap_or_default(),
    })
}

#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEERGROUPS: libc::c_int = 59;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEERGROUPS: libc::c_int = 0x3d;

fn peer_groups(fd: std::os::fd::RawFd) -> Option<Vec<u32>> {
    let size = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..4 {
        let mut len = libc::socklen_t::try_from(groups.len().saturating_mul(size)).ok()?;
        // SAFETY: `groups` has room for `len` bytes; the kernel writes at most that many
        // and sets `len` to what it wrote (or, with ERANGE, to what it needs).
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let len = usize::try_from(len).ok()? / size;
        if r == 0 {
            groups.truncate(len);
            return Some(groups);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || len > 65536 {
            return None;
        }
        groups.resize(len.max(groups.len().saturating_mul(2)), 0);
    }
    None
}

/// How reading a frame came to nothing.
enum ReadError {
    /// The client closed the connection between frames.
    Closed,
    /// Nothing came within the time the client had.
    Idle,
    /// A frame began and did not end in time.
    Stalled,
    Frame(FrameError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Frame(FrameError::Truncated)
        } else {
            ReadError::Frame(FrameError::Io(e))
        }
    }
}

/// Reads one frame: its first byte within `wait`, the rest within [`FRAME_TIMEOUT`].
/// The payload grows as its bytes come, so a header that promises a large frame costs
/// nothing until the frame is sent.
async fn read_frame(stream: &mut UnixStream, wait: Duration) -> Result<Vec<u8>, ReadError> {
    let mut header = [0u8; 4];
    let n = match tokio::time::timeout(wait, stream.read(&mut header)).await {
        Err(_) => return Err(ReadError::Idle),
        Ok(n) => n?,
    };
    if n == 0 {
        return Err(ReadError::Closed);
    }
    let rest = async {
        stream.read_exact(&mut header[n..]).await?;
        let len = frame::header_len(header).map_err(ReadError::Frame)?;
        let mut body = Vec::new();
        let limit = u64::try_from(len).unwrap_or(u64::MAX);
        (&mut *stream).take(limit).read_to_end(&mut body).await?;
        if body.len() == len {
            Ok(body)
        } else {
            Err(ReadError::Frame(FrameError::Truncated))
        }
    };
    match tokio::time::timeout(FRAME_TIMEOUT, rest).await {
        Err(_) => Err(ReadError::Stalled),
        Ok(r) => r,
    }
}

async fn reply(stream: &mut UnixStream, response: &Response) -> io::Result<()> {
    let encoded;
    let frame = match response {
        Response::Encoded(e) => &e.0,
        other => {
            encoded = frame::encode(other, 256)?;
            &encoded
        }
    };
    match tokio::time::timeout(WRITE_TIMEOUT, frame::send_async(stream, frame)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client did not take its answer within {}s",
                WRITE_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn error_reply(stream: &mut UnixStream, message: String) -> io::Result<()> {
    reply(stream, &Response::Error { message }).await
}

/// What to tell a client whose frame did not come to a request (None: nothing, it is
/// gone or only idle).
fn read_failure(e: ReadError, first: bool) -> Option<String> {
    match e {
        ReadError::Closed => None,
        ReadError::Idle if first => Some(format!(
            "no hello within {}s; closing",
            HELLO_TIMEOUT.as_secs()
        )),
        ReadError::Idle => None,
        ReadError::Stalled => Some(format!(
            "bad frame: it began but did not end within {}s; closing",
            FRAME_TIMEOUT.as_secs()
        )),
        ReadError::Frame(FrameError::Io(_)) => None,
        ReadError::Frame(e) => Some(format!("bad frame: {e}")),
    }
}

async fn connection(
    mut stream: UnixStream,
    tx: mpsc::Sender<Envelope>,
    access: &Access,
    ticket: &Ticket,
    mut closing: watch::Receiver<Option<Duration>>,
) -> io::Result<()> {
    let peer = peer_of(&stream)?;
    // The handshake: a Hello with our version, complete within a deadline.
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut stream, HELLO_TIMEOUT));
    let first = tokio::select! {
        r = hello => match r {
            Ok(r) => r,
            Err(_) => Err(ReadError::Idle),
        },
        _ = closed(&mut closing) => return Ok(()),
    };
    let first = match first {
        Ok(body) => body,
        Err(e) => {
            return match read_failure(e, true) {
                Some(message) => error_reply(&mut stream, message).await,
                None => Ok(()),
            };
        }
    };
    let Some(role) = access.role(&peer) else {
        tracing::info!(
            "control socket: refused uid {} (gid {}): not allowed",
            peer.uid,
            peer.gid
        );
        let message = format!(
            "permission denied: uid {} may not use guardian's control socket: {}",
            peer.uid,
            access.who_may()
        );
        return error_reply(&mut stream, message).await;
    };
    match protocol::decode_request(&first) {
        Ok(Request::Hello { version }) if version == PROTOCOL_VERSION => {
            reply(
                &mut stream,
                &Response::Hello {
                    version: PROTOCOL_VERSION,
                    daemon: crate::build::version().into(),
                },
            )
            .await?;
        }
        Ok(Request::Hello { version }) => {
            return error_reply(
                &mut stream,
                format!(
                    "protocol version {version} is not spoken here (this daemon speaks {PROTOCOL_VERSION}); use the guardian binary that matches the daemon"
                ),
            )
            .await;
        }
        Ok(_) => return error_reply(&mut stream, "the first request must be hello".into()).await,
        Err(e) => return error_reply(&mut stream, e.to_string()).await,
    }
    loop {
        ticket.idle(true);
        // While the daemon exits, a connection waiting for its client's next request
        // ends rather than wait for it.
        let next = tokio::select! {
            r = read_frame(&mut stream, IDLE_TIMEOUT) => r,
            _ = closed(&mut closing) => return Ok(()),
        };
        let body = match next {
            Ok(body) => body,
            Err(e) => {
                return match read_failure(e, false) {
                    Some(message) => error_reply(&mut stream, message).await,
                    None => Ok(()),
                };
            }
        };
        ticket.idle(false);
        let request = match protocol::decode_request(&body) {
            Ok(r) => r,
            Err(e) => return error_reply(&mut stream, e.to_string()).await,
        };
        if let Some(message) = access.refusal(&peer, role, &request) {
            error_reply(&mut stream, message).await?;
            continue;
        }
        let (answer_tx, mut answer_rx) = oneshot::channel();
        if tx.send((request, answer_tx)).await.is_err() {
            return error_reply(&mut stream, "guardian is shutting down".into()).await;
        }
        // The daemon may take long (a stop waits for the job to be down): meanwhile a
        // client that goes away frees its connection, and one that sends more before
        // its answer breaks the protocol.
        let response = loop {
            tokio::select! {
                answer = &mut answer_rx => break answer.unwrap_or(Response::Error {
                    message: "guardian is shutting down".into(),
                }),
                ready = stream.readable() => {
                    ready?;
                    let mut byte = [0u8; 1];
                    match stream.try_read(&mut byte) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {
                            return error_reply(
                                &mut stream,
                                "one request at a time: wait for the answer before sending the next".into(),
                            )
                            .await;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        reply(&mut stream, &response).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_and_are_said_once() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let mut b = Backoff::default();
        assert!(out_of_descriptors(&emfile));
        assert_eq!(b.failed(&emfile), (Duration::from_millis(10), true));
        assert_eq!(b.failed(&emfile), (Duration::from_millis(20), false));
        assert_eq!(b.failed(&emfile), (Duration::from_millis(40), false));
        for _ in 0..20 {
            b.failed(&emfile);
        }
        assert_eq!(b.failed(&emfile), (ACCEPT_BACKOFF_MAX, false), "capped");
        // Another error in the same run is said too.
        let enfile = io::Error::from_raw_os_error(libc::ENFILE);
        assert_eq!(b.failed(&enfile), (ACCEPT_BACKOFF_MAX, true));
        assert_eq!(b.succeeded(), Some(25));
        assert_eq!(b.succeeded(), None);
        // A new run starts from the first pause, and is said again.
        assert_eq!(b.failed(&emfile), (ACCEPT_BACKOFF_FIRST, true));
    }

    /// A client that has said hello and then waits: returns once the server closes
    /// its connection (true) or after 20 s (false).
    fn hello_then_wait(path: &Path, said_hello: std::sync::mpsc::Sender<()>) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else {
            return false;
        };
        let hello = serde_json::to_vec(&Request::Hello {
            version: PROTOCOL_VERSION,
        })
        .unwrap_or_default();
        let mut bytes = Vec::new();
        if frame::write_sync(&mut bytes, &hello).is_err() || s.write_all(&bytes).is_err() {
            return false;
        }
        let mut header = [0u8; 4];
        if s.read_exact(&mut header).is_err() {
            return false;
        }
        let Ok(len) = frame::header_len(header) else {
            return false;
        };
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return false;
        }
        let _ = said_hello.send(());
        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        matches!(s.read(&mut [0u8; 1]), Ok(0))
    }

    #[tokio::test]
    async fn closing_ends_idle_connections_and_waits_for_answers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let path = dir.path().join("s.sock");
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        let access = Access {
            owner: nix::unistd::geteuid().as_raw(),
            read_group: None,
        };
        let server = start(listener, tx, access);
        // One client idle after its hello...
        let (said_tx, said_rx) = std::sync::mpsc::channel();
        let idle = tokio::task::spawn_blocking({
            let p = path.clone();
            move || hello_then_wait(&p, said_tx)
        });
        // ...and one waiting for the answer to its request.
        let busy = tokio::task::spawn_blocking({
            let p = path.clone();
            move || {
                let mut c = super::super::client::Client::connect(&p, Duration::from_secs(5))?;
                c.call(&Request::Alerts, Duration::from_secs(20))
            }
        });
        let (request, answer) = rx.recv().await.unwrap_or_else(|| panic!("a request"));
        assert_eq!(request, Request::Alerts);
        let hello_seen = tokio::task::spawn_blocking(move || said_rx.recv().is_ok());
        assert!(
            hello_seen.await.unwrap_or(false),
            "the idle client said hello"
        );
        let closing = tokio::spawn(server.close(Duration::from_secs(20)));
        // The idle connection is closed at once, while the other one is still at work.
        assert!(
            idle.await.unwrap_or(false),
            "the idle connection was closed by the server"
        );
        assert!(!closing.is_finished(), "close waits for the answer");
        let _ = answer.send(Response::Done {
            message: "done".into(),
        });
        let answered = busy.await.unwrap_or_else(|e| panic!("join: {e}"));
        assert!(
            matches!(&answered, Ok(Response::Done { message }) if message == "done"),
            "{answered:?}"
        );
        tokio::time::timeout(Duration::from_secs(20), closing)
            .await
            .unwrap_or_else(|_| panic!("close did not return"))
            .unwrap_or_else(|e| panic!("join: {e}"));
        assert!(
            std::os::unix::net::UnixStream::connect(&path).is_err(),
            "no longer accepting"
        );
    }

    #[test]
    fn who_may_do_what() {
        let access = Access {
            owner: 1000,
            read_group: Some(GroupRef {
                name: "ops".into(),
                gid: 50,
            }),
        };
        let peer = |uid, gid, groups: &[u32]| Peer {
            uid,
            gid,
            groups: groups.to_vec(),
        };
        assert_eq!(access.role(&peer(0, 0, &[])), Some(Role::Everything));
        assert_eq!(access.role(&peer(1000, 1000, &[])), Some(Role::Everything));
        assert_eq!(access.role(&peer(1001, 50, &[])), Some(Role::Read));
        assert_eq!(access.role(&peer(1001, 1001, &[7, 50])), Some(Role::Read));
        assert_eq!(access.role(&peer(1001, 1001, &[7])), None);
        let stop = Request::Stop {
            target: "web".into(),
            group: None,
            wait: true,
        };
        let reader = peer(1001, 50, &[]);
        assert!(
            access
                .refusal(&reader, Role::Read, &stop)
                .is_some_and(|m| m.contains("`stop` acts on jobs"))
        );
        let status = Request::Status {
            job: None,
            group: None,
        };
        assert!(access.refusal(&reader, Role::Read, &status).is_none());
        let none = Access {
            owner: 0,
            read_group: None,
        };
        assert_eq!(none.role(&peer(1001, 50, &[50])), None);
    }
}
