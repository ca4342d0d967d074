//! What /proc says a process and each of its threads are doing: state, the kernel
//! function it waits in (`wchan`), the system call in progress, the kernel stack (as
//! root), open descriptors, CPU time and memory. Blocking: run off the async workers.
//! Every file is read with a bound; what cannot be read is left out, not guessed.

use std::io::Read;

use serde::{Deserialize, Serialize};

/// Threads of one process shown at most (a JVM may have thousands).
pub const MAX_THREADS: usize = 128;
/// Threads of a whole report shown at most, and those of them whose kernel stack is
/// kept: a report must fit in one answer of the control protocol (1 MiB).
pub const MAX_REPORT_THREADS: usize = 512;
pub const MAX_STACKS: usize = 64;
/// Lines of a kernel stack kept.
const MAX_STACK: usize = 32;

/// One process of the job, as the report shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub command: String,
    /// `S (sleeping)`, `R (running)`, `T (stopped)`, `D (disk sleep)`...
    pub state: String,
    /// Threads in the process (all of them, not only those shown).
    pub threads_total: u32,
    pub threads: Vec<ThreadInfo>,
    pub fds: Option<u32>,
    pub rss_bytes: Option<u64>,
    /// User and system time since it started.
    pub cpu_secs: Option<f64>,
    /// Percent of one core used over the report's CPU window.
    pub cpu_percent: Option<f64>,
}

/// One thread.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ThreadInfo {
    pub tid: u32,
    pub name: String,
    pub state: String,
    /// The kernel function it sleeps in; None while it runs.
    pub wchan: Option<String>,
    /// The system call it is in (`futex`, `accept4`...), `running` when in user space.
    pub syscall: Option<String>,
    /// The kernel stack, innermost first (readable as root only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
    /// Voluntary and involuntary context switches: compared with a later look, whether
    /// the thread ran at all.
    #[serde(default)]
    pub switches: Option<u64>,
}

impl ThreadInfo {
    /// `futex_wait_queue (futex)`: what it waits in, as shortly as it can be said.
    pub fn waiting_in(&self) -> String {
        match (&self.wchan, &self.syscall) {
            (Some(w), Some(s)) if s != "running" => format!("{w} ({s})"),
            (Some(w), _) => w.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) => self.state.clone(),
        }
    }
}

/// Reads a small file of /proc whole, at most `cap` bytes.
pub fn read_small(path: &str, cap: u64) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(cap).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// What is known of `pid` now (threads up to [`MAX_THREADS`]); None when it is gone.
pub fn process(pid: u32) -> Option<ProcessInfo> {
    let mut budget = Budget {
        threads: MAX_REPORT_THREADS,
        stacks: MAX_STACKS,
    };
    process_within(pid, &mut budget)
}

/// What is left of a report's threads and stacks.
pub struct Budget {
    pub threads: usize,
    pub stacks: usize,
}

/// [`process`], taking its threads and stacks from `budget`.
pub fn process_within(pid: u32, budget: &mut Budget) -> Option<ProcessInfo> {
    let stat = checks::tree::stat(pid)?;
    let status = read_small(&format!("/proc/{pid}/status"), 16 << 10).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    let threads_total = u32::try_from(tids.len()).unwrap_or(u32::MAX);
    // The main thread first, then the others in order.
    let take = MAX_THREADS.min(budget.threads);
    budget.threads -= take;
    let threads = tids
        .iter()
        .take(take)
        .filter_map(|t| {
            let mut th = thread(pid, *t)?;
            if budget.stacks == 0 {
                th.stack.clear();
            } else if !th.stack.is_empty() {
                budget.stacks -= 1;
            }
            Some(th)
        })
        .collect();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| u32::try_from(d.count()).unwrap_or(u32::MAX));
    Some(ProcessInfo {
        pid,
        ppid: stat.ppid,
        command: crate::process::escaped::command(pid),
        state: field("State:").unwrap_or_else(|| stat.state.to_string()),
        threads_total,
        threads,
        fds,
        rss_bytes: Some(stat.rss_pages.saturating_mul(checks::tree::page_size())),
        cpu_secs: Some(stat.ticks as f64 / checks::tree::clock_ticks()),
        cpu_percent: None,
    })
}

/// One thread of `pid`; None when it is gone.
pub fn thread(pid: u32, tid: u32) -> Option<ThreadInfo> {
    let base = format!("/proc/{pid}/task/{tid}");
    let stat = read_small(&format!("{base}/stat"), 4096)?;
    let name = stat
        .find('(')
        .zip(stat.rfind(')'))
        .and_then(|(a, b)| stat.get(a + 1..b))
        .unwrap_or("")
        .to_string();
    let state = checks::tree::parse_stat(&stat)
        .map(|s| state_word(s.state))
        .unwrap_or_default();
    let wchan = read_small(&format!("{base}/wchan"), 256)
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty() && w != "0");
    let syscall = read_small(&format!("{base}/syscall"), 512).and_then(|s| syscall_of(&s));
    let stack = read_small(&format!("{base}/stack"), 8192)
        .map(|s| {
            s.lines()
                .take(MAX_STACK)
                .map(|l| l.trim_start_matches("[<0>] ").trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let status = read_small(&format!("{base}/status"), 16 << 10).unwrap_or_default();
    let switches = ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
        .iter()
        .map(|k| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .try_fold(0u64, |acc, n| n.map(|n| acc.saturating_add(n)));
    Some(ThreadInfo {
        tid,
        name,
        state,
        wchan,
        syscall,
        stack,
        switches,
    })
}

/// `S (sleeping)` for `S`.
pub fn state_word(c: char) -> String {
    let word = match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        'P' => "parked",
        _ => return c.to_string(),
    };
    format!("{c} ({word})")
}

/// The system call of a line of /proc/PID/syscall: its name where known, else its
/// number; `running` when the thread is in user space.
pub fn syscall_of(line: &str) -> Option<String> {
    let first = line.split_ascii_whitespace().next()?;
    if first == "running" {
        return Some("running".into());
    }
    let n: i64 = first.parse().ok()?;
    if n < 0 {
        // -1: blocked, but not in a system call (a page fault, say).
        return Some("not in a system call".into());
    }
    Some(syscall_name(n).map_or_else(|| format!("syscall {n}"), str::to_string))
}

/// The names of the system calls a stuck process is most often found in.
fn syscall_name(n: i64) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    const TABLE: &[(i64, &str)] = &[
        (0, "read"),
        (1, "write"),
        (3, "close"),
        (7, "poll"),
        (9, "mmap"),
        (16, "ioctl"),
        (17, "pread64"),
        (18, "pwrite64"),
        (19, "readv"),
        (20, "writev"),
        (23, "select"),
        (34, "pause"),
        (35, "nanosleep"),
        (42, "connect"),
        (43, "accept"),
        (44, "sendto"),
        (45, "recvfrom"),
        (46, "sendmsg"),
        (47, "recvmsg"),
        (56, "clone"),
        (59, "execve"),
        (61, "wait4"),
        (72, "fcntl"),
        (73, "flock"),
        (74, "fsync"),
        (75, "fdatasync"),
        (128, "rt_sigtimedwait"),
        (130, "rt_sigsuspend"),
        (202, "futex"),
        (230, "clock_nanosleep"),
        (232, "epoll_wait"),
        (247, "waitid"),
        (257, "openat"),
        (270, "pselect6"),
        (271, "ppoll"),
        (281, "epoll_pwait"),
        (288, "accept4"),
        (299, "recvmmsg"),
        (307, "sendmmsg"),
        (441, "epoll_pwait2"),
        (449, "futex_waitv"),
    ];
    #[cfg(target_arch = "aarch64")]
    const TABLE: &[(i64, &str)] = &[
        (22, "epoll_pwait"),
        (25, "fcntl"),
        (29, "ioctl"),
        (32, "flock"),
        (56, "openat"),
        (57, "close"),
        (63, "read"),
        (64, "write"),
        (65, "readv"),
        (66, "writev"),
        (67, "pread64"),
        (68, "pwrite64"),
        (72, "pselect6"),
        (73, "ppoll"),
        (82, "fsync"),
        (83, "fdatasync"),
        (98, "futex"),
        (101, "nanosleep"),
        (115, "clock_nanosleep"),
        (133, "rt_sigsuspend"),
        (137, "rt_sigtimedwait"),
        (202, "accept"),
        (203, "connect"),
        (206, "sendto"),
        (207, "recvfrom"),
        (211, "sendmsg"),
        (212, "recvmsg"),
        (220, "clone"),
        (221, "execve"),
        (222, "mmap"),
        (242, "accept4"),
        (243, "recvmmsg"),
        (260, "wait4"),
        (269, "sendmmsg"),
        (441, "epoll_pwait2"),
        (449, "futex_waitv"),
    ];
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    const TABLE: &[(i64, &str)] = &[];
    TABLE.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        assert_eq!(syscall_of("running").as_deref(), Some("running"));
        assert_eq!(
            syscall_of("-1 0x7ffd 0x0").as_deref(),
            Some("not in a system call")
        );
        assert_eq!(syscall_of("").as_deref(), None);
        assert_eq!(syscall_of("999999 0x0").as_deref(), Some("syscall 999999"));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(syscall_of("202 0x1 0x80").as_deref(), Some("futex"));
    }

    #[test]
    fn own_process() {
        let me = process(std::process::id()).expect("own process");
        assert!(me.threads_total >= 1 && !me.threads.is_empty());
        assert_eq!(me.threads[0].tid, std::process::id());
        assert!(me.fds.unwrap_or(0) >= 3);
        assert!(me.state.starts_with('R') || me.state.starts_with('S'));
        assert_eq!(process(u32::MAX), None);
    }
}
