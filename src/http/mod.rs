//! The HTTP interface (`[http]` in guardian.toml): a JSON API at `/api/v1/` and
//! Prometheus metrics at `/metrics`, on the daemon's own runtime. Off unless
//! configured: without `[http]` none of this runs or allocates.
//!
//! One owner of job state stays true: a handler turns an HTTP request into the same
//! [`Request`](crate::control::protocol::Request) the control socket sends, through
//! the same channel into the daemon's loop, and answers once the loop has (for `stop`,
//! once the job is down). Nothing here touches job state or blocks the loop; what may
//! take time (argon2, reading log files) runs on tokio's blocking threads.
//!
//! No client can pin the daemon: at most `max-connections` are open (one more closes
//! the one idle longest, or is told 503 when none is idle), request headers (and a TLS
//! handshake) must be complete within `header-timeout`, also between two requests on a
//! kept-alive connection, a body within `body-timeout` and `max-body-size`.

pub mod api;
pub mod auth;
pub mod metrics;
pub mod page;
pub mod passwd;
pub mod tls;

use std::convert::Infallible;
use std::io;
use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::http::HttpSettings;
pub use crate::control::conns::Ticket;
use crate::control::conns::{Connections, Room};
use crate::control::server::Envelope;

pub use api::Body;

/// Binds the HTTP listener `settings` names. The one place it is made, so that a
/// daemon handing over to its successor can pass this descriptor on.
pub fn bind(settings: &HttpSettings) -> io::Result<StdListener> {
    let l = StdListener::bind(settings.listen)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The listener the image before an exec handed over, if it listens where `settings`
/// says (`listen` may have changed in the file since): then it is used as it is, and a
/// client never finds the port closed. Else it is closed, and None says to bind anew.
pub fn adopt(settings: &HttpSettings, handed: StdListener) -> Option<StdListener> {
    let at = match handed.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("http: the listener handed over cannot be used ({e}): listening anew");
            return None;
        }
    };
    let wanted = settings.listen;
    let same = at.ip() == wanted.ip() && (wanted.port() == 0 || at.port() == wanted.port());
    if !same {
        tracing::info!("http: the listener handed over is on {at}, [http] listen is now {wanted}");
        return None;
    }
    match handed.set_nonblocking(true) {
        Ok(()) => {
            tracing::info!("http: the listener on {at} was handed over: it serves on");
            Some(handed)
        }
        Err(e) => {
            tracing::warn!("http: the listener handed over cannot be used ({e}): listening anew");
            None
        }
    }
}

/// Who may do what: the users and tokens files as last read.
#[derive(Default)]
pub struct Auth {
    pub users: auth::Users,
    pub tokens: auth::Tokens,
}

fn load_auth(s: &HttpSettings) -> Result<Auth, String> {
    let users = match &s.users_file {
        Some(p) => auth::Users::load(p)?,
        None => auth::Users::default(),
    };
    let tokens = match &s.tokens_file {
        Some(p) => auth::Tokens::load(p)?,
        None => auth::Tokens::default(),
    };
    Ok(Auth { users, tokens })
}

fn load_tls(s: &HttpSettings) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    match &s.tls {
        Some(t) => Ok(Some(tokio_rustls::TlsAcceptor::from(tls::load(
            &t.cert, &t.key,
        )?))),
        None => Ok(None),
    }
}

/// What every connection's task shares.
pub struct Shared {
    pub settings: HttpSettings,
    pub to_daemon: mpsc::Sender<Envelope>,
    pub auth: RwLock<Arc<Auth>>,
    tls: RwLock<Option<tokio_rustls::TlsAcceptor>>,
    /// One argon2 verification at a time: each takes ~20 MB and tens of ms.
    pub verify_gate: Semaphore,
    registry: Connections,
    /// Log streams (`?follow=1`) open now; at most half the connections.
    pub follows: Arc<Semaphore>,
    /// The status page's sessions.
    pub sessions: page::Sessions,
    /// True once the server is closing or handing over: every connection finishes the
    /// request it is at and ends, every log stream ends.
    pub closing: watch::Receiver<bool>,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write<T>(l: &RwLock<T>, v: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = v;
}

impl Shared {
    pub fn auth(&self) -> Arc<Auth> {
        read(&self.auth)
    }
}

/// The HTTP server, running in a task of its own.
pub struct Http {
    reload: Arc<Notify>,
    closing: watch::Sender<bool>,
    task: JoinHandle<TcpListener>,
    pub shared: Arc<Shared>,
}

/// How long the connections open when the server closes are given to finish the
/// request each is at; those still open then are cut.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Starts serving on `listener`; requests go to the daemon's loop through `to_daemon`.
/// The users, tokens and TLS files are read now: an error stops the daemon's start.
pub fn start(
    settings: HttpSettings,
    listener: StdListener,
    to_daemon: mpsc::Sender<Envelope>,
) -> anyhow::Result<Http> {
    let auth = load_auth(&settings).map_err(anyhow::Error::msg)?;
    let acceptor = load_tls(&settings).map_err(anyhow::Error::msg)?;
    let listener = TcpListener::from_std(listener)?;
    let follows = (settings.max_connections / 2).max(1);
    let (closing, closing_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        settings,
        to_daemon,
        auth: RwLock::new(Arc::new(auth)),
        tls: RwLock::new(acceptor),
        verify_gate: Semaphore::new(1),
        registry: Connections::default(),
        follows: Arc::new(Semaphore::new(follows)),
        sessions: page::Sessions::default(),
        closing: closing_rx.clone(),
    });
    let reload = Arc::new(Notify::new());
    let task = tokio::spawn(serve(
        listener,
        Arc::clone(&shared),
        Arc::clone(&reload),
        closing_rx,
    ));
    Ok(Http {
        reload,
        closing,
        task,
        shared,
    })
}

impl Http {
    /// Reads the users, tokens and TLS files again (SIGHUP), off the loop. A file that
    /// cannot be read leaves what was read before in place, and is said.
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// Stops accepting and ends every connection: each finishes the request it is at
    /// (within [`DRAIN`]). The listener is closed last.
    pub async fn close(self) {
        drop(self.stop().await);
    }

    /// As [`Http::close`], but the listener stays open and is returned, for the image
    /// after an exec to serve: clients that connect meanwhile wait in its backlog.
    /// None if the server's task did not end in time (the listener went with it).
    pub async fn hand_over(self) -> Option<StdListener> {
        let listener = self.stop().await?;
        match listener.into_std() {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!("http: cannot hand the listener over: {e}");
                None
            }
        }
    }

    async fn stop(self) -> Option<TcpListener> {
        let _ = self.closing.send(true);
        let abort = self.task.abort_handle();
        let ended = tokio::time::timeout(DRAIN + Duration::from_secs(1), self.task).await;
        match ended {
            Ok(Ok(listener)) => Some(listener),
            Ok(Err(_)) => None,
            Err(_) => {
                abort.abort();
                None
            }
        }
    }
}

async fn reload_files(shared: Arc<Shared>) {
    let s = shared.settings.clone();
    let loaded = tokio::task::spawn_blocking(move || (load_auth(&s), load_tls(&s))).await;
    let Ok((auth, tls)) = loaded else { return };
    match auth {
        Ok(a) => write(&shared.auth, Arc::new(a)),
        Err(e) => tracing::error!("http: {e}; the users and tokens read before stay in use"),
    }
    match tls {
        Ok(t) => write(&shared.tls, t),
        Err(e) => tracing::error!("http: TLS: {e}; the certificate read before stays in use"),
    }
    tracing::info!("http: users, tokens and certificate read again");
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    reload: Arc<Notify>,
    mut closing: watch::Receiver<bool>,
) -> TcpListener {
    let mut connections: JoinSet<()> = JoinSet::new();
    let mut said_failure = false;
    if let Ok(a) = listener.local_addr() {
        tracing::info!("http: listening on {a}");
    }
    loop {
        let accepted = tokio::select! {
            _ = closing.wait_for(|c| *c) => break,
            () = reload.notified() => {
                tokio::spawn(reload_files(Arc::clone(&shared)));
                continue;
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                said_failure = false;
                stream
            }
            Err(e) => {
                if !said_failure {
                    tracing::warn!("http: accept failed: {e} (retrying)");
                    said_failure = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match shared.registry.make_room(shared.settings.max_connections) {
            Room::Free => {}
            Room::Made => tracing::debug!(
                "http: {} connections open; closed the one idle longest",
                shared.settings.max_connections
            ),
            Room::Full => {
                connections.spawn(busy(stream));
                continue;
            }
        }
        let ticket = shared.registry.admit();
        let id = ticket.id();
        let abort = connections.spawn(connection(stream, Arc::clone(&shared), ticket));
        shared.registry.serving(id, abort);
    }
    // Every connection has seen `closing`: it finishes the request it is at, then
    // ends; what has not ended within DRAIN is cut.
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::debug!(
            "http: {} connections cut after {DRAIN:?}",
            connections.len()
        );
    }
    connections.shutdown().await;
    listener
}

/// Every connection is at work on a request: this one is told so and closed.
async fn busy(mut stream: TcpStream) {
    let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 68\r\nretry-after: 1\r\nconnection: close\r\n\r\n{\"outcome\":\"error\",\"message\":\"busy: every connection is at work\"}\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, ticket: Ticket) {
    let header_timeout = shared.settings.header_timeout;
    let acceptor = read(&shared.tls);
    let ticket = Arc::new(ticket);
    match acceptor {
        Some(acceptor) => {
            match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => http1(TokioIo::new(tls), shared, ticket).await,
                Ok(Err(e)) => tracing::debug!("http: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!("http: TLS handshake timed out"),
            }
        }
        None => http1(TokioIo::new(stream), shared, ticket).await,
    }
}

async fn http1<I>(io: I, shared: Arc<Shared>, ticket: Arc<Ticket>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let header_timeout = shared.settings.header_timeout;
    let mut closing = shared.closing.clone();
    // Whether a request has come on this connection yet.
    let asked = Arc::new(AtomicBool::new(false));
    let asked_in = Arc::clone(&asked);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let ticket = Arc::clone(&ticket);
        asked_in.store(true, Ordering::Relaxed);
        async move {
            ticket.idle(false);
            let mut response = api::handle(&shared, &ticket, req).await;
            ticket.idle(true);
            if *shared.closing.borrow() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(header_timeout))
        .max_buf_size(16 * 1024)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        biased;
        ended = conn.as_mut() => ended,
        () = async { drop(closing.wait_for(|c| *c).await) } => {
            if asked.load(Ordering::Relaxed) {
                // The request being answered is answered; a kept-alive connection
                // waiting for its next one ends now.
                conn.as_mut().graceful_shutdown();
            }
            // A connection that has not asked anything yet is one a client has just
            // opened: its request, when it comes, is answered (with `connection:
            // close`) rather than the connection closed under it.
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!("http: connection ended: {e}");
    }
}
