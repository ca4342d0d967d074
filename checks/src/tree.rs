//! A process and all its descendants, as /proc shows them: how much CPU time they have
//! used, how much memory they hold, how many there are. Blocking: call it off the async
//! workers.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeUsage {
    /// User and system time of every process of the tree, in seconds.
    pub cpu_secs: f64,
    /// Resident memory of every process of the tree, in bytes.
    pub rss_bytes: u64,
    /// Processes in the tree, the root included.
    pub processes: u32,
}

/// Clock ticks per second, the unit of CPU times in /proc.
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as f64 } else { 100.0 }
    })
}

/// The page size, the unit of resident memory in /proc.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 { p as u64 } else { 4096 }
    })
}

/// What /proc/PID/stat says of a process, as far as guardian cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// Process group and session ids.
    pub pgrp: u32,
    pub session: u32,
    /// `R`, `S`, `Z`...
    pub state: char,
    /// User and system time, in clock ticks.
    pub ticks: u64,
    pub rss_pages: u64,
    /// When it started, in clock ticks after boot.
    pub start_time: u64,
}

/// Reads /proc/PID/stat; None when the process is gone.
///
/// `summary` reads it for every job, so it costs one open, one read and one close: no
/// allocation, and no `stat` of the file for a size that /proc does not know anyway.
pub fn stat(pid: u32) -> Option<Stat> {
    let mut path = [0u8; 32];
    let len = {
        let mut w = &mut path[..];
        write!(w, "/proc/{pid}/stat").ok()?;
        32 - w.len()
    };
    let path = std::str::from_utf8(&path[..len]).ok()?;
    let mut file = std::fs::File::open(path).ok()?;
    // A line of stat(5) is about 300 bytes; its command name is at most 64 escaped bytes.
    let mut buf = [0u8; 1024];
    let mut filled = 0;
    loop {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled == buf.len() {
                    // Longer than any line seen: read it whole.
                    return parse_stat(&std::fs::read_to_string(path).ok()?);
                }
                // The file is one line: once its end is in, a read to see the end of
                // the file would only cost a syscall (one in four of a job's, for a
                // summary of many jobs).
                if buf[filled - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    parse_stat_bytes(&buf[..filled])
}

/// The fields after the command name, which may itself hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<Stat> {
    parse_stat_bytes(text.as_bytes())
}

/// [`parse_stat`] of the bytes read: the command name need not be UTF-8.
pub fn parse_stat_bytes(text: &[u8]) -> Option<Stat> {
    let rest = &text[text.iter().rposition(|b| *b == b')')? + 1..];
    let rest = std::str::from_utf8(rest).ok()?;
    let mut f = rest.split_ascii_whitespace();
    // Field N of stat(5) is the (N - 3)th after the command name.
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    let utime: u64 = f.nth(7)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let start_time = f.nth(6)?.parse().ok()?;
    let rss_pages = f.nth(1)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgrp,
        session,
        ticks: utime.saturating_add(stime),
        start_time,
        rss_pages,
    })
}

/// Every pid in /proc; None when /proc cannot be read.
pub fn pids() -> Option<impl Iterator<Item = u32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok()),
    )
}

/// The usage of `root` and its descendants; None when `root` is gone.
pub fn usage(root: u32) -> Option<TreeUsage> {
    let root_stat = stat(root)?;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut stats: HashMap<u32, Stat> = HashMap::new();
    for pid in pids()? {
        if let Some(s) = stat(pid) {
            children.entry(s.ppid).or_default().push(pid);
            stats.insert(pid, s);
        }
    }
    stats.insert(root, root_stat);
    let mut total = TreeUsage {
        cpu_secs: 0.0,
        rss_bytes: 0,
        processes: 0,
    };
    let mut ticks = 0u64;
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if let Some(s) = stats.get(&pid) {
            ticks += s.ticks;
            total.rss_bytes += s.rss_pages * page_size();
            total.processes += 1;
        }
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids.iter().copied().filter(|k| *k != pid));
        }
    }
    total.cpu_secs = ticks as f64 / clock_ticks();
    Some(total)
}

/// Every descendant of `root` (not `root` itself), nearest first; empty when /proc
/// cannot be read.
pub fn descendants(root: u32) -> Vec<u32> {
    let Some(all) = pids() else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all {
        if let Some(s) = stat(pid) {
            children.entry(s.ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        if let Some(kids) = children.get(&pid) {
            for k in kids {
                if *k != root && !out.contains(k) {
                    out.push(*k);
                    next.push(*k);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn odd_names() {
        let line =
            "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 25 1 1";
        let s = super::parse_stat(line).expect("parsed");
        assert_eq!(
            (s.state, s.ppid, s.ticks, s.start_time, s.rss_pages),
            ('S', 1, 300, 100, 25)
        );
    }

    #[test]
    fn own_stat_read_in_place_matches_the_whole_file() {
        let text = std::fs::read_to_string("/proc/self/stat").expect("own stat");
        let whole = super::parse_stat(&text).expect("parsed");
        let read = super::stat(std::process::id()).expect("own stat");
        assert_eq!(
            (read.ppid, read.pgrp, read.session, read.start_time),
            (whole.ppid, whole.pgrp, whole.session, whole.start_time)
        );
        assert!(read.ticks >= whole.ticks && read.rss_pages > 0);
        assert_eq!(super::stat(u32::MAX), None, "no such process");
    }

    #[test]
    fn own_tree() {
        let u = super::usage(std::process::id()).expect("own process");
        assert!(u.processes >= 1 && u.rss_bytes > 0);
    }
}
