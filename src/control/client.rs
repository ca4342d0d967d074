//! The CLI's side of the control socket: blocking, one connection per command.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::frame::{self, FrameError};
use super::protocol::{PROTOCOL_VERSION, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach guardian at {path}: {source} (is the daemon running? start it with `guardian -c DIR`)"
    )]
    Connect { path: PathBuf, source: io::Error },
    #[error("talking to guardian: {0}")]
    Frame(#[from] FrameError),
    #[error("guardian sent something this client does not understand: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("{0}")]
    Refused(String),
}

pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects and shakes hands.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let mut client = Client { stream };
        match client.call(&Request::Hello {
            version: PROTOCOL_VERSION,
        })? {
            Response::Hello { .. } => Ok(client),
            Response::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Refused(format!(
                "unexpected answer to hello: {other:?}"
            ))),
        }
    }

    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        let body = serde_json::to_vec(request)?;
        frame::write_sync(&mut self.stream, &body).map_err(FrameError::Io)?;
        let answer = frame::read_sync(&mut self.stream)?;
        Ok(serde_json::from_slice(&answer)?)
    }
}
