//! `http`: a request, the status expected (by default any 2xx or 3xx) and optionally a
//! piece of text the body must contain.

use std::time::Instant;

use crate::{Outcome, millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub url: String,
    pub method: String,
    /// Accepted statuses; empty means 200–399.
    pub status: Vec<u16>,
    pub contains: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl HttpProbe {
    pub(crate) async fn run(&self, client: &reqwest::Client, start: Instant) -> Outcome {
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
        if let Some(needle) = &self.contains {
            match resp.text().await {
                Ok(body) if body.contains(needle.as_str()) => {}
                Ok(_) => {
                    let t = start.elapsed();
                    return Outcome::fail(
                        format!(
                            "HTTP {code} from {} but the body lacks {needle:?}",
                            self.url
                        ),
                        t,
                    )
                    .with_value(f64::from(code));
                }
                Err(e) => {
                    return Outcome::fail(
                        format!(
                            "HTTP {code} from {}: reading the body failed: {e}",
                            self.url
                        ),
                        start.elapsed(),
                    );
                }
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
