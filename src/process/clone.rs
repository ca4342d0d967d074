//! The pieces of a spawn that shares the daemon's memory and descriptor table until the
//! child execs, instead of copying them as a fork does: clone3 with `CLONE_VM |
//! CLONE_VFORK` on a stack of the child's own, and two descriptor slots at the bottom
//! of the daemon's table through which the child gets its standard input, output and
//! error.
//!
//! Why: a fork copies the daemon's page tables and its whole descriptor table (two
//! thousand jobs hold two thousand pipes), and the child closes every copied descriptor
//! again at exec. With `CLONE_FILES` the child starts on the daemon's table, and its
//! first call, `close_range(cutoff, ~0, CLOSE_RANGE_UNSHARE)`, gives it a table of its
//! own with only the descriptors below `cutoff`: the standard ones and the slots, which
//! the daemon reserves before it opens anything per job. The kernel copies none of the
//! rest, and exec has nothing left to close.
//!
//! The child runs on the daemon's memory while the spawning thread waits, so it may only
//! make system calls on data the parent prepared: see [`super::spawn`]'s `exec_child`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The child's stack: enough for `exec_child`'s system calls and glibc's thin wrappers
/// of them; the kernel gives it pages only as they are touched.
const STACK_SIZE: usize = 128 * 1024;

/// Two descriptors of `/dev/null`, opened before any job's pipe so that they are low in
/// the table. While a spawn holds them, the second is made the child's standard output
/// and error (the first stays `/dev/null`, its standard input); after it, it is
/// `/dev/null` again, so that it keeps no pipe open.
pub struct Slots {
    null: OwnedFd,
    out: OwnedFd,
    /// One more than the highest slot: what the child keeps of the daemon's table.
    cutoff: RawFd,
}

static SLOTS: OnceLock<Mutex<Slots>> = OnceLock::new();

/// The slots' cutoff, once they are reserved (3 before): a descriptor the daemon keeps
/// for long at or above it is never in a child's table, even for the instant between
/// the child's birth and its `close_range`.
static CUTOFF: AtomicI32 = AtomicI32::new(3);

/// The lowest descriptor a child never keeps: see [`CUTOFF`].
pub fn cutoff() -> RawFd {
    CUTOFF.load(Ordering::Relaxed)
}

/// Opens the slots, once per process; called by the daemon before it opens the jobs'
/// pipes. Without them (not called, or `/dev/null` cannot be opened) a spawn still
/// shares the daemon's memory but copies its descriptor table.
pub fn reserve_slots() {
    if SLOTS.get().is_some() {
        return;
    }
    let open = || -> io::Result<OwnedFd> {
        let null = std::fs::File::open("/dev/null")?;
        // Above the standard descriptors even when one of them is closed.
        let fd = nix::fcntl::fcntl(&null, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
        // SAFETY: fcntl just made this descriptor and nothing else owns it.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    };
    match (open(), open()) {
        (Ok(null), Ok(out)) => {
            let cutoff = null.as_raw_fd().max(out.as_raw_fd()).saturating_add(1);
            CUTOFF.store(cutoff.max(3), Ordering::Relaxed);
            let _ = SLOTS.set(Mutex::new(Slots { null, out, cutoff }));
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!("cannot open /dev/null for the spawn's slots: {e}");
        }
    }
}

/// The slots, held for one spawn: [`Held::fill`] points them at the child's output,
/// dropping it points them back at `/dev/null`.
pub struct Held {
    slots: MutexGuard<'static, Slots>,
}

/// The slots, if reserved; a spawn on another thread waits for them.
pub fn hold() -> Option<Held> {
    let slots = SLOTS.get()?.lock().ok()?;
    Some(Held { slots })
}

impl Held {
    /// Points the output slot at `out`, the child's stdout and stderr; returns the
    /// descriptors that become its 0, 1 and 2, and the cutoff.
    pub fn fill(&mut self, out: RawFd) -> io::Result<([RawFd; 3], RawFd)> {
        let s = &*self.slots;
        dup_onto(out, s.out.as_raw_fd())?;
        Ok((
            [s.null.as_raw_fd(), s.out.as_raw_fd(), s.out.as_raw_fd()],
            s.cutoff,
        ))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let s = &*self.slots;
        if let Err(e) = dup_onto(s.null.as_raw_fd(), s.out.as_raw_fd()) {
            tracing::warn!("cannot reset a spawn slot: {e}");
        }
    }
}

/// `dup3(from, onto, O_CLOEXEC)`: `onto` is one of the slots, owned by [`Slots`].
fn dup_onto(from: RawFd, onto: RawFd) -> io::Result<()> {
    // SAFETY: both are open descriptors; `onto` is a slot that only this module uses,
    // replaced atomically.
    if unsafe { libc::dup3(from, onto, libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A stack for the child: mapped on demand, a guard page below it, unmapped on drop
/// (after the child has exec'd or exited, when the spawn resumes).
pub struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping belongs to the Stack alone; whoever holds it may use it from
// any thread.
unsafe impl Send for Stack {}

/// The stack of the last spawn, kept for the next: one less mmap, mprotect and munmap
/// a spawn, and its pages stay mapped (a probe program runs every few seconds).
static SPARE: Mutex<Option<Stack>> = Mutex::new(None);

impl Stack {
    /// The spare stack, or a new one if another spawn holds it (or none was kept).
    pub fn take() -> io::Result<Stack> {
        match SPARE.lock().ok().and_then(|mut s| s.take()) {
            Some(stack) => Ok(stack),
            None => Stack::new(),
        }
    }

    /// Keeps this stack for the next spawn (once its child runs on it no more: it has
    /// exec'd or exited, which the spawn waited for). A second one is unmapped.
    pub fn give_back(self) {
        if let Ok(mut s) = SPARE.lock()
            && s.is_none()
        {
            *s = Some(self);
        }
    }

    pub fn new() -> io::Result<Stack> {
        let page = 4096usize;
        let len = STACK_SIZE.saturating_add(page);
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The lowest address clone3 may use, and the size above it (the guard page
    /// excluded).
    pub fn bounds(&self) -> (u64, u64) {
        let page = 4096u64;
        (
            (self.base as u64).saturating_add(page),
            (self.len as u64).saturating_sub(page),
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the child no longer runs on it.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// Whether [`clone3_on_stack`] exists on this architecture.
pub const ON_STACK: bool = cfg!(target_arch = "x86_64");

/// clone3 with `args` (whose `stack` and `stack_size` must be set); the child runs
/// `child(arg)` on that stack and never returns here. Returns what the system call
/// returns in the parent: the child's pid, or a negative errno.
///
/// # Safety
///
/// `args` must describe a valid stack; with `CLONE_VM` the child shares this memory, so
/// `child` must make only async-signal-safe calls, and end in execve or `_exit`.
#[cfg(target_arch = "x86_64")]
pub unsafe fn clone3_on_stack(
    args: *mut libc::c_void,
    size: usize,
    child: unsafe extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: the raw clone3 system call. In the parent it returns as any system call
    // (rcx and r11 clobbered). The child starts with the parent's registers on the new
    // stack (rsp = stack + stack_size, 16-byte aligned: the mapping is page-aligned),
    // clears the frame pointer and calls `child(arg)`, which does not return.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args,
            in("rsi") size,
            in("r12") arg,
            in("r13") child,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Elsewhere the spawn forks: see [`ON_STACK`].
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn clone3_on_stack(
    _args: *mut libc::c_void,
    _size: usize,
    _child: unsafe extern "C" fn(*mut libc::c_void) -> !,
    _arg: *mut libc::c_void,
) -> i64 {
    -i64::from(libc::ENOSYS)
}
