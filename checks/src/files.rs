//! `file`: a file exists, is fresh enough and of a sane size; `flock`: some process
//! holds a lock on a file (Unicorn's trick: every process of the app holds a shared
//! lock, so the lock is free only once all of them are gone).

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant, SystemTime};

use crate::Outcome;
use crate::resource::human_bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProbe {
    pub path: String,
    pub max_age: Option<Duration>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
}

impl FileProbe {
    pub(crate) fn check(&self, start: Instant) -> Outcome {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => return Outcome::fail(format!("{}: {e}", self.path), start.elapsed()),
        };
        let size = meta.len();
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        let t = start.elapsed();
        if let Some(max) = self.max_age
            && age > max
        {
            return Outcome::fail(
                format!(
                    "{} was last changed {}s ago, limit {}s",
                    self.path,
                    age.as_secs(),
                    max.as_secs()
                ),
                t,
            )
            .with_value(age.as_secs_f64());
        }
        if let Some(min) = self.min_size
            && size < min
        {
            return Outcome::fail(
                format!(
                    "{} is {}, below {}",
                    self.path,
                    human_bytes(size as f64),
                    human_bytes(min as f64)
                ),
                t,
            )
            .with_value(size as f64);
        }
        if let Some(max) = self.max_size
            && size > max
        {
            return Outcome::fail(
                format!(
                    "{} is {}, above {}",
                    self.path,
                    human_bytes(size as f64),
                    human_bytes(max as f64)
                ),
                t,
            )
            .with_value(size as f64);
        }
        Outcome::pass(
            format!(
                "{} is there, {}, changed {}s ago",
                self.path,
                human_bytes(size as f64),
                age.as_secs()
            ),
            t,
        )
        .with_value(size as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlockProbe {
    pub path: String,
}

/// The pids holding flock(2) locks on `path`, as /proc/locks lists them: looked up
/// without taking the lock, so the probe never stands in an application's way.
pub fn holders(path: &str) -> std::io::Result<Vec<u32>> {
    let meta = std::fs::metadata(path)?;
    let dev = meta.dev();
    // SAFETY: major and minor only decode the number.
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let key = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks")?;
    let mut pids = Vec::new();
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  READ 1234 08:01:5678 0 EOF"; a waiting request has "->".
        if f.len() < 6 || f.get(1) == Some(&"->") || f[1] != "FLOCK" {
            continue;
        }
        if f[5] == key
            && let Ok(pid) = f[4].parse()
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Blocks until nobody holds a lock on `path` (taking, then at once dropping, an
/// exclusive lock). Call it on a thread of its own: it returns at the moment the last
/// holder lets go, with no polling.
pub fn wait_released(path: &str) -> std::io::Result<()> {
    use nix::fcntl::{Flock, FlockArg};
    let file = std::fs::File::open(path)?;
    let lock =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    drop(lock);
    Ok(())
}

impl FlockProbe {
    pub(crate) fn check(&self, start: Instant) -> Outcome {
        match holders(&self.path) {
            Ok(pids) if !pids.is_empty() => {
                let shown: Vec<String> = pids.iter().take(8).map(u32::to_string).collect();
                Outcome::pass(
                    format!(
                        "{} is locked by {} process(es): {}",
                        self.path,
                        pids.len(),
                        shown.join(" ")
                    ),
                    start.elapsed(),
                )
                .with_value(pids.len() as f64)
            }
            Ok(_) => Outcome::fail(
                format!(
                    "nobody holds a lock on {}: every process of the app is gone",
                    self.path
                ),
                start.elapsed(),
            )
            .with_value(0.0),
            Err(e) => Outcome::fail(format!("{}: {e}", self.path), start.elapsed()),
        }
    }
}
