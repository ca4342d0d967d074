//! Job output: one pipe per job, read by the daemon and written to `log-dir/JOB.log` in
//! whole lines, rotated by size. Every process of the job (main and hooks) writes into
//! the same pipe, so their lines keep their order.
//!
//! The daemon holds one descriptor per job, not the pipe's two ends: every child copies
//! the daemon's descriptor table at its spawn and closes it again at its exec, so with
//! thousands of jobs each descriptor held is paid for at every spawn. That descriptor is
//! opened read-write (Linux allows it on a pipe), so the pipe has a writer for as long as
//! the job exists and never reaches end of file between two of its processes; each spawn
//! gets a write end of its own, opened through `/proc/self/fd` and closed again in the
//! daemon right after the spawn. Processes that outlive a spawn keep theirs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use tokio::net::unix::pipe;

use crate::files::{self, Access};
use crate::logtext::EscPath;

/// A line longer than this is written in pieces rather than held forever.
const MAX_LINE: usize = 16 * 1024;

/// How long the output of a removed job is still read, while a process of it that
/// escaped (a grandchild) keeps the pipe open.
const LINGER: Duration = Duration::from_secs(5);

pub struct LogPipe {
    /// The reader's read-write descriptor of the pipe. It is owned by the reader task,
    /// which keeps it open until this `LogPipe` is dropped.
    fd: RawFd,
    /// The reader, ended when the job goes (its end starts [`linger`]).
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LogPipe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LogPipe {
    pub fn open(path: PathBuf, max_size: u64, keep: u32, access: Access) -> io::Result<LogPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let both = reopen(read.as_raw_fd(), OFlag::O_RDWR | OFlag::O_NONBLOCK)?;
        drop((read, write));
        let fd = both.as_raw_fd();
        let rx = pipe::Receiver::from_owned_fd(both)?;
        let file = LogFile {
            path,
            file: None,
            size: 0,
            max_size,
            keep,
            access,
        };
        let task = tokio::spawn(Pump {
            io: Some((rx, file, Vec::new())),
            reading: true,
        });
        Ok(LogPipe { fd, task })
    }

    /// A new write end of the pipe, for the standard output and error of one process
    /// of the job. It is blocking, as a pipe a program inherits is expected to be.
    pub fn writer(&self) -> io::Result<OwnedFd> {
        reopen(self.fd, OFlag::O_WRONLY)
    }
}

/// Opens the pipe behind descriptor `fd` again, as a new open file of its own.
fn reopen(fd: RawFd, mode: OFlag) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{fd}");
    Ok(open(path.as_str(), mode | OFlag::O_CLOEXEC, Mode::empty())?)
}

/// Reads the pipe into the log for as long as the job exists, that is until its task is
/// aborted; then [`linger`] takes over.
///
/// A future of its own rather than an `async fn` over `select!`: a reader waits for almost
/// all of its life, one per job, and this keeps the state it waits in to its fields (and
/// the job's end needs no channel: it is the abort of this task).
struct Pump {
    /// The pipe, the log and an unfinished line; handed to [`linger`] when the job goes.
    io: Option<(pipe::Receiver, LogFile, Vec<u8>)>,
    /// False after a read error: the descriptor is kept (its number is in the
    /// `LogPipe`) until the job goes, but no longer read.
    reading: bool,
}

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some((rx, log, partial)) = &mut this.io else {
            return Poll::Ready(());
        };
        while this.reading {
            match rx.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => this.reading = false,
            }
            // This descriptor is itself a writer: the pipe has no end while the job exists.
            if this.reading && read_into(rx, log, partial) != Ok(true) {
                this.reading = false;
            }
        }
        Poll::Pending
    }
}

impl Drop for Pump {
    /// The job is gone (or the daemon is): what its remaining processes still write is
    /// read for a while. Without a runtime (the daemon is exiting) there is no while.
    fn drop(&mut self) {
        if let Some((rx, log, partial)) = self.io.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(linger(rx, log, partial));
        }
    }
}

/// Reads what is in the pipe now. `Ok(false)` at end of file, `Err` on an error (logged).
fn read_into(rx: &pipe::Receiver, log: &mut LogFile, partial: &mut Vec<u8>) -> Result<bool, ()> {
    let mut buf = [0u8; 4096];
    loop {
        match rx.try_read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => log.feed(&buf[..n], partial),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("{}: reading job output failed: {e}", EscPath(&log.path));
                return Err(());
            }
        }
    }
}

/// The job was removed. The pipe is read through a read-only descriptor from now on, so
/// that it reaches its end once every process that still holds it is gone.
async fn linger(rx: pipe::Receiver, mut log: LogFile, mut partial: Vec<u8>) {
    let reader = reopen(rx.as_raw_fd(), OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .and_then(pipe::Receiver::from_owned_fd);
    drop(rx);
    if let Ok(rx) = reader {
        let _ = tokio::time::timeout(LINGER, async {
            while rx.readable().await.is_ok() {
                if read_into(&rx, &mut log, &mut partial) != Ok(true) {
                    break;
                }
            }
        })
        .await;
    }
    if !partial.is_empty() {
        partial.push(b'\n');
        log.write(&partial);
    }
}

struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    keep: u32,
    /// The mode (and group) of the file, and so of its rotated generations.
    access: Access,
}

impl LogFile {
    /// Writes every complete line of `data`, keeping an unfinished one in `partial`.
    fn feed(&mut self, data: &[u8], partial: &mut Vec<u8>) {
        match data.iter().rposition(|b| *b == b'\n') {
            Some(last) => {
                if partial.is_empty() {
                    self.write(&data[..=last]);
                } else {
                    partial.extend_from_slice(&data[..=last]);
                    let lines = std::mem::take(partial);
                    self.write(&lines);
                }
                partial.extend_from_slice(&data[last + 1..]);
            }
            None => partial.extend_from_slice(data),
        }
        if partial.len() > MAX_LINE {
            partial.push(b'\n');
            let long = std::mem::take(partial);
            self.write(&long);
        }
        if partial.capacity() > MAX_LINE * 2 && partial.is_empty() {
            *partial = Vec::new();
        }
    }

    /// Writes whole lines, rotating between two lines whenever the next would take the
    /// file past its size limit: a generation never ends in half a line, and never grows
    /// past the limit unless one line alone is longer.
    fn write(&mut self, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() {
            if self.file.is_none() && !self.open() {
                return;
            }
            let room = self.max_size.saturating_sub(self.size) as usize;
            let batch = if rest.len() <= room {
                rest.len()
            } else {
                match rest[..room].iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None if self.size == 0 => {
                        // One line longer than the limit: it gets a file of its own.
                        rest.iter()
                            .position(|b| *b == b'\n')
                            .map_or(rest.len(), |i| i + 1)
                    }
                    None => {
                        self.rotate();
                        continue;
                    }
                }
            };
            let (now, later) = rest.split_at(batch);
            if let Some(f) = &mut self.file {
                match f.write_all(now) {
                    Ok(()) => self.size += now.len() as u64,
                    Err(e) => {
                        tracing::warn!("cannot write {}: {e}", EscPath(&self.path));
                        return;
                    }
                }
            }
            rest = later;
        }
    }

    fn open(&mut self) -> bool {
        match files::open(
            &self.path,
            OpenOptions::new().create(true).append(true),
            self.access,
        ) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
                true
            }
            Err(e) => {
                tracing::warn!("cannot open {}: {e}", EscPath(&self.path));
                false
            }
        }
    }

    /// JOB.log becomes JOB.log.1, JOB.log.1 becomes JOB.log.2, ..., the oldest goes.
    fn rotate(&mut self) {
        self.file = None;
        self.size = 0;
        let generation = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        let _ = std::fs::remove_file(generation(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(generation(n), generation(n + 1));
        }
        if let Err(e) = std::fs::rename(&self.path, generation(1)) {
            tracing::warn!("cannot rotate {}: {e}", EscPath(&self.path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.log");
        let mut log = LogFile {
            path: path.clone(),
            file: None,
            size: 0,
            max_size: 10,
            keep: 2,
            access: files::PRIVATE,
        };
        let mut partial = Vec::new();
        log.feed(b"abc", &mut partial);
        assert!(!path.exists(), "no line is complete yet");
        log.feed(b"d\nef", &mut partial);
        assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), "abcd\n");
        log.feed(b"ghijk\n", &mut partial);
        // 5 + 7 bytes would pass 10: the first line was rotated away.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            "efghijk\n"
        );
        let first = dir.path().join("job.log.1");
        assert_eq!(std::fs::read_to_string(first).unwrap_or_default(), "abcd\n");
        log.feed(b"1234567\n", &mut partial);
        log.feed(b"7654321\n", &mut partial);
        assert!(dir.path().join("job.log.2").exists());
        assert!(!dir.path().join("job.log.3").exists(), "keep = 2");
    }
}
