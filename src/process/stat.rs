//! What `/proc/PID/stat` says of one process: CPU time used and resident memory.

use checks::tree;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
}

pub fn usage(pid: u32) -> Option<Usage> {
    let s = tree::stat(pid)?;
    Some(Usage {
        cpu_secs: s.ticks as f64 / tree::clock_ticks(),
        rss_bytes: s.rss_pages * tree::page_size(),
    })
}

/// The resident memory of one process, from `/proc/PID/statm`: for a job whose CPU time
/// its cgroup counts. The kernel makes that file from two counters, where `stat` walks
/// the whole task (some 10 us a read): with 2,000 jobs, most of what a summary costs.
pub fn rss(pid: u32) -> Option<u64> {
    use std::io::{Read, Write};
    let mut path = [0u8; 32];
    let len = {
        let mut w = &mut path[..];
        write!(w, "/proc/{pid}/statm").ok()?;
        32usize.checked_sub(w.len())?
    };
    let path = std::str::from_utf8(path.get(..len)?).ok()?;
    let mut file = std::fs::File::open(path).ok()?;
    // Seven numbers of at most 20 digits each.
    let mut buf = [0u8; 192];
    let mut filled = 0usize;
    loop {
        match file.read(buf.get_mut(filled..)?) {
            Ok(0) => break,
            // One line: its end is the end of the file, no read needed to see that.
            Ok(n) => {
                filled = filled.saturating_add(n);
                if filled.checked_sub(1).and_then(|i| buf.get(i)) == Some(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if filled >= buf.len() {
            return None;
        }
    }
    parse_statm(buf.get(..filled)?)
}

/// The second number of statm(5), resident pages, in bytes.
fn parse_statm(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(tree::page_size())
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_process() {
        let u = super::usage(std::process::id()).expect("own stat");
        assert!(u.rss_bytes > 0);
    }

    #[test]
    fn own_resident_memory_from_statm() {
        let rss = super::rss(std::process::id()).expect("own statm");
        assert!(rss > 0);
        assert_eq!(rss % checks::tree::page_size(), 0);
    }

    #[test]
    fn statm_that_is_cut_short_or_not_numbers_is_none() {
        assert_eq!(super::parse_statm(b"123"), None);
        assert_eq!(super::parse_statm(b"123 x 4"), None);
        assert_eq!(
            super::parse_statm(b"2171 345 300 5 0 120 0\n"),
            Some(345 * checks::tree::page_size())
        );
    }
}
