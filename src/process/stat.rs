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

#[cfg(test)]
mod tests {
    #[test]
    fn own_process() {
        let u = super::usage(std::process::id()).expect("own stat");
        assert!(u.rss_bytes > 0);
    }
}
