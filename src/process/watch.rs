//! Watching one file with inotify, so that nothing polls for what the kernel can tell:
//! a pid file being written, a lock file being opened.
//!
//! The watch is on the file's directory (a file that is replaced by a rename, or does
//! not exist yet, has no inode to watch) and reports events about that one name. A
//! directory that does not exist yet is handled too: the nearest ancestor that does is
//! watched for the next directory down to be created (or moved in), and the watch moves
//! down as each appears, until it is on the file's own directory. A watched directory
//! that is removed or moved away moves the watch back up the same way.
//!
//! Every time the watch moves, or the file's name sees one of the events asked for,
//! the owner is told "look again": it reads what it wants itself, so no event that
//! came before the watch was armed can be missed as long as it reads once after
//! [`FileWatch::new`].

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

/// A watch on one file's name.
pub struct FileWatch {
    inotify: Inotify,
    /// The file's directory.
    dir: PathBuf,
    file_name: OsString,
    /// What matters about the file itself.
    events: AddWatchFlags,
    wd: Option<WatchDescriptor>,
    /// The name in the watched directory that matters: the file's own, or the next
    /// directory down while the file's directory does not exist.
    name: OsString,
    /// The watched directory is the file's own.
    on_dir: bool,
}

/// Events about the watched directory itself: it went away.
fn self_events() -> AddWatchFlags {
    AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_ONLYDIR
}

impl FileWatch {
    /// Watches `path` for `events` on it (such as `IN_CLOSE_WRITE`), and always for it
    /// being created, moved in, removed or moved away.
    pub fn new(path: &Path, events: AddWatchFlags) -> io::Result<FileWatch> {
        let file_name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?
            .to_os_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mut w = FileWatch {
            inotify,
            dir,
            name: file_name.clone(),
            file_name,
            events: events
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM,
            wd: None,
            on_dir: false,
        };
        w.arm()?;
        Ok(w)
    }

    /// Whether the watch is on the file's own directory (not on an ancestor, waiting for
    /// the directory to be created).
    pub fn on_own_directory(&self) -> bool {
        self.on_dir
    }

    /// Puts the watch on the deepest directory of the file's path that exists.
    fn arm(&mut self) -> io::Result<()> {
        if let Some(wd) = self.wd.take() {
            // Gone already if the directory was removed.
            let _ = self.inotify.rm_watch(wd);
        }
        let mut at = self.dir.clone();
        // Bounds the walks down again below, should directories keep coming and going.
        let mut walks = 0u32;
        loop {
            let on_dir = at == self.dir;
            let mask = if on_dir {
                self.events | self_events()
            } else {
                AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | self_events()
            };
            match self.inotify.add_watch(&at, mask) {
                Ok(wd) => {
                    self.name = if on_dir {
                        self.file_name.clone()
                    } else {
                        next_component(&self.dir, &at).unwrap_or_default()
                    };
                    // The next directory down may have been made between the failed
                    // watch on it and this one, which then never hears of it (as
                    // `mkdir -p` does): start again from the file's directory.
                    if !on_dir && walks < 64 && at.join(&self.name).is_dir() {
                        walks += 1;
                        let _ = self.inotify.rm_watch(wd);
                        at = self.dir.clone();
                        continue;
                    }
                    self.wd = Some(wd);
                    self.on_dir = on_dir;
                    return Ok(());
                }
                Err(Errno::ENOENT | Errno::ENOTDIR) => match at.parent() {
                    Some(up) if up != at && !up.as_os_str().is_empty() => at = up.to_path_buf(),
                    _ => {
                        return Err(io::Error::other(format!(
                            "no directory of {} exists",
                            self.dir.display()
                        )));
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads the events there are. True: look again (the file's name saw an event, or
    /// the watch moved). `WouldBlock` when there were none.
    pub fn read_events(&mut self) -> io::Result<bool> {
        let events = match self.inotify.read_events() {
            Ok(e) => e,
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => return Err(e.into()),
        };
        let mut look = false;
        let mut rearm = false;
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                // Events were lost: anything may have happened.
                look = true;
                rearm = true;
                continue;
            }
            if Some(ev.wd) != self.wd {
                continue;
            }
            if ev.mask.intersects(
                AddWatchFlags::IN_IGNORED
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            ) {
                look = true;
                rearm = true;
            } else if ev.name.as_ref() == Some(&self.name) {
                look = true;
                rearm |= !self.on_dir;
            }
        }
        if rearm {
            self.arm()?;
        }
        Ok(look)
    }
}

/// The first component of `dir` below its ancestor `at`.
fn next_component(dir: &Path, at: &Path) -> Option<OsString> {
    match dir.strip_prefix(at).ok()?.components().next()? {
        Component::Normal(n) => Some(n.to_os_string()),
        _ => None,
    }
}

impl AsFd for FileWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

impl AsRawFd for FileWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

/// A [`FileWatch`] on the tokio runtime.
pub struct AsyncFileWatch {
    fd: AsyncFd<FileWatch>,
}

impl AsyncFileWatch {
    pub fn new(path: &Path, events: AddWatchFlags) -> io::Result<AsyncFileWatch> {
        let watch = FileWatch::new(path, events)?;
        // SAFETY: the watch owns its inotify descriptor, which it neither replaces nor
        // closes while it lives (moving the watch only adds and removes watches on it).
        let fd = unsafe { AsyncFd::register_with_interest(watch, tokio::io::Interest::READABLE)? };
        Ok(AsyncFileWatch { fd })
    }

    /// Waits until the file is to be looked at again.
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            match guard.try_io(|inner| inner.get_mut().read_events()) {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) | Err(_) => continue,
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("guardian-watch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn pidfile_events() -> AddWatchFlags {
        AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MODIFY
    }

    async fn next(w: &mut AsyncFileWatch) {
        tokio::time::timeout(Duration::from_secs(30), w.changed())
            .await
            .unwrap_or_else(|_| panic!("no event"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_write_is_seen() {
        let dir = scratch("write");
        let file = dir.join("x.pid");
        let mut w = AsyncFileWatch::new(&file, pidfile_events()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&file, "1\n").unwrap_or_else(|e| panic!("{e}"));
        next(&mut w).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn directories_made_later_are_followed_down() {
        let dir = scratch("later");
        let deep = dir.join("a").join("b");
        let file = deep.join("x.pid");
        let mut w = AsyncFileWatch::new(&file, pidfile_events()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!w.fd.get_ref().on_own_directory());
        std::fs::create_dir(dir.join("a")).unwrap_or_else(|e| panic!("{e}"));
        next(&mut w).await;
        std::fs::create_dir(&deep).unwrap_or_else(|e| panic!("{e}"));
        next(&mut w).await;
        assert!(w.fd.get_ref().on_own_directory());
        std::fs::write(&file, "1\n").unwrap_or_else(|e| panic!("{e}"));
        next(&mut w).await;
        // Removed, the watch goes back up; made again, it comes down.
        std::fs::remove_dir_all(dir.join("a")).unwrap_or_else(|e| panic!("{e}"));
        while w.fd.get_ref().on_own_directory() {
            next(&mut w).await;
        }
        std::fs::create_dir_all(&deep).unwrap_or_else(|e| panic!("{e}"));
        while !w.fd.get_ref().on_own_directory() {
            next(&mut w).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn other_names_are_not_reported() {
        let dir = scratch("other");
        let file = dir.join("x.pid");
        let mut w = AsyncFileWatch::new(&file, pidfile_events()).unwrap_or_else(|e| panic!("{e}"));
        // The events are queued by the time the write returns.
        std::fs::write(dir.join("y.pid"), "1\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !w.fd
                .get_mut()
                .read_events()
                .unwrap_or_else(|e| panic!("{e}"))
        );
        std::fs::write(&file, "2\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            w.fd.get_mut()
                .read_events()
                .unwrap_or_else(|e| panic!("{e}"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
