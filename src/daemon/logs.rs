//! Job output: one pipe per job, read by the daemon and written to `log-dir/JOB.log` in
//! whole lines, rotated by size. Every process of the job (main and hooks) writes into
//! the same pipe, so their lines keep their order.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use tokio::net::unix::pipe;

use crate::files::{self, Access};
use crate::logtext::EscPath;

/// A line longer than this is written in pieces rather than held forever.
const MAX_LINE: usize = 16 * 1024;

pub struct LogPipe {
    /// The write end, handed (duplicated) to every process of the job.
    pub write: OwnedFd,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LogPipe {
    fn drop(&mut self) {
        // The reader ends by itself at end of file, once every writer is gone; a job that
        // is removed must not keep it waiting on a grandchild that escaped, though.
        let task = self.task.abort_handle();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            task.abort();
        });
    }
}

impl LogPipe {
    pub fn open(path: PathBuf, max_size: u64, keep: u32, access: Access) -> io::Result<LogPipe> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let rx = pipe::Receiver::from_owned_fd(read)?;
        let file = LogFile {
            path,
            file: None,
            size: 0,
            max_size,
            keep,
            access,
        };
        let task = tokio::spawn(pump(rx, file));
        Ok(LogPipe { write, task })
    }
}

async fn pump(rx: pipe::Receiver, mut log: LogFile) {
    let mut partial: Vec<u8> = Vec::new();
    loop {
        if rx.readable().await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match rx.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => log.feed(&buf[..n], &mut partial),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("{}: reading job output failed: {e}", EscPath(&log.path));
                break;
            }
        }
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
