//! `backlog`: the accept queues of listening TCP sockets, read from the kernel's tables.
//! It sends nothing: a server that stopped calling accept() is seen by its queue
//! filling, without a single connection from guardian.
//!
//! The tables come from sock_diag ([`crate::sockdiag`]), which gives each listener's
//! queue length and its backlog (listen(2)'s, capped by `net.core.somaxconn`). For a
//! process in another network namespace they come from `/proc/PID/net/tcp` and `tcp6`,
//! whose `rx_queue` is the queue's length but which do not show the backlog. The kernel
//! calls a queue full when it holds more than the backlog (it takes one connection past
//! it), and then drops new handshakes. Blocking: call it off the async workers.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::Outcome;

/// A `backlog` probe. Without `port`, it looks at the sockets the job's processes hold
/// (found from their file descriptors); with one, at every listener on that port.
#[derive(Debug, Clone, PartialEq)]
pub struct BacklogProbe {
    pub port: Option<u16>,
    /// Fail when a queue holds more than this many connections; None: when it is full
    /// (more than its backlog, as the kernel says).
    pub threshold: Option<u32>,
}

/// One listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// Connections waiting to be accepted.
    pub queue: u32,
    /// The most the queue is meant to hold (listen(2)'s backlog); None where the table
    /// does not show it (/proc/net/tcp).
    pub backlog: Option<u32>,
}

impl Listener {
    /// `127.0.0.1:8000`, `[::]:8000`.
    pub fn address(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => format!("{a}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
        }
    }

    /// As the kernel judges it: it drops new handshakes.
    pub fn full(&self) -> bool {
        self.backlog.is_some_and(|b| self.queue > b)
    }

    /// `6/5`, or `6/?` when the backlog is not known.
    pub fn shown(&self) -> String {
        match self.backlog {
            Some(b) => format!("{}/{b}", self.queue),
            None => format!("{}/?", self.queue),
        }
    }
}

/// The LISTEN sockets of one of /proc's `net/tcp` or `net/tcp6` tables. Lines it cannot
/// read are skipped.
pub fn parse_listeners(text: &str) -> Vec<Listener> {
    text.lines().skip(1).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Listener> {
    let mut f = line.split_ascii_whitespace();
    let _slot = f.next()?;
    let local = f.next()?;
    let _remote = f.next()?;
    let state = f.next()?;
    if state != "0A" {
        return None;
    }
    // For a listener, `tx_queue` is the send queue, not the backlog.
    let (_tx, rx) = f.next()?.split_once(':')?;
    // tr:when, retrnsmt, uid, timeout, then the inode.
    let inode = f.nth(4)?.parse().ok()?;
    let (addr, port) = local.split_once(':')?;
    Some(Listener {
        addr: parse_addr(addr)?,
        port: u16::from_str_radix(port, 16).ok()?,
        inode,
        queue: u32::from_str_radix(rx, 16).ok()?,
        backlog: None,
    })
}

/// An address as the kernel prints it: each 32-bit word in the host's byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(w, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The inodes of the sockets `pid` has open (`/proc/PID/fd/N -> socket:[INODE]`).
pub fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        if let Ok(target) = std::fs::read_link(e.path())
            && let Some(t) = target.to_str()
            && let Some(n) = t.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']'))
            && let Ok(inode) = n.parse()
        {
            out.insert(inode);
        }
    }
    out
}

/// Whether `pid` is in the daemon's network namespace (where sock_diag looks).
fn same_netns(pid: u32) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    match (ns(&pid.to_string()), ns("self")) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Every LISTEN TCP socket in the network namespace of `pid` (the daemon's own with
/// None): from sock_diag where it can, else from /proc; an error when neither answers.
pub fn listeners_in(pid: Option<u32>) -> Result<Vec<Listener>, String> {
    if pid.is_none_or(same_netns)
        && let Ok(all) = crate::sockdiag::tcp_listeners()
    {
        return Ok(all
            .into_iter()
            .filter_map(|l| {
                let (addr, port) = l.addr?;
                Some(Listener {
                    addr,
                    port,
                    inode: l.inode,
                    queue: l.queue,
                    backlog: Some(l.backlog),
                })
            })
            .collect());
    }
    proc_listeners(pid)
}

/// The LISTEN TCP sockets of /proc's tables in the namespace of `pid` (no backlogs).
pub fn proc_listeners(pid: Option<u32>) -> Result<Vec<Listener>, String> {
    let base = match pid {
        Some(p) => format!("/proc/{p}/net"),
        None => "/proc/net".to_string(),
    };
    let mut out = Vec::new();
    let mut read_any = false;
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("{base}/{table}")) {
            read_any = true;
            out.extend(parse_listeners(&text));
        }
    }
    if read_any {
        Ok(out)
    } else {
        Err(format!("cannot read {base}/tcp"))
    }
}

/// The listening sockets among those `pids` hold, in the network namespace of the
/// first (each socket once).
pub fn listeners_of(pids: &[u32]) -> Result<Vec<Listener>, String> {
    let Some(first) = pids.first() else {
        return Ok(Vec::new());
    };
    let mut inodes = BTreeSet::new();
    for pid in pids {
        inodes.extend(socket_inodes(*pid));
    }
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut all = listeners_in(Some(*first))?;
    all.retain(|l| inodes.contains(&l.inode));
    Ok(all)
}

impl BacklogProbe {
    pub fn describe(&self) -> String {
        match self.port {
            Some(p) => format!("backlog port {p}"),
            None => "backlog of the job's listening sockets".to_string(),
        }
    }

    /// One look at the queues. `pid` is the job's main process.
    pub fn check(&self, pid: Option<u32>, start: Instant) -> Outcome {
        let found = match (self.port, pid) {
            (Some(port), _) => listeners_in(pid).map(|l| {
                l.iter()
                    .filter(|l| l.port == port)
                    .map(Queue::from)
                    .collect()
            }),
            (None, Some(pid)) => job_queues(pid),
            (None, None) => Err("the job has no main process to find its sockets from".into()),
        };
        let listeners = match found {
            Ok(l) => l,
            Err(e) => return Outcome::fail(format!("{}: {e}", self.describe()), start.elapsed()),
        };
        if listeners.is_empty() {
            let what = match self.port {
                Some(p) => format!("no socket listens on port {p}"),
                None => "the job's processes hold no listening socket".into(),
            };
            return Outcome::fail(format!("{}: {what}", self.describe()), start.elapsed());
        }
        // The socket nearest its limit speaks for all.
        let over = |l: &Queue| match self.threshold {
            Some(t) => l.queue > t,
            None => l.backlog.is_some_and(|b| l.queue > b),
        };
        let worst = listeners.iter().max_by_key(|l| {
            let fill = u64::from(l.queue) * 1000 / u64::from(l.backlog.unwrap_or(u32::MAX).max(1));
            (over(l), fill, l.queue)
        });
        let Some(worst) = worst else {
            return Outcome::fail(format!("{}: no socket", self.describe()), start.elapsed());
        };
        let limit = match self.threshold {
            Some(t) => format!(" (threshold {t})"),
            None => String::new(),
        };
        let unknown = if self.threshold.is_none() && worst.backlog.is_none() {
            " (its backlog is not shown in another network namespace: set `threshold`)"
        } else {
            ""
        };
        let shown = match worst.backlog {
            Some(b) => format!("{}/{b}", worst.queue),
            None => format!("{}/?", worst.queue),
        };
        let text = format!("accept queue {shown} on {}{limit}{unknown}", worst.name);
        let value = f64::from(worst.queue);
        if over(worst) {
            let why = if self.threshold.is_some() {
                "above the threshold"
            } else {
                "full: the server is not accepting"
            };
            Outcome::fail(format!("{text}: {why}"), start.elapsed()).with_value(value)
        } else {
            Outcome::pass(text, start.elapsed()).with_value(value)
        }
    }
}

/// One accept queue the probe judges: a TCP listener's or a Unix one's.
struct Queue {
    /// `127.0.0.1:8000`, `/run/app.sock`.
    name: String,
    queue: u32,
    backlog: Option<u32>,
}

impl From<&Listener> for Queue {
    fn from(l: &Listener) -> Queue {
        Queue {
            name: l.address(),
            queue: l.queue,
            backlog: l.backlog,
        }
    }
}

/// The listening sockets of the process `pid` and, when it has none, of its
/// descendants (a master that hands its socket to workers has it itself).
fn job_queues(pid: u32) -> Result<Vec<Queue>, String> {
    let own = queues_of(&[pid])?;
    if !own.is_empty() {
        return Ok(own);
    }
    let mut tree = vec![pid];
    tree.extend(crate::tree::descendants(pid));
    queues_of(&tree)
}

/// The TCP listeners among the sockets `pids` hold, and, in the daemon's network
/// namespace, the Unix ones (sock_diag gives their queues too).
fn queues_of(pids: &[u32]) -> Result<Vec<Queue>, String> {
    let mut out: Vec<Queue> = listeners_of(pids)?.iter().map(Queue::from).collect();
    if let Some(first) = pids.first()
        && same_netns(*first)
        && let Ok(unix) = crate::sockdiag::unix_listeners()
    {
        let mut inodes = BTreeSet::new();
        for pid in pids {
            inodes.extend(socket_inodes(*pid));
        }
        out.extend(
            unix.into_iter()
                .filter(|l| inodes.contains(&l.inode))
                .map(|l| Queue {
                    name: l.path.unwrap_or_else(|| "(unnamed)".into()),
                    queue: l.queue,
                    backlog: Some(l.backlog),
                }),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000080:00000081 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0050 00000000:0000 0A 00000005:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
   garbage
";

    #[test]
    fn listeners_of_a_table() {
        let l = parse_listeners(TABLE);
        assert_eq!(l.len(), 2, "only LISTEN lines: {l:?}");
        assert_eq!(l[0].address(), "127.0.0.1:8080");
        assert_eq!((l[0].queue, l[0].backlog, l[0].inode), (129, None, 12345));
        assert!(!l[0].full(), "no backlog known");
        assert_eq!(l[1].address(), "0.0.0.0:80");
        assert!(!l[1].full());
    }

    #[test]
    fn ipv6_addresses() {
        let line = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000010:00000002 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        let l = parse_listeners(&format!("header\n{line}\n"));
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].address(), "[::1]:8080");
        assert_eq!((l[0].queue, l[0].backlog), (2, None));
    }

    #[test]
    fn own_listener_is_found_with_its_queue() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = server.local_addr().expect("addr").port();
        let pid = std::process::id();
        let found = listeners_of(&[pid]).expect("tables");
        let mine = found.iter().find(|l| l.port == port).expect("own listener");
        assert_eq!(mine.queue, 0);
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let found = listeners_of(&[pid]).expect("tables");
        let mine = found.iter().find(|l| l.port == port).expect("own listener");
        assert_eq!(mine.queue, 1, "one connection waits to be accepted");
        assert!(mine.backlog.is_some_and(|b| b > 0), "sock_diag: {mine:?}");
        let procs = proc_listeners(Some(pid)).expect("/proc tables");
        let seen = procs.iter().find(|l| l.port == port).expect("in /proc too");
        assert_eq!((seen.queue, seen.inode), (1, mine.inode));
        let p = BacklogProbe {
            port: Some(port),
            threshold: Some(0),
        };
        let o = p.check(Some(pid), Instant::now());
        assert!(!o.passed, "{}", o.reason());
        assert!(o.reason().contains("accept queue 1/"), "{}", o.reason());
        let p = BacklogProbe {
            port: None,
            threshold: None,
        };
        assert!(p.check(Some(pid), Instant::now()).passed);
    }

    #[test]
    fn a_full_unix_listener_fails() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("backlog-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        // A backlog of 1, as a server that listens with it.
        // SAFETY: listen(2) on a socket this test owns.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 1) }, 0);
        let p = BacklogProbe {
            port: None,
            threshold: None,
        };
        let pid = std::process::id();
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(std::os::unix::net::UnixStream::connect(&path).expect("connect"));
        }
        let o = p.check(Some(pid), Instant::now());
        let shown = path.display().to_string();
        assert!(!o.passed, "{}", o.reason());
        assert!(
            o.reason().contains(&format!("accept queue 2/1 on {shown}")),
            "{}",
            o.reason()
        );
        drop(clients);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }
}
