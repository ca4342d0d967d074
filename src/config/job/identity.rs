//! Who a job's processes run as and in what surroundings: `setuid` and `setgid`
//! (looked up when the configuration is read), `chdir` and `env`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};
use toml::de::DeValue;

use crate::config::limits;
use crate::config::reader::{Reader, Value};

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

pub(super) fn user(r: &mut Reader<'_>, v: &Value<'_>) -> Option<RunAs> {
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

pub(super) fn group(r: &mut Reader<'_>, v: &Value<'_>) -> Option<(String, u32)> {
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

/// `chdir`: an absolute path to a directory. The path is kept even when it is refused,
/// so that what depends on it reports against it, not against `/`.
pub(super) fn chdir(r: &mut Reader<'_>, v: &Value<'_>) -> Option<PathBuf> {
    let dir = PathBuf::from(r.path("chdir", v)?);
    if !dir.is_absolute() {
        r.error(v.span(), "`chdir` must be an absolute path", None);
    } else if !dir.is_dir() {
        r.error(
            v.span(),
            format!("`chdir`: {} is not a directory", dir.display()),
            None,
        );
    }
    Some(dir)
}

pub(super) fn env(r: &mut Reader<'_>, v: &Value<'_>) -> BTreeMap<String, String> {
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
