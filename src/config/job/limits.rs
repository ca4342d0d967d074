//! What the kernel bounds a job's processes by: `limit` (rlimits, checked the way
//! `setrlimit` will check them), `nice` and `umask`.

use nix::sys::resource::Resource;
use toml::de::DeValue;

use crate::config::reader::{Reader, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub resource: Resource,
    pub name: &'static str,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// `nice`: -20 to 19, below 0 only when guardian runs as root.
pub(super) fn nice(r: &mut Reader<'_>, v: &Value<'_>) -> Option<i32> {
    let n = r.integer("nice", v)?;
    if n < 0 && !nix::unistd::geteuid().is_root() {
        r.error(
            v.span(),
            "`nice` below 0 needs guardian to run as root",
            None,
        );
        None
    } else if let Ok(n) = i32::try_from(n)
        && (-20..=19).contains(&n)
    {
        Some(n)
    } else {
        r.error(v.span(), "`nice` must be between -20 and 19", None);
        None
    }
}

pub(super) fn umask(r: &mut Reader<'_>, v: &Value<'_>) -> Option<u32> {
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

pub(super) fn limits(r: &mut Reader<'_>, v: &Value<'_>) -> Vec<Limit> {
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
