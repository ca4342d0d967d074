//! The daemon's side of the control socket: one small task per connection that turns
//! frames into [`Request`]s for the daemon's loop and its answers back into frames.
//! Whatever a client sends, the worst it gets is an error reply and a closed connection.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::frame::{self, FrameError};
use super::protocol::{PROTOCOL_VERSION, Request, Response};

/// A request on its way to the daemon's loop, with where its answer goes.
pub type Envelope = (Request, oneshot::Sender<Response>);

const MAX_CONNECTIONS: usize = 128;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket, bound: holds the lock that keeps a second daemon off it.
pub struct Bound {
    pub listener: Option<UnixListener>,
    pub path: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
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

/// Binds the control socket at `path`, mode 0600. A lock file beside it decides which
/// daemon owns the path; a socket file left by a daemon that died is replaced.
pub fn bind(path: &Path) -> Result<Bound, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(Bound {
        listener: Some(listener),
        path: path.to_path_buf(),
        _lock: lock,
    })
}

/// Accepts connections until the listener is dropped.
pub async fn serve(listener: UnixListener, to_daemon: mpsc::Sender<Envelope>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let tx = to_daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, tx).await {
                tracing::debug!("control connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn reply(stream: &mut UnixStream, response: &Response) -> io::Result<()> {
    let body = serde_json::to_vec(response).map_err(io::Error::other)?;
    frame::write_async(stream, &body).await
}

async fn error_reply(stream: &mut UnixStream, message: String) -> io::Result<()> {
    reply(stream, &Response::Error { message }).await
}

async fn connection(mut stream: UnixStream, tx: mpsc::Sender<Envelope>) -> io::Result<()> {
    // The handshake: a Hello with our version, within a deadline.
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, frame::read_async(&mut stream)).await
    {
        Ok(r) => r,
        Err(_) => return error_reply(&mut stream, "no hello within 10s".into()).await,
    };
    match decode(first) {
        Ok(Request::Hello { version }) if version == PROTOCOL_VERSION => {
            reply(
                &mut stream,
                &Response::Hello {
                    version: PROTOCOL_VERSION,
                    daemon: env!("CARGO_PKG_VERSION").into(),
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
        Err(Decode::Closed) => return Ok(()),
        Err(Decode::Bad(message)) => return error_reply(&mut stream, message).await,
    }
    loop {
        let request = match decode(frame::read_async(&mut stream).await) {
            Ok(r) => r,
            Err(Decode::Closed) => return Ok(()),
            Err(Decode::Bad(message)) => return error_reply(&mut stream, message).await,
        };
        let (answer_tx, answer_rx) = oneshot::channel();
        if tx.send((request, answer_tx)).await.is_err() {
            return error_reply(&mut stream, "guardian is shutting down".into()).await;
        }
        let response = answer_rx.await.unwrap_or(Response::Error {
            message: "guardian is shutting down".into(),
        });
        reply(&mut stream, &response).await?;
    }
}

enum Decode {
    Closed,
    Bad(String),
}

fn decode(frame: Result<Vec<u8>, FrameError>) -> Result<Request, Decode> {
    match frame {
        Ok(body) => serde_json::from_slice(&body)
            .map_err(|e| Decode::Bad(format!("malformed request: {e}"))),
        Err(FrameError::Closed) => Err(Decode::Closed),
        Err(e) => Err(Decode::Bad(format!("bad frame: {e}"))),
    }
}
