//! `cpu`, `memory`, `children`: limits on a job's whole process tree; `load`,
//! `system-memory`, `disk`: limits on the host.

use std::time::Instant;

use crate::tree::{self, TreeUsage};
use crate::{Outcome, Target};

/// A limit: an absolute amount, or a percentage of something (a core's time for cpu,
/// the host's memory for memory).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Absolute(f64),
    Percent(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// Percent of one core, averaged since the previous check.
    Cpu {
        max: f64,
    },
    Memory {
        max: Amount,
    },
    Children {
        max: u32,
    },
    /// The 1, 5 or 15 minute load average.
    Load {
        max: f64,
        minutes: u8,
    },
    SystemMemory {
        max: Amount,
    },
    /// Used space of the filesystem holding `path`.
    Disk {
        path: String,
        max: Amount,
    },
}

pub fn human_bytes(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.0} KB", n / 1e3)
    }
}

fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

impl Resource {
    pub fn describe(&self) -> String {
        match self {
            Resource::Cpu { .. } => "cpu".into(),
            Resource::Memory { .. } => "memory".into(),
            Resource::Children { .. } => "children".into(),
            Resource::Load { minutes, .. } => format!("load ({minutes} min)"),
            Resource::SystemMemory { .. } => "system memory".into(),
            Resource::Disk { path, .. } => format!("disk {path}"),
        }
    }

    /// Blocking: reads /proc or asks the filesystem.
    pub(crate) fn sample(&self, target: &mut Target, start: Instant) -> Outcome {
        let fail = |why: String| Outcome::fail(why, start.elapsed());
        match self {
            Resource::Cpu { .. } | Resource::Memory { .. } | Resource::Children { .. } => {
                let Some(pid) = target.pid else {
                    return fail("the job has no main process to measure".into());
                };
                let Some(u) = tree::usage(pid) else {
                    return fail(format!("process {pid} is gone"));
                };
                self.judge_tree(u, target, start)
            }
            Resource::Load { max, minutes } => {
                let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
                let idx = match minutes {
                    5 => 1,
                    15 => 2,
                    _ => 0,
                };
                let Some(load) = text
                    .split_whitespace()
                    .nth(idx)
                    .and_then(|v| v.parse::<f64>().ok())
                else {
                    return fail("cannot read /proc/loadavg".into());
                };
                let reason = format!("load average ({minutes} min) is {load:.2}, limit {max:.2}");
                judge(load <= *max, reason, load, start)
            }
            Resource::SystemMemory { max } => {
                let Some((total, available)) = meminfo() else {
                    return fail("cannot read /proc/meminfo".into());
                };
                let used = total.saturating_sub(available) as f64;
                let pct = used * 100.0 / total.max(1) as f64;
                let (ok, limit) = match max {
                    Amount::Percent(p) => (pct <= *p, format!("{p}%")),
                    Amount::Absolute(b) => (used <= *b, human_bytes(*b)),
                };
                let reason = format!(
                    "system memory in use is {} ({pct:.0}%), limit {limit}",
                    human_bytes(used)
                );
                judge(ok, reason, used, start)
            }
            Resource::Disk { path, max } => match nix::sys::statvfs::statvfs(path.as_str()) {
                Ok(s) => {
                    let frsize = s.fragment_size() as f64;
                    let total = s.blocks() as f64 * frsize;
                    let free = s.blocks_available() as f64 * frsize;
                    let used = total - s.blocks_free() as f64 * frsize;
                    let pct = if used + free > 0.0 {
                        used * 100.0 / (used + free)
                    } else {
                        0.0
                    };
                    let (ok, limit) = match max {
                        Amount::Percent(p) => (pct <= *p, format!("{p}%")),
                        Amount::Absolute(b) => (used <= *b, human_bytes(*b)),
                    };
                    let reason = format!(
                        "{path} is {pct:.0}% full ({} free), limit {limit}",
                        human_bytes(free)
                    );
                    judge(ok, reason, pct, start)
                }
                Err(e) => fail(format!("cannot stat the filesystem of {path}: {e}")),
            },
        }
    }

    fn judge_tree(&self, u: TreeUsage, target: &mut Target, start: Instant) -> Outcome {
        match self {
            Resource::Cpu { max } => {
                let now = Instant::now();
                let last = target.cpu_last.replace((now, u.cpu_secs));
                match last {
                    Some((then, cpu)) if now > then => {
                        let wall = now.duration_since(then).as_secs_f64();
                        let pct = (u.cpu_secs - cpu).max(0.0) * 100.0 / wall;
                        let reason = format!(
                            "cpu of {} is {pct:.1}% of a core over {wall:.1} s, limit {max}%",
                            processes(u.processes)
                        );
                        judge(pct <= *max, reason, pct, start)
                    }
                    _ => Outcome::pass("cpu: first sample taken", start.elapsed()),
                }
            }
            Resource::Memory { max } => {
                let rss = u.rss_bytes as f64;
                let (ok, limit) = match max {
                    Amount::Absolute(b) => (rss <= *b, human_bytes(*b)),
                    Amount::Percent(p) => {
                        let total = meminfo().map_or(f64::MAX, |(t, _)| t as f64);
                        (rss * 100.0 / total <= *p, format!("{p}% of the host"))
                    }
                };
                let reason = format!(
                    "memory of {} is {}, limit {limit}",
                    processes(u.processes),
                    human_bytes(rss)
                );
                judge(ok, reason, rss, start)
            }
            Resource::Children { max } => {
                let n = u.processes.saturating_sub(1);
                let reason = format!("{n} child processes, limit {max}");
                judge(n <= *max, reason, f64::from(n), start)
            }
            _ => Outcome::fail("not a process-tree limit", start.elapsed()),
        }
    }
}

/// "1 process", "5 processes".
fn processes(n: u32) -> String {
    if n == 1 {
        "1 process".into()
    } else {
        format!("{n} processes")
    }
}

fn judge(ok: bool, reason: String, value: f64, start: Instant) -> Outcome {
    let o = if ok {
        Outcome::pass(reason, start.elapsed())
    } else {
        Outcome::fail(reason, start.elapsed())
    };
    o.with_value(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_process_is_singular() {
        assert_eq!(super::processes(1), "1 process");
        assert_eq!(super::processes(0), "0 processes");
        assert_eq!(super::processes(5), "5 processes");
    }
}
