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

/// The instances `job` names, when it is the name of a job file with `instances` (and
/// the daemon runs to say so).
fn instances_of(socket: &Socket, job: &str) -> Vec<String> {
    match socket.call(&Request::Status {
        job: Some(job.to_string()),
        group: None,
    }) {
        Ok(Response::Jobs { jobs, .. }) if jobs.iter().any(|j| j.name != job) => {
            jobs.into_iter().map(|j| j.name).collect()
        }
        _ => Vec::new(),
    }
}

pub fn show(
    socket: &Socket,
    dir: &Path,
    job: &str,
    lines: usize,
    follow: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    let set = instances_of(socket, job);
    if !set.is_empty() {
        if follow {
            eprintln!(
                "guardian: `{}` is {} instances: follow one, as `guardian logs {} -f`",
                crate::logtext::Esc(job),
                set.len(),
                set[0]
            );
            return Ok(Exit::Error);
        }
        // Each instance's last lines under its name, as `tail` shows several files.
        for (i, name) in set.iter().enumerate() {
            if !json {
                let gap = if i > 0 { "\n" } else { "" };
                println!("{gap}==> {name} <==");
            }
            let exit = show(socket, dir, name, lines, false, json)?;
            if exit != Exit::Ok {
                return Ok(exit);
            }
        }
        return Ok(Exit::Ok);
    }
    let path = match log_path(socket, dir, job)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let mut out = Lines {
        out: io::stdout().lock(),
        json,
        backlog: true,
        partial: Vec::new(),
    };
    let mut file = match File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound && follow => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Nothing logged: no lines, and for a script no output at all.
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
    out.backlog = false;
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

/// Where `logs` writes: the lines as they are, or with `--json` one JSON object per line,
/// `{"time": ..., "stream": null, "text": ...}`. The log file keeps no time, so `time`
/// is null for the lines already in it and the time they were read for those that
/// come while following; stdout and stderr share one pipe, so `stream` is not known.
struct Lines<W: Write> {
    out: W,
    json: bool,
    /// Writing the lines that were in the file before (no time known).
    backlog: bool,
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
}

impl<W: Write> Lines<W> {
    fn object(&mut self, line: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let time = if self.backlog {
            serde_json::Value::Null
        } else {
            humantime::format_rfc3339_millis(std::time::SystemTime::now())
                .to_string()
                .into()
        };
        let value = serde_json::json!({ "time": time, "stream": null, "text": text });
        serde_json::to_writer(&mut self.out, &value)?;
        self.out.write_all(b"\n")
    }
}

impl<W: Write> Write for Lines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.json {
            return self.out.write(buf);
        }
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(nl + 1);
            if self.partial.is_empty() {
                self.object(line)?;
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.object(&whole)?;
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A last line without its newline yet is shown as it is, as the text output does.
        if self.json && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.object(&line)?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_one_object_per_line() {
        let mut l = Lines {
            out: Vec::new(),
            json: true,
            backlog: true,
            partial: Vec::new(),
        };
        l.write_all(b"one\ntw").expect("written");
        l.write_all(b"o \"q\"\r\n\xff\n").expect("written");
        l.backlog = false;
        l.write_all(b"late").expect("written");
        l.flush().expect("flushed");
        let text = String::from_utf8(l.out).expect("utf-8");
        let objects: Vec<serde_json::Value> = text
            .lines()
            .map(|x| serde_json::from_str(x).expect("json"))
            .collect();
        assert_eq!(objects.len(), 4, "{text}");
        assert_eq!(objects[0]["text"], "one");
        assert_eq!(objects[1]["text"], "two \"q\"");
        assert_eq!(objects[2]["text"], "\u{fffd}");
        assert!(objects[0]["time"].is_null() && objects[0]["stream"].is_null());
        assert_eq!(objects[3]["text"], "late");
        assert!(
            objects[3]["time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
}
