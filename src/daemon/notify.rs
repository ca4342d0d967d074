//! The daemon's own sd_notify: what it tells the service manager that started it
//! (systemd, with `Type=notify`) on `NOTIFY_SOCKET`: READY=1 once the boot jobs are
//! started, STATUS= with counts, WATCHDOG=1 from the event loop, RELOADING=1 and
//! STOPPING=1.
//!
//! A datagram to a path (or, with a leading `@`, an abstract name): the protocol is one
//! `sendto`, so it is written here rather than taken from a crate. The daemon's jobs
//! never see `NOTIFY_SOCKET`, `WATCHDOG_*` or `LISTEN_*`: their environment is built
//! from nothing (`src/process/env.rs`), and a job with `expect = "notify"` gets a
//! socket of guardian's own for its READY=1.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// How often to send WATCHDOG=1: half of WATCHDOG_USEC, when it is meant for us.
    watchdog: Option<Duration>,
    /// The last STATUS= sent, so that only a change is sent.
    last_status: String,
}

/// What STATUS= counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub jobs: usize,
    pub running: usize,
    pub failed: usize,
    pub unhealthy: usize,
}

impl Notifier {
    /// The notifier the environment asks for, if any. A socket that cannot be used is
    /// logged and ignored: the daemon runs without it.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        match Notifier::new(&path.to_string_lossy(), usec.as_deref(), pid.as_deref()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET is set but cannot be used ({e}); not notifying");
                None
            }
        }
    }

    /// A notifier for the socket `path` (`@name` for an abstract one), with the
    /// watchdog of `WATCHDOG_USEC` / `WATCHDOG_PID` as given.
    pub fn new(
        path: &str,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> std::io::Result<Notifier> {
        let addr = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(path)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        let ours = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>() == Ok(std::process::id()));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(|u| Duration::from_micros(u / 2).max(Duration::from_millis(1)));
        Ok(Notifier {
            sock,
            addr,
            watchdog,
            last_status: String::new(),
        })
    }

    /// How often the loop must send WATCHDOG=1, if the manager watches it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, msg: &str) {
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            tracing::debug!("cannot notify the service manager ({e})");
        }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping every job");
        self.last_status = "stopping every job".into();
    }

    /// RELOADING=1 with the monotonic clock, as `Type=notify-reload` wants.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    /// The end of a reload: READY=1 and the counts again.
    pub fn reloaded(&mut self, counts: Counts) {
        self.last_status.clear();
        self.send("READY=1");
        self.status(counts);
    }

    /// STATUS= with the counts, if they changed since the last one.
    pub fn status(&mut self, counts: Counts) {
        let text = status_text(counts);
        if text != self.last_status {
            self.send(&format!("STATUS={text}"));
            self.last_status = text;
        }
    }
}

pub fn status_text(c: Counts) -> String {
    format!(
        "{} jobs: {} running, {} failed, {} unhealthy",
        c.jobs, c.running, c.failed, c.unhealthy
    )
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000)
}

/// How often STATUS= is brought up to date when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Resolves at the loop's next notify tick; never without a notifier.
pub async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t.as_mut() {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl super::Daemon {
    /// READY=1 and the first STATUS=, once the boot jobs are started; the ticks the loop
    /// then sends WATCHDOG=1 and STATUS= on. The ticks are the loop's own: a loop that
    /// is stuck sends no WATCHDOG=1, and the service manager restarts guardian.
    pub(super) fn notify_ready(&mut self) -> Option<tokio::time::Interval> {
        let counts = self.counts();
        let n = self.notify.as_mut()?;
        n.ready();
        n.status(counts);
        let every = n
            .watchdog_interval()
            .map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(i)
    }

    pub(super) fn notify_tick(&mut self) {
        let counts = (self.shutdown.is_none() && self.notify.is_some()).then(|| self.counts());
        let Some(n) = self.notify.as_mut() else {
            return;
        };
        if n.watchdog_interval().is_some() {
            n.watchdog();
        }
        if let Some(c) = counts {
            n.status(c);
        }
    }

    pub(super) fn notify_reloading(&self) {
        if let Some(n) = &self.notify {
            n.reloading();
        }
    }

    pub(super) fn notify_reloaded(&mut self) {
        if self.notify.is_none() {
            return;
        }
        let counts = self.counts();
        if let Some(n) = self.notify.as_mut() {
            n.reloaded(counts);
        }
    }

    fn counts(&self) -> Counts {
        let mut c = Counts {
            jobs: self.jobs.len(),
            ..Counts::default()
        };
        for job in self.jobs.values() {
            match job.m.state() {
                crate::job::State::Running => {
                    c.running += 1;
                    if job.health() == checks::Health::Unhealthy {
                        c.unhealthy += 1;
                    }
                }
                crate::job::State::Failed => c.failed += 1,
                _ => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        (dir, rx, path.display().to_string())
    }

    fn recv(rx: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn notify_messages_reach_a_bound_socket() {
        let (_dir, rx, path) = pair();
        let mut n = Notifier::new(&path, Some("4000000"), None).expect("notifier");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        n.ready();
        assert_eq!(recv(&rx), "READY=1");
        let c = Counts {
            jobs: 3,
            running: 2,
            failed: 1,
            unhealthy: 0,
        };
        n.status(c);
        assert_eq!(recv(&rx), "STATUS=3 jobs: 2 running, 1 failed, 0 unhealthy");
        // The same counts are not sent again; the watchdog is.
        n.status(c);
        n.watchdog();
        assert_eq!(recv(&rx), "WATCHDOG=1");
        n.reloading();
        let r = recv(&rx);
        let usec: u64 = r
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .expect("MONOTONIC_USEC");
        assert!(r.starts_with("RELOADING=1\n") && usec > 0, "{r}");
        n.reloaded(c);
        assert_eq!(recv(&rx), "READY=1");
        assert!(recv(&rx).starts_with("STATUS=3 jobs"));
        n.stopping();
        assert!(recv(&rx).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn watchdog_only_for_this_process() {
        let (_dir, _rx, path) = pair();
        let other = Notifier::new(&path, Some("1000000"), Some("1")).expect("notifier");
        assert_eq!(other.watchdog_interval(), None);
        let me = std::process::id().to_string();
        let mine = Notifier::new(&path, Some("1000000"), Some(&me)).expect("notifier");
        assert_eq!(mine.watchdog_interval(), Some(Duration::from_millis(500)));
        let none = Notifier::new(&path, Some("junk"), None).expect("notifier");
        assert_eq!(none.watchdog_interval(), None);
    }
}
