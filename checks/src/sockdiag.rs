//! The kernel's socket tables over netlink (NETLINK_SOCK_DIAG): for each listening
//! socket, how many connections wait in its accept queue and its backlog. /proc/net/tcp
//! shows the first but not the second (its `tx_queue` is the send queue); for a listener
//! inet_diag gives both, as `ss -l` shows them, and unix_diag does the same for Unix
//! sockets (with UDIAG_SHOW_RQLEN). The tables are those of the caller's network
//! namespace. Blocking, bounded by a one-second receive timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One listening socket as sock_diag describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagListener {
    /// The address and port for TCP; None for a Unix socket.
    pub addr: Option<(IpAddr, u16)>,
    /// A Unix socket's path (`@name` when abstract).
    pub path: Option<String>,
    pub inode: u64,
    pub queue: u32,
    pub backlog: u32,
}

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_RQLEN: u16 = 4;

fn open() -> Result<OwnedFd, String> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(format!(
            "cannot open a sock_diag socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: a valid fd and a timeval of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// Sends one dump request (`body` after the netlink header) and returns the payloads
/// of the messages that answer it.
fn dump(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let fd = open()?;
    let len = 16 + body.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    // SAFETY: the buffer is valid for its length; the kernel is the destination
    // (a netlink socket not bound sends to pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: as above; sockaddr_nl is passed with its size.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(format!("sock_diag: {}", std::io::Error::last_os_error()));
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    // A dump of a large table comes in many datagrams; bounded all the same.
    for _ in 0..10_000 {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(format!("sock_diag: {}", std::io::Error::last_os_error()));
        }
        let n = usize::try_from(n).unwrap_or(0);
        let mut at = 0usize;
        while at + 16 <= n {
            let mlen = u32_at(&buf, at).unwrap_or(0) as usize;
            let mtype = u16_at(&buf, at + 4).unwrap_or(0);
            if mlen < 16 || at + mlen > n {
                return Err("sock_diag: a message runs past its datagram".into());
            }
            match mtype {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = u32_at(&buf, at + 16).map_or(0, |e| -(e as i32));
                    return Err(format!(
                        "sock_diag: {}",
                        std::io::Error::from_raw_os_error(errno)
                    ));
                }
                _ => out.push(buf[at + 16..at + mlen].to_vec()),
            }
            at += (mlen + 3) & !3;
        }
    }
    Err("sock_diag: the dump did not end".into())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The listening TCP sockets (v4 and v6) of the caller's network namespace.
pub fn tcp_listeners() -> Result<Vec<DiagListener>, String> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        // inet_diag_req_v2: family, protocol, ext, pad, states, then a zero sockid.
        let mut req = vec![family, libc::IPPROTO_TCP as u8, 0, 0];
        req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        req.extend_from_slice(&[0u8; 48]);
        for m in dump(&req)? {
            if let Some(l) = parse_inet(&m) {
                out.push(l);
            }
        }
    }
    Ok(out)
}

/// One inet_diag_msg.
fn parse_inet(m: &[u8]) -> Option<DiagListener> {
    let family = *m.first()?;
    let sport = u16::from_be_bytes(m.get(4..6)?.try_into().ok()?);
    let src = m.get(8..24)?;
    let addr = if i32::from(family) == libc::AF_INET {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    } else {
        let b: [u8; 16] = src.try_into().ok()?;
        IpAddr::V6(Ipv6Addr::from(b))
    };
    // After the 48-byte sockid (at 4): expires, rqueue, wqueue, uid, inode.
    Some(DiagListener {
        addr: Some((addr, sport)),
        path: None,
        queue: u32_at(m, 56)?,
        backlog: u32_at(m, 60)?,
        inode: u64::from(u32_at(m, 68)?),
    })
}

/// The listening Unix sockets of the caller's network namespace.
pub fn unix_listeners() -> Result<Vec<DiagListener>, String> {
    // unix_diag_req: family, protocol, pad, states, ino, show, cookie.
    let mut req = vec![libc::AF_UNIX as u8, 0, 0, 0];
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN).to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]);
    Ok(dump(&req)?.iter().filter_map(|m| parse_unix(m)).collect())
}

/// One unix_diag_msg and its attributes.
fn parse_unix(m: &[u8]) -> Option<DiagListener> {
    let inode = u64::from(u32_at(m, 4)?);
    let mut l = DiagListener {
        addr: None,
        path: None,
        inode,
        queue: 0,
        backlog: 0,
    };
    let mut at = 16usize;
    while at + 4 <= m.len() {
        let alen = usize::from(u16_at(m, at)?);
        let atype = u16_at(m, at + 2)?;
        if alen < 4 || at + alen > m.len() {
            break;
        }
        let data = &m[at + 4..at + alen];
        match atype {
            UNIX_DIAG_NAME => {
                let abstract_ = data.first() == Some(&0);
                let text = if abstract_ { &data[1..] } else { data };
                let text = text.split(|b| *b == 0).next().unwrap_or(&[]);
                let name = String::from_utf8_lossy(text);
                l.path = Some(if abstract_ {
                    format!("@{name}")
                } else {
                    name.into_owned()
                });
            }
            UNIX_DIAG_RQLEN => {
                l.queue = u32_at(data, 0)?;
                l.backlog = u32_at(data, 4)?;
            }
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tcp_listener_with_its_backlog() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = server.local_addr().expect("addr").port();
        let Ok(all) = tcp_listeners() else {
            eprintln!("SKIPPED: no sock_diag on this kernel");
            return;
        };
        let mine = all
            .iter()
            .find(|l| l.addr.is_some_and(|(_, p)| p == port))
            .expect("own listener");
        // std listens with a backlog of 128 (capped by somaxconn).
        assert!(mine.backlog > 0 && mine.queue == 0, "{mine:?}");
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let all = tcp_listeners().expect("again");
        let mine = all
            .iter()
            .find(|l| l.addr.is_some_and(|(_, p)| p == port))
            .expect("own listener");
        assert_eq!(mine.queue, 1);
    }

    #[test]
    fn own_unix_listener_with_its_queue() {
        let dir = std::env::temp_dir().join(format!("sockdiag-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let _l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let _c = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        let Ok(all) = unix_listeners() else {
            eprintln!("SKIPPED: no unix_diag on this kernel");
            return;
        };
        let shown = path.display().to_string();
        let mine = all
            .iter()
            .find(|l| l.path.as_deref() == Some(shown.as_str()))
            .expect("own listener");
        assert_eq!(mine.queue, 1, "{mine:?}");
        assert!(mine.backlog > 0);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }
}
