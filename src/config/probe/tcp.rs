//! `type = "tcp"`: connect to a port, optionally send something and read the answer.

use checks::{Probe, TcpExpect, TcpProbe};

use super::super::reader::Reader;
use super::shared::{Table, host_name};
use super::{Key, ProbeType};

pub const TCP: ProbeType = ProbeType {
    name: "tcp",
    about: "A TCP port, optionally a short exchange",
    host: true,
    keys: &[
        Key::new("host", "the host to connect to (127.0.0.1)"),
        Key::new("port", "the port to connect to"),
        Key::new("send", "text sent once connected"),
        Key::new("expect", "a substring the answer must contain"),
        Key::new("expect-regex", "a regular expression the answer must match"),
    ],
    parse,
};

fn parse(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let host = match t.get("host") {
        Some(hv) => host_name(r, "host", hv)?,
        None => "127.0.0.1".into(),
    };
    let Some(pv) = t.get("port") else {
        r.error(t.whole.span(), "a tcp probe needs a `port`", None);
        return None;
    };
    let port = match r.integer("port", pv).map(u16::try_from) {
        Some(Ok(p)) if p > 0 => p,
        Some(_) => {
            r.error(pv.span(), "`port` must be between 1 and 65535", None);
            return None;
        }
        None => return None,
    };
    if t.contains("expect") && t.contains("expect-regex") {
        r.error(
            t.whole.span(),
            "a tcp probe takes `expect` or `expect-regex`, not both",
            None,
        );
        return None;
    }
    let raw = |r: &mut Reader<'_>, key: &str| t.get(key).and_then(|v| r.string_with_nul(key, v));
    let expect = match (raw(r, "expect"), t.pattern(r, "expect-regex")) {
        (Some(text), _) => Some(TcpExpect::Text(text)),
        (None, Some(re)) => Some(TcpExpect::Regex(re)),
        (None, None) => None,
    };
    Some(Probe::Tcp(TcpProbe {
        host,
        port,
        send: raw(r, "send"),
        expect,
    }))
}
