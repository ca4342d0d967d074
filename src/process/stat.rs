//! What `/proc/PID/stat` says of one process: CPU time used and resident memory.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100.0, |t| t as f64)
    })
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p as u64)
    })
}

pub fn usage(pid: u32) -> Option<Usage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&text)
}

/// Parses the fields after the command name, which may itself hold spaces and parentheses.
fn parse(text: &str) -> Option<Usage> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of stat(5), so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let rss: u64 = fields.get(24 - 3)?.parse().ok()?;
    Some(Usage {
        cpu_secs: (utime + stime) as f64 / clock_ticks(),
        rss_bytes: rss * page_size(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_process() {
        let u = super::usage(std::process::id()).expect("own stat");
        assert!(u.rss_bytes > 0);
    }

    #[test]
    fn odd_names() {
        let line =
            "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 25 1 1";
        let u = super::parse(line).expect("parsed");
        assert!((u.cpu_secs - 300.0 / super::clock_ticks()).abs() < 1e-9);
        assert_eq!(u.rss_bytes, 25 * super::page_size());
    }
}
