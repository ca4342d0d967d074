//! `type = "backlog"`: the accept queues of the job's listening sockets, read from the
//! kernel's tables; nothing is sent to the server.

use checks::{BacklogProbe, Probe};

use super::super::reader::Reader;
use super::shared::Table;
use super::{Key, ProbeType};

pub const BACKLOG: ProbeType = ProbeType {
    name: "backlog",
    about: "The accept queues of the job's listening sockets; sends nothing",
    host: false,
    keys: &[
        Key::new(
            "threshold",
            "fail when a queue holds more than this many connections (default: when full)",
        ),
        Key::new(
            "port",
            "look at the listeners on this port (default: the job's own sockets)",
        ),
    ],
    parse,
};

fn parse(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let port = match t.get("port") {
        None => None,
        Some(pv) => match r.integer("port", pv).map(u16::try_from) {
            Some(Ok(p)) if p > 0 => Some(p),
            Some(_) => {
                r.error(pv.span(), "`port` must be between 1 and 65535", None);
                return None;
            }
            None => return None,
        },
    };
    let threshold = match t.get("threshold") {
        None => None,
        Some(v) => match r.integer("threshold", v).map(u32::try_from) {
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                r.error(
                    v.span(),
                    "`threshold` is a number of connections, 0 or more",
                    Some("leave it out to fail when a queue is full".into()),
                );
                return None;
            }
            None => return None,
        },
    };
    Some(Probe::Backlog(BacklogProbe { port, threshold }))
}
