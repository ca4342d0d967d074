//! `tcp`: connect; optionally send a line and expect a substring in what comes back.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Outcome, Pattern, Reason};

/// What a tcp probe expects back: a piece of text, or a regular expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Text(String),
    Regex(Pattern),
}

impl Expect {
    fn found(&self, got: &str) -> bool {
        match self {
            Expect::Text(t) => got.contains(t.as_str()),
            Expect::Regex(r) => r.is_match(got),
        }
    }

    fn shown(&self) -> String {
        match self {
            Expect::Text(t) => format!("{t:?}"),
            Expect::Regex(r) => format!("/{}/", r.0.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpProbe {
    pub host: String,
    pub port: u16,
    pub send: Option<String>,
    pub expect: Option<Expect>,
}

/// What a tcp check keeps between its runs: the texts its reasons name, made once.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    target: Arc<str>,
    expect: Option<Arc<str>>,
}

impl TcpProbe {
    pub(crate) async fn run(&self, labels: &mut Option<Labels>, start: Instant) -> Outcome {
        let Labels {
            target,
            expect: shown,
        } = labels
            .get_or_insert_with(|| Labels {
                target: Arc::from(format!("{}:{}", self.host, self.port)),
                expect: self.expect.as_ref().map(|e| Arc::from(e.shown())),
            })
            .clone();
        let mut stream = match TcpStream::connect((self.host.as_str(), self.port)).await {
            Ok(s) => s,
            Err(e) => {
                return Outcome::fail(format!("cannot connect to {target}: {e}"), start.elapsed());
            }
        };
        if let Some(send) = &self.send
            && let Err(e) = stream.write_all(send.as_bytes()).await
        {
            return Outcome::fail(format!("{target}: sending failed: {e}"), start.elapsed());
        }
        if let Some(expect) = &self.expect {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        if expect.found(&String::from_utf8_lossy(&got)) {
                            let expect = shown.unwrap_or_else(|| Arc::from(expect.shown()));
                            return Outcome::pass(
                                Reason::Answered { target, expect },
                                start.elapsed(),
                            );
                        }
                        if got.len() > 64 * 1024 {
                            break;
                        }
                    }
                    Err(e) => {
                        return Outcome::fail(
                            format!("{target}: reading failed: {e}"),
                            start.elapsed(),
                        );
                    }
                }
            }
            let shown: String = String::from_utf8_lossy(&got).chars().take(80).collect();
            return Outcome::fail(
                format!(
                    "{target} did not answer with {} (got {shown:?})",
                    expect.shown()
                ),
                start.elapsed(),
            );
        }
        Outcome::pass(Reason::Connected(target), start.elapsed())
    }
}
