//! `type = "dns"`: resolve a name, optionally at one server and to one address.

use std::net::{IpAddr, SocketAddr};

use checks::{DnsProbe, Probe};

use super::super::reader::Reader;
use super::shared::{Table, host_name};
use super::{Key, ProbeType};

pub const DNS: ProbeType = ProbeType {
    name: "dns",
    about: "The resolution of a name",
    host: true,
    keys: &[
        Key::new("host", "the name to resolve"),
        Key::new("server", "a server to ask (those of /etc/resolv.conf)"),
        Key::new("expect", "an IP address that must be among the answers"),
    ],
    parse,
};

fn parse(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let Some(hv) = t.get("host") else {
        r.error(t.whole.span(), "a dns probe needs `host`", None);
        return None;
    };
    let name = host_name(r, "host", hv)?;
    let server = match t.get("server") {
        Some(v) => {
            let text = r.string("server", v)?;
            let parsed = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                Ok(a) => Some(a),
                Err(_) => {
                    r.error(
                        v.span(),
                        format!(
                            "`server`: `{text}` is not an address like 10.0.0.2 or 10.0.0.2:53"
                        ),
                        None,
                    );
                    return None;
                }
            }
        }
        None => None,
    };
    let expect = match t.get("expect") {
        Some(v) => {
            let text = r.string("expect", v)?;
            match text.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    r.error(
                        v.span(),
                        format!("`expect`: `{text}` is not an IP address"),
                        None,
                    );
                    return None;
                }
            }
        }
        None => None,
    };
    Some(Probe::Dns(DnsProbe {
        name,
        server,
        expect,
    }))
}
