//! Starting one process of a job: its own process group, a clean environment, the job's
//! user, group, umask, nice value and limits, stdin from /dev/null and output wherever
//! the caller says. The child is never waited for here: the reaper owns `wait`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::config::{JobSpec, Program};

use super::clone;
use super::env::environment;

/// Where a spawned process's stdout and stderr go.
pub enum Output {
    /// Both into this descriptor of a job's log pipe (read-write, so that the job itself
    /// holds a reader and never gets `SIGPIPE` while no daemon reads), which the spawn
    /// consumes: the daemon's copy is closed as soon as the child has it.
    Log(OwnedFd),
    /// Both into one pipe the caller reads (probe programs, custom commands): what the
    /// program writes to either, in the order it writes it.
    Capture,
}

pub struct Spawned {
    pub pid: u32,
    /// With [`Output::Capture`]: the pipe's read end, non-blocking and close-on-exec.
    pub output: Option<OwnedFd>,
}

/// The soft limit on open files that guardian found at start, before raising its own:
/// children get it back unless their job sets `nofile`.
static INHERITED_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises guardian's own open-file limit to the hard limit when `needed` descriptors
/// would not fit under the soft one (each job holds a pipe, a log file and its main's
/// `/proc/PID/stat`), remembering the old limit for children. Whether `needed` fits
/// under the soft limit now.
pub fn raise_nofile(needed: u64) -> bool {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return false;
    };
    if soft >= needed {
        return true;
    }
    if soft < hard {
        let _ = INHERITED_NOFILE.set((soft, hard));
        if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            return hard >= needed;
        }
    }
    false
}

pub fn spawn(
    spec: &JobSpec,
    program: &Program,
    extra_env: &[(&str, &str)],
    output: Output,
) -> io::Result<Spawned> {
    spawn_into(spec, program, extra_env, output, None)
}

/// [`spawn`], and the child is in the cgroup whose directory `cgroup` is (see
/// [`super::cgroup::Cgroups::join_handle`]) before it execs, so that nothing it forks
/// is ever outside: born there with clone3 and `CLONE_INTO_CGROUP` (see
/// [`born_into`]), or, where the kernel refuses that, moved there between fork and
/// exec by writing `0` to its `cgroup.procs`. A child that cannot join fails to spawn.
pub fn spawn_into(
    spec: &JobSpec,
    program: &Program,
    extra_env: &[(&str, &str)],
    output: Output,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Spawned> {
    let (path, argv) = program.command_line();
    let child = child_of(spec);
    let direct = path.as_os_str().as_bytes().contains(&b'/');
    let prepared = if direct {
        Some(prepare(&path, &argv, spec, extra_env)?)
    } else {
        None
    };
    if let Some(p) = &prepared
        && let Some(done) = try_shared(cgroup, p, &output, &child)
    {
        return done;
    }
    let mut cmd = command(&path, &argv, &spec.chdir);
    cmd.envs(environment(spec));
    cmd.envs(extra_env.iter().copied());
    let Some(dir) = cgroup else {
        return spawn_command(cmd, &child, output);
    };
    if CLONE3.load(Ordering::Relaxed) != CLONE3_REFUSED
        && let Some(p) = &prepared
    {
        match born_into(dir, p, &output, &child) {
            Ok(spawned) => {
                CLONE3.store(CLONE3_WORKS, Ordering::Relaxed);
                return Ok(spawned);
            }
            Err(Born::Refused(e)) => {
                if CLONE3.swap(CLONE3_REFUSED, Ordering::Relaxed) != CLONE3_REFUSED {
                    tracing::debug!(
                        "clone3 into a cgroup refused ({e}): a job's process joins its cgroup before exec"
                    );
                }
            }
            Err(Born::Elsewise(e)) => {
                tracing::debug!("clone3 into a cgroup failed ({e}): joining it before exec");
            }
            Err(Born::Failed(e)) => return Err(e),
        }
    }
    let reader = set_output(&mut cmd, output)?;
    // The present way: the child writes itself into the cgroup's `cgroup.procs`
    // between fork and exec (std then forks instead of using posix_spawn).
    let procs = openat_procs(dir)?;
    let out = with_pre_exec(cmd, child, Some(procs.as_raw_fd()), reader);
    drop(procs);
    out
}

/// A std `Command` for `path` with `argv` (its first word the name the program is
/// given), run in `dir` with stdin from /dev/null, in a process group of its own and
/// with an empty environment (the caller adds the variables).
fn command(path: &std::path::Path, argv: &[String], dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(path);
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(argv.iter().skip(1));
    cmd.env_clear();
    cmd.current_dir(dir);
    cmd.stdin(Stdio::null());
    cmd.process_group(0);
    cmd
}

/// Spawns `cmd` outside any cgroup of guardian's: std's way.
fn spawn_command(mut cmd: Command, child: &Child, output: Output) -> io::Result<Spawned> {
    let reader = set_output(&mut cmd, output)?;
    if child.ids.is_none()
        && child.group_only.is_none()
        && child.limits.is_empty()
        && child.nice.is_none()
        && child.umask.is_none()
    {
        // Nothing to do between fork and exec: std can then use posix_spawn (vfork),
        // which does not copy guardian's page tables and starts a job faster.
        return finish(cmd, reader);
    }
    with_pre_exec(cmd, child.clone(), None, reader)
}

/// A program's spawn made once and run many times (a probe program, at every run of
/// its check): the path, arguments, environment and directory as the C strings and
/// pointer arrays execve takes, and what the child does before it execs. Nothing of it
/// is looked up, built or allocated again per run.
pub struct Ready {
    /// None when the path has no `/`, which only std's `Command` looks up.
    prepared: Option<Prepared>,
    child: Child,
    path: PathBuf,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    job: String,
}

impl Ready {
    /// The job whose process this is.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The program's arguments, its name first.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
}

/// Makes `program`'s spawn ready as a process of the job `spec` with `extra_env` added
/// to its environment: what [`spawn`] computes at each call, computed once.
pub fn ready(spec: &JobSpec, program: &Program, extra_env: &[(&str, &str)]) -> io::Result<Ready> {
    let (path, argv) = program.command_line();
    let direct = path.as_os_str().as_bytes().contains(&b'/');
    let prepared = if direct {
        Some(prepare(&path, &argv, spec, extra_env)?)
    } else {
        None
    };
    let mut env = environment(spec);
    for &(k, v) in extra_env {
        env.push((k.to_string(), v.to_string()));
    }
    Ok(Ready {
        prepared,
        child: child_of(spec),
        path,
        argv,
        env,
        dir: spec.chdir.clone(),
        job: spec.name.clone(),
    })
}

/// [`spawn`] of a program made [`ready`]: with clone3 and `CLONE_VM | CLONE_VFORK`
/// where it works, as a job's processes are, else std's way.
pub fn spawn_ready(r: &Ready, output: Output) -> io::Result<Spawned> {
    if let Some(p) = &r.prepared
        && let Some(done) = try_shared(None, p, &output, &r.child)
    {
        return done;
    }
    let mut cmd = command(&r.path, &r.argv, &r.dir);
    cmd.envs(r.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    spawn_command(cmd, &r.child, output)
}

/// What the child does between fork and exec for a process of the job `spec`.
fn child_of(spec: &JobSpec) -> Child {
    // Everything the child needs is computed here, in the parent: between fork and exec
    // only async-signal-safe calls are allowed, so no allocation and no lookups there.
    let user = spec.user.as_ref();
    let ids = user.map(|u| {
        let gid = spec.group.as_deref().map_or(u.gid, |(_, g)| *g);
        let groups: Vec<libc::gid_t> = u.groups.clone();
        (u.uid, gid, groups)
    });
    let group_only = match (user, spec.group.as_deref()) {
        (None, Some((_, g))) => Some(*g),
        _ => None,
    };
    let mut limits: Vec<(Resource, u64, u64)> = spec
        .limits
        .iter()
        .map(|l| {
            let inf = nix::sys::resource::RLIM_INFINITY;
            (l.resource, l.soft.unwrap_or(inf), l.hard.unwrap_or(inf))
        })
        .collect();
    if !spec
        .limits
        .iter()
        .any(|l| l.resource == Resource::RLIMIT_NOFILE)
        && let Some(&(soft, hard)) = INHERITED_NOFILE.get()
    {
        limits.push((Resource::RLIMIT_NOFILE, soft, hard));
    }
    Child {
        limits,
        nice: spec.nice,
        umask: spec.umask,
        ids,
        group_only,
    }
}

/// What the child does between fork and exec, computed in the parent.
#[derive(Clone)]
struct Child {
    limits: Vec<(Resource, u64, u64)>,
    nice: Option<i32>,
    umask: Option<u32>,
    ids: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    group_only: Option<libc::gid_t>,
}

fn with_pre_exec(
    mut cmd: Command,
    child: Child,
    join: Option<RawFd>,
    reader: Option<OwnedFd>,
) -> io::Result<Spawned> {
    let Child {
        limits,
        nice,
        umask,
        ids,
        group_only,
    } = child;
    // SAFETY: the closure runs in the child between fork and exec. It calls only
    // write, setrlimit, setpriority, umask, setgroups, setgid and setuid, all
    // async-signal-safe system calls, on data prepared above; it allocates nothing and
    // takes no lock. The cgroup's descriptor stays open in the parent until the spawn
    // returns, and is closed in the child by its exec (O_CLOEXEC).
    unsafe {
        cmd.pre_exec(move || {
            // First, while still privileged: "0" moves the writing process.
            if let Some(fd) = join
                && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(io::Error::last_os_error());
            }
            for (res, soft, hard) in &limits {
                setrlimit(*res, *soft, *hard).map_err(io::Error::from)?;
            }
            if let Some(n) = nice
                && libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some((uid, gid, groups)) = &ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(*gid) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setuid(*uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if let Some(gid) = group_only
                && libc::setgid(gid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }

    finish(cmd, reader)
}

/// Points the command's stdout and stderr where `output` says; with a capture, returns
/// the pipe's read end.
fn set_output(cmd: &mut Command, output: Output) -> io::Result<Option<OwnedFd>> {
    let (fd, reader) = match output {
        Output::Log(fd) => (fd, None),
        Output::Capture => {
            let (r, w) = capture_pipe()?;
            (w, Some(r))
        }
    };
    cmd.stdout(Stdio::from(fd.try_clone()?));
    cmd.stderr(Stdio::from(fd));
    Ok(reader)
}

fn finish(mut cmd: Command, output: Option<OwnedFd>) -> io::Result<Spawned> {
    let child = cmd.spawn()?;
    let pid = child.id();
    // Dropping a std Child neither waits nor kills: the reaper collects it. Dropping
    // the command closes the parent's copies of the child's output.
    drop(child);
    drop(cmd);
    Ok(Spawned { pid, output })
}

// ---------------------------------------------------------------- born in its cgroup

/// Whether clone3 with `CLONE_INTO_CGROUP` works here: not tried yet, works, refused
/// (no clone3, a kernel before 5.7, a seccomp filter, no cgroup v2): then every child
/// joins its cgroup between fork and exec instead, as before.
static CLONE3: AtomicU8 = AtomicU8::new(CLONE3_UNTRIED);
const CLONE3_UNTRIED: u8 = 0;
const CLONE3_WORKS: u8 = 1;
const CLONE3_REFUSED: u8 = 2;

/// `CLONE_INTO_CGROUP` (Linux 5.7): the child starts in the cgroup `CloneArgs::cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of linux/sched.h, up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

enum Born {
    /// clone3 cannot do it on this system: never try again.
    Refused(io::Error),
    /// clone3 could not put this child in this cgroup: join it the other way.
    Elsewise(io::Error),
    /// The spawn failed (the program cannot be run): as std would say it.
    Failed(io::Error),
}

/// Opens `cgroup.procs` in the cgroup directory `dir`, for writing.
fn openat_procs(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and a descriptor the caller holds open; the new
    // descriptor is owned by nothing else.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c"cgroup.procs".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// The pipe of a capture: its read end non-blocking (for the caller's event loop),
/// its write end blocking (the child's stdout and stderr); both close-on-exec.
fn capture_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = cloexec_pipe()?;
    // SAFETY: F_SETFL on a descriptor just made; O_NONBLOCK is its only status flag
    // (the access mode is not changed by F_SETFL, close-on-exec is a descriptor flag).
    if unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r, w))
}

/// A program's path, arguments, environment and directory as C strings, and the
/// pointer arrays execve takes, made in the parent before the clone.
struct Prepared {
    path: CString,
    dir: CString,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into the C strings the same value owns (their bytes are
// on the heap and never move or change while it lives) and are only read: a Prepared
// may go to and be read from any thread as its strings may.
unsafe impl Send for Prepared {}
// SAFETY: as above; nothing is written through the pointers.
unsafe impl Sync for Prepared {}

fn prepare(
    path: &std::path::Path,
    argv: &[String],
    spec: &JobSpec,
    extra_env: &[(&str, &str)],
) -> io::Result<Prepared> {
    let c_path = cstring(path.as_os_str().as_bytes())?;
    let mut c_argv = Vec::with_capacity(argv.len().max(1));
    if argv.is_empty() {
        c_argv.push(c_path.clone());
    }
    for a in argv {
        c_argv.push(cstring(a.as_bytes())?);
    }
    // As std's Command: one value per name, the last given wins, sorted by name.
    let env = environment(spec);
    let mut vars: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in &env {
        vars.insert(k, v);
    }
    for &(k, v) in extra_env {
        vars.insert(k, v);
    }
    let mut c_env = Vec::with_capacity(vars.len());
    for (k, v) in vars {
        let mut kv = Vec::with_capacity(k.len().saturating_add(v.len()).saturating_add(1));
        kv.extend_from_slice(k.as_bytes());
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        c_env.push(cstring(&kv)?);
    }
    let c_dir = cstring(spec.chdir.as_os_str().as_bytes())?;
    let argv_ptrs: Vec<*const libc::c_char> = c_argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env_ptrs: Vec<*const libc::c_char> = c_env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    Ok(Prepared {
        path: c_path,
        dir: c_dir,
        _argv: c_argv,
        _env: c_env,
        argv_ptrs,
        env_ptrs,
    })
}

/// The pipe of a captured output: the parent's read end and the child's write end.
type Captured = (OwnedFd, OwnedFd);

/// The descriptor the child makes its stdout and stderr, and the pipe of a capture.
fn output_fds(output: &Output) -> Result<(RawFd, Option<Captured>), Born> {
    Ok(match output {
        Output::Log(fd) => (fd.as_raw_fd(), None),
        Output::Capture => {
            let (r, w) = capture_pipe().map_err(Born::Failed)?;
            (w.as_raw_fd(), Some((r, w)))
        }
    })
}

/// The parent's end of a capture; the child's is closed here, it has its own.
fn reader(captured: Option<Captured>) -> Option<OwnedFd> {
    captured.map(|(r, w)| {
        drop(w);
        r
    })
}

fn clone3_error(e: io::Error) -> Born {
    match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG) => Born::Refused(e),
        Some(libc::EAGAIN | libc::ENOMEM) => Born::Failed(e),
        _ => Born::Elsewise(e),
    }
}

/// Collects a child that could not exec, as std does.
fn reap_failed(pid: libc::pid_t) {
    loop {
        // SAFETY: waits for this one child, which is ours.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
}

/// Whether the shared spawn ([`born_shared`]) works here: not tried yet, works, refused
/// (not x86_64, no clone3, a seccomp filter): then a job's process is forked as before.
static SHARED: AtomicU8 = AtomicU8::new(CLONE3_UNTRIED);

/// Whether the child may start on the daemon's descriptor table and unshare it with
/// `close_range` (Linux 5.9): cleared the first time that fails, then every child gets a
/// copy of the table.
static SHARED_FILES: AtomicBool = AtomicBool::new(true);

const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
const CLONE_FILES: u64 = libc::CLONE_FILES as u64;

/// `CLONE_CLEAR_SIGHAND` (Linux 5.5): the child starts with every handled signal back at
/// its default (ignored ones stay ignored), so that none of the daemon's handlers can
/// run in it, on the daemon's memory, and it makes no `sigaction` call for it.
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// Whether clone3 takes `CLONE_CLEAR_SIGHAND` here: cleared the first time it is refused
/// (`EINVAL`, a kernel before 5.5), then the child resets its handlers itself, one
/// `sigaction` per signal.
static CLEAR_SIGHAND: AtomicBool = AtomicBool::new(true);

/// Tries [`born_shared`] unless it is known not to work here, remembering whether it
/// does. `None`: spawn the other way.
fn try_shared(
    dir: Option<BorrowedFd<'_>>,
    prepared: &Prepared,
    output: &Output,
    child: &Child,
) -> Option<io::Result<Spawned>> {
    if !clone::ON_STACK || SHARED.load(Ordering::Relaxed) == CLONE3_REFUSED {
        return None;
    }
    match born_shared(dir, prepared, output, child) {
        Ok(spawned) => {
            SHARED.store(CLONE3_WORKS, Ordering::Relaxed);
            Some(Ok(spawned))
        }
        Err(Born::Refused(e)) => {
            if SHARED.swap(CLONE3_REFUSED, Ordering::Relaxed) != CLONE3_REFUSED {
                tracing::debug!("clone3 with CLONE_VM refused ({e}): job processes are forked");
            }
            None
        }
        Err(Born::Elsewise(e)) => {
            tracing::debug!("clone3 with CLONE_VM failed ({e}): forking this one");
            None
        }
        Err(Born::Failed(e)) => Some(Err(e)),
    }
}

/// Starts the process with clone3 and `CLONE_VM | CLONE_VFORK`: the child runs on the
/// daemon's memory, on a stack of its own (see [`clone`]), while this thread waits for
/// it to exec or exit; it is born in the cgroup `dir` if given (`CLONE_INTO_CGROUP`),
/// and with the descriptor slots reserved it starts on the daemon's descriptor table
/// and keeps only the bottom of it (`CLONE_FILES`, then `close_range` with
/// `CLOSE_RANGE_UNSHARE`). Nothing of the daemon's is copied but what the child keeps:
/// no page tables, no descriptors. What the child does is [`exec_child`]'s, as for
/// [`born_into`]; it tells how far it got and why it failed through memory both share.
fn born_shared(
    dir: Option<BorrowedFd<'_>>,
    prepared: &Prepared,
    output: &Output,
    child: &Child,
) -> Result<Spawned, Born> {
    let failed = Born::Failed;
    let (out_fd, captured) = output_fds(output)?;
    let mut held = if SHARED_FILES.load(Ordering::Relaxed) {
        clone::hold()
    } else {
        None
    };
    // Without the slots: /dev/null opened for this child, which copies the table.
    let mut null = None;
    let (fds, unshare_above) = match held.as_mut() {
        Some(h) => {
            let (slots, cutoff) = h.fill(out_fd).map_err(failed)?;
            (slots, Some(cutoff))
        }
        None => {
            let n = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open("/dev/null")
                .map_err(failed)?;
            let n = OwnedFd::from(n);
            let fds = [n.as_raw_fd(), out_fd, out_fd];
            null = Some(n);
            (fds, None)
        }
    };
    if fds.iter().any(|&fd| fd <= 2) {
        return Err(Born::Elsewise(io::Error::other(
            "a standard descriptor is closed",
        )));
    }
    let stack = clone::Stack::take().map_err(Born::Elsewise)?;
    let (stack_base, stack_size) = stack.bounds();
    let stage = AtomicI32::new(STAGE_UNBORN);
    let errno = AtomicI32::new(0);
    let ids = child
        .ids
        .as_ref()
        .map(|(uid, gid, groups)| (*uid, *gid, groups.as_slice()));
    let mut work = ExecChild {
        path: prepared.path.as_ptr(),
        argv: prepared.argv_ptrs.as_ptr(),
        envp: prepared.env_ptrs.as_ptr(),
        dir: prepared.dir.as_ptr(),
        fds,
        report: Report::Shared {
            stage: &stage,
            errno: &errno,
        },
        unshare_above,
        reset_handlers: false,
        limits: &child.limits,
        nice: child.nice,
        umask: child.umask,
        ids,
        group_only: child.group_only,
    };
    let mut flags = CLONE_VM | CLONE_VFORK;
    if unshare_above.is_some() {
        flags |= CLONE_FILES;
    }
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack_base,
        stack_size,
        ..CloneArgs::default()
    };
    if let Some(d) = dir {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = d.as_raw_fd() as u64;
    }
    let clear = CLEAR_SIGHAND.load(Ordering::Relaxed);
    if clear {
        args.flags |= CLONE_CLEAR_SIGHAND;
    }
    work.reset_handlers = !clear;
    let mut ret = clone_shared(&mut args, &mut work);
    if clear && ret == -i64::from(libc::EINVAL) {
        // Perhaps the flag is what was refused (a kernel before 5.5): once more
        // without it, the child resetting its handlers itself.
        args.flags &= !CLONE_CLEAR_SIGHAND;
        work.reset_handlers = true;
        ret = clone_shared(&mut args, &mut work);
        if ret >= 0 {
            CLEAR_SIGHAND.store(false, Ordering::Relaxed);
        }
    }
    stack.give_back();
    drop(held);
    drop(null);
    if ret < 0 {
        let e = i32::try_from(ret.saturating_neg()).unwrap_or(libc::EINVAL);
        return Err(clone3_error(io::Error::from_raw_os_error(e)));
    }
    let Ok(pid) = libc::pid_t::try_from(ret) else {
        return Err(Born::Failed(io::Error::other("clone3 returned no pid")));
    };
    let output = reader(captured);
    let stage = stage.load(Ordering::Acquire);
    let errno = errno.load(Ordering::Acquire);
    if errno == 0 && stage != STAGE_UNBORN {
        return Ok(Spawned {
            pid: pid as u32,
            output,
        });
    }
    reap_failed(pid);
    if stage == STAGE_UNBORN {
        // Killed before it ran (see `born_into`).
        return Err(Born::Elsewise(io::Error::other(
            "the child was killed before it ran",
        )));
    }
    let e = io::Error::from_raw_os_error(errno);
    if stage == STAGE_RUNNING && unshare_above.is_some() {
        // close_range could not unshare the table (a kernel before 5.9).
        SHARED_FILES.store(false, Ordering::Relaxed);
        return Err(Born::Elsewise(e));
    }
    Err(Born::Failed(e))
}

/// One clone3 of [`born_shared`] with `args`, the child running `shared_child(work)`:
/// the child's pid, or minus the errno.
fn clone_shared(args: &mut CloneArgs, work: &mut ExecChild<'_>) -> i64 {
    // No handler of the daemon's may run in the child, on the daemon's memory: every
    // signal is blocked from here until the child's handlers are at their defaults (it
    // inherits this mask), and in this thread until the child has exec'd.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigset_t values owned here.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: clone3 with CLONE_VM | CLONE_VFORK on the stack just mapped: the child
    // runs `shared_child(&work)`, which makes only async-signal-safe system calls on
    // the data above (alive until this thread resumes, which is after the child's
    // execve or exit), allocates nothing, takes no lock, and ends in execve or _exit.
    let ret = unsafe {
        clone::clone3_on_stack(
            (args as *mut CloneArgs).cast(),
            std::mem::size_of::<CloneArgs>(),
            shared_child,
            (work as *mut ExecChild<'_>).cast(),
        )
    };
    // SAFETY: the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    ret
}

/// The child of [`born_shared`], on its own stack.
///
/// # Safety
///
/// `arg` is the parent's `ExecChild`, valid while the parent waits.
unsafe extern "C" fn shared_child(arg: *mut libc::c_void) -> ! {
    // SAFETY: see above.
    unsafe {
        let work = &*(arg as *const ExecChild<'_>);
        exec_child(work)
    }
}

/// Starts the process with clone3 and `CLONE_INTO_CGROUP`, so that it is born in the
/// cgroup `dir` and nothing has to move it there: moving a process between cgroups
/// takes a lock whose write side waits for an RCU grace period, which made a start of
/// many jobs with cgroups take a second longer. Everything else is what
/// [`with_pre_exec`] and std's `Command` do: stdin from /dev/null, the output, the
/// directory, a process group of its own, an empty signal mask and SIGPIPE back to
/// its default, the limits, nice value, umask and ids, and an error from `execve`
/// handed back through a pipe. A fork: where [`born_shared`] cannot be used.
fn born_into(
    dir: BorrowedFd<'_>,
    prepared: &Prepared,
    output: &Output,
    child: &Child,
) -> Result<Spawned, Born> {
    let failed = Born::Failed;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(failed)?;
    let null = OwnedFd::from(null);
    let (out_fd, captured) = output_fds(output)?;
    let (report_r, report_w) = cloexec_pipe().map_err(failed)?;
    let in_fd = null.as_raw_fd();
    let report = report_w.as_raw_fd();
    if [in_fd, out_fd, report].iter().any(|&fd| fd <= 2) {
        // guardian's own stdin, stdout or stderr is closed: dup2 onto 0, 1 and 2 would
        // need care that std's Command takes.
        return Err(Born::Elsewise(io::Error::other(
            "a standard descriptor is closed",
        )));
    }
    let ids = child
        .ids
        .as_ref()
        .map(|(uid, gid, groups)| (*uid, *gid, groups.as_slice()));

    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and without a stack of its own is fork: the
    // child gets a copy of this thread's memory, and runs `exec_child`, which makes
    // only async-signal-safe system calls on the data prepared above, allocates
    // nothing, takes no lock, and ends in execve or _exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: see above; this is the child.
        unsafe {
            exec_child(&ExecChild {
                path: prepared.path.as_ptr(),
                argv: prepared.argv_ptrs.as_ptr(),
                envp: prepared.env_ptrs.as_ptr(),
                dir: prepared.dir.as_ptr(),
                fds: [in_fd, out_fd, out_fd],
                report: Report::Pipe(report),
                unshare_above: None,
                reset_handlers: false,
                limits: &child.limits,
                nice: child.nice,
                umask: child.umask,
                ids,
                group_only: child.group_only,
            })
        }
    }
    if ret < 0 {
        return Err(clone3_error(io::Error::last_os_error()));
    }
    let pid = ret as libc::pid_t;
    drop(report_w);
    drop(null);
    let output = reader(captured);
    // The child writes one byte as soon as it runs; then the report pipe is closed by
    // a successful exec, or a failed step writes its errno into it first.
    let mut report = [0u8; 5];
    let mut got = 0usize;
    let mut report_r = std::fs::File::from(report_r);
    while got < report.len() {
        match report_r.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Born::Failed(e)),
        }
    }
    if got == 1 {
        return Ok(Spawned {
            pid: pid as u32,
            output,
        });
    }
    reap_failed(pid);
    if got == 0 {
        // It never ran: killed at birth. Linux 6.18 takes a child cloned into a cgroup
        // that was ever killed through `cgroup.kill` for one born during that kill
        // (it compares the kill count of the parent's cgroup with the target's).
        return Err(Born::Elsewise(io::Error::other(
            "the child was killed before it ran",
        )));
    }
    let Some(errno) = report.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return Err(Born::Failed(io::Error::other(
            "the child's report of its failure was cut short",
        )));
    };
    if got < report.len() {
        return Err(Born::Failed(io::Error::other(
            "the child's report of its failure was cut short",
        )));
    }
    Err(Born::Failed(io::Error::from_raw_os_error(
        i32::from_ne_bytes(errno),
    )))
}

/// How far a child of [`born_shared`] got: not at all (killed at birth), running, its
/// descriptor table its own.
const STAGE_UNBORN: i32 = 0;
const STAGE_RUNNING: i32 = 1;
const STAGE_UNSHARED: i32 = 2;

/// How the child tells the parent that it runs and why it failed.
enum Report<'a> {
    /// A pipe (a fork): one byte when it runs, then the errno of a failed step; a
    /// successful exec closes it.
    Pipe(RawFd),
    /// Memory shared with the parent (`CLONE_VM`), read once the parent resumes.
    Shared {
        stage: &'a AtomicI32,
        errno: &'a AtomicI32,
    },
}

/// What [`exec_child`] works from: pointers into the parent's data, copied into the
/// child with the rest of its memory (a fork) or shared with it (`CLONE_VM`).
struct ExecChild<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    dir: *const libc::c_char,
    fds: [RawFd; 3],
    report: Report<'a>,
    /// The child starts on the daemon's descriptor table (`CLONE_FILES`) and keeps of it
    /// only the descriptors below this one.
    unshare_above: Option<RawFd>,
    /// The child shares the daemon's memory and was not cloned with
    /// `CLONE_CLEAR_SIGHAND`: it puts every handled signal back to its default itself,
    /// before the mask is cleared.
    reset_handlers: bool,
    limits: &'a [(Resource, u64, u64)],
    nice: Option<i32>,
    umask: Option<u32>,
    ids: Option<(libc::uid_t, libc::gid_t, &'a [libc::gid_t])>,
    group_only: Option<libc::gid_t>,
}

/// The child, between clone3 and execve. The ids are set with the raw system calls:
/// glibc's setuid would signal every thread of the parent, which the child does not
/// have.
///
/// # Safety
///
/// Only in the child of clone3, with pointers that are valid there.
unsafe fn exec_child(c: &ExecChild<'_>) -> ! {
    // SAFETY: all of it is system calls on valid pointers and descriptors; see the
    // caller.
    unsafe {
        let fail = || -> ! {
            let errno = *libc::__errno_location();
            match &c.report {
                Report::Pipe(fd) => {
                    let bytes = errno.to_ne_bytes();
                    libc::write(*fd, bytes.as_ptr().cast(), bytes.len());
                }
                Report::Shared { errno: e, .. } => e.store(errno.max(1), Ordering::Release),
            }
            libc::_exit(127)
        };
        // "Running": a child killed before it gets here is told apart from one that
        // exec'd.
        match &c.report {
            Report::Pipe(fd) => {
                if libc::write(*fd, b"+".as_ptr().cast(), 1) != 1 {
                    fail();
                }
            }
            Report::Shared { stage, .. } => stage.store(STAGE_RUNNING, Ordering::Release),
        }
        if let Some(cutoff) = c.unshare_above {
            // A table of its own with the descriptors below `cutoff` only: the daemon's
            // table is neither copied nor touched. From here dup2 is the child's own.
            if libc::syscall(
                libc::SYS_close_range,
                cutoff as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_UNSHARE,
            ) != 0
            {
                fail();
            }
            if let Report::Shared { stage, .. } = &c.report {
                stage.store(STAGE_UNSHARED, Ordering::Release);
            }
        }
        if c.reset_handlers {
            // The handlers are the daemon's, on its memory: back to their defaults
            // before any signal can be delivered here (all are blocked until below).
            // Ignored signals stay ignored, as across a fork and exec. A child cloned
            // with `CLONE_CLEAR_SIGHAND` starts so, without these 64 calls.
            for sig in 1..=libc::SIGRTMAX() {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction != libc::SIG_DFL
                    && old.sa_sigaction != libc::SIG_IGN
                {
                    let mut dfl: libc::sigaction = std::mem::zeroed();
                    dfl.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(sig, &dfl, std::ptr::null_mut());
                }
            }
        }
        for (target, &fd) in c.fds.iter().enumerate() {
            if libc::dup2(fd, target as RawFd) < 0 {
                fail();
            }
        }
        if libc::chdir(c.dir) != 0 {
            fail();
        }
        if libc::setpgid(0, 0) != 0 {
            fail();
        }
        if libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR {
            fail();
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            fail();
        }
        for &(res, soft, hard) in c.limits {
            if setrlimit(res, soft, hard).is_err() {
                fail();
            }
        }
        if let Some(n) = c.nice
            && libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0
        {
            fail();
        }
        if let Some(mask) = c.umask {
            libc::umask(mask as libc::mode_t);
        }
        if let Some((uid, gid, groups)) = c.ids {
            if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
                fail();
            }
            if libc::syscall(libc::SYS_setgid, gid) != 0 {
                fail();
            }
            if libc::syscall(libc::SYS_setuid, uid) != 0 {
                fail();
            }
        } else if let Some(gid) = c.group_only
            && libc::syscall(libc::SYS_setgid, gid) != 0
        {
            fail();
        }
        libc::execve(c.path, c.argv, c.envp);
        fail()
    }
}
