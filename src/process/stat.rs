//! What `/proc/PID/stat` says of one process: CPU time used and resident memory.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

use checks::tree;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
}

pub fn usage(pid: u32) -> Option<Usage> {
    tree::stat(pid).map(|s| of_stat(&s))
}

/// Whether the daemon keeps a [`StatFile`] for each running job: only when the open-file
/// limit leaves room for one a job beside its pipes and logs (see
/// [`crate::process::spawn::raise_nofile`]).
static KEEPING: AtomicBool = AtomicBool::new(false);

pub fn set_keeping(keep: bool) {
    KEEPING.store(keep, Ordering::Relaxed);
}

pub fn keeping() -> bool {
    KEEPING.load(Ordering::Relaxed)
}

/// `/proc/PID/stat` of one process, kept open while it lives and read again with
/// `pread` at offset 0: the open and close of each read were half its cost (some 12 us a
/// job, against 6.5 us for the `pread` alone), and a scrape of 500 jobs reads 500.
///
/// The descriptor stands for the process, not for its pid: once the process is reaped
/// a read fails with `ESRCH`, even if its pid was given to another one meanwhile, so a
/// kept file never reads a stranger's figures.
#[derive(Debug)]
pub struct StatFile {
    pid: u32,
    fd: OwnedFd,
}

impl StatFile {
    /// Opens `/proc/PID/stat`, close-on-exec, at or above the spawn's cutoff (see
    /// [`crate::process::clone::cutoff`]) so that no child's table ever holds it.
    pub fn open(pid: u32) -> io::Result<StatFile> {
        use std::io::Write;
        let mut path = [0u8; 32];
        let len = {
            let mut w = &mut path[..];
            write!(w, "/proc/{pid}/stat")?;
            32usize.saturating_sub(w.len())
        };
        let path = path
            .get(..len)
            .and_then(|p| std::str::from_utf8(p).ok())
            .ok_or_else(|| io::Error::other("pid too long for a path"))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        let fd = OwnedFd::from(file);
        let floor = crate::process::clone::cutoff();
        if fd.as_raw_fd() >= floor {
            return Ok(StatFile { pid, fd });
        }
        let high = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(floor))?;
        // SAFETY: fcntl just made this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(high) };
        Ok(StatFile { pid, fd })
    }

    #[cfg(test)]
    fn as_raw(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// The pid whose process this file is of.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the file says now; `ESRCH` once the process is gone.
    pub fn stat(&self) -> io::Result<tree::Stat> {
        // A line of stat(5) is about 300 bytes; its command name at most 64 escaped.
        let mut buf = [0u8; 1024];
        let n = pread(&self.fd, &mut buf, 0)?;
        let parsed = if n < buf.len() {
            buf.get(..n).and_then(tree::parse_stat_bytes)
        } else {
            // Longer than any line seen: read it whole.
            let mut whole = buf.to_vec();
            loop {
                let off = u64::try_from(whole.len()).unwrap_or(u64::MAX);
                let got = pread(&self.fd, &mut buf, off)?;
                if got == 0 {
                    break;
                }
                whole.extend_from_slice(buf.get(..got).unwrap_or_default());
                if whole.len() > 1 << 16 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "stat too long"));
                }
            }
            tree::parse_stat_bytes(&whole)
        };
        parsed.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable stat"))
    }

    /// CPU time and resident memory, or None once the process is gone.
    pub fn usage(&self) -> Option<Usage> {
        self.stat().ok().map(|s| of_stat(&s))
    }
}

/// `pread(2)` into `buf` at `off`, again when interrupted.
fn pread(fd: &OwnedFd, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let off = libc::off_t::try_from(off).map_err(|_| io::Error::other("offset too large"))?;
    loop {
        // SAFETY: reads at most `buf.len()` bytes into `buf`, from a descriptor owned
        // by the caller.
        let r = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
        if let Ok(n) = usize::try_from(r) {
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn of_stat(s: &tree::Stat) -> Usage {
    Usage {
        cpu_secs: s.ticks as f64 / tree::clock_ticks(),
        rss_bytes: s.rss_pages.saturating_mul(tree::page_size()),
    }
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
    fn a_kept_stat_file_reads_again_and_again() {
        let f = super::StatFile::open(std::process::id()).expect("own stat file");
        assert_eq!(f.pid(), std::process::id());
        assert!(f.as_raw() >= crate::process::clone::cutoff());
        let first = f.usage().expect("first read");
        assert!(first.rss_bytes > 0);
        // Burn some CPU time: the second read sees it, not the first read's text.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let second = f.usage().expect("second read");
        assert!(second.cpu_secs >= first.cpu_secs);
        let s = f.stat().expect("stat");
        assert_eq!(s.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn a_stat_file_of_a_reaped_process_reads_as_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        let f = super::StatFile::open(child.id()).expect("stat file of the child");
        assert!(f.usage().is_some(), "a live child reads");
        child.kill().expect("kill");
        // Killed, not reaped yet: a zombie still has its stat.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !f.stat().is_ok_and(|s| s.state == 'Z') {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().expect("reap");
        let e = f.stat().expect_err("a reaped process reads as gone");
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
        assert_eq!(f.usage(), None);
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
