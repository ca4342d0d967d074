//! One cgroup v2 per job, where the host has a writable cgroup v2 hierarchy.
//!
//! The hierarchy is found in `/proc/self/mountinfo` (the first mount of type `cgroup2`)
//! and guardian's own cgroup in `/proc/self/cgroup` (the `0::/PATH` line). guardian stays
//! where it is and makes, beneath its own cgroup, one directory for this daemon's jobs,
//! named after its state directory (`guardian@var-lib-guardian`), so that two daemons
//! of one host, or of one test run, never share a job's cgroup, and a daemon started
//! again on the same state directory finds what the one before left. Each job's cgroup
//! is `JOB.job` in there (the suffix keeps a job's name from meeting one of the
//! kernel's interface files, such as `cgroup.procs`).
//!
//! No controller is enabled: a cgroup counts its processes and their CPU time
//! (`cpu.stat`) without one, and that is all guardian needs. `memory.current` is read
//! where the memory controller is there: a job's cgroup has that file only when
//! `memory` is in the `cgroup.subtree_control` of the daemon's directory (which the
//! host, not guardian, sets), so that is looked at once, and again whenever a job's
//! cgroup is made, rather than failing to open the file for every job on every read.
//!
//! A process is born in its job's cgroup (clone3 with `CLONE_INTO_CGROUP` and the
//! directory opened here, see [`super::spawn`]), or where the kernel cannot do that
//! joins it between fork and exec (writes `0` to its `cgroup.procs`), so nothing it
//! forks is ever outside. A stop ends
//! whatever is left with `cgroup.kill` (or SIGKILL to every pid in `cgroup.procs`
//! where the kernel has no `cgroup.kill`), and the empty cgroup is removed.
//!
//! Making a cgroup costs the kernel about a third of a millisecond (its files, its
//! counters). At the daemon's start the cgroups of the jobs about to start are made on a
//! thread of their own, in their start order, while the first jobs already spawn
//! ([`Cgroups::make_ahead`]); a job that gets ahead of the thread makes its own and takes
//! it off the thread's list. The list is held while each cgroup is made, so that one
//! taken off it (the job started, was removed, or the daemon exits) is never made after.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::sys::signal::Signal;

/// Whether jobs get cgroups (`cgroups` in guardian.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Where the host has a writable cgroup v2 hierarchy.
    #[default]
    Auto,
    /// Never: process groups and the subreaper only.
    Off,
}

/// The cgroups of one daemon's jobs.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// The daemon's directory of job cgroups.
    base: PathBuf,
    /// Whether the memory controller is enabled for the job cgroups (their parent's
    /// `cgroup.subtree_control` names `memory`), as last seen; shared by every copy so
    /// that what one sees when it makes a cgroup, all read by.
    memory: Arc<AtomicBool>,
    /// The jobs whose cgroups the thread of [`Cgroups::make_ahead`] has still to make.
    ahead: Arc<Mutex<VecDeque<String>>>,
}

/// What a job's cgroup says it uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU time of every process that was in the cgroup, ended ones too.
    pub cpu_secs: Option<f64>,
    /// Memory charged to the cgroup, where the memory controller is on.
    pub memory_bytes: Option<u64>,
}

impl Cgroups {
    /// The cgroups of the daemon whose state directory is `state_dir`: Err says why
    /// there are none (no cgroup v2 mounted, not writable).
    pub fn open(state_dir: &Path) -> Result<Cgroups, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mount = cgroup2_mount(&mountinfo).ok_or("no cgroup v2 hierarchy is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let own = own_cgroup(&own).ok_or("/proc/self/cgroup names no cgroup v2")?;
        let own_dir = mount.join(own.trim_start_matches('/'));
        let base = own_dir.join(instance_name(state_dir));
        match std::fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
        }
        if !base.join("cgroup.procs").exists() {
            let _ = std::fs::remove_dir(&base);
            return Err(format!("{} is not a cgroup v2", base.display()));
        }
        // Moving a process from guardian's cgroup into a job's needs write access to
        // the cgroup.procs of both.
        let writable = |p: &Path| {
            nix::unistd::access(&p.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).is_ok()
        };
        if !writable(&own_dir) || !writable(&base) {
            let _ = std::fs::remove_dir(&base);
            return Err(format!(
                "{}/cgroup.procs is not writable",
                own_dir.display()
            ));
        }
        let memory = Arc::new(AtomicBool::new(memory_enabled(&base)));
        Ok(Cgroups {
            base,
            memory,
            ahead: Arc::default(),
        })
    }

    /// Makes the cgroups of `jobs`, in that order, on a thread of its own that ends when
    /// they are made. Errors are left to the job's own attempt when it spawns.
    pub fn make_ahead(&self, jobs: Vec<String>) {
        if jobs.is_empty() {
            return;
        }
        lock(&self.ahead).extend(jobs);
        let cg = self.clone();
        let made = std::thread::Builder::new()
            .name("guardian-cgroups".into())
            .spawn(move || {
                loop {
                    let mut queue = lock(&cg.ahead);
                    let Some(job) = queue.pop_front() else {
                        // 2,000 names' room is not kept for the daemon's whole life.
                        queue.shrink_to_fit();
                        break;
                    };
                    match std::fs::create_dir(cg.dir(&job)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => tracing::debug!("{job}: cannot make its cgroup ahead: {e}"),
                    }
                    drop(queue);
                }
                cg.recheck_memory();
            });
        if let Err(e) = made {
            // Each job then makes its own when it spawns.
            lock(&self.ahead).clear();
            tracing::debug!("cannot start the thread that makes the cgroups: {e}");
        }
    }

    /// Takes `job` off the list of cgroups to make ahead: whether it was on it (then its
    /// cgroup is not made yet, unless a daemon before made it).
    fn take_ahead(&self, job: &str) -> bool {
        let mut queue = lock(&self.ahead);
        match queue.iter().position(|j| j == job) {
            Some(i) => {
                queue.remove(i);
                true
            }
            None => false,
        }
    }

    /// Looks again whether the job cgroups have the memory controller: a host may
    /// enable it (or take it away) while the daemon runs. Done where a job's cgroup is
    /// made, which every start of a job that was down does (its cgroup is removed
    /// once it is empty), so a change is seen by the next start, and costs one read
    /// per start instead of a failed open per job per summary.
    fn recheck_memory(&self) {
        self.memory
            .store(memory_enabled(&self.base), Ordering::Relaxed);
    }

    /// The daemon's directory of job cgroups.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The cgroup of `job`.
    pub fn dir(&self, job: &str) -> PathBuf {
        self.base.join(dir_name(job))
    }

    /// Opens the cgroup directory of `job` for a child to be born in it (clone3 with
    /// `CLONE_INTO_CGROUP`) or to join it (its `cgroup.procs`, between fork and exec),
    /// creating the cgroup first unless `made` says it is there (and also when it
    /// turns out not to be).
    /// A job whose cgroup was given to [`Cgroups::make_ahead`] and that is no longer on
    /// its list finds it made (or makes it, if the thread could not).
    pub fn join_handle(&self, job: &str, made: bool) -> io::Result<OwnedFd> {
        let dir = self.dir(job);
        let open = || {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&dir)
        };
        let queued = self.take_ahead(job);
        if made || !queued {
            match open() {
                Ok(f) => return Ok(OwnedFd::from(f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.recheck_memory();
        Ok(OwnedFd::from(open()?))
    }

    /// The processes in `job`'s cgroup; none when it does not exist.
    pub fn procs(&self, job: &str) -> Vec<u32> {
        read_pids(&self.dir(job).join("cgroup.procs"))
    }

    /// Sends `sig` to every process in `job`'s cgroup for which `skip` is false; says
    /// how many were sent it.
    pub fn signal(&self, job: &str, sig: Signal, skip: impl Fn(u32) -> bool) -> usize {
        let mut n = 0;
        for pid in self.procs(job) {
            if !skip(pid) {
                super::signal_pid(pid, sig);
                n += 1;
            }
        }
        n
    }

    /// Kills every process in `job`'s cgroup (and in any cgroup a process made below
    /// it): `cgroup.kill`, or SIGKILL to each where the kernel has none.
    pub fn kill(&self, job: &str) {
        let dir = self.dir(job);
        let killed = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"));
        if killed.is_err() {
            for sub in subdirs(&dir) {
                kill_each(&sub);
            }
            kill_each(&dir);
        }
    }

    /// Removes `job`'s cgroup, and any a process made below it, if they are empty:
    /// whether none is left.
    pub fn remove(&self, job: &str) -> bool {
        let mut queue = lock(&self.ahead);
        queue.retain(|j| j != job);
        let gone = remove_tree(&self.dir(job));
        drop(queue);
        gone
    }

    /// What `job`'s cgroup says it uses.
    pub fn usage(&self, job: &str) -> Usage {
        let dir = self.dir(job);
        let cpu_secs = std::fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|s| usage_usec(&s))
            .map(|us| us as f64 / 1e6);
        let memory_bytes = if self.memory.load(Ordering::Relaxed) {
            std::fs::read_to_string(dir.join("memory.current"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        } else {
            None
        };
        Usage {
            cpu_secs,
            memory_bytes,
        }
    }

    /// At the daemon's start: removes the empty cgroups a daemon before left, and says
    /// which jobs' still hold processes (with how many).
    pub fn sweep(&self) -> Vec<(String, usize)> {
        let mut held = Vec::new();
        for dir in subdirs(&self.base) {
            if remove_tree(&dir) {
                continue;
            }
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".job").to_string())
                .unwrap_or_default();
            held.push((name, read_pids(&dir.join("cgroup.procs")).len()));
        }
        held
    }

    /// At the daemon's exit: removes every empty job cgroup and then, if it is empty,
    /// the daemon's directory; says whether it is gone.
    pub fn remove_all(&self) -> bool {
        let mut queue = lock(&self.ahead);
        queue.clear();
        for dir in subdirs(&self.base) {
            remove_tree(&dir);
        }
        drop(queue);
        matches!(std::fs::remove_dir(&self.base), Ok(())) || !self.base.exists()
    }
}

/// The list of cgroups to make ahead: a panic while it was held left it usable.
fn lock(ahead: &Mutex<VecDeque<String>>) -> MutexGuard<'_, VecDeque<String>> {
    ahead.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cgroup directory name of a job. Job names are letters, digits, `-`, `_`, `.`
/// and `@`, never starting with `.` (see [`crate::config::valid_name`]), so each is a
/// safe path component as it is; the suffix keeps it apart from interface files.
pub fn dir_name(job: &str) -> String {
    format!("{job}.job")
}

/// The name of a daemon's directory of job cgroups: `guardian@` and its state
/// directory, `/` written as `-` and any byte other than a letter, digit, `_` or `.`
/// as `%XX`; a very long one is cut and ends with a hash of the whole.
pub fn instance_name(state_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = state_dir.as_os_str().as_bytes();
    let mut out = String::from("guardian@");
    let trimmed: &[u8] = {
        let mut b = bytes;
        while let [b'/', rest @ ..] = b {
            b = rest;
        }
        b
    };
    for &c in trimmed {
        match c {
            b'/' => out.push('-'),
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => out.push(c as char),
            c => out.push_str(&format!("%{c:02X}")),
        }
    }
    const MAX: usize = 200;
    if out.len() > MAX {
        // FNV-1a: stable across builds, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &c in bytes {
            h ^= u64::from(c);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.truncate(MAX - 17);
        out.push_str(&format!("-{h:016x}"));
    }
    out
}

/// Whether the children of the cgroup `dir` have the memory controller.
fn memory_enabled(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.subtree_control")).is_ok_and(|s| names_memory(&s))
}

/// Whether a `cgroup.subtree_control` text (controllers apart by spaces) names `memory`.
fn names_memory(subtree_control: &str) -> bool {
    subtree_control
        .split_ascii_whitespace()
        .any(|c| c == "memory")
}

/// The mount point of the first cgroup v2 hierarchy in a mountinfo text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(point)))
    })
}

/// The cgroup v2 path in a `/proc/PID/cgroup` text (`0::/PATH`).
pub fn own_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end_matches(" (deleted)").to_string())
        .filter(|p| p.starts_with('/'))
}

/// mountinfo writes space, tab, newline and backslash in paths as `\NNN` (octal).
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kill_each(dir: &Path) {
    for pid in read_pids(&dir.join("cgroup.procs")) {
        super::signal_pid(pid, Signal::SIGKILL);
    }
}

/// Every cgroup below `dir`, deepest first.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0u32)];
    while let Some((d, depth)) = stack.pop() {
        // The kernel limits the depth of a hierarchy too; this bounds the walk.
        if depth >= 32 {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                out.push(p.clone());
                stack.push((p, depth + 1));
            }
        }
    }
    // A child's path is longer than its parent's: longest first removes children first.
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out
}

/// Removes `dir` and the cgroups below it where they are empty: whether `dir` is gone.
fn remove_tree(dir: &Path) -> bool {
    for sub in subdirs(dir) {
        let _ = std::fs::remove_dir(sub);
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_only_where_subtree_control_names_it() {
        assert!(names_memory("cpuset cpu io memory pids\n"));
        assert!(names_memory("memory"));
        assert!(!names_memory("cpu io pids\n"));
        assert!(!names_memory("hugetlb rdma misc\n"));
        assert!(!names_memory(""));
    }

    /// Where this host lets the test make cgroups: a job's memory is read exactly when
    /// the kernel gave its cgroup a `memory.current`.
    #[test]
    fn memory_read_exactly_where_the_kernel_counts_it() {
        let state = std::env::temp_dir().join(format!("guardian-cgmem-{}", std::process::id()));
        let cg = match Cgroups::open(&state) {
            Ok(cg) => cg,
            Err(e) => {
                eprintln!("no cgroups here ({e}): nothing to compare");
                return;
            }
        };
        let fd = cg.join_handle("m", false).expect("job cgroup made");
        drop(fd);
        let has_file = cg.dir("m").join("memory.current").exists();
        assert_eq!(cg.usage("m").memory_bytes.is_some(), has_file);
        assert!(cg.usage("m").cpu_secs.is_some());
        assert!(cg.remove("m"));
        assert!(cg.remove_all());
    }

    /// Where this host lets the test make cgroups: 50 made ahead, in order, one taken by
    /// its job before the thread came to it, one removed and so never made.
    #[test]
    fn cgroups_are_made_ahead_and_a_removed_one_is_not() {
        let state = std::env::temp_dir().join(format!("guardian-cgahead-{}", std::process::id()));
        let cg = match Cgroups::open(&state) {
            Ok(cg) => cg,
            Err(e) => {
                eprintln!("no cgroups here ({e}): nothing to make");
                return;
            }
        };
        let names: Vec<String> = (0..50).map(|i| format!("j{i:02}")).collect();
        cg.make_ahead(names.clone());
        // The last job gets ahead of the thread: it makes its own.
        let last = cg.join_handle("j49", false).expect("made by its job");
        // Taken off the list (or removed after it was made): either way not left.
        assert!(cg.remove("j30"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !lock(&cg.ahead).is_empty() {
            assert!(std::time::Instant::now() < deadline, "cgroups not made");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for name in names.iter().filter(|n| *n != "j30") {
            assert!(cg.dir(name).join("cgroup.procs").exists(), "{name}");
        }
        assert!(
            !cg.dir("j30").exists(),
            "a removed job's cgroup is not made"
        );
        // A job whose cgroup was made ahead finds it; one removed makes it again.
        let first = cg.join_handle("j00", false).expect("made ahead");
        let again = cg.join_handle("j30", false).expect("made again by its job");
        assert!(cg.dir("j30").exists());
        drop((first, again, last));
        for name in &names {
            assert!(cg.remove(name), "{name}");
        }
        assert!(cg.remove_all());
    }

    #[test]
    fn finds_the_cgroup2_mount_and_own_cgroup() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/uni fied"))
        );
        assert_eq!(cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/x rw\n"), None);
        assert_eq!(cgroup2_mount("garbage\n\\\n - \n"), None);
        let own = "4:memory:/x\n0::/system.slice/guardian.service\n";
        assert_eq!(
            own_cgroup(own).as_deref(),
            Some("/system.slice/guardian.service")
        );
        assert_eq!(own_cgroup("1:cpu:/\n"), None);
        assert_eq!(unescape_octal("a\\\\b\\0"), "a\\\\b\\0");
    }

    #[test]
    fn instance_names_are_one_safe_component() {
        assert_eq!(
            instance_name(Path::new("/var/lib/guardian")),
            "guardian@var-lib-guardian"
        );
        assert_eq!(
            instance_name(Path::new("/tmp/a b/st@te")),
            "guardian@tmp-a%20b-st%40te"
        );
        let long = PathBuf::from(format!("/{}", "x".repeat(400)));
        let name = instance_name(&long);
        assert_eq!(name.len(), 200);
        assert_ne!(
            name,
            instance_name(&PathBuf::from(format!("/{}", "x".repeat(401))))
        );
        assert!(!name.contains('/'));
        assert_eq!(dir_name("web@1"), "web@1.job");
    }

    #[test]
    fn reads_usage_usec() {
        assert_eq!(
            usage_usec("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n"),
            Some(1234)
        );
        assert_eq!(usage_usec("user_usec 1\n"), None);
    }
}
