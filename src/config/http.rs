//! `[http]` in guardian.toml: the HTTP interface (JSON API, /metrics). Off unless the
//! table is there. The users and tokens files are read here too, so that `check` says
//! what is wrong with them; the daemon reads them again at its start and on SIGHUP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reader::{Reader, Value};

const KEYS: &[&str] = &[
    "listen",
    "tls-cert",
    "tls-key",
    "users-file",
    "tokens-file",
    "metrics-auth",
    "max-connections",
    "header-timeout",
    "body-timeout",
    "max-body-size",
];

/// The port `listen` gets when it names none.
pub const DEFAULT_PORT: u16 = 9273;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub tls: Option<Tls>,
    pub users_file: Option<PathBuf>,
    pub tokens_file: Option<PathBuf>,
    /// Whether /metrics needs credentials like everything else.
    pub metrics_auth: bool,
    /// Connections open at once; one more closes the one idle longest.
    pub max_connections: usize,
    /// From the first byte of a request (or the end of the last answer) to the end of
    /// its headers; a TLS handshake gets the same.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body.
    pub body_timeout: Duration,
    pub max_body_size: u64,
}

impl HttpSettings {
    pub fn defaults() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            tls: None,
            users_file: None,
            tokens_file: None,
            metrics_auth: true,
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_body_size: 64 * 1024,
        }
    }
}

fn parse_listen(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
}

/// Reads `[http]`; relative paths are taken relative to the config directory.
pub fn read(r: &mut Reader<'_>, dir: &Path, v: &Value<'_>) -> Option<HttpSettings> {
    let t = r.table("http", v)?;
    let mut h = HttpSettings::defaults();
    let mut listen_span = v.span();
    let mut cert_span = None;
    let mut key_span = None;
    let (mut cert, mut key) = (None, None);
    for (key_, v) in t.iter() {
        let k = key_.get_ref().as_ref();
        match k {
            "listen" => {
                let Some(s) = r.string(k, v) else { continue };
                match parse_listen(&s) {
                    Some(a) => {
                        h.listen = a;
                        listen_span = v.span();
                    }
                    None => r.error(
                        v.span(),
                        format!("`listen` is an address and port, not `{s}`"),
                        Some(format!(
                            "such as \"127.0.0.1:{DEFAULT_PORT}\" or \"[::1]:{DEFAULT_PORT}\""
                        )),
                    ),
                }
            }
            "tls-cert" | "tls-key" | "users-file" | "tokens-file" => {
                let Some(p) = r.path(k, v) else { continue };
                let p = dir.join(p);
                match k {
                    "tls-cert" => {
                        cert = Some(p);
                        cert_span = Some(v.span());
                    }
                    "tls-key" => {
                        key = Some(p);
                        key_span = Some(v.span());
                    }
                    "users-file" => {
                        if let Err(e) = crate::http::auth::Users::load(&p) {
                            r.error(
                                v.span(),
                                format!("`users-file`: {e}"),
                                Some(
                                    "`guardian passwd USER --file FILE` writes its entries".into(),
                                ),
                            );
                        }
                        h.users_file = Some(p);
                    }
                    _ => {
                        if let Err(e) = crate::http::auth::Tokens::load(&p) {
                            r.error(
                                v.span(),
                                format!("`tokens-file`: {e}"),
                                Some(
                                    "one token a line: ROLE TOKEN, with ROLE admin or read-only"
                                        .into(),
                                ),
                            );
                        }
                        h.tokens_file = Some(p);
                    }
                }
            }
            "metrics-auth" => {
                if let Some(b) = r.bool(k, v) {
                    h.metrics_auth = b;
                }
            }
            "max-connections" => match r.integer(k, v).map(usize::try_from) {
                Some(Ok(n)) if (1..=10_000).contains(&n) => h.max_connections = n,
                Some(_) => r.error(
                    v.span(),
                    "`max-connections` must be between 1 and 10000",
                    None,
                ),
                None => {}
            },
            "header-timeout" | "body-timeout" => {
                if let Some(d) = r.positive_duration(k, v) {
                    if k == "header-timeout" {
                        h.header_timeout = d;
                    } else {
                        h.body_timeout = d;
                    }
                }
            }
            "max-body-size" => {
                if let Some(n) = r.size(k, v) {
                    if (1..=16_000_000).contains(&n) {
                        h.max_body_size = n;
                    } else {
                        r.error(
                            v.span(),
                            "`max-body-size` must be between 1B and 16MB",
                            None,
                        );
                    }
                }
            }
            _ => r.unknown_key(key_, KEYS),
        }
    }
    match (cert, key) {
        (Some(cert), Some(key)) => {
            if let Err(e) = crate::http::tls::load(&cert, &key) {
                let span = cert_span.unwrap_or_else(|| v.span());
                r.error(span, format!("TLS: {e}"), None);
            }
            h.tls = Some(Tls { cert, key });
        }
        (Some(_), None) => r.error(
            cert_span.unwrap_or_else(|| v.span()),
            "`tls-cert` needs a `tls-key`",
            None,
        ),
        (None, Some(_)) => r.error(
            key_span.unwrap_or_else(|| v.span()),
            "`tls-key` needs a `tls-cert`",
            None,
        ),
        (None, None) => {}
    }
    if !h.listen.ip().is_loopback() && (h.tls.is_none() || h.users_file.is_none()) {
        let missing = match (h.tls.is_none(), h.users_file.is_none()) {
            (true, true) => "TLS (`tls-cert`, `tls-key`) and a `users-file`",
            (true, false) => "TLS (`tls-cert`, `tls-key`)",
            _ => "a `users-file`",
        };
        r.error(
            listen_span,
            format!(
                "`listen` = {} is reachable from other hosts, and [http] has no {missing}: passwords and tokens would cross the network in the clear or not be asked for",
                h.listen
            ),
            Some("listen on 127.0.0.1 (the default), or set tls-cert, tls-key and users-file".into()),
        );
    }
    Some(h)
}
