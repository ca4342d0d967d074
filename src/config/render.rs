//! A job's spec written back as the text of a job file (`guardian config JOB`, the job
//! page, `GET /api/v1/jobs/{name}/config`): every key of docs/configuration.md, in its
//! order, with the value the job runs with, defaults included; `[ready]` and each
//! `[[check]]` with all their keys. The text reads back as the same job, and is tested
//! to (tests/job_config.rs). A key that is not set and has no value to show (no
//! `description`, a `umask` left to the daemon's) is a comment saying so.
//!
//! Both forms, TOML and JSON, are made from one list of keys and values, so that they
//! cannot tell different things.

use std::fmt::Write as _;
use std::time::Duration;

use checks::{Amount, Probe, Resource, TcpExpect};
use serde_json::{Map, Value as Json};

use super::alert::{JobAlert, Recipient};
use super::check::{Action, CheckSpec};
use super::job::{ExitMatch, Expect, JobSpec, RespawnLimit};
use super::probe::ReadySpec;
use super::program::Program;
use super::signal;

/// What a hidden value reads as.
pub const HIDDEN: &str = "(hidden)";

/// One value of the rendering.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Val>),
    Table(Vec<(String, Val)>),
    /// Not set, and why that is fine: a comment in TOML, null in JSON.
    Unset(&'static str),
}

type Entries = Vec<(String, Val)>;

/// A job file, as keys: the plain keys, then `[ready]`, then the `[[check]]` tables.
struct Doc {
    keys: Entries,
    ready: Option<Entries>,
    checks: Vec<Entries>,
}

/// The job as the text of its file; `default_every` is guardian.toml's `every`, the
/// interval of checks that set none. With `hide_secrets`, the values of `env` and of
/// the checks' HTTP `headers` read "(hidden)".
pub fn toml(spec: &JobSpec, default_every: Duration, hide_secrets: bool) -> String {
    let doc = doc(spec, default_every, hide_secrets);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Job `{}`, from {}: every key with the value the job runs with, defaults included.",
        spec.name,
        spec.file.display()
    );
    if let Some(i) = &spec.instance {
        let _ = writeln!(
            out,
            "# Instance {} of `{}` (its file sets `instances`), with $INSTANCE replaced.",
            i.number, i.base
        );
    }
    out.push('\n');
    write_entries(&mut out, &doc.keys);
    if let Some(ready) = &doc.ready {
        out.push_str("\n[ready]\n");
        write_entries(&mut out, ready);
    }
    for check in &doc.checks {
        out.push_str("\n[[check]]\n");
        write_entries(&mut out, check);
    }
    out
}

/// The job as one JSON object with the keys of [`toml`] (`ready`: an object or null,
/// `check`: an array), null for a key that is not set.
pub fn json(spec: &JobSpec, default_every: Duration, hide_secrets: bool) -> Json {
    let doc = doc(spec, default_every, hide_secrets);
    let mut map = table_json(&doc.keys);
    map.insert(
        "ready".into(),
        doc.ready
            .as_ref()
            .map_or(Json::Null, |r| Json::Object(table_json(r))),
    );
    map.insert(
        "check".into(),
        Json::Array(
            doc.checks
                .iter()
                .map(|c| Json::Object(table_json(c)))
                .collect(),
        ),
    );
    Json::Object(map)
}

fn doc(spec: &JobSpec, default_every: Duration, hide: bool) -> Doc {
    let mut k: Entries = Vec::with_capacity(40);
    let mut put = |key: &str, v: Val| k.push((key.to_string(), v));
    put(
        "description",
        opt(
            spec.description.as_deref().map(|d| Val::Str(d.to_string())),
            "no description",
        ),
    );
    put(
        "groups",
        Val::List(spec.groups.iter().cloned().map(Val::Str).collect()),
    );
    match &spec.main {
        Some(Program::Exec { argv, .. }) => {
            put("exec", Val::Str(command_line(argv)));
            put("script", Val::Unset("the main process is `exec`"));
        }
        Some(Program::Script(text)) => {
            put("exec", Val::Unset("the main process is `script`"));
            put("script", Val::Str(text.clone()));
        }
        None => {
            put("exec", Val::Unset("no main process"));
            put("script", Val::Unset("no main process"));
        }
    }
    for (key, hook) in [
        ("pre-start", &spec.hooks.pre_start),
        ("post-start", &spec.hooks.post_start),
        ("pre-stop", &spec.hooks.pre_stop),
        ("post-stop", &spec.hooks.post_stop),
    ] {
        put(key, hook.as_ref().map_or(Val::Unset("no hook"), hook_val));
    }
    put(
        "env",
        Val::Table(
            spec.env
                .iter()
                .map(|(n, v)| (n.clone(), secret(v, hide)))
                .collect(),
        ),
    );
    put(
        "setuid",
        opt(
            spec.user.as_ref().map(|u| Val::Str(u.name.clone())),
            "the daemon's user",
        ),
    );
    put(
        "setgid",
        opt(
            spec.group
                .as_deref()
                .map(|(name, _)| Val::Str(name.clone())),
            "the user's primary group",
        ),
    );
    put("chdir", Val::Str(spec.chdir.display().to_string()));
    put(
        "umask",
        opt(
            spec.umask.map(|m| Val::Str(format!("{m:03o}"))),
            "the daemon's",
        ),
    );
    put(
        "nice",
        opt(spec.nice.map(|n| Val::Int(n.into())), "the daemon's"),
    );
    put(
        "limit",
        Val::Table(
            spec.limits
                .iter()
                .map(|l| {
                    let one = |n: Option<u64>| {
                        n.map_or(Val::Str("unlimited".into()), |n| Val::Int(int(n)))
                    };
                    (
                        l.name.to_string(),
                        Val::List(vec![one(l.soft), one(l.hard)]),
                    )
                })
                .collect(),
        ),
    );
    put("respawn", Val::Bool(spec.respawn));
    put("respawn-limit", limit_val(spec.respawn_limit));
    put(
        "respawn-delay",
        Val::Table(vec![
            ("initial".into(), duration(spec.respawn_delay.initial)),
            ("max".into(), duration(spec.respawn_delay.max)),
            ("stable".into(), duration(spec.respawn_delay.stable)),
        ]),
    );
    put(
        "normal-exit",
        Val::List(
            spec.normal_exit
                .iter()
                .map(|e| match e {
                    ExitMatch::Code(c) => Val::Int((*c).into()),
                    ExitMatch::Signal(s) => Val::Str(signal::name(*s).into()),
                })
                .collect(),
        ),
    );
    put("task", Val::Bool(spec.task));
    put("manual", Val::Bool(spec.manual));
    put(
        "kill-signal",
        Val::Str(signal::name(spec.kill_signal).into()),
    );
    put("kill-timeout", duration(spec.kill_timeout));
    put(
        "reload-signal",
        Val::Str(
            signal::name(
                spec.reload_signal
                    .unwrap_or(nix::sys::signal::Signal::SIGHUP),
            )
            .into(),
        ),
    );
    for (key, on) in [("start-on", &spec.start_on), ("stop-on", &spec.stop_on)] {
        put(
            key,
            match on {
                Some(on) => Val::Str(on.expr.to_string()),
                None if key == "start-on" => Val::Unset("starts with the daemon"),
                None => Val::Unset("no event stops it"),
            },
        );
    }
    put(
        "expect",
        Val::Str(
            match spec.expect {
                Expect::None => "none",
                Expect::Fork => "fork",
                Expect::Daemon => "daemon",
                Expect::Stop => "stop",
                Expect::Notify => "notify",
            }
            .into(),
        ),
    );
    put(
        "pidfile",
        opt(
            spec.pidfile
                .as_ref()
                .map(|p| Val::Str(p.display().to_string())),
            "no pid file",
        ),
    );
    put("handover-timeout", duration(spec.handover_timeout));
    put("alert", alert_val(&spec.alert));
    put(
        "commands",
        Val::Table(
            spec.commands
                .iter()
                .map(|(n, t)| (n.clone(), Val::Str(t.clone())))
                .collect(),
        ),
    );
    put("restart-limit", limit_val(spec.restart_limit));
    match &spec.diagnose {
        Some(d) => {
            put("diagnose", Val::Str(d.command.clone()));
            put("diagnose-timeout", duration(d.timeout));
        }
        None => {
            put("diagnose", Val::Unset("no diagnose command"));
            put("diagnose-timeout", Val::Unset("no diagnose command"));
        }
    }
    put(
        "instances",
        Val::Unset(if spec.instance.is_some() {
            "this is one instance of its file"
        } else {
            "one job"
        }),
    );
    Doc {
        keys: k,
        ready: spec.ready.as_deref().map(|r| ready_entries(r, hide)),
        checks: spec
            .checks
            .iter()
            .map(|c| check_entries(c, default_every, hide))
            .collect(),
    }
}

fn ready_entries(r: &ReadySpec, hide: bool) -> Entries {
    let mut out = probe_entries(&r.probe, hide);
    out.push(("every".into(), duration(r.every)));
    out.push(("timeout".into(), duration(r.timeout)));
    out.push(("deadline".into(), duration(r.deadline)));
    out
}

fn check_entries(c: &CheckSpec, default_every: Duration, hide: bool) -> Entries {
    let mut out = vec![("name".to_string(), Val::Str(c.name.clone()))];
    out.extend(probe_entries(&c.probe, hide));
    out.push(("every".into(), duration(c.every(default_every))));
    out.push(("timeout".into(), duration(c.timeout(default_every))));
    out.push(("failures".into(), Val::Int(c.failures.into())));
    out.push(("within".into(), Val::Int(c.within.into())));
    out.push(("grace".into(), duration(c.grace)));
    if matches!(c.probe, Probe::Flock(_)) {
        out.push(("deadline".into(), duration(c.lock_deadline())));
    }
    let action = match &c.action {
        // A string would be read as the name of an action.
        Action::Exec(Program::Script(text)) => {
            Val::Table(vec![("script".into(), Val::Str(text.clone()))])
        }
        Action::Exec(p) => hook_val(p),
        other => Val::Str(other.as_str().into()),
    };
    out.push(("action".into(), action));
    out
}

/// `type` and the keys of the probe's type, in the order docs/checks.md lists them.
fn probe_entries(p: &Probe, hide: bool) -> Entries {
    let mut out: Entries = vec![("type".into(), Val::Str(p.kind().into()))];
    let mut put = |key: &str, v: Val| out.push((key.to_string(), v));
    let text = |s: &Option<String>, why| opt(s.clone().map(Val::Str), why);
    match p {
        Probe::Tcp(t) => {
            put("host", Val::Str(t.host.clone()));
            put("port", Val::Int(t.port.into()));
            put("send", text(&t.send, "nothing is sent"));
            match &t.expect {
                Some(TcpExpect::Text(s)) => {
                    put("expect", Val::Str(s.clone()));
                    put("expect-regex", Val::Unset("`expect` is set"));
                }
                Some(TcpExpect::Regex(re)) => {
                    put("expect", Val::Unset("`expect-regex` is set"));
                    put("expect-regex", Val::Str(re.0.as_str().into()));
                }
                None => {
                    put("expect", Val::Unset("the connection is enough"));
                    put("expect-regex", Val::Unset("the connection is enough"));
                }
            }
        }
        Probe::Http(h) => {
            put("url", Val::Str(h.url.clone()));
            put("method", Val::Str(h.method.clone()));
            put(
                "status",
                if h.status.is_empty() {
                    Val::Unset("200 to 399 pass")
                } else {
                    Val::List(h.status.iter().map(|s| Val::Int((*s).into())).collect())
                },
            );
            put("contains", text(&h.contains, "any body"));
            put(
                "matches",
                opt(
                    h.matches.as_ref().map(|m| Val::Str(m.0.as_str().into())),
                    "any body",
                ),
            );
            put(
                "headers",
                Val::Table(
                    h.headers
                        .iter()
                        .map(|(n, v)| (n.clone(), secret(v, hide)))
                        .collect(),
                ),
            );
            put(
                "cert-min-days",
                opt(
                    h.cert_min_days.map(|d| Val::Int(d.into())),
                    "the certificate's expiry is not checked",
                ),
            );
            put("tls-verify", Val::Bool(h.tls_verify));
        }
        Probe::Program(p) => {
            put("exec", Val::Str(p.command.clone()));
            put("status", Val::Int(p.status.into()));
            put(
                "output",
                opt(
                    p.output.as_ref().map(|m| Val::Str(m.0.as_str().into())),
                    "any output",
                ),
            );
        }
        Probe::Dns(d) => {
            put("host", Val::Str(d.name.clone()));
            put(
                "server",
                opt(
                    d.server.map(|s| Val::Str(s.to_string())),
                    "the servers of /etc/resolv.conf",
                ),
            );
            put(
                "expect",
                opt(d.expect.map(|a| Val::Str(a.to_string())), "any answer"),
            );
        }
        Probe::File(f) => {
            put("path", Val::Str(f.path.clone()));
            put(
                "max-age",
                opt(f.max_age.map(duration), "its age is not checked"),
            );
            put(
                "min-size",
                opt(f.min_size.map(|n| Val::Int(int(n))), "no lower bound"),
            );
            put(
                "max-size",
                opt(f.max_size.map(|n| Val::Int(int(n))), "no upper bound"),
            );
        }
        Probe::Flock(f) => put("path", Val::Str(f.path.clone())),
        Probe::Resource(r) => match r {
            Resource::Cpu { max } => put("max", Val::Str(format!("{max}%"))),
            Resource::Memory { max } | Resource::SystemMemory { max } => put("max", amount(max)),
            Resource::Children { max } => put("max", Val::Int((*max).into())),
            Resource::Load { max, minutes } => {
                put("max", Val::Float(*max));
                put("minutes", Val::Int((*minutes).into()));
            }
            Resource::Disk { path, max } => {
                put("path", Val::Str(path.clone()));
                put("max", amount(max));
            }
        },
        Probe::Backlog(b) => {
            put(
                "threshold",
                opt(
                    b.threshold.map(|n| Val::Int(n.into())),
                    "fails when a queue is full",
                ),
            );
            put(
                "port",
                opt(b.port.map(|n| Val::Int(n.into())), "the job's own sockets"),
            );
        }
    }
    out
}

fn amount(a: &Amount) -> Val {
    match a {
        Amount::Percent(p) => Val::Str(format!("{p}%")),
        // Read from a number of bytes, so whole.
        Amount::Absolute(b) => Val::Int(*b as i64),
    }
}

fn alert_val(a: &JobAlert) -> Val {
    if a.off {
        return Val::Bool(false);
    }
    if a.extra.is_empty() {
        // `true`: guardian.toml's recipients, and no more.
        return Val::Bool(true);
    }
    Val::List(a.extra.iter().map(recipient).collect())
}

fn recipient(r: &Recipient) -> Val {
    if r.filter.on.is_empty() && r.filter.not_on.is_empty() && r.reminder.is_none() {
        return Val::Str(r.address.clone());
    }
    let mut t = vec![("address".to_string(), Val::Str(r.address.clone()))];
    let kinds = |k: &[String]| Val::List(k.iter().cloned().map(Val::Str).collect());
    if !r.filter.on.is_empty() {
        t.push(("on".into(), kinds(&r.filter.on)));
    }
    if !r.filter.not_on.is_empty() {
        t.push(("not-on".into(), kinds(&r.filter.not_on)));
    }
    if let Some(d) = r.reminder {
        t.push(("reminder".into(), duration(d)));
    }
    Val::Table(t)
}

fn limit_val(l: Option<RespawnLimit>) -> Val {
    match l {
        None => Val::Str("unlimited".into()),
        Some(l) => Val::Table(vec![
            ("count".into(), Val::Int(l.count.into())),
            ("interval".into(), duration(l.interval)),
        ]),
    }
}

/// A hook or a check's `exec` action: shell text as a string, a program as `{ exec }`.
fn hook_val(p: &Program) -> Val {
    match p {
        Program::Script(text) => Val::Str(text.clone()),
        Program::Exec { argv, .. } => {
            Val::Table(vec![("exec".into(), Val::Str(command_line(argv)))])
        }
    }
}

fn secret(v: &str, hide: bool) -> Val {
    Val::Str(if hide { HIDDEN.into() } else { v.to_string() })
}

fn opt(v: Option<Val>, why: &'static str) -> Val {
    v.unwrap_or(Val::Unset(why))
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A duration as the documentation writes it: `"5s"`, `"1m 30s"`, and `"1500ms"`
/// rather than `"1s 500ms"` under a minute.
fn duration(d: Duration) -> Val {
    if d.subsec_nanos() != 0 && d.subsec_nanos().is_multiple_of(1_000_000) && d.as_secs() < 60 {
        return Val::Str(format!("{}ms", d.as_millis()));
    }
    Val::Str(humantime::format_duration(d).to_string())
}

/// Words joined so that `exec`'s splitting (see [`super::words`]) gives them back: a
/// word of plain characters as it is, any other in single quotes.
pub fn command_line(argv: &[String]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
    };
    let words: Vec<String> = argv
        .iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect();
    words.join(" ")
}

// ---------------------------------------------------------------------------- writing

fn write_entries(out: &mut String, entries: &Entries) {
    for (key, v) in entries {
        match v {
            Val::Unset(why) => {
                let _ = writeln!(out, "# {key}: not set ({why})");
            }
            v => {
                out.push_str(&toml_key(key));
                out.push_str(" = ");
                write_val(out, v);
                out.push('\n');
            }
        }
    }
}

fn write_val(out: &mut String, v: &Val) {
    match v {
        Val::Str(s) => quote(out, s),
        Val::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Val::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        Val::Float(f) if f.is_nan() => out.push_str("nan"),
        Val::Float(f) => out.push_str(if *f > 0.0 { "inf" } else { "-inf" }),
        Val::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Val::List(items) => {
            out.push('[');
            let mut first = true;
            for item in items.iter().filter(|i| !matches!(i, Val::Unset(_))) {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                write_val(out, item);
            }
            out.push(']');
        }
        Val::Table(entries) => {
            let set: Vec<&(String, Val)> = entries
                .iter()
                .filter(|(_, v)| !matches!(v, Val::Unset(_)))
                .collect();
            if set.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{ ");
            for (i, (k, v)) in set.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&toml_key(k));
                out.push_str(" = ");
                write_val(out, v);
            }
            out.push_str(" }");
        }
        // Dropped by the callers above.
        Val::Unset(_) => {}
    }
}

/// A bare key where TOML allows one, else a quoted one.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        let mut s = String::new();
        quote(&mut s, k);
        s
    }
}

/// A TOML basic string, on one line: every control character escaped.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn table_json(entries: &Entries) -> Map<String, Json> {
    entries
        .iter()
        .map(|(k, v)| (k.clone(), val_json(v)))
        .collect()
}

fn val_json(v: &Val) -> Json {
    match v {
        Val::Str(s) => Json::String(s.clone()),
        Val::Int(n) => Json::from(*n),
        Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Val::Bool(b) => Json::Bool(*b),
        Val::List(items) => Json::Array(items.iter().map(val_json).collect()),
        Val::Table(entries) => Json::Object(table_json(entries)),
        Val::Unset(_) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_come_back_from_their_command_line() {
        let argv: Vec<String> = ["/bin/sh", "-c", "echo 'a b' \"$X\"", "", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let line = command_line(&argv);
        assert_eq!(super::super::words::split(&line), Ok(argv));
    }

    #[test]
    fn durations_read_as_the_documentation_writes_them() {
        let text = |d| match duration(d) {
            Val::Str(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(text(Duration::from_millis(100)), "100ms");
        assert_eq!(text(Duration::from_secs(90)), "1m 30s");
        assert_eq!(text(Duration::from_secs(0)), "0s");
        assert_eq!(text(Duration::from_micros(1500)), "1ms 500us");
        for d in [1500, 100, 90_000, 0, 61_500] {
            let d = Duration::from_millis(d);
            assert_eq!(humantime::parse_duration(&text(d)).ok(), Some(d));
        }
    }

    #[test]
    fn strings_are_escaped_for_toml() {
        let mut s = String::new();
        quote(&mut s, "a\"b\\c\nd\u{0}e\u{7f}");
        assert_eq!(s, r#""a\"b\\c\nd\u0000e\u007F""#);
        let parsed: toml::Table = toml::from_str(&format!("k = {s}")).unwrap_or_default();
        assert_eq!(
            parsed.get("k").and_then(|v| v.as_str()),
            Some("a\"b\\c\nd\u{0}e\u{7f}")
        );
    }
}
