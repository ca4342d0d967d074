//! The environment, identity and limits a job's processes get. The same report serves
//! the spawner and `guardian env JOB`, so what the command shows is what a job gets.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::JobSpec;
use crate::config::job::{DEFAULT_PATH, RunAs};

/// The user guardian itself runs as: jobs without `setuid` run as this user.
fn own_user() -> &'static RunAs {
    static OWN: OnceLock<RunAs> = OnceLock::new();
    OWN.get_or_init(|| {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(u)) => RunAs {
                name: u.name,
                uid: uid.as_raw(),
                gid: gid.as_raw(),
                groups: Vec::new(),
                home: u.dir,
                shell: u.shell,
            },
            _ => RunAs {
                name: uid.to_string(),
                uid: uid.as_raw(),
                gid: gid.as_raw(),
                groups: Vec::new(),
                home: PathBuf::from("/"),
                shell: PathBuf::from("/bin/sh"),
            },
        }
    })
}

/// The user a job's processes run as.
pub fn run_as(spec: &JobSpec) -> &RunAs {
    spec.user.as_deref().unwrap_or_else(|| own_user())
}

/// The variable that names the job in the environment of each of its processes.
pub const JOB_VAR: &str = "GUARDIAN_JOB";

/// The whole environment of a job's processes: a fixed base, then the job's `env`.
pub fn environment(spec: &JobSpec) -> Vec<(String, String)> {
    let user = run_as(spec);
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), user.home.display().to_string()),
        ("USER".into(), user.name.clone()),
        ("LOGNAME".into(), user.name.clone()),
        ("SHELL".into(), user.shell.display().to_string()),
        (JOB_VAR.into(), spec.name.clone()),
    ];
    for (k, v) in &spec.env {
        if is_manager_var(k) {
            continue;
        }
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.clone(),
            None => vars.push((k.clone(), v.clone())),
        }
    }
    vars
}

/// Whether `name` belongs to a service manager's protocol (`NOTIFY_SOCKET`,
/// `WATCHDOG_*`, `LISTEN_*`): no job is given one from its `env`, for they would
/// speak for guardian. A job with `expect = "notify"` gets a `NOTIFY_SOCKET` of
/// guardian's own, added at the spawn.
pub fn is_manager_var(name: &str) -> bool {
    name == "NOTIFY_SOCKET" || name.starts_with("WATCHDOG_") || name.starts_with("LISTEN_")
}

/// What `guardian env JOB` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvReport {
    pub job: String,
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub chdir: String,
    pub umask: String,
    pub nice: Option<i32>,
    /// `resource soft hard`, "unlimited" where there is no limit.
    pub limits: Vec<(String, String, String)>,
    pub env: Vec<(String, String)>,
}

pub fn report(spec: &JobSpec) -> EnvReport {
    let user = run_as(spec);
    let (group, gid) = match spec.group.as_deref() {
        Some((name, gid)) => (name.clone(), *gid),
        None => {
            let name = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(user.gid))
                .ok()
                .flatten()
                .map_or_else(|| user.gid.to_string(), |g| g.name);
            (name, user.gid)
        }
    };
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let limits = spec
        .limits
        .iter()
        .map(|l| (l.name.to_string(), show(l.soft), show(l.hard)))
        .collect();
    EnvReport {
        job: spec.name.clone(),
        user: user.name.clone(),
        uid: user.uid,
        group,
        gid,
        groups: user.groups.clone(),
        chdir: spec.chdir.display().to_string(),
        umask: spec
            .umask
            .map_or_else(|| "inherited".to_string(), |m| format!("{m:04o}")),
        nice: spec.nice,
        limits,
        env: environment(spec),
    }
}
