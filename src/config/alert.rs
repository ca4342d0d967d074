//! `[alert]` in guardian.toml, and a job's `alert` key: who is told what, and how.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use super::reader::{Reader, Value};

/// The kinds of alert, as `on` / `not-on` name them.
pub const KINDS: &[&str] = &[
    "check-failed",
    "check-recovered",
    "unmonitored",
    "died",
    "start-failed",
    "hook-failed",
    "respawn-limit",
    "reminder",
    "daemon-started",
    "daemon-stopping",
    "test",
];

/// Which kinds of alert a recipient wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Only these (empty: all).
    pub on: Vec<String>,
    /// Never these.
    pub not_on: Vec<String>,
}

impl Filter {
    pub fn wants(&self, kind: &str) -> bool {
        kind == "test"
            || ((self.on.is_empty() || self.on.iter().any(|k| k == kind))
                && !self.not_on.iter().any(|k| k == kind))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub filter: Filter,
    /// Resend while a failure lasts.
    pub reminder: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub filter: Filter,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP.
    None,
    /// STARTTLS when the server offers it.
    Opportunistic,
    /// STARTTLS, or no delivery.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    pub from: String,
    pub to: Vec<Recipient>,
    /// `host:port`, tried in order.
    pub smtp: Vec<(String, u16)>,
    pub tls: TlsMode,
    /// Verify the server's certificate (false: accept a self-signed one).
    pub tls_verify: bool,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub timeout: Duration,
    /// Alerts that come within this window of each other go out as one digest.
    pub digest: Duration,
    pub subject: String,
    pub body: String,
    pub webhooks: Vec<Webhook>,
    /// Alertmanager base URLs (`http://host:9093`); each gets every alert.
    pub alertmanager: Vec<String>,
    /// How often alerts that still fire are sent to Alertmanager again.
    pub alertmanager_resend: Duration,
}

pub const DEFAULT_SUBJECT: &str = "[{host}] {job}: {event}";
pub const DEFAULT_BODY: &str =
    "{job}: {event}\n{description}\n\nAction: {action}\nHost: {host}\nTime: {time}\n";

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            from: String::new(),
            to: Vec::new(),
            smtp: vec![("localhost".into(), 25)],
            tls: TlsMode::Opportunistic,
            tls_verify: true,
            user: None,
            password_file: None,
            timeout: Duration::from_secs(10),
            digest: Duration::from_secs(2),
            subject: DEFAULT_SUBJECT.into(),
            body: DEFAULT_BODY.into(),
            webhooks: Vec::new(),
            alertmanager: Vec::new(),
            alertmanager_resend: Duration::from_secs(60),
        }
    }
}

const KEYS: &[&str] = &[
    "from",
    "to",
    "smtp",
    "tls",
    "tls-verify",
    "user",
    "password-file",
    "timeout",
    "digest",
    "subject",
    "body",
    "webhook",
    "alertmanager",
    "alertmanager-resend",
];

const PLACEHOLDERS: &[&str] = &[
    "job",
    "event",
    "description",
    "action",
    "host",
    "time",
    "check",
];

fn filter(r: &mut Reader<'_>, t: &toml::de::DeTable<'_>) -> Filter {
    let mut f = Filter::default();
    for (key, slot) in [("on", &mut f.on), ("not-on", &mut f.not_on)] {
        let Some(v) = t.get(key) else { continue };
        let Some(items) = r.array(key, v) else {
            continue;
        };
        for item in items {
            let Some(kind) = r.string(key, item) else {
                continue;
            };
            if KINDS.contains(&kind.as_str()) {
                slot.push(kind);
            } else {
                let hint = super::diag::did_you_mean(&kind, KINDS)
                    .map(|k| format!("did you mean `{k}`?"))
                    .or_else(|| Some(format!("one of: {}", KINDS.join(", "))));
                r.error(item.span(), format!("no alert kind `{kind}`"), hint);
            }
        }
    }
    f
}

fn address_ok(a: &str) -> bool {
    a.parse::<lettre::Address>().is_ok()
}

/// A list of recipients: `"ops@example.com"` or
/// `{ address = "...", on = [...], not-on = [...], reminder = "30m" }`.
pub fn recipients(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Vec<Recipient> {
    let mut out = Vec::new();
    let items: Vec<&Value<'_>> = match v.get_ref() {
        DeValue::Array(a) => a.iter().collect(),
        _ => vec![v],
    };
    for item in items {
        match item.get_ref() {
            DeValue::String(s) => {
                if address_ok(s) {
                    out.push(Recipient {
                        address: s.to_string(),
                        filter: Filter::default(),
                        reminder: None,
                    });
                } else {
                    r.error(item.span(), format!("`{s}` is not an e-mail address"), None);
                }
            }
            DeValue::Table(t) => {
                for (k, _) in t.iter() {
                    if !["address", "on", "not-on", "reminder"].contains(&k.get_ref().as_ref()) {
                        r.unknown_key(k, &["address", "on", "not-on", "reminder"]);
                    }
                }
                let Some(address) = t.get("address").and_then(|a| r.string("address", a)) else {
                    r.error(item.span(), "a recipient needs an `address`", None);
                    continue;
                };
                if !address_ok(&address) {
                    r.error(
                        item.span(),
                        format!("`{address}` is not an e-mail address"),
                        None,
                    );
                    continue;
                }
                let reminder = t
                    .get("reminder")
                    .and_then(|v| r.positive_duration("reminder", v));
                out.push(Recipient {
                    address,
                    filter: filter(r, t),
                    reminder,
                });
            }
            other => r.error(
                item.span(),
                format!(
                    "`{key}` holds addresses or {{ address = ..., on = [...] }} tables, not {}",
                    other.type_str()
                ),
                None,
            ),
        }
    }
    out
}

fn template(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<String> {
    let text = r.string(key, v)?;
    if key == "subject" && text.chars().any(char::is_control) {
        r.error(
            v.span(),
            "`subject` is one line: it cannot hold a line break or another control character",
            None,
        );
        return None;
    }
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        if !PLACEHOLDERS.contains(&name) {
            r.error(
                v.span(),
                format!("`{key}`: no placeholder {{{name}}}"),
                Some(format!(
                    "placeholders: {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            );
            return None;
        }
        rest = &rest[open + close + 1..];
    }
    Some(text)
}

/// Reads `[alert]`; a relative `password-file` is taken relative to the config directory.
pub fn read(r: &mut Reader<'_>, dir: &std::path::Path, v: &Value<'_>) -> Option<AlertSettings> {
    let t = r.table("alert", v)?;
    let mut a = AlertSettings::default();
    // Whether each key is there, whatever its value: a password file that cannot be
    // read is its own error, not also a missing half of the pair.
    let (mut user_key, mut password_key) = (false, false);
    for (key, val) in t.iter() {
        let k = key.get_ref().as_ref();
        match k {
            "from" => {
                if let Some(f) = r.string(k, val) {
                    if f.parse::<lettre::message::Mailbox>().is_ok() {
                        a.from = f;
                    } else {
                        r.error(val.span(), format!("`{f}` is not an e-mail address"), None);
                    }
                }
            }
            "to" => a.to = recipients(r, k, val),
            "smtp" => {
                a.smtp.clear();
                let items: Vec<&Value<'_>> = match val.get_ref() {
                    DeValue::Array(items) => items.iter().collect(),
                    _ => vec![val],
                };
                for item in items {
                    let Some(s) = r.string(k, item) else { continue };
                    let (host, port) = match s.rsplit_once(':') {
                        Some((h, p)) => match p.parse::<u16>() {
                            Ok(p) if p > 0 => (h.to_string(), p),
                            _ => {
                                r.error(
                                    item.span(),
                                    format!("`{s}`: the port must be a number from 1 to 65535"),
                                    None,
                                );
                                continue;
                            }
                        },
                        None => (s.clone(), 25),
                    };
                    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        r.error(
                            item.span(),
                            format!("`{s}`: give a server as \"host\" or \"host:port\""),
                            None,
                        );
                        continue;
                    }
                    a.smtp.push((host, port));
                }
            }
            "tls" => {
                a.tls = match r.string(k, val).as_deref() {
                    Some("none") => TlsMode::None,
                    Some("opportunistic") => TlsMode::Opportunistic,
                    Some("starttls") => TlsMode::Starttls,
                    Some("tls") => TlsMode::Tls,
                    Some(other) => {
                        r.error(
                            val.span(),
                            format!(
                                "`tls`: `{other}` is not one of none, opportunistic, starttls, tls"
                            ),
                            None,
                        );
                        a.tls
                    }
                    None => a.tls,
                }
            }
            "tls-verify" => a.tls_verify = r.bool(k, val).unwrap_or(a.tls_verify),
            "user" => {
                user_key = true;
                a.user = r.string(k, val);
            }
            "password-file" => {
                password_key = true;
                if let Some(p) = r.path(k, val) {
                    let p = dir.join(p);
                    match super::source::read(
                        &p,
                        super::source::Trust::Config,
                        super::source::MAX_FILE_BYTES,
                    )
                    .map(String::from_utf8)
                    {
                        Ok(Ok(_)) => a.password_file = Some(p),
                        Ok(Err(_)) => r.error(
                            val.span(),
                            format!("`password-file`: {} is not UTF-8 text", p.display()),
                            None,
                        ),
                        Err(e) => r.error(
                            val.span(),
                            format!("`password-file`: {}", e.naming(&p)),
                            e.hint.or(Some(
                                "the password lives in a file of its own, never in guardian.toml"
                                    .into(),
                            )),
                        ),
                    }
                }
            }
            "timeout" => a.timeout = r.positive_duration(k, val).unwrap_or(a.timeout),
            "digest" => a.digest = r.duration(k, val).unwrap_or(a.digest),
            "subject" => a.subject = template(r, k, val).unwrap_or(a.subject),
            "body" => a.body = template(r, k, val).unwrap_or(a.body),
            "webhook" => {
                let Some(items) = r.array(k, val) else {
                    continue;
                };
                for item in items {
                    let Some(wt) = r.table("webhook", item) else {
                        continue;
                    };
                    for (wk, _) in wt.iter() {
                        if !["url", "on", "not-on", "headers"].contains(&wk.get_ref().as_ref()) {
                            r.unknown_key(wk, &["url", "on", "not-on", "headers"]);
                        }
                    }
                    let Some(url) = wt.get("url").and_then(|u| r.string("url", u)) else {
                        r.error(item.span(), "a webhook needs a `url`", None);
                        continue;
                    };
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        r.error(
                            item.span(),
                            "a webhook `url` starts with http:// or https://",
                            None,
                        );
                        continue;
                    }
                    if let Err(e) = checks::check_url(&url) {
                        r.error(
                            item.span(),
                            format!("a webhook `url` that cannot be requested: {e}"),
                            None,
                        );
                        continue;
                    }
                    let headers = super::probe::headers(r, wt);
                    a.webhooks.push(Webhook {
                        url,
                        filter: filter(r, wt),
                        headers,
                    });
                }
            }
            "alertmanager" => {
                let items: Vec<&Value<'_>> = match val.get_ref() {
                    DeValue::Array(items) => items.iter().collect(),
                    _ => vec![val],
                };
                for item in items {
                    let Some(url) = r.string(k, item) else {
                        continue;
                    };
                    match alertmanager_url(&url) {
                        Ok(()) => {
                            if !a.alertmanager.contains(&url) {
                                a.alertmanager.push(url);
                            }
                        }
                        Err(e) => r.error(
                            item.span(),
                            format!("`alertmanager`: `{url}` {e}"),
                            Some(
                                "give Alertmanager's base URL, as \"http://127.0.0.1:9093\"".into(),
                            ),
                        ),
                    }
                }
            }
            "alertmanager-resend" => {
                a.alertmanager_resend = r.positive_duration(k, val).unwrap_or(a.alertmanager_resend)
            }
            _ => r.unknown_key(key, KEYS),
        }
    }
    if (!a.to.is_empty()) && a.from.is_empty() {
        r.error(
            v.span(),
            "`[alert]` with `to` needs `from`",
            Some("from = \"guardian@this-host.example.com\"".into()),
        );
    }
    if user_key != password_key {
        r.error(v.span(), "`user` and `password-file` go together", None);
    }
    Some(a)
}

/// Where alerts for the Alertmanager at base URL `base` are posted.
pub fn alertmanager_endpoint(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

/// Whether `url` can be an Alertmanager's base URL; why not, after the URL.
fn alertmanager_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("does not start with http:// or https://".into());
    }
    if url.contains(['?', '#']) {
        return Err("has a query or a fragment: give the base URL only".into());
    }
    if url.trim_end_matches('/').ends_with("/api/v2/alerts") {
        return Err("names the API: give the base URL, guardian adds /api/v2/alerts".into());
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err("names no host".into());
    }
    // The URL is shown in the log and by `guardian alerts`: no secret in it.
    if authority.contains('@') {
        return Err(
            "holds a user or password, which the log and `guardian alerts` would show".into(),
        );
    }
    checks::check_url(url)
        .and_then(|()| checks::check_url(&alertmanager_endpoint(url)))
        .map_err(|e| format!("cannot be requested: {e}"))
}

/// A job's `alert`: false (no alerts about this job) or more recipients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobAlert {
    pub off: bool,
    pub extra: Vec<Recipient>,
}

impl super::rare::Empty for JobAlert {
    const EMPTY: &'static Self = &JobAlert {
        off: false,
        extra: Vec::new(),
    };
}

pub fn job(r: &mut Reader<'_>, v: &Value<'_>) -> JobAlert {
    match v.get_ref() {
        DeValue::Boolean(false) => JobAlert {
            off: true,
            extra: Vec::new(),
        },
        DeValue::Boolean(true) => JobAlert::default(),
        _ => JobAlert {
            off: false,
            extra: recipients(r, "alert", v),
        },
    }
}
