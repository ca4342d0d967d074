//! Starting one process of a job: its own process group, a clean environment, the job's
//! user, group, umask, nice value and limits, stdin from /dev/null and output wherever
//! the caller says. The child is never waited for here: the reaper owns `wait`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::config::{JobSpec, Program};

use super::env::environment;

/// Where a spawned process's stdout and stderr go.
pub enum Output {
    /// Both into this descriptor of a job's log pipe (read-write, so that the job itself
    /// holds a reader and never gets `SIGPIPE` while no daemon reads), which the spawn
    /// consumes: the daemon's copy is closed as soon as the child has it.
    Log(OwnedFd),
    /// Into pipes the caller reads (custom commands).
    Capture,
}

pub struct Spawned {
    pub pid: u32,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// The soft limit on open files that guardian found at start, before raising its own:
/// children get it back unless their job sets `nofile`.
static INHERITED_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises guardian's own open-file limit to the hard limit when `needed` descriptors
/// would not fit under the soft one (each job holds a pipe and a log file), remembering
/// the old limit for children.
pub fn raise_nofile(needed: u64) {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < needed
        && soft < hard
    {
        let _ = INHERITED_NOFILE.set((soft, hard));
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

pub fn spawn(
    spec: &JobSpec,
    program: &Program,
    extra_env: &[(&str, &str)],
    output: Output,
) -> io::Result<Spawned> {
    spawn_into(spec, program, extra_env, output, None)
}

/// [`spawn`], and the child joins the cgroup whose `cgroup.procs` is `cgroup` (see
/// [`super::cgroup::Cgroups::join_handle`]) before it execs, so that nothing it forks
/// is ever outside. A child that cannot join fails to spawn.
pub fn spawn_into(
    spec: &JobSpec,
    program: &Program,
    extra_env: &[(&str, &str)],
    output: Output,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Spawned> {
    let (path, argv) = program.command_line();
    let mut cmd = Command::new(&path);
    if let Some(arg0) = argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(argv.iter().skip(1));
    cmd.env_clear();
    cmd.envs(environment(spec));
    cmd.envs(extra_env.iter().copied());
    cmd.current_dir(&spec.chdir);
    cmd.stdin(Stdio::null());
    match output {
        Output::Log(fd) => {
            cmd.stdout(Stdio::from(fd.try_clone()?));
            cmd.stderr(Stdio::from(fd));
        }
        Output::Capture => {
            cmd.stdout(Stdio::piped());
            cmd.stderr(Stdio::piped());
        }
    }
    cmd.process_group(0);

    // Everything the child needs is computed here, in the parent: between fork and exec
    // only async-signal-safe calls are allowed, so no allocation and no lookups there.
    let user = spec.user.as_ref();
    let ids = user.map(|u| {
        let gid = spec.group.as_ref().map_or(u.gid, |(_, g)| *g);
        let groups: Vec<libc::gid_t> = u.groups.clone();
        (u.uid, gid, groups)
    });
    let group_only = match (user, &spec.group) {
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
    let nice = spec.nice;
    let umask = spec.umask;
    let join = cgroup.map(|fd| fd.as_raw_fd());
    if join.is_none()
        && ids.is_none()
        && group_only.is_none()
        && limits.is_empty()
        && nice.is_none()
        && umask.is_none()
    {
        // Nothing to do between fork and exec: std can then use posix_spawn (vfork),
        // which does not copy guardian's page tables and starts a job faster.
        return finish(cmd);
    }

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

    finish(cmd)
}

fn finish(mut cmd: Command) -> io::Result<Spawned> {
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Dropping a std Child neither waits nor kills: the reaper collects it.
    drop(child);
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}
