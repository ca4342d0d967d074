//! Probe tables (`[ready]` now; `[[check]]` share the same keys): `type` and the keys of
//! that type, read into a [`checks::Probe`].

use std::time::Duration;

use checks::{HttpProbe, Probe, ProgramProbe, TcpProbe};
use toml::de::{DeTable, DeValue};

use super::reader::{Reader, Value};

const TYPES: &[&str] = &["tcp", "http", "program"];

/// A probe with how often and how long it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadySpec {
    pub probe: Probe,
    /// Time between two tries.
    pub every: Duration,
    /// How long one try may take.
    pub timeout: Duration,
    /// Not ready by then: the start fails.
    pub deadline: Duration,
}

/// Reads `[ready]`.
pub fn ready(r: &mut Reader<'_>, v: &Value<'_>) -> Option<ReadySpec> {
    let t = r.table("ready", v)?;
    let mut every = Duration::from_millis(100);
    let mut timeout = Duration::from_secs(1);
    let mut deadline = Duration::from_secs(60);
    for (k, val) in t.iter() {
        match k.get_ref().as_ref() {
            "every" => every = r.duration("every", val).unwrap_or(every),
            "timeout" => timeout = r.duration("timeout", val).unwrap_or(timeout),
            "deadline" => deadline = r.duration("deadline", val).unwrap_or(deadline),
            _ => {}
        }
    }
    let probe = probe(r, v, t, &["every", "timeout", "deadline"])?;
    if every.is_zero() {
        r.error(v.span(), "`every` must be more than 0", None);
    }
    Some(ReadySpec {
        probe,
        every,
        timeout,
        deadline,
    })
}

fn str_key(r: &mut Reader<'_>, t: &DeTable<'_>, key: &str) -> Option<String> {
    t.get(key).and_then(|v| r.string(key, v))
}

/// Reads the probe of a table: its `type` and that type's keys. `extra` are the keys the
/// caller handles itself.
pub fn probe(
    r: &mut Reader<'_>,
    whole: &Value<'_>,
    t: &DeTable<'_>,
    extra: &[&str],
) -> Option<Probe> {
    let Some(ty) = t.get("type") else {
        r.error(
            whole.span(),
            "a probe needs a `type`",
            Some(format!("one of: {}", TYPES.join(", "))),
        );
        return None;
    };
    let kind = r.string("type", ty)?;
    let keys: &[&str] = match kind.as_str() {
        "tcp" => &["type", "host", "port", "send", "expect"],
        "http" => &["type", "url", "method", "status", "contains", "headers"],
        "program" => &["type", "exec", "status"],
        _ => {
            let hint = super::diag::did_you_mean(&kind, TYPES)
                .map(|k| format!("did you mean `{k}`?"))
                .or_else(|| Some(format!("one of: {}", TYPES.join(", "))));
            r.error(ty.span(), format!("no probe type `{kind}`"), hint);
            return None;
        }
    };
    let known: Vec<&str> = keys.iter().chain(extra).copied().collect();
    for (k, _) in t.iter() {
        if !known.contains(&k.get_ref().as_ref()) {
            r.unknown_key(k, &known);
        }
    }
    match kind.as_str() {
        "tcp" => {
            let host = str_key(r, t, "host").unwrap_or_else(|| "127.0.0.1".into());
            let Some(pv) = t.get("port") else {
                r.error(whole.span(), "a tcp probe needs a `port`", None);
                return None;
            };
            let port = match r.integer("port", pv).map(u16::try_from) {
                Some(Ok(p)) if p > 0 => p,
                Some(_) => {
                    r.error(pv.span(), "`port` must be between 1 and 65535", None);
                    return None;
                }
                None => return None,
            };
            Some(Probe::Tcp(TcpProbe {
                host,
                port,
                send: str_key(r, t, "send"),
                expect: str_key(r, t, "expect"),
            }))
        }
        "http" => {
            let Some(uv) = t.get("url") else {
                r.error(whole.span(), "an http probe needs a `url`", None);
                return None;
            };
            let url = r.string("url", uv)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                r.error(uv.span(), "`url` must start with http:// or https://", None);
                return None;
            }
            let method = str_key(r, t, "method")
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase();
            let mut status = Vec::new();
            if let Some(sv) = t.get("status") {
                let items: Vec<&Value<'_>> = match sv.get_ref() {
                    DeValue::Array(a) => a.iter().collect(),
                    _ => vec![sv],
                };
                for item in items {
                    match r.integer("status", item).map(u16::try_from) {
                        Some(Ok(c)) if (100..600).contains(&c) => status.push(c),
                        Some(_) => {
                            r.error(item.span(), "an HTTP status is between 100 and 599", None)
                        }
                        None => {}
                    }
                }
            }
            let mut headers = Vec::new();
            if let Some(hv) = t.get("headers")
                && let Some(ht) = r.table("headers", hv)
            {
                for (k, v) in ht.iter() {
                    if let Some(val) = r.string(k.get_ref(), v) {
                        headers.push((k.get_ref().to_string(), val));
                    }
                }
            }
            Some(Probe::Http(HttpProbe {
                url,
                method,
                status,
                contains: str_key(r, t, "contains"),
                headers,
            }))
        }
        _ => {
            let Some(ev) = t.get("exec") else {
                r.error(
                    whole.span(),
                    "a program probe needs `exec` (shell text)",
                    None,
                );
                return None;
            };
            let command = r.string("exec", ev)?;
            let status = match t.get("status").map(|s| r.integer("status", s)) {
                Some(Some(n)) => n as i32,
                _ => 0,
            };
            Some(Probe::Program(ProgramProbe { command, status }))
        }
    }
}
