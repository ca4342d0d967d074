//! A thread that watches who holds a `flock` on a file and reports only changes: the
//! lock became held, and every holder let go. It polls nothing:
//!
//! - While the lock is held it blocks taking an exclusive lock itself, which the kernel
//!   grants the moment the last holder lets go (it is dropped at once).
//! - While nobody holds it, it waits on inotify for the file to be opened, closed,
//!   created or replaced ([`super::watch::FileWatch`]): a process takes a lock only on a
//!   file it opened. Since the lock comes a moment after the open, each such event is
//!   followed by a few looks over the next second and a half, then the thread waits for
//!   the next event again.
//!
//! Stopping it is immediate, even while it blocks on the lock: [`LockWatcher::stop`]
//! interrupts the blocking call with a signal (SIGURG, whose handler does nothing and
//! does not restart calls), again until the thread has ended.

use std::os::fd::AsFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::AddWatchFlags;

use super::watch::FileWatch;

/// What changed about the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Some process holds it (told each time it is found held after being free).
    Held,
    /// Every holder let go.
    Released,
}

/// After an event on the file, how long to wait before each further look.
const LOOK_AGAIN: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(40),
    Duration::from_millis(250),
    Duration::from_millis(1200),
];

/// When inotify cannot be used: how often to look.
const FALLBACK: Duration = Duration::from_millis(200);

/// The watcher thread of one lock file.
pub struct LockWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LockWatcher {
    /// Starts watching `path`; `report` is told each change, and the thread ends when it
    /// returns false or the watcher is stopped.
    pub fn spawn(
        path: String,
        report: impl FnMut(Change) -> bool + Send + 'static,
    ) -> std::io::Result<LockWatcher> {
        install_interrupt_handler();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("flock-watch".into())
            .spawn(move || watch(&path, &flag, report))?;
        Ok(LockWatcher {
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the thread, without waiting for it here.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return;
        };
        if thread.is_finished() {
            let _ = thread.join();
            return;
        }
        interrupt(&thread);
        // The signal may come just before the thread blocks: send it again until the
        // thread is gone, from a thread of its own so that the caller does not wait.
        let spawned = std::thread::Builder::new()
            .name("flock-stop".into())
            .spawn(move || {
                while !thread.is_finished() {
                    std::thread::sleep(Duration::from_millis(10));
                    interrupt(&thread);
                }
                let _ = thread.join();
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot stop a lock watcher at once ({e}); it ends with the lock");
        }
    }
}

impl Drop for LockWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

extern "C" fn on_interrupt(_: libc::c_int) {}

fn install_interrupt_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        // No SA_RESTART: a blocking call returns EINTR when the signal comes.
        let action = SigAction::new(
            SigHandler::Handler(on_interrupt),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe; SIGURG is not
        // used for anything else by guardian.
        if let Err(e) = unsafe { sigaction(Signal::SIGURG, &action) } {
            tracing::warn!("cannot set up the interruption of lock watchers: {e}");
        }
    });
}

fn interrupt(thread: &JoinHandle<()>) {
    // SAFETY: the thread has not been joined (the handle is held), so its id is valid.
    unsafe {
        libc::pthread_kill(thread.as_pthread_t(), libc::SIGURG);
    }
}

fn watch(path: &str, stop: &AtomicBool, mut report: impl FnMut(Change) -> bool) {
    let mut inotify: Option<FileWatch> = None;
    // Index into LOOK_AGAIN of the next look; past its end, wait for an event.
    let mut looks = LOOK_AGAIN.len();
    while !stop.load(Ordering::SeqCst) {
        if matches!(checks::flock_holders(path), Ok(h) if !h.is_empty()) {
            // No need to hear about opens while it is held.
            inotify = None;
            if !report(Change::Held) {
                return;
            }
            match wait_released(path, stop) {
                Ok(true) => {
                    if stop.load(Ordering::SeqCst) || !report(Change::Released) {
                        return;
                    }
                    looks = 0;
                    continue;
                }
                Ok(false) => return,
                // The file cannot be opened (it went away meanwhile): look again later.
                Err(_) => {
                    std::thread::sleep(FALLBACK);
                    continue;
                }
            }
        }
        if inotify.is_none() {
            let events =
                AddWatchFlags::IN_OPEN | AddWatchFlags::IN_CLOSE | AddWatchFlags::IN_ATTRIB;
            match FileWatch::new(std::path::Path::new(path), events) {
                Ok(w) => {
                    inotify = Some(w);
                    // Armed now: look once more, so that nothing before it is missed.
                    continue;
                }
                Err(e) => {
                    tracing::debug!("cannot watch {path} with inotify ({e}); looking every 200 ms");
                    std::thread::sleep(FALLBACK);
                    continue;
                }
            }
        }
        let Some(w) = inotify.as_mut() else {
            continue;
        };
        let timeout = LOOK_AGAIN.get(looks).copied();
        looks = looks.saturating_add(1);
        match wait_event(w, timeout) {
            Ok(true) => looks = 0,
            Ok(false) => {}
            Err(e) => {
                tracing::debug!("watching {path} failed ({e}); setting it up again");
                inotify = None;
            }
        }
    }
}

/// Waits up to `timeout` (for ever: None) for an event on the watched file. True: there
/// was one. False: the time passed, or a signal came (the caller looks at its flag).
fn wait_event(w: &mut FileWatch, timeout: Option<Duration>) -> std::io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
    };
    let ready = {
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => n > 0,
            Err(Errno::EINTR) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    };
    if !ready {
        return Ok(false);
    }
    match w.read_events() {
        Ok(look) => Ok(look),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Blocks until nobody holds a lock on `path` (taking, then at once dropping, an
/// exclusive lock). Ok(false): the watcher was stopped meanwhile.
fn wait_released(path: &str, stop: &AtomicBool) -> std::io::Result<bool> {
    use nix::fcntl::{Flock, FlockArg};
    let mut file = std::fs::File::open(path)?;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => {
                drop(lock);
                return Ok(true);
            }
            Err((f, Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{Flock, FlockArg};
    use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};

    const WAIT: Duration = Duration::from_secs(30);

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("guardian-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn start(path: &std::path::Path) -> (LockWatcher, Receiver<Change>) {
        let (tx, rx) = channel();
        let w = LockWatcher::spawn(path.display().to_string(), move |c| tx.send(c).is_ok())
            .unwrap_or_else(|e| panic!("{e}"));
        (w, rx)
    }

    fn lock(path: &std::path::Path) -> Flock<std::fs::File> {
        let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{e}"));
        Flock::lock(f, FlockArg::LockShared).unwrap_or_else(|(_, e)| panic!("{e}"))
    }

    #[test]
    fn tells_held_then_released() {
        let dir = scratch("held");
        let path = dir.join("app.lock");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let held = lock(&path);
        let (_w, rx) = start(&path);
        assert_eq!(rx.recv_timeout(WAIT), Ok(Change::Held));
        drop(held);
        assert_eq!(rx.recv_timeout(WAIT), Ok(Change::Released));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lock_taken_later_is_seen() {
        let dir = scratch("later");
        let path = dir.join("app.lock");
        // The file does not even exist when the watch starts.
        let (_w, rx) = start(&path);
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let held = lock(&path);
        assert_eq!(rx.recv_timeout(WAIT), Ok(Change::Held));
        drop(held);
        assert_eq!(rx.recv_timeout(WAIT), Ok(Change::Released));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The thread ends when stopped, also while it blocks on a lock that stays held.
    #[test]
    fn stops_while_blocked_on_a_held_lock() {
        let dir = scratch("stop");
        let path = dir.join("app.lock");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        let _held = lock(&path);
        let (mut w, rx) = start(&path);
        assert_eq!(rx.recv_timeout(WAIT), Ok(Change::Held));
        w.stop();
        // The thread's end drops its sender.
        assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stops_while_waiting_for_an_event() {
        let dir = scratch("idle");
        let path = dir.join("app.lock");
        let (mut w, rx) = start(&path);
        w.stop();
        assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
