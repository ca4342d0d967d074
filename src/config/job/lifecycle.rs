//! How a job's processes are followed, stopped and respawned: `expect`, the kill and
//! reload signals, `normal-exit`, `respawn-limit`, `respawn-delay`, `restart-limit`, and
//! the defaults of each.

use std::time::Duration;

use nix::sys::signal::Signal;
use toml::de::DeValue;

use crate::config::reader::{Reader, Value};
use crate::config::{limits, signal};

/// How the main process shows it is ready, and which process guardian follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// The process guardian started is the main process, ready at once.
    #[default]
    None,
    /// It forks once and exits; the child that remains is the main process.
    Fork,
    /// It forks twice (fork, setsid, fork); the grandchild that remains is the main process.
    Daemon,
    /// It raises SIGSTOP when ready; guardian continues it.
    Stop,
    /// It sends READY=1 on $NOTIFY_SOCKET, as systemd's sd_notify does.
    Notify,
}

/// `expect`: none, fork, daemon, stop or notify.
pub(super) fn expect(r: &mut Reader<'_>, v: &Value<'_>) -> Option<Expect> {
    let e = r.string("expect", v)?;
    Some(match e.as_str() {
        "none" => Expect::None,
        "fork" => Expect::Fork,
        "daemon" => Expect::Daemon,
        "stop" => Expect::Stop,
        "notify" => Expect::Notify,
        _ => {
            r.error(
                v.span(),
                format!("`expect`: `{e}` is not one of none, fork, daemon, stop, notify"),
                None,
            );
            Expect::None
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespawnLimit {
    pub count: u32,
    pub interval: Duration,
}

impl RespawnLimit {
    /// `respawn-limit` when not set: give up after 10 respawns within 5 s.
    pub const RESPAWN: RespawnLimit = RespawnLimit {
        count: 10,
        interval: Duration::from_secs(5),
    };
    /// `restart-limit` when not set: unmonitor rather than restart a sixth time
    /// within 10 minutes.
    pub const RESTART: RespawnLimit = RespawnLimit {
        count: 5,
        interval: Duration::from_secs(600),
    };
}

/// How long a respawn waits: nothing after a run that lasted `stable`, else `initial`,
/// doubled for every further quick failure in a row, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespawnDelay {
    pub initial: Duration,
    pub max: Duration,
    pub stable: Duration,
}

impl RespawnDelay {
    pub const DEFAULT: RespawnDelay = RespawnDelay {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(30),
        stable: Duration::from_secs(1),
    };
}

/// How long a followed daemon's pid file may take to name its successor, by default.
pub const DEFAULT_HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The signal a stop sends, by default.
pub const DEFAULT_KILL_SIGNAL: Signal = Signal::SIGTERM;

/// How long a stop waits after `kill-signal` before SIGKILL, by default.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// The exits that are not failures, by default: status 0.
pub const DEFAULT_NORMAL_EXIT: &[ExitMatch] = &[ExitMatch::Code(0)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitMatch {
    Code(i32),
    Signal(Signal),
}

pub(super) fn respawn_limit(r: &mut Reader<'_>, v: &Value<'_>) -> Option<RespawnLimit> {
    limit_table(r, "respawn-limit", v, RespawnLimit::RESPAWN)
}

/// `{ initial = "100ms", max = "30s", stable = "1s" }`; a missing key keeps its default.
pub(super) fn respawn_delay(r: &mut Reader<'_>, v: &Value<'_>) -> RespawnDelay {
    let mut d = RespawnDelay::DEFAULT;
    let Some(t) = r.table("respawn-delay", v) else {
        return d;
    };
    for (k, val) in t.iter() {
        let key = k.get_ref().as_ref();
        let slot = match key {
            "initial" => &mut d.initial,
            "max" => &mut d.max,
            "stable" => &mut d.stable,
            _ => {
                r.unknown_key(k, &["initial", "max", "stable"]);
                continue;
            }
        };
        if let Some(dur) = r.duration(key, val) {
            *slot = dur;
        }
    }
    if d.initial > d.max {
        r.error(
            v.span(),
            format!(
                "`respawn-delay`: `initial` ({}) is longer than `max` ({})",
                humantime::format_duration(d.initial),
                humantime::format_duration(d.max)
            ),
            Some("respawn-delay = { initial = \"100ms\", max = \"30s\" }".into()),
        );
        d.max = d.initial;
    }
    d
}

pub(super) fn restart_limit(r: &mut Reader<'_>, v: &Value<'_>) -> Option<RespawnLimit> {
    limit_table(r, "restart-limit", v, RespawnLimit::RESTART)
}

/// `{ count = N, interval = "..." }` (a missing key keeps `default`'s) or "unlimited".
fn limit_table(
    r: &mut Reader<'_>,
    key: &str,
    v: &Value<'_>,
    default: RespawnLimit,
) -> Option<RespawnLimit> {
    match v.get_ref() {
        DeValue::String(s) if s == "unlimited" => None,
        DeValue::Table(t) => {
            let mut limit = default;
            for (k, val) in t.iter() {
                match k.get_ref().as_ref() {
                    "count" => match r.integer("count", val).map(u32::try_from) {
                        Some(Ok(n)) if (1..=limits::MAX_COUNT).contains(&n) => limit.count = n,
                        Some(_) => r.error(
                            val.span(),
                            format!("`count` must be between 1 and {}", limits::MAX_COUNT),
                            None,
                        ),
                        None => {}
                    },
                    "interval" => {
                        if let Some(d) = r.duration("interval", val) {
                            limit.interval = d;
                        }
                    }
                    _ => r.unknown_key(k, &["count", "interval"]),
                }
            }
            Some(limit)
        }
        _ => {
            r.error(
                v.span(),
                format!("`{key}` must be {{ count = N, interval = \"5s\" }} or \"unlimited\""),
                None,
            );
            Some(default)
        }
    }
}

pub(super) fn normal_exit(r: &mut Reader<'_>, v: &Value<'_>) -> Vec<ExitMatch> {
    let mut out = Vec::new();
    let Some(items) = r.array("normal-exit", v) else {
        return DEFAULT_NORMAL_EXIT.to_vec();
    };
    for item in items {
        match item.get_ref() {
            DeValue::Integer(_) => match r.integer("normal-exit", item) {
                Some(n) if (0..=255).contains(&n) => out.push(ExitMatch::Code(n as i32)),
                Some(_) => r.error(item.span(), "an exit status is between 0 and 255", None),
                None => {}
            },
            DeValue::String(s) => match signal::parse(s) {
                Some(sig) => out.push(ExitMatch::Signal(sig)),
                None => r.error(item.span(), format!("`{s}` is not a signal"), None),
            },
            other => r.error(
                item.span(),
                format!(
                    "`normal-exit` holds exit statuses and signal names, not {}",
                    other.type_str()
                ),
                None,
            ),
        }
    }
    out
}

pub(super) fn sig(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<Signal> {
    let text = match v.get_ref() {
        DeValue::Integer(_) => r.integer(key, v)?.to_string(),
        _ => r.string(key, v)?,
    };
    let found = signal::parse(&text);
    if found.is_none() {
        let names: Vec<&str> = Signal::iterator().map(signal::name).collect();
        let hint = crate::config::diag::did_you_mean(&text.to_ascii_uppercase(), &names)
            .map(|s| format!("did you mean `{s}`?"));
        r.error(v.span(), format!("`{key}`: `{text}` is not a signal"), hint);
    }
    found
}
