//! The pipes of the jobs' output, as FIFOs in `state-dir/pipes/`: one per job, named
//! after it, so that a pipe outlives the daemon and the next daemon finds it again.
//!
//! A pipe's bytes live in the kernel's pipe object for as long as any descriptor of it is
//! open, whoever holds it. The daemon holds one (read-write); every process of the job
//! holds its own standard output and error read-write too, so while the daemon is down
//! the job still has a reader: it never gets `EPIPE` or `SIGPIPE`, its output waits in the
//! pipe, and it blocks on a write only once the pipe is full. A new daemon opens the same
//! FIFO by its name and reads what waited, in order, before anything its own spawns
//! write. So a FIFO is created if missing and reused if present, never unlinked and made
//! again while a job may hold it; it is removed only with its job.
//!
//! What is in the directory is trusted no further than it can be checked: the directory
//! is opened without following a symbolic link and must belong to the daemon's user, an
//! entry must be a FIFO of that user before it is opened (so nothing else, a device say,
//! is ever opened), and it is opened without following a link, without blocking, and
//! checked again on the descriptor. Anything else is an error for that one job, which
//! then gets a pipe that ends with the daemon (see `logs.rs`).
//!
//! Creating a FIFO writes the directory, through the file system's journal: about half a
//! millisecond of mostly waiting each on ext4. A job whose FIFO is missing has nothing
//! waiting in it, so its pipe is opened only at its first spawn, and a thread of its own
//! creates the missing FIFOs ahead of the spawns, in their order ([`PipeDir::make_ahead`]):
//! it only creates, in the checked directory with the private mode; the opening, with
//! every check above, is the daemon's, which creates the FIFO itself if the thread is
//! behind.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, mkfifoat, unlinkat};

use crate::files::{self, Access};
use crate::logtext::EscPath;

/// The size guardian asks for each job's pipe, when `/proc/sys/fs/pipe-max-size` allows
/// it (it does by default): 1 MiB, sixteen times the kernel's 64 KiB. It is what a job may
/// write while no daemon reads before it blocks. The kernel takes memory for it only as
/// bytes wait in it.
pub const PIPE_SIZE: usize = 1024 * 1024;

/// The mode of the directory and of each FIFO: the daemon's user only. A job that runs as
/// another user gets its descriptors from the daemon, it never opens the FIFO itself.
const DIR_ACCESS: Access = files::PRIVATE;

/// `state-dir/pipes`, opened and checked once when the daemon starts.
pub struct PipeDir {
    path: PathBuf,
    /// None when the directory could not be set up (said once in the daemon's log): then
    /// every job gets a pipe that ends with the daemon.
    dir: Option<Arc<OwnedFd>>,
    /// The FIFOs the thread of [`PipeDir::make_ahead`] has still to create.
    ahead: Arc<Mutex<VecDeque<String>>>,
}

/// A job's FIFO, opened by the daemon.
pub struct Fifo {
    /// Read-write, non-blocking: the daemon's reader, and a writer, so that the pipe never
    /// ends between two processes of the job.
    pub fd: OwnedFd,
    /// Whether bytes were waiting in it when it was opened: then the pipe outlived the
    /// previous daemon, and what comes first continues what that daemon last wrote.
    pub waiting: bool,
}

impl PipeDir {
    /// Creates `state-dir/pipes` (0700) if missing, and checks that it is a directory of
    /// the daemon's user that nobody else may enter.
    pub fn open(state_dir: &Path) -> PipeDir {
        let path = state_dir.join("pipes");
        let dir = match open_dir(&path) {
            Ok(fd) => Some(Arc::new(fd)),
            Err(e) => {
                tracing::error!(
                    "{}: {e}; job output is not kept across a restart of the daemon",
                    EscPath(&path)
                );
                None
            }
        };
        PipeDir {
            path,
            dir,
            ahead: Arc::default(),
        }
    }

    /// Whether job `name` has no entry in the directory yet (false when the directory is
    /// not usable: such a job gets its anonymous pipe at once).
    pub fn missing(&self, name: &str) -> bool {
        self.dir.as_ref().is_some_and(|dir| {
            fstatat(dir.as_ref(), name, AtFlags::AT_SYMLINK_NOFOLLOW) == Err(Errno::ENOENT)
        })
    }

    /// Creates the FIFOs of `names`, in that order, on a thread of its own that ends when
    /// they are made. Errors are left to the daemon's own attempt when the job starts.
    pub fn make_ahead(&self, names: Vec<String>) {
        let Some(dir) = self.dir.clone() else { return };
        if names.is_empty() {
            return;
        }
        lock(&self.ahead).extend(names);
        let ahead = Arc::clone(&self.ahead);
        let made = std::thread::Builder::new()
            .name("guardian-fifos".into())
            .spawn(move || {
                // The entry is created while the queue is held, so that `remove` either
                // takes the name off the queue first or finds its FIFO to unlink.
                loop {
                    let mut queue = lock(&ahead);
                    let Some(name) = queue.pop_front() else { break };
                    let mode = Mode::from_bits_truncate(DIR_ACCESS.file_mode);
                    match mkfifoat(dir.as_ref(), name.as_str(), mode) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => tracing::debug!("{name}: cannot create its FIFO ahead: {e}"),
                    }
                    drop(queue);
                }
            });
        if let Err(e) = made {
            // Each job then creates its own at its start.
            lock(&self.ahead).clear();
            tracing::debug!("cannot start the thread that creates the FIFOs: {e}");
        }
    }

    /// Where job `name`'s FIFO is.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens job `name`'s FIFO, creating it if missing. `None` when the directory is not
    /// usable (already said); `Some(Err)` says what is wrong with this job's entry.
    pub fn open_fifo(&self, name: &str) -> Option<io::Result<Fifo>> {
        let dir = self.dir.as_ref()?;
        Some(open_fifo(dir.as_ref(), name))
    }

    /// Removes job `name`'s FIFO: the job is gone. Processes that still hold the pipe keep
    /// it (the daemon reads it a while longer through its own descriptor); a job of the
    /// same name added later gets a new one.
    pub fn remove(&self, name: &str) {
        let Some(dir) = &self.dir else { return };
        let mut ahead = lock(&self.ahead);
        ahead.retain(|n| n != name);
        match unlinkat(dir.as_ref(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", EscPath(&self.path_of(name))),
        }
        drop(ahead);
    }

    /// The names of the FIFOs in the directory that are not in `configured`: pipes of jobs
    /// removed while no daemon ran. Entries that are not job names are left alone.
    pub fn stale(&self, configured: impl Fn(&str) -> bool) -> Vec<String> {
        if self.dir.is_none() {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter_map(|n: OsString| n.into_string().ok())
            .filter(|n| crate::config::valid_name(n) && !configured(n))
            .collect()
    }
}

/// The queue of FIFOs to make: a panic while it was held left it usable.
fn lock(ahead: &Mutex<VecDeque<String>>) -> std::sync::MutexGuard<'_, VecDeque<String>> {
    ahead.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    files::create_dir(path, DIR_ACCESS)?;
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io::Error::other(format!("cannot open it as a directory: {e}")))?;
    let st = fstat(&fd)?;
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(io::Error::other(format!(
            "owned by uid {}, not by the daemon's user ({euid})",
            st.st_uid
        )));
    }
    if st.st_mode & 0o7777 != DIR_ACCESS.dir_mode {
        fchmod(&fd, Mode::from_bits_truncate(DIR_ACCESS.dir_mode))?;
    }
    Ok(fd)
}

fn open_fifo(dir: &OwnedFd, name: &str) -> io::Result<Fifo> {
    let before = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => {
            match mkfifoat(dir, name, Mode::from_bits_truncate(DIR_ACCESS.file_mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io::Error::other(format!("cannot create it: {e}"))),
            }
            fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?
        }
        Err(e) => return Err(e.into()),
    };
    judge(&before)?;
    let fd = openat(
        dir,
        name,
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) {
        return Err(io::Error::other("it was replaced while it was opened"));
    }
    judge(&st)?;
    if st.st_mode & 0o777 != DIR_ACCESS.file_mode {
        fchmod(&fd, Mode::from_bits_truncate(DIR_ACCESS.file_mode))?;
    }
    let waiting = waiting_bytes(&fd) > 0;
    raise_size(&fd);
    Ok(Fifo { fd, waiting })
}

/// A FIFO of the daemon's user, or an error that says what it is instead.
fn judge(st: &FileStat) -> io::Result<()> {
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFIFO {
        let what = match kind {
            SFlag::S_IFLNK => "a symbolic link",
            SFlag::S_IFREG => "a regular file",
            SFlag::S_IFDIR => "a directory",
            SFlag::S_IFCHR | SFlag::S_IFBLK => "a device",
            SFlag::S_IFSOCK => "a socket",
            _ => "something else",
        };
        return Err(io::Error::other(format!("{what}, not a FIFO")));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(io::Error::other(format!(
            "a FIFO of uid {}, not of the daemon's user ({euid})",
            st.st_uid
        )));
    }
    Ok(())
}

/// How many bytes wait in the pipe.
fn waiting_bytes(fd: &OwnedFd) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to `n`; the
    // descriptor is open for as long as `fd` is borrowed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 { n } else { 0 }
}

/// Raises the pipe to [`PIPE_SIZE`], or to `/proc/sys/fs/pipe-max-size` if that is less.
///
/// A daemon without `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN` has its pipes counted against
/// `/proc/sys/fs/pipe-user-pages-soft` (64 MiB by default), and once its user is past
/// that every new pipe of the user, a job's shell pipeline as much as a log pipe, gets
/// 8 KiB only. Such a daemon raises its pipes only while all of them together stay within
/// half of that limit. A refusal leaves the pipe as it is: 64 KiB by default.
fn raise_size(fd: &impl AsFd) {
    static TARGET: OnceLock<usize> = OnceLock::new();
    static BUDGET: OnceLock<Option<usize>> = OnceLock::new();
    static USED: AtomicUsize = AtomicUsize::new(0);
    let target = *TARGET.get_or_init(|| {
        read_number("/proc/sys/fs/pipe-max-size").map_or(PIPE_SIZE, |max| max.min(PIPE_SIZE))
    });
    let budget = *BUDGET.get_or_init(|| {
        if privileged() {
            return None;
        }
        let pages = read_number("/proc/sys/fs/pipe-user-pages-soft")?;
        (pages > 0).then(|| pages.saturating_mul(page_size()) / 2)
    });
    let now = size_of(fd).unwrap_or(0);
    let mut size = now;
    let within =
        budget.is_none_or(|b| USED.load(Ordering::Relaxed).saturating_add(target.max(now)) <= b);
    if now < target
        && within
        && let Ok(want) = libc::c_int::try_from(target)
    {
        match fcntl(fd, FcntlArg::F_SETPIPE_SZ(want)) {
            Ok(n) => size = usize::try_from(n).unwrap_or(target),
            Err(e) => tracing::debug!("cannot raise a log pipe to {target} bytes: {e}"),
        }
    }
    USED.fetch_add(size, Ordering::Relaxed);
}

fn read_number(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

/// Whether the daemon has `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN`, which free its pipes
/// from the per-user limit.
fn privileged() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN | 1 << CAP_SYS_RESOURCE) != 0)
}

/// The size of the pipe behind `fd`.
fn size_of(fd: &impl AsFd) -> Option<usize> {
    fcntl(fd, FcntlArg::F_GETPIPE_SZ)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_is_created_reused_and_refused_when_not_ours() {
        let state = tempfile::tempdir().expect("tempdir");
        let pipes = PipeDir::open(state.path());
        let first = pipes
            .open_fifo("web")
            .expect("directory usable")
            .expect("created");
        assert!(!first.waiting);
        assert!(size_of(&first.fd).is_some_and(|n| n >= 64 * 1024));
        nix::unistd::write(&first.fd, b"kept\n").expect("write");
        let again = pipes.open_fifo("web").expect("usable").expect("reused");
        assert!(again.waiting, "the same pipe, with what waits in it");

        let planted = |name: &str, make: &dyn Fn(&Path)| {
            make(&pipes.path_of(name));
            match pipes.open_fifo(name) {
                Some(Err(e)) => e.to_string(),
                _ => panic!("{name} was accepted"),
            }
        };
        let e = planted("file", &|p| std::fs::write(p, "x").expect("write"));
        assert!(e.contains("regular file"), "{e}");
        let target = pipes.path_of("web");
        let e = planted("link", &|p| {
            std::os::unix::fs::symlink(&target, p).expect("symlink")
        });
        assert!(e.contains("symbolic link"), "{e}");
        let e = planted("dir", &|p| std::fs::create_dir(p).expect("mkdir"));
        assert!(e.contains("directory"), "{e}");

        let mut stale = pipes.stale(|n| n == "web");
        stale.sort();
        assert_eq!(stale, ["dir", "file", "link"]);
        pipes.remove("web");
        assert!(!pipes.path_of("web").exists());
    }

    #[test]
    fn missing_fifos_are_made_ahead_private_and_a_removed_one_is_not() {
        let state = tempfile::tempdir().expect("tempdir");
        let pipes = PipeDir::open(state.path());
        assert!(pipes.missing("a"));
        let names: Vec<String> = (0..200).map(|i| format!("j{i:03}")).collect();
        pipes.remove("j199");
        pipes.make_ahead(names.clone());
        // Taken off the queue (or unlinked after it was made): either way not left.
        pipes.remove("j150");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !lock(&pipes.ahead).is_empty() {
            assert!(std::time::Instant::now() < deadline, "FIFOs not made");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for name in names.iter().filter(|n| *n != "j150") {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let st = std::fs::symlink_metadata(pipes.path_of(name)).expect("made");
            assert!(st.file_type().is_fifo(), "{name}");
            assert_eq!(st.mode() & 0o777, 0o600, "{name}");
        }
        assert!(pipes.missing("j150"), "a removed job's FIFO is not made");
        // The daemon's own opening finds what the thread made, with its checks.
        let fifo = pipes.open_fifo("j000").expect("usable").expect("opened");
        assert!(!fifo.waiting);
        // A planted entry is left to the daemon's checks, which refuse it.
        std::fs::write(pipes.path_of("planted"), "x").expect("write");
        pipes.make_ahead(vec!["planted".into()]);
        let e = pipes.open_fifo("planted").expect("usable").err();
        assert!(e.is_some_and(|e| e.to_string().contains("regular file")));
    }

    #[test]
    fn a_directory_that_is_a_link_is_refused() {
        let state = tempfile::tempdir().expect("tempdir");
        let elsewhere = state.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, state.path().join("pipes")).expect("symlink");
        let pipes = PipeDir::open(state.path());
        assert!(pipes.open_fifo("web").is_none());
        assert!(pipes.stale(|_| false).is_empty());
    }
}
