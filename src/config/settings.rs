//! `guardian.toml`: the daemon-wide settings. Every key is optional.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::alert::AlertSettings;
use super::check::CheckSpec;

use toml::de::DeTable;

use super::reader::Reader;

const KEYS: &[&str] = &[
    "socket",
    "log-dir",
    "state-dir",
    "log-max-size",
    "log-keep",
    "every",
    "check",
    "alert",
    "read-group",
    "log-group",
    "cgroups",
    "report-keep",
    "report-deadline",
    "http",
];

/// A group of the host, by the name the configuration gave and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub name: String,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub socket: PathBuf,
    pub log_dir: PathBuf,
    pub state_dir: PathBuf,
    /// A job's log is rotated once it grows past this many bytes.
    pub log_max_size: u64,
    /// How many rotated generations (`JOB.log.1` ...) are kept.
    pub log_keep: u32,
    /// The interval of checks that set none.
    pub every: Duration,
    /// Checks of the host itself (disk, load, memory...).
    pub checks: Vec<CheckSpec>,
    pub alert: AlertSettings,
    /// Members may use the read-only commands of the control socket.
    pub read_group: Option<GroupRef>,
    /// Job logs are readable by this group (else private to guardian's user).
    pub log_group: Option<GroupRef>,
    /// Whether each job runs in a cgroup of its own (where the host allows it).
    pub cgroups: crate::process::cgroup::Mode,
    /// How many reports (`state-dir/reports/JOB/`) each job keeps.
    pub report_keep: u32,
    /// How long taking a report may hold up a check's restart or stop.
    pub report_deadline: Duration,
    /// The HTTP interface; None unless `[http]` is there.
    pub http: Option<super::http::HttpSettings>,
}

impl Settings {
    pub fn defaults() -> Self {
        Settings {
            socket: PathBuf::from("/run/guardian.sock"),
            log_dir: PathBuf::from("/var/log/guardian"),
            state_dir: PathBuf::from("/var/lib/guardian"),
            log_max_size: 10_000_000,
            log_keep: 5,
            every: Duration::from_secs(30),
            checks: Vec::new(),
            alert: AlertSettings::default(),
            read_group: None,
            log_group: None,
            cgroups: crate::process::cgroup::Mode::Auto,
            report_keep: crate::diagnose::DEFAULT_KEEP,
            report_deadline: crate::diagnose::DEADLINE,
            http: None,
        }
    }
}

/// Reads `guardian.toml`; relative paths are taken relative to the config directory.
pub fn read(r: &mut Reader<'_>, dir: &Path, table: &DeTable<'_>) -> Settings {
    let mut s = Settings::defaults();
    for (key, v) in table.iter() {
        let k = key.get_ref().as_ref();
        match k {
            "socket" | "log-dir" | "state-dir" => {
                let Some(p) = r.path(k, v) else { continue };
                let p = dir.join(p);
                let len = p.as_os_str().len();
                if k == "socket" && len > super::limits::MAX_SOCKET_PATH {
                    r.error(
                        v.span(),
                        format!(
                            "the socket's path, {}, is {len} bytes long: a Unix socket's path is at most {}",
                            p.display(),
                            super::limits::MAX_SOCKET_PATH
                        ),
                        Some("use a shorter path, such as /run/guardian.sock".into()),
                    );
                    continue;
                }
                match k {
                    "socket" => s.socket = p,
                    "log-dir" => s.log_dir = p,
                    _ => s.state_dir = p,
                }
            }
            "log-max-size" => {
                if let Some(n) = r.size(k, v) {
                    if n < 1000 {
                        r.error(v.span(), "`log-max-size` must be at least 1KB", None);
                    } else {
                        s.log_max_size = n;
                    }
                }
            }
            "log-keep" => match r.integer(k, v).map(u32::try_from) {
                Some(Ok(n)) if n <= 100 => s.log_keep = n,
                Some(_) => r.error(v.span(), "`log-keep` must be between 0 and 100", None),
                None => {}
            },
            "every" => {
                if let Some(d) = r.positive_duration(k, v) {
                    s.every = d;
                }
            }
            "report-keep" => match r.integer(k, v).map(u32::try_from) {
                Some(Ok(n)) if (1..=1000).contains(&n) => s.report_keep = n,
                Some(_) => r.error(v.span(), "`report-keep` must be between 1 and 1000", None),
                None => {}
            },
            "report-deadline" => {
                if let Some(d) = r.duration(k, v) {
                    if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
                        r.error(
                            v.span(),
                            "`report-deadline` must be between 100ms and 60s",
                            Some("it holds up a check's restart: keep it short, such as \"2s\"".into()),
                        );
                    } else {
                        s.report_deadline = d;
                    }
                }
            }
            "check" => s.checks = super::check::read_all(r, v, true),
            "alert" => {
                if let Some(a) = super::alert::read(r, dir, v) {
                    s.alert = a;
                }
            }
            "http" => s.http = super::http::read(r, dir, v),
            "read-group" => s.read_group = group(r, k, v),
            "log-group" => s.log_group = group(r, k, v),
            "cgroups" => match r.string(k, v).as_deref() {
                Some("auto") => s.cgroups = crate::process::cgroup::Mode::Auto,
                Some("off") => s.cgroups = crate::process::cgroup::Mode::Off,
                Some(other) => r.error(
                    v.span(),
                    format!("`cgroups` is \"auto\" or \"off\", not `{other}`"),
                    Some("\"auto\" gives each job a cgroup where the host has a writable cgroup v2 hierarchy".into()),
                ),
                None => {}
            },
            _ => r.unknown_key(key, KEYS),
        }
    }
    s
}

/// A group name (or a numeric id) that must exist on this host.
fn group(r: &mut Reader<'_>, key: &str, v: &super::reader::Value<'_>) -> Option<GroupRef> {
    let name = r.string(key, v)?;
    let found = match nix::unistd::Group::from_name(&name) {
        Ok(Some(g)) => Some(g.gid.as_raw()),
        Ok(None) => name.parse::<u32>().ok(),
        Err(e) => {
            r.error(
                v.span(),
                format!("`{key}`: cannot look up the group `{name}`: {e}"),
                None,
            );
            return None;
        }
    };
    match found {
        Some(gid) => Some(GroupRef { name, gid }),
        None => {
            r.error(
                v.span(),
                format!("`{key}`: there is no group `{name}` on this host"),
                Some("create it (groupadd), or give an existing group's name".into()),
            );
            None
        }
    }
}

#[cfg(test)]
mod report_tests {
    use std::path::Path;
    use std::time::Duration;

    fn read(text: &str) -> (super::Settings, Vec<String>) {
        let (s, d) = crate::config::read_settings_text(
            Path::new("/etc/guardian"),
            Path::new("/etc/guardian/guardian.toml"),
            text.as_bytes(),
        );
        (s, d.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn report_keys_and_their_bounds() {
        let (s, errors) = read("");
        assert!(errors.is_empty());
        assert_eq!(s.report_keep, crate::diagnose::DEFAULT_KEEP);
        assert_eq!(s.report_deadline, crate::diagnose::DEADLINE);
        let (s, errors) = read("report-keep = 3\nreport-deadline = \"500ms\"\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            (s.report_keep, s.report_deadline),
            (3, Duration::from_millis(500))
        );
        let (s, mut errors) = read("report-keep = 0\nreport-deadline = \"2m\"\n");
        errors.sort();
        assert_eq!(
            errors,
            [
                "`report-deadline` must be between 100ms and 60s",
                "`report-keep` must be between 1 and 1000",
            ]
        );
        assert_eq!(s.report_keep, crate::diagnose::DEFAULT_KEEP);
    }
}
