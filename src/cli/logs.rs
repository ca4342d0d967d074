//! `guardian logs JOB [-n N] [-f]`: the end of a job's log file, and following it across
//! rotations the way `tail -F` does.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config;
use crate::control::protocol::{Request, Response};

use super::Exit;
use super::commands::Socket;

/// Where the job's log is: the daemon knows; without a daemon, the configuration does.
fn log_path(socket: &Socket, dir: &Path, job: &str) -> anyhow::Result<Result<PathBuf, Exit>> {
    let request = Request::Logs {
        job: job.to_string(),
    };
    match socket.call(&request) {
        Ok(Response::LogFile { path }) => Ok(Ok(PathBuf::from(path))),
        Ok(Response::Error { message }) => {
            eprintln!("guardian: {message}");
            Ok(Err(Exit::Error))
        }
        Ok(other) => anyhow::bail!("unexpected answer: {other:?}"),
        Err(e) if e.no_daemon() => {
            // Without a daemon to ask, the name itself must not lead out of the log
            // directory (`../state/state`), and a job must exist by that name, or have
            // left a log behind.
            if !config::valid_name(job) {
                eprintln!(
                    "guardian: `{}` is not a job name (letters, digits, `-`, `_`, `.`, `@`; not starting with `.`)",
                    crate::logtext::Esc(job)
                );
                return Ok(Err(Exit::Error));
            }
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            let paths = config::client::paths(&dir).map_err(|d| anyhow::anyhow!("{d}"))?;
            let log = paths.log_dir.join(format!("{job}.log"));
            let defined = dir.join("jobs").join(format!("{job}.toml"));
            if !log.exists() && !defined.exists() {
                eprintln!(
                    "guardian: no job named {job} in {} (and the daemon is not running)",
                    dir.join("jobs").display()
                );
                return Ok(Err(Exit::Error));
            }
            Ok(Ok(log))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn show(
    socket: &Socket,
    dir: &Path,
    job: &str,
    lines: usize,
    follow: bool,
) -> anyhow::Result<Exit> {
    let path = match log_path(socket, dir, job)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let mut out = io::stdout().lock();
    let mut file = match File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound && follow => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!(
                "guardian: {job} has logged nothing yet ({})",
                path.display()
            );
            return Ok(Exit::Ok);
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    if let Some(f) = &mut file {
        for line in last_lines(f, lines)? {
            out.write_all(&line)?;
        }
        out.flush()?;
    }
    if !follow {
        return Ok(Exit::Ok);
    }
    follow_file(&path, file, &mut out)
}

/// The last `n` lines of a file, reading backwards from its end in blocks.
fn last_lines(f: &mut File, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let len = f.seek(SeekFrom::End(0))?;
    let mut pos = len;
    let mut tail: Vec<u8> = Vec::new();
    while pos > 0 && tail.iter().filter(|b| **b == b'\n').count() <= n {
        let step = pos.min(64 * 1024);
        pos -= step;
        f.seek(SeekFrom::Start(pos))?;
        let mut block = vec![0u8; step as usize];
        f.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
    }
    f.seek(SeekFrom::Start(len))?;
    let mut lines: Vec<Vec<u8>> = tail
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let skip = lines.len().saturating_sub(n);
    Ok(lines.split_off(skip))
}

fn follow_file(path: &Path, mut file: Option<File>, out: &mut impl Write) -> anyhow::Result<Exit> {
    let mut reader = file.take().map(BufReader::new);
    let mut line = Vec::new();
    loop {
        let mut progressed = false;
        if let Some(r) = &mut reader {
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                out.write_all(&line)?;
                progressed = true;
            }
            out.flush()?;
        }
        // Rotated or truncated: start again on the file now at `path`.
        let current = std::fs::metadata(path).ok();
        let reopen = match (&reader, &current) {
            (None, Some(_)) => true,
            (Some(r), Some(meta)) => {
                let open = r.get_ref().metadata()?;
                open.ino() != meta.ino() || meta.len() < r.get_ref().stream_position_len()
            }
            _ => false,
        };
        if reopen {
            if let Some(r) = &reader {
                let ours = r.get_ref().metadata()?.ino();
                catch_up(path, ours, out)?;
            }
            reader = File::open(path).ok().map(BufReader::new);
            continue;
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// After a rotation: the generations newer than the one just read to its end (file
/// `ours`) were written and rotated away in between; print them, oldest first.
fn catch_up(path: &Path, ours: u64, out: &mut impl Write) -> io::Result<()> {
    let generation = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    let newer: Vec<PathBuf> = (1..=100)
        .map(generation)
        .take_while(|p| p.exists())
        .take_while(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() != ours))
        .collect();
    let found_ours =
        std::fs::metadata(generation(newer.len() as u32 + 1)).is_ok_and(|m| m.ino() == ours);
    if found_ours {
        for p in newer.iter().rev() {
            if let Ok(mut f) = File::open(p) {
                io::copy(&mut f, out)?;
            }
        }
    }
    Ok(())
}

trait Position {
    fn stream_position_len(&self) -> u64;
}

impl Position for File {
    fn stream_position_len(&self) -> u64 {
        let mut f = self;
        f.stream_position().unwrap_or(0)
    }
}
