//! One job file, `jobs/NAME.toml`, read into a validated [`JobSpec`].

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::resource::Resource;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Group, Uid, User};
use toml::de::{DeTable, DeValue};

use super::check::CheckSpec;
use super::probe::ReadySpec;
use super::reader::{Reader, Value};
use super::{limits, signal, words};
use crate::event::expr::{self, Expr};

/// The PATH every job starts with, whatever the daemon's own environment holds.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const KEYS: &[&str] = &[
    "description",
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
];

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

/// An event expression with where it stands in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct On {
    pub expr: Expr,
    /// Byte offset of the expression's text in the job file, when the file holds the
    /// text byte for byte (no escapes), so that an offset in the text is one in the file.
    pub offset: Option<usize>,
    /// The whole value in the file, quotes included.
    pub span: std::ops::Range<usize>,
}

impl On {
    /// The span in the file of `len` bytes at `at` in the expression's text: exact when
    /// it can be, else the whole value.
    pub fn span_of(&self, at: usize, len: usize) -> std::ops::Range<usize> {
        match self.offset {
            Some(o) => o.saturating_add(at)..o.saturating_add(at).saturating_add(len),
            None => self.span.clone(),
        }
    }
}

/// What a process of a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A program found at `path`, run directly with `argv` (argv\[0\] as written).
    Exec { path: PathBuf, argv: Vec<String> },
    /// Shell text, run with `/bin/sh -e -c`.
    Script(String),
}

impl Program {
    /// The program and its arguments as they will be executed.
    pub fn command_line(&self) -> (PathBuf, Vec<String>) {
        match self {
            Program::Exec { path, argv } => (path.clone(), argv.clone()),
            Program::Script(text) => (
                PathBuf::from("/bin/sh"),
                vec!["sh".into(), "-e".into(), "-c".into(), text.clone()],
            ),
        }
    }
}

/// The user a job's processes run as, resolved when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups of the user, from the group database.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub resource: Resource,
    pub name: &'static str,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespawnLimit {
    pub count: u32,
    pub interval: Duration,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitMatch {
    Code(i32),
    Signal(Signal),
}

/// The processes of a job's lifecycle that are not the main process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub pre_start: Option<Program>,
    pub post_start: Option<Program>,
    pub pre_stop: Option<Program>,
    pub post_stop: Option<Program>,
}

/// A job, validated: every name resolved, every value in range.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub main: Option<Program>,
    pub hooks: Hooks,
    pub env: BTreeMap<String, String>,
    pub user: Option<Box<RunAs>>,
    pub group: Option<(String, u32)>,
    pub chdir: PathBuf,
    pub umask: Option<u32>,
    pub nice: Option<i32>,
    pub limits: Vec<Limit>,
    pub respawn: bool,
    pub respawn_limit: Option<RespawnLimit>,
    pub respawn_delay: RespawnDelay,
    pub normal_exit: Vec<ExitMatch>,
    pub task: bool,
    pub manual: bool,
    pub kill_signal: Signal,
    pub kill_timeout: Duration,
    /// None: not set, so SIGHUP.
    pub reload_signal: Option<Signal>,
    pub commands: BTreeMap<String, String>,
    pub start_on: Option<On>,
    pub stop_on: Option<On>,
    pub expect: Expect,
    pub pidfile: Option<PathBuf>,
    /// How long a followed daemon that exited, leaving processes behind, may take to
    /// name its successor in the pid file.
    pub handover_timeout: Duration,
    pub ready: Option<Box<ReadySpec>>,
    pub checks: Vec<CheckSpec>,
    /// Restarts by checks beyond this many within the interval unmonitor the job;
    /// None: no limit.
    pub restart_limit: Option<RespawnLimit>,
    pub alert: super::alert::JobAlert,
}

impl JobSpec {
    pub fn new(name: &str, file: &Path) -> Self {
        JobSpec {
            name: name.to_string(),
            file: file.to_path_buf(),
            description: None,
            main: None,
            hooks: Hooks::default(),
            env: BTreeMap::new(),
            user: None,
            group: None,
            chdir: PathBuf::from("/"),
            umask: None,
            nice: None,
            limits: Vec::new(),
            respawn: false,
            respawn_limit: Some(RespawnLimit {
                count: 10,
                interval: Duration::from_secs(5),
            }),
            respawn_delay: RespawnDelay::DEFAULT,
            normal_exit: vec![ExitMatch::Code(0)],
            task: false,
            manual: false,
            kill_signal: Signal::SIGTERM,
            kill_timeout: Duration::from_secs(5),
            reload_signal: None,
            commands: BTreeMap::new(),
            start_on: None,
            stop_on: None,
            expect: Expect::None,
            pidfile: None,
            handover_timeout: DEFAULT_HANDOVER_TIMEOUT,
            ready: None,
            checks: Vec::new(),
            restart_limit: Some(RespawnLimit {
                count: 5,
                interval: Duration::from_secs(600),
            }),
            alert: Default::default(),
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
    for (key, v) in table.iter() {
        let k = key.get_ref().as_ref();
        match k {
            "description" => job.description = r.string(k, v),
            "exec" => exec = Some(v),
            "script" => script = Some(v),
            "pre-start" => job.hooks.pre_start = hook(r, k, v),
            "post-start" => job.hooks.post_start = hook(r, k, v),
            "pre-stop" => job.hooks.pre_stop = hook(r, k, v),
            "post-stop" => job.hooks.post_stop = hook(r, k, v),
            "env" => job.env = env(r, v),
            "setuid" => job.user = user(r, v).map(Box::new),
            "setgid" => job.group = group(r, v),
            "chdir" => {
                if let Some(dir) = r.path(k, v) {
                    let dir = PathBuf::from(dir);
                    if !dir.is_absolute() {
                        r.error(v.span(), "`chdir` must be an absolute path", None);
                    } else if !dir.is_dir() {
                        r.error(
                            v.span(),
                            format!("`chdir`: {} is not a directory", dir.display()),
                            None,
                        );
                    }
                    job.chdir = dir;
                }
            }
            "umask" => job.umask = umask(r, v),
            "nice" => {
                if let Some(n) = r.integer(k, v) {
                    if n < 0 && !nix::unistd::geteuid().is_root() {
                        r.error(
                            v.span(),
                            "`nice` below 0 needs guardian to run as root",
                            None,
                        );
                    } else if let Ok(n) = i32::try_from(n)
                        && (-20..=19).contains(&n)
                    {
                        job.nice = Some(n);
                    } else {
                        r.error(v.span(), "`nice` must be between -20 and 19", None);
                    }
                }
            }
            "limit" => job.limits = limits(r, v),
            "respawn" => job.respawn = r.bool(k, v).unwrap_or(false),
            "respawn-limit" => job.respawn_limit = respawn_limit(r, v),
            "respawn-delay" => job.respawn_delay = respawn_delay(r, v),
            "normal-exit" => job.normal_exit = normal_exit(r, v),
            "task" => job.task = r.bool(k, v).unwrap_or(false),
            "manual" => job.manual = r.bool(k, v).unwrap_or(false),
            "kill-signal" => job.kill_signal = sig(r, k, v).unwrap_or(Signal::SIGTERM),
            "kill-timeout" => job.kill_timeout = r.duration(k, v).unwrap_or(Duration::from_secs(5)),
            "reload-signal" => job.reload_signal = sig(r, k, v),
            "commands" => job.commands = commands(r, v),
            "start-on" => job.start_on = on(r, k, v),
            "stop-on" => job.stop_on = on(r, k, v),
            "expect" => {
                if let Some(e) = r.string(k, v) {
                    job.expect = match e.as_str() {
                        "none" => Expect::None,
                        "fork" => Expect::Fork,
                        "daemon" => Expect::Daemon,
                        "stop" => Expect::Stop,
                        "notify" => Expect::Notify,
                        _ => {
                            r.error(
                                v.span(),
                                format!(
                                    "`expect`: `{e}` is not one of none, fork, daemon, stop, notify"
                                ),
                                None,
                            );
                            Expect::None
                        }
                    }
                }
            }
            "pidfile" => {
                if let Some(p) = r.path(k, v) {
                    let p = PathBuf::from(p);
                    if p.is_absolute() {
                        job.pidfile = Some(p);
                    } else {
                        r.error(v.span(), "`pidfile` must be an absolute path", None);
                    }
                }
            }
            "handover-timeout" => {
                job.handover_timeout = r.duration(k, v).unwrap_or(DEFAULT_HANDOVER_TIMEOUT)
            }
            "ready" => job.ready = super::probe::ready(r, v).map(Box::new),
            "check" => job.checks = super::check::read_all(r, v, false),
            "alert" => job.alert = super::alert::job(r, v),
            "restart-limit" => job.restart_limit = restart_limit(r, v),
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
            job.main = exec_program(r, "exec", e, &job);
        }
        (Some(e), None) => job.main = exec_program(r, "exec", e, &job),
        (None, Some(s)) => job.main = r.string("script", s).map(Program::Script),
        (None, None) => {}
    }
    for (key, hook) in [
        ("pre-start", &mut job.hooks.pre_start),
        ("post-start", &mut job.hooks.post_start),
        ("pre-stop", &mut job.hooks.pre_stop),
        ("post-stop", &mut job.hooks.post_stop),
    ] {
        // Hooks given as `{ exec = ... }` were stored unresolved; resolve them now that
        // the job's PATH and working directory are known.
        if let Some(Program::Exec { argv, .. }) = hook.as_ref() {
            let argv = argv.clone();
            let env_path = job.env.get("PATH").cloned();
            let path = env_path.as_deref().unwrap_or(DEFAULT_PATH);
            match resolve(&argv[0], path, &job.chdir) {
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

fn exec_program(r: &mut Reader<'_>, key: &str, v: &Value<'_>, job: &JobSpec) -> Option<Program> {
    let line = r.string(key, v)?;
    let argv = match words::split(&line) {
        Ok(w) if !w.is_empty() => w,
        Ok(_) => {
            r.error(v.span(), format!("`{key}` is empty"), None);
            return None;
        }
        Err(e) => {
            r.error(v.span(), format!("`{key}`: {e}"), None);
            return None;
        }
    };
    match resolve(&argv[0], job.path_var(), &job.chdir) {
        Ok(path) => Some(Program::Exec { path, argv }),
        Err(msg) => {
            let hint = (line.contains('|') || line.contains("&&") || line.contains('>'))
                .then(|| "this looks like shell: use `script = \"...\"` instead".to_string());
            r.error(v.span(), format!("`{key}`: {msg}"), hint);
            None
        }
    }
}

/// Finds the executable a command's first word names, as `execvp` would.
pub fn resolve(program: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = cwd.join(program);
        return if executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(format!("{} is not an executable file", p.display()))
        } else {
            Err(format!("{} does not exist", p.display()))
        };
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cwd.join(d).join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("program `{program}` not found in PATH {path_var}"))
}

/// A program given as a table `{ exec = "..." }` or `{ script = "..." }` (as check
/// actions are), with `exec` resolved in the default PATH.
pub fn hook_program(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<Program> {
    match hook(r, key, v)? {
        Program::Exec { argv, .. } => match resolve(&argv[0], DEFAULT_PATH, Path::new("/")) {
            Ok(path) => Some(Program::Exec { path, argv }),
            Err(msg) => {
                r.error(v.span(), format!("`{key}`: {msg}"), None);
                None
            }
        },
        script => Some(script),
    }
}

fn hook(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<Program> {
    match v.get_ref() {
        DeValue::String(_) => r.string(key, v).map(Program::Script),
        DeValue::Table(t) => {
            let mut found = None;
            for (k, val) in t.iter() {
                match k.get_ref().as_ref() {
                    "exec" => {
                        let line = r.string("exec", val)?;
                        match words::split(&line) {
                            Ok(w) if !w.is_empty() => {
                                found = Some(Program::Exec {
                                    path: PathBuf::new(),
                                    argv: w,
                                })
                            }
                            Ok(_) => r.error(val.span(), "`exec` is empty", None),
                            Err(e) => r.error(val.span(), format!("`exec`: {e}"), None),
                        }
                    }
                    "script" => found = r.string("script", val).map(Program::Script),
                    _ => r.unknown_key(k, &["exec", "script"]),
                }
            }
            if found.is_none() && t.is_empty() {
                r.error(v.span(), format!("`{key}` needs `exec` or `script`"), None);
            }
            found
        }
        _ => {
            r.error(
                v.span(),
                format!(
                    "`{key}` must be shell text or a table {{ exec = \"...\" }}, not {}",
                    v.get_ref().type_str()
                ),
                None,
            );
            None
        }
    }
}

fn env(r: &mut Reader<'_>, v: &Value<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(t) = r.table("env", v) else {
        return out;
    };
    for (k, val) in t.iter() {
        let name = k.get_ref().to_string();
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            r.error(
                k.span(),
                format!(
                    "`{}` is not a valid variable name: it is empty or holds `=` or a NUL byte",
                    name.escape_debug()
                ),
                None,
            );
            continue;
        }
        if name.len() > limits::MAX_KEY {
            r.error(
                k.span(),
                format!("a variable name is at most {} bytes long", limits::MAX_KEY),
                None,
            );
            continue;
        }
        let text = match val.get_ref() {
            DeValue::String(_) => match r.string(&format!("env {name}"), val) {
                Some(s) => s,
                None => continue,
            },
            DeValue::Integer(i) => i.to_string(),
            DeValue::Boolean(b) => b.to_string(),
            other => {
                r.error(
                    val.span(),
                    format!("env `{name}` must be a string, not {}", other.type_str()),
                    None,
                );
                continue;
            }
        };
        out.insert(name, text);
    }
    out
}

fn user(r: &mut Reader<'_>, v: &Value<'_>) -> Option<RunAs> {
    let name = match v.get_ref() {
        DeValue::Integer(_) => r.integer("setuid", v)?.to_string(),
        _ => r.string("setuid", v)?,
    };
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(&name),
    };
    match found {
        Ok(Some(_)) if !nix::unistd::geteuid().is_root() => {
            r.error(
                v.span(),
                "`setuid` needs guardian to run as root (a job of guardian's own user needs no `setuid`)",
                None,
            );
            None
        }
        Ok(Some(u)) => {
            let groups = CString::new(u.name.clone())
                .ok()
                .and_then(|c| nix::unistd::getgrouplist(&c, u.gid).ok())
                .map(|g| g.into_iter().map(Gid::as_raw).collect())
                .unwrap_or_else(|| vec![u.gid.as_raw()]);
            Some(RunAs {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                groups,
                home: u.dir,
                shell: u.shell,
            })
        }
        Ok(None) => {
            r.error(
                v.span(),
                format!("`setuid`: no user `{name}` on this host"),
                None,
            );
            None
        }
        Err(e) => {
            r.error(
                v.span(),
                format!("`setuid`: cannot look up `{name}`: {e}"),
                None,
            );
            None
        }
    }
}

fn group(r: &mut Reader<'_>, v: &Value<'_>) -> Option<(String, u32)> {
    let name = match v.get_ref() {
        DeValue::Integer(_) => r.integer("setgid", v)?.to_string(),
        _ => r.string("setgid", v)?,
    };
    let found = match name.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
        Err(_) => Group::from_name(&name),
    };
    let own = |g: Gid| g == nix::unistd::getgid() || g == nix::unistd::getegid();
    match found {
        Ok(Some(g)) if !nix::unistd::geteuid().is_root() && !own(g.gid) => {
            r.error(
                v.span(),
                format!(
                    "`setgid`: only root can run a job as group `{}`, and guardian does not run as root",
                    g.name
                ),
                None,
            );
            None
        }
        Ok(Some(g)) => Some((g.name, g.gid.as_raw())),
        Ok(None) => {
            r.error(
                v.span(),
                format!("`setgid`: no group `{name}` on this host"),
                None,
            );
            None
        }
        Err(e) => {
            r.error(
                v.span(),
                format!("`setgid`: cannot look up `{name}`: {e}"),
                None,
            );
            None
        }
    }
}

fn umask(r: &mut Reader<'_>, v: &Value<'_>) -> Option<u32> {
    let mask = match v.get_ref() {
        DeValue::String(s) => match u32::from_str_radix(s, 8) {
            Ok(m) => m,
            Err(_) => {
                r.error(
                    v.span(),
                    format!("`umask`: `{s}` is not an octal number"),
                    None,
                );
                return None;
            }
        },
        DeValue::Integer(_) => u32::try_from(r.integer("umask", v)?).unwrap_or(u32::MAX),
        _ => {
            r.error(
                v.span(),
                "`umask` must be an octal string such as \"022\"",
                None,
            );
            return None;
        }
    };
    if mask > 0o777 {
        r.error(
            v.span(),
            "`umask` must be at most 0777",
            Some("write it as a string, \"022\", or as 0o022".into()),
        );
        return None;
    }
    Some(mask)
}

const RESOURCES: &[(&str, Resource)] = &[
    ("as", Resource::RLIMIT_AS),
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

fn limits(r: &mut Reader<'_>, v: &Value<'_>) -> Vec<Limit> {
    let mut out = Vec::new();
    let Some(t) = r.table("limit", v) else {
        return out;
    };
    for (k, val) in t.iter() {
        let name = k.get_ref().as_ref();
        let Some(&(name, resource)) = RESOURCES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
            r.unknown_key(k, &names);
            continue;
        };
        let one = |r: &mut Reader<'_>, x: &Value<'_>| -> Result<Option<u64>, ()> {
            match x.get_ref() {
                DeValue::String(s) if s == "unlimited" => Ok(None),
                DeValue::Integer(_) => match r.integer(name, x).map(u64::try_from) {
                    Some(Ok(n)) => Ok(Some(n)),
                    _ => {
                        r.error(x.span(), format!("limit `{name}` cannot be negative"), None);
                        Err(())
                    }
                },
                _ => {
                    r.error(
                        x.span(),
                        format!("limit `{name}` must be a number or \"unlimited\""),
                        None,
                    );
                    Err(())
                }
            }
        };
        let pair = match val.get_ref() {
            DeValue::Array(a) if a.len() == 2 => {
                one(r, &a[0]).and_then(|s| Ok((s, one(r, &a[1])?)))
            }
            DeValue::Array(_) => {
                r.error(
                    val.span(),
                    format!("limit `{name}` takes [soft, hard]"),
                    None,
                );
                Err(())
            }
            _ => one(r, val).map(|n| (n, n)),
        };
        if let Ok((soft, hard)) = pair {
            if let Some(why) = rlimit_refusal(resource, name, soft, hard) {
                r.error(val.span(), why, None);
                continue;
            }
            if let (Some(s), Some(h)) = (soft, hard)
                && s > h
            {
                r.error(
                    val.span(),
                    format!("limit `{name}`: soft is above hard"),
                    None,
                );
                continue;
            }
            if soft.is_none() && hard.is_some() {
                r.error(
                    val.span(),
                    format!("limit `{name}`: soft is above hard"),
                    None,
                );
                continue;
            }
            out.push(Limit {
                resource,
                name,
                soft,
                hard,
            });
        }
    }
    out
}

/// Why `setrlimit` would refuse a limit when the job starts, if it would: above the
/// hard limit guardian has (only root may raise it), or, for `nofile`, above the
/// kernel's `fs.nr_open`, which even root cannot pass ("unlimited" is above it).
fn rlimit_refusal(
    resource: Resource,
    name: &str,
    soft: Option<u64>,
    hard: Option<u64>,
) -> Option<String> {
    let inf = nix::sys::resource::RLIM_INFINITY;
    let want = hard.unwrap_or(inf).max(soft.unwrap_or(inf));
    if resource == Resource::RLIMIT_NOFILE
        && let Some(max) = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        && want > max
    {
        return Some(format!(
            "limit `{name}`: at most {max} (the kernel's fs.nr_open; \"unlimited\" is above it)"
        ));
    }
    if !nix::unistd::geteuid().is_root()
        && let Ok((_, current)) = nix::sys::resource::getrlimit(resource)
        && want > current
    {
        let shown = if current == inf {
            "unlimited".to_string()
        } else {
            current.to_string()
        };
        return Some(format!(
            "limit `{name}`: above guardian's own hard limit ({shown}), which only root can raise"
        ));
    }
    None
}

fn respawn_limit(r: &mut Reader<'_>, v: &Value<'_>) -> Option<RespawnLimit> {
    let default = RespawnLimit {
        count: 10,
        interval: Duration::from_secs(5),
    };
    limit_table(r, "respawn-limit", v, default)
}

/// `{ initial = "100ms", max = "30s", stable = "1s" }`; a missing key keeps its default.
fn respawn_delay(r: &mut Reader<'_>, v: &Value<'_>) -> RespawnDelay {
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

fn restart_limit(r: &mut Reader<'_>, v: &Value<'_>) -> Option<RespawnLimit> {
    let default = RespawnLimit {
        count: 5,
        interval: Duration::from_secs(600),
    };
    limit_table(r, "restart-limit", v, default)
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

fn normal_exit(r: &mut Reader<'_>, v: &Value<'_>) -> Vec<ExitMatch> {
    let mut out = Vec::new();
    let Some(items) = r.array("normal-exit", v) else {
        return vec![ExitMatch::Code(0)];
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

fn sig(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<Signal> {
    let text = match v.get_ref() {
        DeValue::Integer(_) => r.integer(key, v)?.to_string(),
        _ => r.string(key, v)?,
    };
    let found = signal::parse(&text);
    if found.is_none() {
        let names: Vec<&str> = Signal::iterator().map(signal::name).collect();
        let hint = super::diag::did_you_mean(&text.to_ascii_uppercase(), &names)
            .map(|s| format!("did you mean `{s}`?"));
        r.error(v.span(), format!("`{key}`: `{text}` is not a signal"), hint);
    }
    found
}

/// Where a string value's text starts in the file, if the file holds it byte for byte
/// there (a value written with escapes does not: its offsets are not the file's).
pub fn text_start(file_text: &str, span: std::ops::Range<usize>, value: &str) -> Option<usize> {
    let raw = file_text.get(span.clone())?;
    let triple = raw.starts_with("\"\"\"") || raw.starts_with("'''");
    let mut start = span.start.checked_add(if triple { 3 } else { 1 })?;
    if triple {
        // A newline right after the opening quotes is not part of the value.
        let rest = file_text.get(start..)?;
        if rest.starts_with("\r\n") {
            start += 2;
        } else if rest.starts_with('\n') {
            start += 1;
        }
    }
    let end = start.checked_add(value.len())?;
    (file_text.get(start..end) == Some(value)).then_some(start)
}

/// Reads an event expression; a syntax error points at its column in the file.
fn on(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<On> {
    let text = r.string(key, v)?;
    let span = v.span();
    let offset = text_start(r.text, span.clone(), &text);
    match expr::parse(&text) {
        Ok(expr) => Some(On { expr, offset, span }),
        Err(e) => {
            let on = On {
                expr: Expr::And(Vec::new()),
                offset,
                span,
            };
            let hint = Some(
                "write events like `started redis`, joined with `and` / `or`, e.g. \
                 \"started redis and (started db or deploy-done)\""
                    .to_string(),
            );
            r.error(on.span_of(e.at, 1), format!("`{key}`: {}", e.message), hint);
            None
        }
    }
}

fn commands(r: &mut Reader<'_>, v: &Value<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(t) = r.table("commands", v) else {
        return out;
    };
    for (k, val) in t.iter() {
        if !name_ok(k.get_ref()) {
            r.error(
                k.span(),
                format!(
                    "a command's name is 1 to {} characters, without spaces or control characters",
                    limits::MAX_NAME
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

/// A name a person types and reads (a custom command's, a check's): 1 to
/// [`limits::MAX_NAME`] characters, none of them a space or a control character.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= limits::MAX_NAME
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}
