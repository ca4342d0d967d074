//! Probe tables (`[ready]` and `[[check]]` share the same keys): `type` and the keys of
//! that type, read into a [`checks::Probe`].
//!
//! A probe type is one file here, holding its [`ProbeType`], plus one line in
//! [`REGISTRY`]. The registry is all that knows the types: it answers which `type`
//! names exist, which keys each takes, which a host check may use, and reads them;
//! docs/checks.md is tested against it.

mod backlog;
mod dns;
mod files;
mod http;
mod program;
mod resource;
mod shared;
mod tcp;
#[cfg(test)]
mod tests;

use std::time::Duration;

use checks::Probe;
use toml::de::DeTable;

use super::reader::{Reader, Value};

use shared::Table;
pub use shared::headers;

/// One key of a probe type, and what it means in one line.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub about: &'static str,
}

impl Key {
    pub const fn new(name: &'static str, about: &'static str) -> Key {
        Key { name, about }
    }
}

/// A reader for one probe type, called once `type` and every key are known to be its.
pub type Parse = fn(&mut Reader<'_>, &Table<'_, '_>) -> Option<Probe>;

/// Everything about one probe type that the configuration needs.
#[derive(Debug, Clone, Copy)]
pub struct ProbeType {
    /// Its `type`.
    pub name: &'static str,
    /// What it looks at, in a few words.
    pub about: &'static str,
    /// Whether guardian.toml's host checks may use it (it needs no job).
    pub host: bool,
    /// Its keys besides `type`, in the order messages list them.
    pub keys: &'static [Key],
    /// Reads its keys into the probe the checks crate runs.
    pub parse: Parse,
}

impl ProbeType {
    /// The keys its table takes: `type` and its own.
    pub fn key_names(&self) -> impl Iterator<Item = &'static str> + use<> {
        let keys = self.keys;
        std::iter::once("type").chain(keys.iter().map(|k| k.name))
    }
}

/// Every probe type, in the order `one of: ...` lists them.
pub const REGISTRY: &[ProbeType] = &[
    tcp::TCP,
    http::HTTP,
    program::PROGRAM,
    dns::DNS,
    files::FILE,
    files::FLOCK,
    resource::CPU,
    resource::MEMORY,
    resource::CHILDREN,
    resource::LOAD,
    resource::SYSTEM_MEMORY,
    resource::DISK,
    backlog::BACKLOG,
];

/// The registered probe type called `name`.
pub fn find(name: &str) -> Option<&'static ProbeType> {
    REGISTRY.iter().find(|p| p.name == name)
}

fn type_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|p| p.name).collect()
}

/// A probe with how often and how long it may run.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadySpec {
    pub probe: Probe,
    /// Time between two tries.
    pub every: Duration,
    /// How long one try may take.
    pub timeout: Duration,
    /// Not ready by then: the start fails.
    pub deadline: Duration,
}

impl ReadySpec {
    /// The keys of `[ready]` besides its probe's.
    pub const KEYS: &[&str] = &["every", "timeout", "deadline"];
    pub const DEFAULT_EVERY: Duration = Duration::from_millis(100);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
}

/// Reads `[ready]`.
pub fn ready(r: &mut Reader<'_>, v: &Value<'_>) -> Option<ReadySpec> {
    let t = r.table("ready", v)?;
    let mut every = ReadySpec::DEFAULT_EVERY;
    let mut timeout = ReadySpec::DEFAULT_TIMEOUT;
    let mut deadline = ReadySpec::DEFAULT_DEADLINE;
    for (k, val) in t.iter() {
        match k.get_ref().as_ref() {
            "every" => every = r.positive_duration("every", val).unwrap_or(every),
            "timeout" => timeout = r.positive_duration("timeout", val).unwrap_or(timeout),
            "deadline" => deadline = r.positive_duration("deadline", val).unwrap_or(deadline),
            _ => {}
        }
    }
    let probe = probe(r, v, t, ReadySpec::KEYS)?;
    Some(ReadySpec {
        probe,
        every,
        timeout,
        deadline,
    })
}

/// Reads the probe of a table: its `type` and that type's keys. `extra` are the keys the
/// caller handles itself.
pub fn probe(
    r: &mut Reader<'_>,
    whole: &Value<'_>,
    t: &DeTable<'_>,
    extra: &[&str],
) -> Option<Probe> {
    read(r, whole, t, extra).map(|(_, p)| p)
}

/// Reads the probe of a table as [`probe`] does, with its type.
pub fn read(
    r: &mut Reader<'_>,
    whole: &Value<'_>,
    t: &DeTable<'_>,
    extra: &[&str],
) -> Option<(&'static ProbeType, Probe)> {
    let Some(ty) = t.get("type") else {
        r.error(
            whole.span(),
            "a probe needs a `type`",
            Some(format!("one of: {}", type_names().join(", "))),
        );
        return None;
    };
    let kind = r.string("type", ty)?;
    let Some(desc) = find(&kind) else {
        let names = type_names();
        let hint = super::diag::did_you_mean(&kind, &names)
            .map(|k| format!("did you mean `{k}`?"))
            .or_else(|| Some(format!("one of: {}", names.join(", "))));
        r.error(ty.span(), format!("no probe type `{kind}`"), hint);
        return None;
    };
    let mut known: Vec<&str> = Vec::new();
    for k in desc.key_names() {
        known.push(k);
    }
    known.extend_from_slice(extra);
    for (k, _) in t.iter() {
        if !known.contains(&k.get_ref().as_ref()) {
            let owners: Vec<String> = REGISTRY
                .iter()
                .filter(|p| p.keys.iter().any(|key| key.name == k.get_ref().as_ref()))
                .map(|p| format!("`{}`", p.name))
                .collect();
            let takes = format!("`{}` takes: {}", desc.name, known.join(", "));
            let listing = if owners.is_empty() {
                takes
            } else {
                format!("that is a key of {}; {takes}", owners.join(", "))
            };
            r.unknown_key_or(k, &known, listing);
        }
    }
    let table = Table {
        whole,
        t,
        kind: desc.name,
    };
    (desc.parse)(r, &table).map(|p| (desc, p))
}
