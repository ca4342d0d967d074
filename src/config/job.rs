//! One job file, `jobs/NAME.toml`, read into a validated [`JobSpec`]: the schema (every
//! key, its field and its default) and the checks across keys. What each key means is
//! read by the module of its subject: [`program`](super::program) (`exec`, `script`,
//! hooks), [`identity`] (`setuid`, `setgid`, `chdir`, `env`), [`limits`] (`limit`,
//! `nice`, `umask`), [`lifecycle`] (`expect`, signals, exits, respawn and restart
//! limits) and [`events`] (`start-on`, `stop-on`).

mod events;
mod identity;
mod lifecycle;
mod limits;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::de::DeTable;

use super::check::CheckSpec;
use super::limits as bounds;
use super::probe::ReadySpec;
use super::program::{self, Program};
use super::rare::{Empty, Rare};
use super::reader::{Reader, Value};

pub use super::program::DEFAULT_PATH;
pub use events::{On, text_start};
pub use identity::RunAs;
pub use lifecycle::{
    DEFAULT_HANDOVER_TIMEOUT, DEFAULT_KILL_SIGNAL, DEFAULT_KILL_TIMEOUT, DEFAULT_NORMAL_EXIT,
    ExitMatch, Expect, RespawnDelay, RespawnLimit,
};
pub use limits::Limit;

const KEYS: &[&str] = &[
    "description",
    "groups",
    "exec",
    "script",
    "pre-start",
    "post-start",
    "pre-stop",
    "post-stop",
    "env",
    "setuid",
    "setgid",
    "chdir",
    "umask",
    "nice",
    "limit",
    "respawn",
    "respawn-limit",
    "respawn-delay",
    "normal-exit",
    "task",
    "manual",
    "kill-signal",
    "kill-timeout",
    "reload-signal",
    "commands",
    "start-on",
    "stop-on",
    "expect",
    "pidfile",
    "handover-timeout",
    "ready",
    "check",
    "restart-limit",
    "alert",
    "diagnose",
    "diagnose-timeout",
    "instances",
];

/// The processes of a job's lifecycle that are not the main process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub pre_start: Option<Program>,
    pub post_start: Option<Program>,
    pub pre_stop: Option<Program>,
    pub post_stop: Option<Program>,
}

impl Empty for Hooks {
    const EMPTY: &'static Self = &Hooks {
        pre_start: None,
        post_start: None,
        pre_stop: None,
        post_stop: None,
    };
}

/// A job, validated: every name resolved, every value in range.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub file: PathBuf,
    /// Boxed, as `pidfile` and `group`: most jobs have none, and a spec's size counts
    /// once per job (their debug form, which `legacy_fingerprint` hashes, is the same).
    pub description: Option<Box<str>>,
    /// The groups the job belongs to (`guardian start -g GROUP`), in the file's order.
    pub groups: Rare<Vec<String>>,
    pub main: Option<Program>,
    pub hooks: Rare<Hooks>,
    pub env: BTreeMap<String, String>,
    pub user: Option<Box<RunAs>>,
    pub group: Option<Box<(String, u32)>>,
    pub chdir: PathBuf,
    pub umask: Option<u32>,
    pub nice: Option<i32>,
    pub limits: Rare<Vec<Limit>>,
    pub respawn: bool,
    pub respawn_limit: Option<RespawnLimit>,
    pub respawn_delay: RespawnDelay,
    pub normal_exit: std::borrow::Cow<'static, [ExitMatch]>,
    pub task: bool,
    pub manual: bool,
    pub kill_signal: Signal,
    pub kill_timeout: Duration,
    /// None: not set, so SIGHUP.
    pub reload_signal: Option<Signal>,
    pub commands: Rare<BTreeMap<String, String>>,
    pub start_on: Option<Box<On>>,
    pub stop_on: Option<Box<On>>,
    pub expect: Expect,
    pub pidfile: Option<Box<Path>>,
    /// How long a followed daemon that exited, leaving processes behind, may take to
    /// name its successor in the pid file.
    pub handover_timeout: Duration,
    pub ready: Option<Box<ReadySpec>>,
    pub checks: Rare<Vec<CheckSpec>>,
    /// Restarts by checks beyond this many within the interval unmonitor the job;
    /// None: no limit.
    pub restart_limit: Option<RespawnLimit>,
    pub alert: Rare<super::alert::JobAlert>,
    /// A program that looks inside the job for its reports (`py-spy dump --pid $MAINPID`).
    pub diagnose: Option<Box<Diagnose>>,
    /// Which instance this is, for a job file with `instances`.
    pub instance: Option<Box<super::instances::Instance>>,
    /// Of what the job's file says (see [`super::fingerprint`]); 0 for a spec not read
    /// from a file. Last: see `daemon::record::legacy_fingerprint`.
    pub fingerprint: super::fingerprint::Fingerprint,
}

/// `diagnose` and `diagnose-timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnose {
    /// Shell text; `$MAINPID` is the job's main process.
    pub command: String,
    pub timeout: Duration,
}

impl JobSpec {
    pub fn new(name: &str, file: &Path) -> Self {
        JobSpec {
            name: name.to_string(),
            file: file.to_path_buf(),
            description: None,
            groups: Rare::default(),
            main: None,
            hooks: Rare::default(),
            env: BTreeMap::new(),
            user: None,
            group: None,
            chdir: PathBuf::from("/"),
            umask: None,
            nice: None,
            limits: Rare::default(),
            respawn: false,
            respawn_limit: Some(RespawnLimit::RESPAWN),
            respawn_delay: RespawnDelay::DEFAULT,
            normal_exit: std::borrow::Cow::Borrowed(DEFAULT_NORMAL_EXIT),
            task: false,
            manual: false,
            kill_signal: DEFAULT_KILL_SIGNAL,
            kill_timeout: DEFAULT_KILL_TIMEOUT,
            reload_signal: None,
            commands: Rare::default(),
            start_on: None,
            stop_on: None,
            expect: Expect::None,
            pidfile: None,
            handover_timeout: DEFAULT_HANDOVER_TIMEOUT,
            ready: None,
            checks: Rare::default(),
            restart_limit: Some(RespawnLimit::RESTART),
            alert: Rare::default(),
            diagnose: None,
            fingerprint: super::fingerprint::Fingerprint(0),
            instance: None,
        }
    }

    /// Whether the job waits, after spawning its main process, for something to say
    /// it is ready: a fork to follow, a pid file, a signal, a message or a probe.
    pub fn waits_for_ready(&self) -> bool {
        self.expect != Expect::None || self.pidfile.is_some() || self.ready.is_some()
    }

    /// The PATH the job's programs are looked up in.
    pub fn path_var(&self) -> &str {
        self.env.get("PATH").map_or(DEFAULT_PATH, String::as_str)
    }
}

/// Reads one job file's table. Problems go to `r.errors`; the spec is returned either way,
/// so that the caller can go on to report problems in other files.
pub fn read(r: &mut Reader<'_>, name: &str, table: &DeTable<'_>) -> JobSpec {
    let mut job = JobSpec::new(name, r.file);
    let mut exec: Option<&Value<'_>> = None;
    let mut script: Option<&Value<'_>> = None;
    let mut diagnose_timeout: Option<(Duration, &Value<'_>)> = None;
    for (key, v) in table.iter() {
        let k = key.get_ref().as_ref();
        match k {
            "description" => job.description = r.string(k, v).map(Into::into),
            "groups" => job.groups = groups(r, v).into(),
            "exec" => exec = Some(v),
            "script" => script = Some(v),
            "pre-start" => job.hooks.pre_start = program::hook(r, k, v),
            "post-start" => job.hooks.post_start = program::hook(r, k, v),
            "pre-stop" => job.hooks.pre_stop = program::hook(r, k, v),
            "post-stop" => job.hooks.post_stop = program::hook(r, k, v),
            "env" => job.env = identity::env(r, v),
            "setuid" => job.user = identity::user(r, v).map(Box::new),
            "setgid" => job.group = identity::group(r, v).map(Box::new),
            "chdir" => {
                if let Some(dir) = identity::chdir(r, v) {
                    job.chdir = dir;
                }
            }
            "umask" => job.umask = limits::umask(r, v),
            "nice" => job.nice = limits::nice(r, v),
            "limit" => job.limits = limits::limits(r, v).into(),
            "respawn" => {
                if let Some(b) = r.bool(k, v) {
                    job.respawn = b;
                }
            }
            "respawn-limit" => job.respawn_limit = lifecycle::respawn_limit(r, v),
            "respawn-delay" => job.respawn_delay = lifecycle::respawn_delay(r, v),
            "normal-exit" => job.normal_exit = lifecycle::normal_exit(r, v).into(),
            "task" => {
                if let Some(b) = r.bool(k, v) {
                    job.task = b;
                }
            }
            "manual" => {
                if let Some(b) = r.bool(k, v) {
                    job.manual = b;
                }
            }
            "kill-signal" => {
                if let Some(s) = lifecycle::sig(r, k, v) {
                    job.kill_signal = s;
                }
            }
            "kill-timeout" => {
                if let Some(d) = r.duration(k, v) {
                    job.kill_timeout = d;
                }
            }
            "reload-signal" => job.reload_signal = lifecycle::sig(r, k, v),
            "commands" => job.commands = commands(r, v).into(),
            "start-on" => job.start_on = events::on(r, k, v).map(Box::new),
            "stop-on" => job.stop_on = events::on(r, k, v).map(Box::new),
            "expect" => {
                if let Some(e) = lifecycle::expect(r, v) {
                    job.expect = e;
                }
            }
            "pidfile" => {
                if let Some(p) = r.path(k, v) {
                    let p = PathBuf::from(p);
                    if p.is_absolute() {
                        job.pidfile = Some(p.into());
                    } else {
                        r.error(v.span(), "`pidfile` must be an absolute path", None);
                    }
                }
            }
            "handover-timeout" => {
                if let Some(d) = r.duration(k, v) {
                    job.handover_timeout = d;
                }
            }
            "ready" => job.ready = super::probe::ready(r, v).map(Box::new),
            "check" => job.checks = super::check::read_all(r, v, false).into(),
            "alert" => job.alert = super::alert::job(r, v).into(),
            "restart-limit" => job.restart_limit = lifecycle::restart_limit(r, v),
            "diagnose" => {
                if let Some(command) = r.string(k, v) {
                    job.diagnose = Some(Box::new(Diagnose {
                        command,
                        timeout: crate::diagnose::DEFAULT_DIAGNOSE_TIMEOUT,
                    }));
                }
            }
            "diagnose-timeout" => {
                diagnose_timeout = r.positive_duration(k, v).map(|d| (d, v));
            }
            // Read before the rest: see `instances::count`.
            "instances" => {}
            _ => r.unknown_key(key, KEYS),
        }
    }
    match (exec, script) {
        (Some(e), Some(s)) => {
            r.error(
                s.span(),
                "a job has either `exec` or `script`, not both",
                Some("keep `exec` for one program, `script` for shell text".into()),
            );
            job.main = program::exec(r, "exec", e, job.path_var(), &job.chdir);
        }
        (Some(e), None) => job.main = program::exec(r, "exec", e, job.path_var(), &job.chdir),
        (None, Some(s)) => job.main = r.string("script", s).map(Program::Script),
        (None, None) => {}
    }
    if let Some((d, v)) = diagnose_timeout {
        match job.diagnose.as_mut() {
            Some(diag) => diag.timeout = d,
            None => r.error(
                v.span(),
                "`diagnose-timeout` is the timeout of `diagnose`, which this job does not set",
                None,
            ),
        }
    }
    let mut no_hooks = Hooks::default();
    let hooks = job.hooks.get_mut().unwrap_or(&mut no_hooks);
    for (key, hook) in [
        ("pre-start", &mut hooks.pre_start),
        ("post-start", &mut hooks.post_start),
        ("pre-stop", &mut hooks.pre_stop),
        ("post-stop", &mut hooks.post_stop),
    ] {
        // Hooks given as `{ exec = ... }` were stored unresolved; resolve them now that
        // the job's PATH and working directory are known.
        if let Some(Program::Exec { argv, .. }) = hook.as_ref() {
            let argv = argv.clone();
            let env_path = job.env.get("PATH").cloned();
            let path = env_path.as_deref().unwrap_or(DEFAULT_PATH);
            match program::resolve(&argv[0], path, &job.chdir) {
                Ok(p) => *hook = Some(Program::Exec { path: p, argv }),
                Err(msg) => {
                    let span = table.get(key).map_or(0..0, |v: &Value<'_>| v.span());
                    r.error(span, format!("`{key}`: {msg}"), None);
                }
            }
        }
    }
    if job.waits_for_ready() && job.main.is_none() {
        r.errors.push(super::diag::Diagnostic::file(
            r.file,
            "`expect`, `pidfile` and `[ready]` are about the main process: add `exec` or `script`",
        ));
    }
    if job.task && job.main.is_none() {
        r.errors.push(super::diag::Diagnostic::file(
            r.file,
            "`task = true` needs `exec` or `script`: a task is its main process",
        ));
    }
    job
}

/// `groups = ["frontend", ...]`: each a name such as a job's, once.
fn groups(r: &mut Reader<'_>, v: &Value<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Some(items) = r.array("groups", v) else {
        return out;
    };
    for item in items {
        let Some(name) = r.string("groups", item) else {
            continue;
        };
        if !super::valid_name(&name) {
            r.error(
                item.span(),
                format!(
                    "`{}` is not a valid group name: use at most {} letters, digits, `-`, `_`, `.` and `@`, not starting with `.`{}",
                    crate::logtext::escape(&name),
                    bounds::MAX_NAME,
                    if super::RESERVED_NAMES.contains(&name.as_str()) {
                        " (and not `all`, which means every job)"
                    } else {
                        ""
                    }
                ),
                None,
            );
        } else if out.contains(&name) {
            r.error(
                item.span(),
                format!("the group `{name}` is listed twice"),
                None,
            );
        } else {
            out.push(name);
        }
    }
    out
}

fn commands(r: &mut Reader<'_>, v: &Value<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(t) = r.table("commands", v) else {
        return out;
    };
    for (k, val) in t.iter() {
        if !bounds::name_ok(k.get_ref()) {
            r.error(
                k.span(),
                format!(
                    "a command's name is 1 to {} characters, without spaces or control characters",
                    bounds::MAX_NAME
                ),
                None,
            );
            continue;
        }
        if let Some(text) = r.string(k.get_ref(), val) {
            out.insert(k.get_ref().to_string(), text);
        }
    }
    out
}
