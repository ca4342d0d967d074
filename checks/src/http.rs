//! `http`: a request, the status expected (by default any 2xx or 3xx) and optionally a
//! piece of text the body must contain.
//!
//! An `https://` URL goes through the shared client (reqwest: TLS, the peer's
//! certificate for `cert-min-days`). A plain `http://` URL does not: its request is
//! rendered once, its address resolved once, and each check keeps its own connection
//! while the server keeps it open ([`Plain`]).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Context, Outcome, Pattern, Reason, millis};

#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    pub url: String,
    pub method: String,
    /// Accepted statuses; empty means 200–399.
    pub status: Vec<u16>,
    pub contains: Option<String>,
    pub matches: Option<Pattern>,
    pub headers: Vec<(String, String)>,
    /// Fail when the server's certificate expires within this many days.
    pub cert_min_days: Option<u32>,
    /// Verify the certificate chain (false: a self-signed certificate is accepted).
    pub tls_verify: bool,
}

/// Whether the HTTP client can request `url`: asked when a configuration is read, so
/// that a URL that could never be requested is refused then, not at every check.
pub fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("the scheme `{}` is not http or https", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("it names no host".into());
    }
    Ok(())
}

/// Whether `method` can be sent as an HTTP method.
pub fn check_method(method: &str) -> Result<(), String> {
    reqwest::Method::from_bytes(method.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("`{method}` is not an HTTP method"))
}

/// Whether `name: value` can be sent as an HTTP header.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not an HTTP header name"))?;
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header `{name}` holds a character a header cannot"))?;
    Ok(())
}

/// What an http probe keeps between runs of one check.
#[derive(Debug, Default)]
pub(crate) enum HttpState {
    /// Not run yet.
    #[default]
    Unset,
    /// Through the shared client.
    Shared,
    Plain(Box<Plain>),
}

impl HttpState {
    /// Connections a plain probe opened so far.
    pub(crate) fn opened(&self) -> Option<u64> {
        match self {
            HttpState::Plain(p) => Some(p.opened),
            _ => None,
        }
    }
}

impl HttpProbe {
    pub(crate) async fn run(
        &self,
        ctx: &Context,
        state: &mut HttpState,
        start: Instant,
    ) -> Outcome {
        if matches!(state, HttpState::Unset) {
            *state = match Plain::new(self) {
                Some(p) => HttpState::Plain(Box::new(p)),
                None => HttpState::Shared,
            };
        }
        match state {
            HttpState::Plain(p) => p.run(self, start).await,
            _ => self.run_shared(ctx, start).await,
        }
    }

    async fn run_shared(&self, ctx: &Context, start: Instant) -> Outcome {
        let client = if self.tls_verify {
            &ctx.http
        } else {
            match &ctx.http_insecure {
                Some(c) => c,
                None => {
                    return Outcome::fail("no HTTP client for tls-verify = false", start.elapsed());
                }
            }
        };
        let method = match reqwest::Method::from_bytes(self.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return Outcome::fail(
                    format!("`{}` is not an HTTP method", self.method),
                    start.elapsed(),
                );
            }
        };
        let mut req = client.request(method, &self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_connect() {
                    "cannot connect"
                } else if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                };
                return Outcome::fail(
                    format!("{} {}: {why}: {}", self.method, self.url, root_cause(&e)),
                    start.elapsed(),
                );
            }
        };
        let code = resp.status().as_u16();
        let expiry = if self.cert_min_days.is_some() {
            resp.extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|info| info.peer_certificate())
                .map(crate::cert::not_after)
        } else {
            None
        };
        if let Some(o) = self.judge_status(code, start) {
            return o;
        }
        if let Some(min_days) = self.cert_min_days {
            let days = match expiry {
                Some(Some(not_after)) => {
                    match not_after.duration_since(std::time::SystemTime::now()) {
                        Ok(left) => (left.as_secs() / 86_400) as i64,
                        Err(past) => -((past.duration().as_secs() / 86_400) as i64) - 1,
                    }
                }
                Some(None) => {
                    return Outcome::fail(
                        format!("{}: cannot read the certificate's expiry", self.url),
                        start.elapsed(),
                    );
                }
                None => {
                    return Outcome::fail(
                        format!("{}: no TLS certificate to check (is it https?)", self.url),
                        start.elapsed(),
                    );
                }
            };
            if days < i64::from(min_days) {
                let t = start.elapsed();
                return Outcome::fail(
                    format!(
                        "the certificate of {} expires in {days} days, fewer than {min_days}",
                        self.url
                    ),
                    t,
                )
                .with_value(days as f64);
            }
        }
        if self.contains.is_some() || self.matches.is_some() {
            let body = match resp.text().await {
                Ok(body) => body,
                Err(e) => {
                    return Outcome::fail(
                        format!(
                            "HTTP {code} from {}: reading the body failed: {e}",
                            self.url
                        ),
                        start.elapsed(),
                    );
                }
            };
            if let Some(o) = self.judge_body(code, &body, start) {
                return o;
            }
        }
        self.passed(code, Arc::from(self.url.as_str()), start)
    }

    /// A failure when `code` is not a status that passes.
    fn judge_status(&self, code: u16, start: Instant) -> Option<Outcome> {
        let ok_status = if self.status.is_empty() {
            (200..400).contains(&code)
        } else {
            self.status.contains(&code)
        };
        if ok_status {
            return None;
        }
        let t = start.elapsed();
        Some(
            Outcome::fail(
                format!("HTTP {code} from {} after {}", self.url, millis(t)),
                t,
            )
            .with_value(f64::from(code)),
        )
    }

    /// A failure when the body lacks what `contains` or `matches` asks for.
    fn judge_body(&self, code: u16, body: &str, start: Instant) -> Option<Outcome> {
        let lacks = match (&self.contains, &self.matches) {
            (Some(needle), _) if !body.contains(needle.as_str()) => Some(format!("{needle:?}")),
            (_, Some(re)) if !re.is_match(body) => Some(format!("a match for /{}/", re.0.as_str())),
            _ => None,
        }?;
        let t = start.elapsed();
        Some(
            Outcome::fail(
                format!("HTTP {code} from {} but the body lacks {lacks}", self.url),
                t,
            )
            .with_value(f64::from(code)),
        )
    }

    fn passed(&self, code: u16, url: Arc<str>, start: Instant) -> Outcome {
        Outcome::pass(Reason::Http { code, url }, start.elapsed()).with_value(f64::from(code))
    }
}

/// The verdict on a plain answer: its status, then its body (`buf[..body_end]`).
fn judge(
    p: &HttpProbe,
    url: &Arc<str>,
    code: u16,
    buf: &[u8],
    body_end: usize,
    want_body: bool,
    start: Instant,
) -> Outcome {
    if let Some(o) = p.judge_status(code, start) {
        return o;
    }
    if want_body {
        let body = String::from_utf8_lossy(&buf[..body_end.min(buf.len())]);
        if let Some(o) = p.judge_body(code, &body, start) {
            return o;
        }
    }
    p.passed(code, url.clone(), start)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// At most this much of a body is kept to look for `contains` or `matches` in; a body
/// that goes on is cut there (and its connection closed).
const BODY_CAP: usize = 1 << 20;
/// At most this much of a response's head (status line and headers).
const HEAD_CAP: usize = 64 * 1024;

/// What an `http://` check keeps from run to run: the request, rendered once, the
/// server's address, resolved once (again when the lookup or a connect fails), and
/// the connection, kept while the server keeps it open.
#[derive(Debug)]
pub(crate) struct Plain {
    request: Vec<u8>,
    url: Arc<str>,
    host: String,
    port: u16,
    /// The host is an IP address: nothing to look up, ever.
    literal: bool,
    addrs: Vec<SocketAddr>,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
    head_only: bool,
    /// Connections opened, for tests and the curious.
    pub(crate) opened: u64,
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// A failure, and whether it happened on a reused connection before any byte of the
/// answer came back (then the request is sent again on a fresh one).
struct Failed {
    why: String,
    stale: bool,
}

impl Plain {
    /// The state of an `http://` probe that can go without the shared client, or None
    /// (an https:// URL, credentials in the URL, a proxy in the environment).
    pub(crate) fn new(p: &HttpProbe) -> Option<Plain> {
        let u = reqwest::Url::parse(&p.url).ok()?;
        if u.scheme() != "http" || !u.username().is_empty() || u.password().is_some() {
            return None;
        }
        if PROXY_VARS.iter().any(|v| std::env::var_os(v).is_some()) {
            return None;
        }
        let host_str = u.host_str()?;
        let port = u.port_or_known_default()?;
        let host = host_str
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host_str)
            .to_string();
        let literal_ip = host.parse::<IpAddr>().ok();
        let mut target = u.path().to_string();
        if let Some(q) = u.query() {
            target.push('?');
            target.push_str(q);
        }
        let has = |name: &str| p.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut r = String::with_capacity(128);
        let _ = write!(r, "{} {target} HTTP/1.1\r\n", p.method);
        if !has("host") {
            match u.port() {
                Some(port) => {
                    let _ = write!(r, "host: {host_str}:{port}\r\n");
                }
                None => {
                    let _ = write!(r, "host: {host_str}\r\n");
                }
            }
        }
        if !has("user-agent") {
            r.push_str(concat!(
                "user-agent: guardian/",
                env!("CARGO_PKG_VERSION"),
                "\r\n"
            ));
        }
        if !has("accept") {
            r.push_str("accept: */*\r\n");
        }
        if matches!(p.method.as_str(), "POST" | "PUT" | "PATCH") && !has("content-length") {
            r.push_str("content-length: 0\r\n");
        }
        for (k, v) in &p.headers {
            let _ = write!(r, "{k}: {v}\r\n");
        }
        r.push_str("\r\n");
        Some(Plain {
            request: r.into_bytes(),
            url: Arc::from(p.url.as_str()),
            host,
            port,
            literal: literal_ip.is_some(),
            addrs: literal_ip
                .map(|ip| vec![SocketAddr::new(ip, port)])
                .unwrap_or_default(),
            conn: None,
            buf: Vec::new(),
            head_only: p.method == "HEAD",
            opened: 0,
        })
    }

    async fn resolve(&mut self) -> Result<(), String> {
        if self.literal {
            return Ok(());
        }
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(found) => {
                self.addrs = found.collect();
                if self.addrs.is_empty() {
                    return Err(format!("{} has no address", self.host));
                }
                Ok(())
            }
            Err(e) => {
                self.addrs.clear();
                Err(format!("cannot resolve {}: {e}", self.host))
            }
        }
    }

    async fn connect(&mut self) -> Result<TcpStream, String> {
        let fresh = self.addrs.is_empty();
        if fresh {
            self.resolve().await?;
        }
        match connect_any(&self.addrs).await {
            Ok((s, i)) => {
                // Try the address that answered first next time.
                self.addrs.swap(0, i);
                self.opened = self.opened.saturating_add(1);
                Ok(s)
            }
            Err(e) if fresh || self.literal => Err(e.to_string()),
            Err(e) => {
                // The name may point elsewhere now: ask again, and try what it says.
                let before = std::mem::take(&mut self.addrs);
                self.resolve().await?;
                if self.addrs == before {
                    return Err(e.to_string());
                }
                let (s, i) = connect_any(&self.addrs).await.map_err(|e| e.to_string())?;
                self.addrs.swap(0, i);
                self.opened = self.opened.saturating_add(1);
                Ok(s)
            }
        }
    }

    /// Sends the request and reads the answer: on the kept connection when there is
    /// one (once more on a fresh one if that turns out closed), else on a new one.
    pub(crate) async fn run(&mut self, p: &HttpProbe, start: Instant) -> Outcome {
        let want_body = p.contains.is_some() || p.matches.is_some();
        let mut kept = self.conn.take();
        loop {
            let reused = kept.is_some();
            let mut stream = match kept.take() {
                Some(s) => s,
                None => match self.connect().await {
                    Ok(s) => s,
                    Err(e) => {
                        return Outcome::fail(
                            format!("{} {}: cannot connect: {e}", p.method, p.url),
                            start.elapsed(),
                        );
                    }
                },
            };
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let got = exchange(
                &mut stream,
                &self.request,
                &mut buf,
                want_body,
                self.head_only,
            )
            .await;
            match got {
                Ok(answer) => {
                    if answer.keep {
                        self.conn = Some(stream);
                    }
                    let Answer { code, body_end, .. } = answer;
                    let o = judge(p, &self.url, code, &buf[..], body_end, want_body, start);
                    self.buf = buf;
                    return o;
                }
                Err(f) if f.stale && reused => {
                    self.buf = buf;
                    continue;
                }
                Err(f) => {
                    self.buf = buf;
                    return Outcome::fail(
                        format!("{} {}: request failed: {}", p.method, p.url, f.why),
                        start.elapsed(),
                    );
                }
            }
        }
    }
}

const PROXY_VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];

async fn connect_any(addrs: &[SocketAddr]) -> std::io::Result<(TcpStream, usize)> {
    let mut last = None;
    for (i, a) in addrs.iter().enumerate() {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok((s, i)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}

/// What came back: the status, where the body lies in the buffer (from the head's end
/// to `body_end`: the head is drained off the front), and whether the connection may
/// carry the next request.
struct Answer {
    code: u16,
    body_end: usize,
    keep: bool,
}

/// Reads more into `buf`; 0 at the end of the stream.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    stream.read_buf(buf).await
}

async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    want_body: bool,
    head_only: bool,
) -> Result<Answer, Failed> {
    let stale = |why: String| Failed { why, stale: true };
    let hard = |why: String| Failed { why, stale: false };
    stream
        .write_all(request)
        .await
        .map_err(|e| stale(format!("sending failed: {e}")))?;
    let mut first = true;
    // The head; interim (1xx) answers are skipped.
    let (code, framing, mut keep, head_len) = loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(n)) => Some(head_of(&resp, n, head_only)),
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(hard(format!("a malformed answer: {e}"))),
            }
        };
        match parsed {
            Some(Ok(h)) if (100..200).contains(&h.0) && h.0 != 101 => {
                buf.drain(..h.3);
                continue;
            }
            Some(Ok(h)) => break h,
            Some(Err(e)) => return Err(hard(e)),
            None => {}
        }
        if buf.len() > HEAD_CAP {
            return Err(hard("the answer's head is too long".into()));
        }
        match fill(stream, buf).await {
            Ok(0) if first => {
                return Err(stale("the connection was closed before an answer".into()));
            }
            Ok(0) => return Err(hard("the connection was closed within the answer".into())),
            Ok(_) => first = false,
            Err(e) if first => return Err(stale(format!("reading failed: {e}"))),
            Err(e) => return Err(hard(format!("reading failed: {e}"))),
        }
    };
    buf.drain(..head_len);
    let cap = if want_body { BODY_CAP } else { 0 };
    let body_end = match framing {
        Framing::None => {
            if !buf.is_empty() {
                keep = false;
            }
            0
        }
        Framing::Length(n) => {
            let total = usize::try_from(n).unwrap_or(usize::MAX);
            let mut seen = buf.len();
            if seen > total {
                keep = false;
            }
            buf.truncate(seen.min(total).min(cap));
            // A body too long to read through is cut at what is wanted of it; its
            // connection is not kept.
            let until = if total > BODY_CAP {
                keep = false;
                cap.min(total)
            } else {
                total
            };
            while seen < until {
                match fill(stream, buf).await {
                    Ok(0) => return Err(hard("the connection was closed within the body".into())),
                    Ok(n) => seen = seen.saturating_add(n),
                    Err(e) => return Err(hard(format!("reading the body failed: {e}"))),
                }
                if seen > total {
                    keep = false;
                }
                buf.truncate(seen.min(total).min(cap));
            }
            buf.len()
        }
        Framing::Close => {
            keep = false;
            // Without a length the body ends with the connection: read it only when
            // it is looked at.
            if want_body {
                while buf.len() < cap {
                    match fill(stream, buf).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return Err(hard(format!("reading the body failed: {e}"))),
                    }
                }
            }
            buf.truncate(cap);
            buf.len()
        }
        Framing::Chunked => dechunk(stream, buf, cap, &mut keep).await.map_err(hard)?,
    };
    Ok(Answer {
        code,
        body_end,
        keep,
    })
}

/// Decodes a chunked body in place: on return `buf[..len]` holds (up to `cap` bytes of)
/// the body.
async fn dechunk(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    cap: usize,
    keep: &mut bool,
) -> Result<usize, String> {
    let mut out = 0usize; // decoded bytes kept at the front
    let mut pos = 0usize; // where the undecoded input starts
    let mut total = 0usize;
    loop {
        // A chunk's size line.
        let (skip, size) = loop {
            match httparse::parse_chunk_size(&buf[pos..]) {
                Ok(httparse::Status::Complete(x)) => break x,
                Ok(httparse::Status::Partial) => {
                    if buf.len() - pos > 4096 {
                        return Err("a malformed chunk size".into());
                    }
                    more(stream, buf, &mut pos, out).await?;
                }
                Err(_) => return Err("a malformed chunk size".into()),
            }
        };
        pos += skip;
        if size == 0 {
            break;
        }
        let mut left = usize::try_from(size).map_err(|_| "a chunk too long".to_string())?;
        total = total.saturating_add(left);
        if total > BODY_CAP && out >= cap {
            // Not worth reading through: the connection is not kept.
            *keep = false;
            buf.truncate(out);
            return Ok(out);
        }
        while left > 0 {
            if pos == buf.len() {
                more(stream, buf, &mut pos, out).await?;
            }
            let n = left.min(buf.len() - pos);
            let room = cap.saturating_sub(out).min(n);
            buf.copy_within(pos..pos + room, out);
            out += room;
            pos += n;
            left -= n;
        }
        // The CRLF after the chunk's data.
        while buf.len() - pos < 2 {
            more(stream, buf, &mut pos, out).await?;
        }
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err("a malformed chunk".into());
        }
        pos += 2;
    }
    // Trailers, up to the empty line.
    loop {
        if let Some(i) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
            let empty = i == 0;
            pos += i + 2;
            if empty {
                break;
            }
            continue;
        }
        if buf.len() - pos > HEAD_CAP {
            return Err("the trailers are too long".into());
        }
        more(stream, buf, &mut pos, out).await?;
    }
    if pos != buf.len() {
        *keep = false;
    }
    buf.truncate(out);
    Ok(out)
}

/// Reads more of a chunked body, first moving the undecoded rest down to `out`.
async fn more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    pos: &mut usize,
    out: usize,
) -> Result<(), String> {
    if *pos > out {
        buf.copy_within(*pos.., out);
        buf.truncate(out + (buf.len() - *pos));
        *pos = out;
    }
    match fill(stream, buf).await {
        Ok(0) => Err("the connection was closed within the body".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("reading the body failed: {e}")),
    }
}

/// The status, the body's framing, whether the connection stays open, and the head's
/// length.
fn head_of(
    resp: &httparse::Response<'_, '_>,
    len: usize,
    head_only: bool,
) -> Result<(u16, Framing, bool, usize), String> {
    let code = resp.code.ok_or("an answer without a status")?;
    let mut keep = resp.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("a malformed content-length")?;
            if length.is_some_and(|l| l != v) {
                return Err("two different content-lengths".into());
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for tok in h.value.split(|b| *b == b',') {
                let tok = tok.trim_ascii();
                if tok.eq_ignore_ascii_case(b"close") {
                    keep = false;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    keep = true;
                }
            }
        }
    }
    let framing = if head_only || code == 204 || code == 304 || (100..200).contains(&code) {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok((code, framing, keep, len))
}
