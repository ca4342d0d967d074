//! The listening sockets of a job's processes and their accept queues, matched to the
//! processes by the inodes of their descriptors. The kernel's tables come from sock_diag
//! netlink (`checks::sockdiag`: each listener's queue length and backlog, TCP and Unix),
//! in the daemon's network namespace. For a job in another namespace, TCP comes from
//! `/proc/PID/net/tcp` (queue length, no backlog) and Unix from `/proc/PID/net/unix`,
//! which shows no queue at all: the report says what it does not know rather than guess.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One listening socket of the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Listener {
    /// `tcp` or `unix`.
    pub kind: String,
    /// `127.0.0.1:8000`, `[::]:8000`, a Unix socket's path (`@name` when abstract).
    pub address: String,
    pub inode: u64,
    /// Connections waiting to be accepted; None where the kernel does not show it.
    pub queue: Option<u32>,
    /// The most the queue is meant to hold (listen(2)'s backlog).
    pub backlog: Option<u32>,
}

impl Listener {
    /// Full as the kernel judges it: more waiting than the backlog.
    pub fn full(&self) -> bool {
        matches!((self.queue, self.backlog), (Some(q), Some(b)) if q > b)
    }
}

/// The listening sockets `pids` hold; the error says what could not be read.
pub fn of(pids: &[u32]) -> (Vec<Listener>, Option<String>) {
    let mut out = Vec::new();
    let mut error = None;
    match checks::backlog::listeners_of(pids) {
        Ok(tcp) => out.extend(tcp.into_iter().map(|l| Listener {
            kind: "tcp".into(),
            address: l.address(),
            inode: l.inode,
            queue: Some(l.queue),
            backlog: l.backlog,
        })),
        Err(e) => error = Some(e),
    }
    let Some(first) = pids.first() else {
        return (out, error);
    };
    let mut inodes = BTreeSet::new();
    for pid in pids {
        inodes.extend(checks::backlog::socket_inodes(*pid));
    }
    let same_ns = std::fs::read_link(format!("/proc/{first}/ns/net")).ok()
        == std::fs::read_link("/proc/self/ns/net").ok();
    let diag = same_ns
        .then(checks::sockdiag::unix_listeners)
        .and_then(Result::ok);
    match diag {
        Some(unix) => out.extend(
            unix.into_iter()
                .filter(|l| inodes.contains(&l.inode))
                .map(|l| Listener {
                    kind: "unix".into(),
                    address: l.path.unwrap_or_else(|| "(unnamed)".into()),
                    inode: l.inode,
                    queue: Some(l.queue),
                    backlog: Some(l.backlog),
                }),
        ),
        None => {
            if let Some(text) = super::proc::read_small(&format!("/proc/{first}/net/unix"), 4 << 20)
            {
                out.extend(
                    parse_unix(&text)
                        .into_iter()
                        .filter(|l| inodes.contains(&l.inode)),
                );
            }
        }
    }
    (out, error)
}

/// The listening sockets of a `net/unix` table: flags with `__SO_ACCEPTCON` (0x10000).
pub fn parse_unix(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let _num = f.next()?;
            let _refs = f.next()?;
            let _proto = f.next()?;
            let flags = u32::from_str_radix(f.next()?, 16).ok()?;
            let _type = f.next()?;
            let _state = f.next()?;
            let inode = f.next()?.parse().ok()?;
            let path = f.next().unwrap_or("(unnamed)").to_string();
            (flags & 0x10000 != 0).then_some(Listener {
                kind: "unix".into(),
                address: path,
                inode,
                queue: None,
                backlog: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_listeners() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 4243 /run/app.sock
0000000000000000: 00000002 00000000 00010000 0001 01 4244 @abstract
";
        let l = parse_unix(text);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].address.as_str(), l[0].inode), ("/run/app.sock", 4242));
        assert_eq!(l[1].address, "@abstract");
        assert!(l[0].queue.is_none() && !l[0].full());
    }

    #[test]
    fn own_unix_listener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let (found, err) = of(&[std::process::id()]);
        assert!(err.is_none(), "{err:?}");
        assert!(
            found
                .iter()
                .any(|l| l.kind == "unix" && l.address == path.display().to_string()),
            "{found:?}"
        );
    }
}
