//! `http`: a request, the status expected (by default any 2xx or 3xx) and optionally a
//! piece of text the body must contain.

use std::time::Instant;

use crate::{Context, Outcome, Pattern, millis};

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

impl HttpProbe {
    pub(crate) async fn run(&self, ctx: &Context, start: Instant) -> Outcome {
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
        let ok_status = if self.status.is_empty() {
            (200..400).contains(&code)
        } else {
            self.status.contains(&code)
        };
        if !ok_status {
            let t = start.elapsed();
            return Outcome::fail(
                format!("HTTP {code} from {} after {}", self.url, millis(t)),
                t,
            )
            .with_value(f64::from(code));
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
            let lacks = match (&self.contains, &self.matches) {
                (Some(needle), _) if !body.contains(needle.as_str()) => Some(format!("{needle:?}")),
                (_, Some(re)) if !re.is_match(&body) => {
                    Some(format!("a match for /{}/", re.0.as_str()))
                }
                _ => None,
            };
            if let Some(what) = lacks {
                let t = start.elapsed();
                return Outcome::fail(
                    format!("HTTP {code} from {} but the body lacks {what}", self.url),
                    t,
                )
                .with_value(f64::from(code));
            }
        }
        let t = start.elapsed();
        Outcome::pass(
            format!("HTTP {code} from {} after {}", self.url, millis(t)),
            t,
        )
        .with_value(f64::from(code))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
