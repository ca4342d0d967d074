//! `dns`: resolve a name, with the system's resolver or a given server, optionally
//! expecting an address among the answers. Nothing is cached between checks.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::{Outcome, millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProbe {
    pub name: String,
    /// `ip` or `ip:port`; None for the system's resolvers (/etc/resolv.conf).
    pub server: Option<SocketAddr>,
    pub expect: Option<IpAddr>,
}

impl DnsProbe {
    pub(crate) async fn run(&self, timeout: Duration, start: Instant) -> Outcome {
        let builder = match self.server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                let _: &Vec<ConnectionConfig> = &ns.connections;
                Ok(Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                ))
            }
            None => Resolver::builder_tokio(),
        };
        let mut builder = match builder {
            Ok(b) => b,
            Err(e) => return Outcome::fail(format!("dns: no resolver: {e}"), start.elapsed()),
        };
        let opts = builder.options_mut();
        opts.cache_size = 0;
        opts.attempts = 1;
        opts.timeout = timeout;
        let resolver = match builder.build() {
            Ok(r) => r,
            Err(e) => return Outcome::fail(format!("dns: no resolver: {e}"), start.elapsed()),
        };
        let via = self
            .server
            .map_or_else(|| "the system resolver".to_string(), |s| s.to_string());
        match resolver.lookup_ip(self.name.as_str()).await {
            Ok(answer) => {
                let addrs: Vec<IpAddr> = answer.iter().collect();
                let shown: Vec<String> = addrs.iter().take(4).map(IpAddr::to_string).collect();
                let t = start.elapsed();
                match self.expect {
                    Some(want) if !addrs.contains(&want) => Outcome::fail(
                        format!(
                            "{} resolves to {} via {via}, not {want}",
                            self.name,
                            shown.join(" ")
                        ),
                        t,
                    ),
                    _ => Outcome::pass(
                        format!(
                            "{} resolves to {} via {via} in {}",
                            self.name,
                            shown.join(" "),
                            millis(t)
                        ),
                        t,
                    ),
                }
                .with_value(t.as_secs_f64() * 1000.0)
            }
            Err(e) => Outcome::fail(
                format!("{} does not resolve via {via}: {e}", self.name),
                start.elapsed(),
            ),
        }
    }
}
