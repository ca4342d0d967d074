//! Probe tables (`[ready]` now; `[[check]]` share the same keys): `type` and the keys of
//! that type, read into a [`checks::Probe`].

use std::time::Duration;

use std::net::{IpAddr, SocketAddr};

use checks::{
    Amount, DnsProbe, FileProbe, FlockProbe, HttpProbe, Pattern, Probe, ProgramProbe, Resource,
    TcpExpect, TcpProbe,
};
use toml::de::{DeTable, DeValue};

use super::reader::{Reader, Value};

const TYPES: &[&str] = &[
    "tcp",
    "http",
    "program",
    "dns",
    "file",
    "flock",
    "cpu",
    "memory",
    "children",
    "load",
    "system-memory",
    "disk",
];

/// A probe with how often and how long it may run.
#[derive(Debug, Clone, PartialEq)]
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
            "every" => every = r.positive_duration("every", val).unwrap_or(every),
            "timeout" => timeout = r.positive_duration("timeout", val).unwrap_or(timeout),
            "deadline" => deadline = r.positive_duration("deadline", val).unwrap_or(deadline),
            _ => {}
        }
    }
    let probe = probe(r, v, t, &["every", "timeout", "deadline"])?;
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
        "tcp" => &["type", "host", "port", "send", "expect", "expect-regex"],
        "http" => &[
            "type",
            "url",
            "method",
            "status",
            "contains",
            "matches",
            "headers",
            "cert-min-days",
            "tls-verify",
        ],
        "program" => &["type", "exec", "status", "output"],
        "dns" => &["type", "host", "server", "expect"],
        "file" => &["type", "path", "max-age", "min-size", "max-size"],
        "flock" => &["type", "path"],
        "cpu" | "memory" | "children" | "system-memory" => &["type", "max"],
        "load" => &["type", "max", "minutes"],
        "disk" => &["type", "path", "max"],
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
    let required = |r: &mut Reader<'_>, key: &str| -> Option<String> {
        match t.get(key) {
            Some(v) if matches!(key, "path") => r.path(key, v),
            Some(v) => r.string(key, v),
            None => {
                r.error(whole.span(), format!("a {kind} probe needs `{key}`"), None);
                None
            }
        }
    };
    let pattern = |r: &mut Reader<'_>, key: &str| -> Option<Pattern> {
        let v = t.get(key)?;
        let text = r.string(key, v)?;
        match Pattern::new(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                r.error(
                    v.span(),
                    format!("`{key}` is not a valid regular expression: {e}"),
                    None,
                );
                None
            }
        }
    };
    let max_value = |r: &mut Reader<'_>| -> Option<&Value<'_>> {
        let v = t.get("max");
        if v.is_none() {
            r.error(whole.span(), format!("a {kind} probe needs `max`"), None);
        }
        v
    };
    match kind.as_str() {
        "tcp" => {
            let host = match t.get("host") {
                Some(hv) => host_name(r, "host", hv)?,
                None => "127.0.0.1".into(),
            };
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
            if t.contains_key("expect") && t.contains_key("expect-regex") {
                r.error(
                    whole.span(),
                    "a tcp probe takes `expect` or `expect-regex`, not both",
                    None,
                );
                return None;
            }
            let raw =
                |r: &mut Reader<'_>, key: &str| t.get(key).and_then(|v| r.string_with_nul(key, v));
            let expect = match (raw(r, "expect"), pattern(r, "expect-regex")) {
                (Some(text), _) => Some(TcpExpect::Text(text)),
                (None, Some(re)) => Some(TcpExpect::Regex(re)),
                (None, None) => None,
            };
            Some(Probe::Tcp(TcpProbe {
                host,
                port,
                send: raw(r, "send"),
                expect,
            }))
        }
        "http" => {
            let url = required(r, "url")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                if let Some(uv) = t.get("url") {
                    r.error(uv.span(), "`url` must start with http:// or https://", None);
                }
                return None;
            }
            if let Err(e) = checks::check_url(&url) {
                if let Some(uv) = t.get("url") {
                    r.error(uv.span(), format!("`url` cannot be requested: {e}"), None);
                }
                return None;
            }
            let method = str_key(r, t, "method")
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase();
            if let Err(e) = checks::check_method(&method) {
                if let Some(mv) = t.get("method") {
                    r.error(mv.span(), format!("`method`: {e}"), None);
                }
                return None;
            }
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
            let headers = headers(r, t);
            let cert_min_days = t.get("cert-min-days").and_then(|v| {
                match r.integer("cert-min-days", v).map(u32::try_from) {
                    Some(Ok(d)) => Some(d),
                    Some(Err(_)) => {
                        r.error(v.span(), "`cert-min-days` must be 0 or more", None);
                        None
                    }
                    None => None,
                }
            });
            if cert_min_days.is_some() && !url.starts_with("https://") {
                r.error(whole.span(), "`cert-min-days` needs an https:// url", None);
            }
            let tls_verify = t
                .get("tls-verify")
                .and_then(|v| r.bool("tls-verify", v))
                .unwrap_or(true);
            Some(Probe::Http(HttpProbe {
                url,
                method,
                status,
                contains: str_key(r, t, "contains"),
                matches: pattern(r, "matches"),
                headers,
                cert_min_days,
                tls_verify,
            }))
        }
        "program" => {
            let command = required(r, "exec")?;
            let status = match t.get("status").map(|s| (s, r.integer("status", s))) {
                Some((_, Some(n @ 0..=255))) => n as i32,
                Some((sv, Some(_))) => {
                    r.error(sv.span(), "an exit status is between 0 and 255", None);
                    return None;
                }
                _ => 0,
            };
            Some(Probe::Program(ProgramProbe {
                command,
                status,
                output: pattern(r, "output"),
            }))
        }
        "dns" => {
            let Some(hv) = t.get("host") else {
                r.error(whole.span(), "a dns probe needs `host`", None);
                return None;
            };
            let name = host_name(r, "host", hv)?;
            let server = match t.get("server") {
                Some(v) => {
                    let text = r.string("server", v)?;
                    let parsed = text
                        .parse::<SocketAddr>()
                        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
                    match parsed {
                        Ok(a) => Some(a),
                        Err(_) => {
                            r.error(
                                v.span(),
                                format!("`server`: `{text}` is not an address like 10.0.0.2 or 10.0.0.2:53"),
                                None,
                            );
                            return None;
                        }
                    }
                }
                None => None,
            };
            let expect = match t.get("expect") {
                Some(v) => {
                    let text = r.string("expect", v)?;
                    match text.parse::<IpAddr>() {
                        Ok(ip) => Some(ip),
                        Err(_) => {
                            r.error(
                                v.span(),
                                format!("`expect`: `{text}` is not an IP address"),
                                None,
                            );
                            return None;
                        }
                    }
                }
                None => None,
            };
            Some(Probe::Dns(DnsProbe {
                name,
                server,
                expect,
            }))
        }
        "file" => {
            let path = required(r, "path")?;
            let max_age = t.get("max-age").and_then(|v| r.duration("max-age", v));
            let min_size = t.get("min-size").and_then(|v| r.size("min-size", v));
            let max_size = t.get("max-size").and_then(|v| r.size("max-size", v));
            Some(Probe::File(FileProbe {
                path,
                max_age,
                min_size,
                max_size,
            }))
        }
        "flock" => {
            let path = required(r, "path")?;
            Some(Probe::Flock(FlockProbe { path }))
        }
        "cpu" => {
            let v = max_value(r)?;
            match amount(r, v, false, None)? {
                Amount::Percent(p) => Some(Probe::Resource(Resource::Cpu { max: p })),
                Amount::Absolute(_) => {
                    r.error(
                        v.span(),
                        "a cpu limit is a percentage of a core, like \"80%\"",
                        None,
                    );
                    None
                }
            }
        }
        "memory" | "system-memory" => {
            let v = max_value(r)?;
            let max = amount(r, v, true, Some("of the host's memory"))?;
            Some(Probe::Resource(if kind == "memory" {
                Resource::Memory { max }
            } else {
                Resource::SystemMemory { max }
            }))
        }
        "children" => {
            let v = max_value(r)?;
            match r.integer("max", v).map(u32::try_from) {
                Some(Ok(max)) => Some(Probe::Resource(Resource::Children { max })),
                Some(Err(_)) => {
                    r.error(v.span(), "`max` must be 0 or more", None);
                    None
                }
                None => None,
            }
        }
        "load" => {
            let v = max_value(r)?;
            let max = match v.get_ref() {
                DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
                DeValue::Integer(_) => r.integer("max", v).map(|n| n as f64),
                _ => None,
            };
            let Some(max) = max.filter(|m| m.is_finite() && *m >= 0.0) else {
                r.error(
                    v.span(),
                    "a load limit is a number of 0 or more, like 4.0",
                    None,
                );
                return None;
            };
            let minutes = match t.get("minutes").map(|m| (m, r.integer("minutes", m))) {
                None => 1,
                Some((_, Some(n @ (1 | 5 | 15)))) => n as u8,
                Some((m, _)) => {
                    r.error(m.span(), "`minutes` is 1, 5 or 15", None);
                    return None;
                }
            };
            Some(Probe::Resource(Resource::Load { max, minutes }))
        }
        _ => {
            let path = required(r, "path")?;
            let v = max_value(r)?;
            let max = amount(r, v, true, Some("of the disk"))?;
            Some(Probe::Resource(Resource::Disk { path, max }))
        }
    }
}

/// `"80%"`, or (when `sizes`) `"500MB"` or a number of bytes. A percentage of a whole
/// (`whole` names it: the host's memory, a disk) cannot be above 100%.
fn amount(r: &mut Reader<'_>, v: &Value<'_>, sizes: bool, whole: Option<&str>) -> Option<Amount> {
    if let DeValue::String(s) = v.get_ref()
        && let Some(p) = s.trim().strip_suffix('%')
    {
        return match p.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 => match whole {
                Some(of) if p > 100.0 => {
                    r.error(
                        v.span(),
                        format!("`{s}`: a share {of} is at most 100%"),
                        None,
                    );
                    None
                }
                _ => Some(Amount::Percent(p)),
            },
            _ => {
                r.error(v.span(), format!("`{s}` is not a percentage"), None);
                None
            }
        };
    }
    if sizes {
        r.size("max", v).map(|b| Amount::Absolute(b as f64))
    } else {
        r.error(v.span(), "`max` must be a percentage like \"80%\"", None);
        None
    }
}

/// A host name to connect to or to resolve: 1 to 253 bytes, without spaces or
/// control characters.
fn host_name(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<String> {
    let h = r.string(key, v)?;
    if h.is_empty() || h.len() > 253 || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        r.error(
            v.span(),
            format!("`{key}` must be a host name or address (1 to 253 characters, no spaces)"),
            None,
        );
        return None;
    }
    Some(h)
}

/// `headers = { Name = "value" }`, each one that HTTP can carry.
pub fn headers(r: &mut Reader<'_>, t: &DeTable<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(hv) = t.get("headers") else {
        return out;
    };
    let Some(ht) = r.table("headers", hv) else {
        return out;
    };
    for (k, v) in ht.iter() {
        let Some(val) = r.string(k.get_ref(), v) else {
            continue;
        };
        if k.get_ref().len() > super::limits::MAX_KEY {
            r.error(
                k.span(),
                format!(
                    "a header name is at most {} bytes long",
                    super::limits::MAX_KEY
                ),
                None,
            );
            continue;
        }
        if let Err(e) = checks::check_header(k.get_ref(), &val) {
            r.error(k.span(), e, None);
            continue;
        }
        out.push((k.get_ref().to_string(), val));
    }
    out
}
