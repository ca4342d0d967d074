//! `[[check]]`: a probe with a policy (how often, how many failures, within how many
//! checks, how long after the start) and an action.

use std::time::Duration;

use checks::Probe;
use toml::de::DeValue;

use super::program::{Program, hook_program};
use super::reader::{Reader, Value};

const POLICY_KEYS: &[&str] = &[
    "name", "every", "timeout", "failures", "within", "grace", "deadline", "action",
];

/// How long one run may take when `timeout` is not set (and `every` is not shorter).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a `flock` check waits, after the job is running, for the lock to be held.
pub const DEFAULT_LOCK_DEADLINE: Duration = Duration::from_secs(60);

/// What a check does when its policy says the job is failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Restart,
    Stop,
    Alert,
    Unmonitor,
    Exec(Program),
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::Stop => "stop",
            Action::Alert => "alert",
            Action::Unmonitor => "unmonitor",
            Action::Exec(_) => "exec",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub name: String,
    pub probe: Probe,
    /// None: guardian.toml's `every`.
    pub every: Option<Duration>,
    /// None: [`DEFAULT_TIMEOUT`], and never more than `every`.
    pub timeout: Option<Duration>,
    /// Act after this many failures...
    pub failures: u32,
    /// ...among the last `within` checks (= `failures`: in a row).
    pub within: u32,
    /// No check runs until this long after the job is running.
    pub grace: Duration,
    /// `flock`: how long after the job is running the lock may take to be held before
    /// the check says so (None: [`DEFAULT_LOCK_DEADLINE`]).
    pub deadline: Option<Duration>,
    pub action: Action,
}

impl CheckSpec {
    pub fn every(&self, default: Duration) -> Duration {
        self.every.unwrap_or(default)
    }

    pub fn timeout(&self, default_every: Duration) -> Duration {
        self.timeout
            .unwrap_or_else(|| DEFAULT_TIMEOUT.min(self.every(default_every)))
    }

    pub fn lock_deadline(&self) -> Duration {
        self.deadline.unwrap_or(DEFAULT_LOCK_DEADLINE)
    }
}

/// Reads the `[[check]]` array; `host` limits the actions to `alert` (host checks belong
/// to no job) and the probes to those that need no job.
pub fn read_all(r: &mut Reader<'_>, v: &Value<'_>, host: bool) -> Vec<CheckSpec> {
    let mut out: Vec<CheckSpec> = Vec::new();
    let Some(items) = r.array("check", v) else {
        return out;
    };
    for item in items {
        let Some(t) = r.table("check", item) else {
            continue;
        };
        let Some((kind, probe)) = super::probe::read(r, item, t, POLICY_KEYS) else {
            continue;
        };
        if host && !kind.host {
            r.error(
                item.span(),
                format!(
                    "a `{}` check belongs in a job file: guardian.toml's checks watch the host",
                    probe.kind()
                ),
                None,
            );
            continue;
        }
        let name = match t.get("name") {
            Some(n) => match r.string("name", n) {
                Some(s) if out.iter().any(|c| c.name == s) => {
                    r.error(n.span(), format!("two checks are called `{s}`"), None);
                    continue;
                }
                Some(s) if !super::limits::name_ok(&s) => {
                    r.error(
                        n.span(),
                        format!(
                            "a check's `name` is 1 to {} characters, without spaces or control characters",
                            super::limits::MAX_NAME
                        ),
                        None,
                    );
                    continue;
                }
                Some(s) => s,
                None => continue,
            },
            None => {
                let base = probe.kind().to_string();
                let mut name = base.clone();
                let mut n = 2;
                while out.iter().any(|c| c.name == name) {
                    name = format!("{base}-{n}");
                    n += 1;
                }
                name
            }
        };
        let every = t.get("every").and_then(|v| r.positive_duration("every", v));
        let timeout = t
            .get("timeout")
            .and_then(|v| r.positive_duration("timeout", v));
        let grace = t
            .get("grace")
            .and_then(|v| r.duration("grace", v))
            .unwrap_or_default();
        let deadline = t.get("deadline").and_then(|v| r.duration("deadline", v));
        if deadline.is_some() && probe.kind() != "flock" {
            if let Some(v) = t.get("deadline") {
                r.error(
                    v.span(),
                    "`deadline` belongs to `flock` checks: how long the lock may take to be held",
                    None,
                );
            }
            continue;
        }
        let count = |r: &mut Reader<'_>, key: &str, max: u32| -> Option<u32> {
            let v = t.get(key)?;
            match r.integer(key, v).map(u32::try_from) {
                Some(Ok(n)) if (1..=max).contains(&n) => Some(n),
                Some(_) => {
                    r.error(
                        v.span(),
                        format!("`{key}` must be between 1 and {max}"),
                        None,
                    );
                    None
                }
                None => None,
            }
        };
        let failures = count(r, "failures", super::limits::MAX_WITHIN).unwrap_or(1);
        let within = count(r, "within", super::limits::MAX_WITHIN).unwrap_or(failures);
        if within < failures {
            if let Some(v) = t.get("within") {
                r.error(
                    v.span(),
                    format!("`within` ({within}) must be at least `failures` ({failures})"),
                    Some(
                        "`failures = 3, within = 5`: act on 3 failures among the last 5 checks"
                            .into(),
                    ),
                );
            }
            continue;
        }
        let action = match t.get("action") {
            None => {
                if host {
                    Action::Alert
                } else {
                    Action::Restart
                }
            }
            Some(av) => match av.get_ref() {
                DeValue::String(s) => match s.as_ref() {
                    "restart" => Action::Restart,
                    "stop" => Action::Stop,
                    "alert" => Action::Alert,
                    "unmonitor" => Action::Unmonitor,
                    "exec" => {
                        r.error(
                            av.span(),
                            "`exec` needs the command: action = { exec = \"...\" } or { script = \"...\" }",
                            None,
                        );
                        continue;
                    }
                    other => {
                        let hint = super::diag::did_you_mean(
                            other,
                            &["restart", "stop", "alert", "unmonitor", "exec"],
                        )
                        .map(|a| format!("did you mean `{a}`?"));
                        r.error(av.span(), format!("no action `{other}`"), hint);
                        continue;
                    }
                },
                DeValue::Table(_) => match hook_program(r, "action", av) {
                    Some(p) => Action::Exec(p),
                    None => continue,
                },
                _ => {
                    r.error(
                        av.span(),
                        "`action` is restart, stop, alert, unmonitor, or { exec = \"...\" }",
                        None,
                    );
                    continue;
                }
            },
        };
        if host && action != Action::Alert {
            if let Some(av) = t.get("action") {
                r.error(av.span(), "a host check's action can only be `alert`", None);
            }
            continue;
        }
        out.push(CheckSpec {
            name,
            probe,
            every,
            timeout,
            failures,
            within,
            grace,
            deadline,
            action,
        });
    }
    out
}
