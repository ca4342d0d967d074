//! Job output: one pipe per job, read by the daemon and written to `log-dir/JOB.log`,
//! rotated by size. Every process of the job (main and hooks) writes into the same pipe,
//! so their lines keep their order.
//!
//! The pipe is the job's FIFO in `state-dir/pipes/` (`fifo.rs`), so that it outlives the
//! daemon: every process of the job holds it read-write, so it never loses its reader,
//! and the next daemon opens it again and reads what waited in it. Bytes are written to
//! the log as they are read, an unfinished line too, so a daemon killed in the middle of
//! a line loses nothing of it: the next one finds the file ending in the middle of a line
//! and, if the pipe still held bytes (the same pipe, outliving the old daemon), goes on
//! with that line; if not, it ends the line first. When the FIFO cannot be used (see
//! `fifo.rs`) the job gets an anonymous pipe instead, which ends with the daemon.
//!
//! The daemon holds one descriptor per job, not the pipe's two ends: every child copies
//! the daemon's descriptor table at its spawn and closes it again at its exec, so with
//! thousands of jobs each descriptor held is paid for at every spawn. That descriptor is
//! opened read-write, so the pipe has a writer for as long as the job exists and never
//! reaches end of file between two of its processes; each spawn gets a read-write
//! descriptor of its own, opened through `/proc/self/fd` and closed again in the daemon
//! right after the spawn. Processes that outlive a spawn keep theirs.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use tokio::net::unix::pipe;

use super::fifo::PipeDir;
use crate::files::{self, Access};
use crate::logtext::EscPath;

/// A line longer than this is written in pieces rather than held forever.
const MAX_LINE: usize = 16 * 1024;

/// How long the output of a removed job is still read, while a process of it that
/// escaped (a grandchild) keeps the pipe open.
const LINGER: Duration = Duration::from_secs(5);

/// Where a job's output goes: its log file, its rotation.
pub struct LogSpec {
    pub path: PathBuf,
    pub max_size: u64,
    pub keep: u32,
    /// The mode (and group) of the file, and so of its rotated generations.
    pub access: Access,
}

/// A job's pipe and its reader; `None` until the job's first spawn when its FIFO did not
/// exist yet (see [`LogPipe::open`]).
pub struct LogPipe(Option<Reader>);

struct Reader {
    /// The reader's read-write descriptor of the pipe. It is owned by the reader task,
    /// which keeps it open until this `LogPipe` is dropped.
    fd: RawFd,
    /// The reader, ended when the job goes (its end starts [`linger`]).
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LogPipe {
    /// The pipe of job `name`: its FIFO in `pipes`, reused if it is there, or an anonymous
    /// pipe when the FIFO cannot be used (said in the daemon's log).
    ///
    /// A FIFO that is not there yet holds nothing to read, so it is not made here but at
    /// the job's first spawn ([`LogPipe::ready`]), or ahead of it by
    /// [`PipeDir::make_ahead`]: creating a FIFO is a journalled write of the directory,
    /// and made one after the other before the first spawn, 2,000 of them held every job
    /// back by most of a second.
    pub fn open(pipes: &PipeDir, name: &str, log: LogSpec) -> io::Result<LogPipe> {
        if pipes.missing(name) {
            return Ok(LogPipe(None));
        }
        LogPipe::open_now(pipes, name, log).map(|r| LogPipe(Some(r)))
    }

    /// Whether the pipe is there: false until [`LogPipe::ready`] for one not made yet.
    pub fn is_open(&self) -> bool {
        self.0.is_some()
    }

    /// Opens the pipe if it is not open yet (creating its FIFO if the thread that makes
    /// them ahead has not), before a process of the job is spawned.
    pub fn ready(&mut self, pipes: &PipeDir, name: &str, log: LogSpec) -> io::Result<()> {
        if self.0.is_none() {
            self.0 = Some(LogPipe::open_now(pipes, name, log)?);
        }
        Ok(())
    }

    fn open_now(pipes: &PipeDir, name: &str, log: LogSpec) -> io::Result<Reader> {
        let (fd, waiting) = match pipes.open_fifo(name) {
            Some(Ok(fifo)) => (fifo.fd, fifo.waiting),
            Some(Err(e)) => {
                tracing::error!(
                    "{name}: {}: {e}; its output is not kept across a restart of the daemon",
                    EscPath(&pipes.path_of(name))
                );
                (anonymous()?, false)
            }
            None => (anonymous()?, false),
        };
        LogPipe::read(fd, waiting, log)
    }

    /// Reads what is left in the FIFO of a job that is no longer configured into its log,
    /// for as long as a removed job's pipe is read, and removes the FIFO.
    pub fn drain(pipes: &PipeDir, name: &str, log: LogSpec) {
        match pipes.open_fifo(name) {
            Some(Ok(fifo)) => {
                pipes.remove(name);
                tracing::info!("{name}: no longer configured; what its pipe holds goes to its log");
                // Dropped at once: what is in the pipe is read as a removed job's is.
                if let Err(e) = LogPipe::read(fifo.fd, fifo.waiting, log) {
                    tracing::warn!("{name}: cannot read its pipe: {e}");
                }
            }
            Some(Err(e)) => tracing::warn!("{}: {e}; left alone", EscPath(&pipes.path_of(name))),
            None => {}
        }
    }

    fn read(both: OwnedFd, waiting: bool, log: LogSpec) -> io::Result<Reader> {
        let fd = both.as_raw_fd();
        let rx = pipe::Receiver::from_owned_fd(both)?;
        let file = LogFile {
            path: log.path,
            file: None,
            size: 0,
            line: 0,
            resume: Some(waiting),
            max_size: log.max_size,
            keep: log.keep,
            access: log.access,
        };
        let task = tokio::spawn(Pump {
            io: Some((rx, file)),
            reading: true,
        });
        Ok(Reader { fd, task })
    }

    /// The pipe of job `name` handed over by the image of the daemon before an exec
    /// (`reexec.rs`): the same pipe, so an unfinished line in the log goes on.
    pub fn handed(fd: OwnedFd, log: LogSpec) -> io::Result<LogPipe> {
        LogPipe::read(fd, true, log).map(|r| LogPipe(Some(r)))
    }

    /// The daemon's descriptor of the pipe, to hand over across an exec; none while the
    /// pipe is not made yet (the next image makes it).
    pub fn fd(&self) -> Option<RawFd> {
        self.0.as_ref().map(|r| r.fd)
    }

    /// A new descriptor of the pipe, for the standard output and error of one process of
    /// the job. It is blocking, as a pipe a program inherits is expected to be, and
    /// read-write: the process itself holds a reader of its pipe, so that it never gets
    /// `EPIPE` (or dies of `SIGPIPE`) when the daemon is gone; it blocks once the pipe is
    /// full, until a daemon reads it again.
    pub fn writer(&self) -> io::Result<OwnedFd> {
        let r = self
            .0
            .as_ref()
            .ok_or_else(|| io::Error::other("the job's log pipe is not open"))?;
        reopen(r.fd, OFlag::O_RDWR)
    }
}

/// An anonymous pipe, as one read-write non-blocking descriptor.
fn anonymous() -> io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let both = reopen(read.as_raw_fd(), OFlag::O_RDWR | OFlag::O_NONBLOCK)?;
    drop((read, write));
    Ok(both)
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
    /// The pipe and the log; handed to [`linger`] when the job goes.
    io: Option<(pipe::Receiver, LogFile)>,
    /// False after a read error: the descriptor is kept (its number is in the
    /// `LogPipe`) until the job goes, but no longer read.
    reading: bool,
}

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some((rx, log)) = &mut this.io else {
            return Poll::Ready(());
        };
        while this.reading {
            match rx.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => this.reading = false,
            }
            // This descriptor is itself a writer: the pipe has no end while the job exists.
            if this.reading && read_into(rx, log) != Ok(true) {
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
        if let Some((rx, log)) = self.io.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(linger(rx, log));
        }
    }
}

/// Reads what is in the pipe now. `Ok(false)` at end of file, `Err` on an error (logged).
fn read_into(rx: &pipe::Receiver, log: &mut LogFile) -> Result<bool, ()> {
    let mut buf = [0u8; 4096];
    loop {
        match rx.try_read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => log.feed(&buf[..n]),
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
/// that it reaches its end once every process that still holds it is gone. An unfinished
/// last line is ended (when `log` is dropped).
async fn linger(rx: pipe::Receiver, mut log: LogFile) {
    let reader = reopen(rx.as_raw_fd(), OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .and_then(pipe::Receiver::from_owned_fd);
    drop(rx);
    if let Ok(rx) = reader {
        let _ = tokio::time::timeout(LINGER, async {
            while rx.readable().await.is_ok() {
                if read_into(&rx, &mut log) != Ok(true) {
                    break;
                }
            }
        })
        .await;
    }
}

struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    /// How long the line the file ends in is (0: it ends with a line break).
    line: usize,
    /// Until the file is first opened: whether its pipe held bytes when the daemon found
    /// it, so that an unfinished last line in the file is the one those bytes go on with.
    resume: Option<bool>,
    max_size: u64,
    keep: u32,
    /// The mode (and group) of the file, and so of its rotated generations.
    access: Access,
}

impl Drop for LogFile {
    /// The log is no longer written (the job is gone, or the daemon exits): an unfinished
    /// line is ended.
    fn drop(&mut self) {
        if self.line > 0 {
            self.put(b"\n");
        }
    }
}

/// `data` with a line break inserted wherever a line would pass [`MAX_LINE`], the line
/// the log ends in being `line` bytes long so far.
fn break_long(mut line: usize, data: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            line = 0;
            continue;
        }
        if line >= MAX_LINE {
            let o = out.get_or_insert_with(|| Vec::with_capacity(data.len().saturating_add(64)));
            o.extend_from_slice(&data[copied..i]);
            o.push(b'\n');
            copied = i;
            line = 0;
        }
        line = line.saturating_add(1);
    }
    match out {
        None => Cow::Borrowed(data),
        Some(mut o) => {
            o.extend_from_slice(&data[copied..]);
            Cow::Owned(o)
        }
    }
}

impl LogFile {
    /// Writes `data` as it comes, an unfinished line too (a line longer than
    /// [`MAX_LINE`] is broken). A line the file ends in is finished in that file; the file
    /// is rotated only between lines.
    fn feed(&mut self, data: &[u8]) {
        if self.file.is_none() && !self.open() {
            return;
        }
        let data = break_long(self.line, data);
        let mut rest = &data[..];
        if self.line > 0 {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let (now, later) = rest.split_at(end);
            self.put(now);
            rest = later;
        }
        self.write(rest);
    }

    /// Writes `data`, which begins a line, rotating between two lines whenever the next
    /// would take the file past its size limit: a generation never ends in half a line,
    /// and never grows past the limit unless one line alone is longer, or the unfinished
    /// line it ends in grows later.
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
            if !self.put(now) {
                return;
            }
            rest = later;
        }
    }

    /// Appends `data` to the open file, keeping count of its size and of its last line.
    fn put(&mut self, data: &[u8]) -> bool {
        let Some(f) = &mut self.file else {
            return false;
        };
        self.line = match data.iter().rposition(|b| *b == b'\n') {
            Some(i) => data.len() - i - 1,
            None => self.line.saturating_add(data.len()),
        };
        match f.write_all(data) {
            Ok(()) => {
                self.size = self.size.saturating_add(data.len() as u64);
                true
            }
            Err(e) => {
                tracing::warn!("cannot write {}: {e}", EscPath(&self.path));
                false
            }
        }
    }

    fn open(&mut self) -> bool {
        match files::open(
            &self.path,
            // Readable too: the end of the file says whether it ends in a line break.
            OpenOptions::new().create(true).append(true).read(true),
            self.access,
        ) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.line = 0;
                let resume = self.resume.take();
                if resume.is_some() && self.size > 0 {
                    self.line = last_line(&f, self.size);
                }
                self.file = Some(f);
                if resume == Some(false) && self.line > 0 {
                    // The pipe was new: what comes is not the rest of that line.
                    self.put(b"\n");
                }
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
        self.line = 0;
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

/// How long the unfinished line a file of `size` bytes ends in is: 0 if it ends with a
/// line break (or cannot be read), at most [`MAX_LINE`].
fn last_line(f: &File, size: u64) -> usize {
    let n = size.min(MAX_LINE as u64);
    let mut tail = vec![0u8; n as usize];
    if f.read_exact_at(&mut tail, size - n).is_err() {
        return 0;
    }
    match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => tail.len() - i - 1,
        None => tail.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_file(path: &std::path::Path, max_size: u64, resume: Option<bool>) -> LogFile {
        LogFile {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            line: 0,
            resume,
            max_size,
            keep: 2,
            access: files::PRIVATE,
        }
    }

    fn text(path: &std::path::Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn lines_as_they_come_and_rotation_between_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.log");
        let mut log = log_file(&path, 10, None);
        log.feed(b"abc");
        assert_eq!(text(&path), "abc", "an unfinished line is written at once");
        log.feed(b"d\nef");
        assert_eq!(text(&path), "abcd\nef");
        log.feed(b"ghijk\n");
        // The line begun within the limit ends in the same file, even past the limit.
        assert_eq!(text(&path), "abcd\nefghijk\n");
        log.feed(b"1234567\n");
        assert_eq!(text(&path), "1234567\n");
        assert_eq!(text(&dir.path().join("job.log.1")), "abcd\nefghijk\n");
        log.feed(b"7654321\n");
        assert!(dir.path().join("job.log.2").exists());
        assert!(!dir.path().join("job.log.3").exists(), "keep = 2");
        log.feed(b"unfinished");
        drop(log);
        assert_eq!(text(&path), "unfinished\n", "ended when the log is let go");
    }

    #[test]
    fn an_unfinished_line_goes_on_only_with_the_same_pipe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.log");
        std::fs::write(&path, "one\ntw").expect("write");
        let mut log = log_file(&path, 1000, Some(true));
        log.feed(b"o\n");
        assert_eq!(text(&path), "one\ntwo\n");
        drop(log);
        std::fs::write(&path, "one\ntw").expect("write");
        let mut log = log_file(&path, 1000, Some(false));
        log.feed(b"three\n");
        assert_eq!(text(&path), "one\ntw\nthree\n", "a new pipe: a new line");
    }

    #[test]
    fn a_long_line_is_broken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.log");
        let mut log = log_file(&path, u64::MAX, None);
        for _ in 0..10 {
            log.feed(&[b'x'; 4000]);
        }
        log.feed(b"\n");
        let got = text(&path);
        let lens: Vec<usize> = got.lines().map(str::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 40_000 - 2 * MAX_LINE]);
    }
}
