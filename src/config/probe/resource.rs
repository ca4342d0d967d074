//! The limit probes: what the job's process tree uses (`cpu`, `memory`, `children`) and
//! what the host has left (`load`, `system-memory`, `disk`). Each takes a `max`.

use checks::{Amount, Probe, Resource};
use toml::de::DeValue;

use super::super::reader::Reader;
use super::shared::{Table, amount};
use super::{Key, ProbeType};

pub const CPU: ProbeType = ProbeType {
    name: "cpu",
    about: "CPU used by the job's processes",
    host: false,
    keys: &[Key::new("max", "a percentage of one core, such as \"80%\"")],
    parse: cpu,
};

pub const MEMORY: ProbeType = ProbeType {
    name: "memory",
    about: "Memory used by the job's processes",
    host: false,
    keys: &[Key::new(
        "max",
        "a size, or a percentage of the host's memory",
    )],
    parse: memory,
};

pub const CHILDREN: ProbeType = ProbeType {
    name: "children",
    about: "The number of the job's processes",
    host: false,
    keys: &[Key::new("max", "the number of descendant processes")],
    parse: children,
};

pub const LOAD: ProbeType = ProbeType {
    name: "load",
    about: "The host's load average",
    host: true,
    keys: &[
        Key::new("max", "the highest load average that passes"),
        Key::new("minutes", "which load average: 1, 5 or 15 (1)"),
    ],
    parse: load,
};

pub const SYSTEM_MEMORY: ProbeType = ProbeType {
    name: "system-memory",
    about: "The host's memory in use",
    host: true,
    keys: &[Key::new(
        "max",
        "a size, or a percentage of the host's memory",
    )],
    parse: system_memory,
};

pub const DISK: ProbeType = ProbeType {
    name: "disk",
    about: "The space used on a filesystem",
    host: true,
    keys: &[
        Key::new("path", "a path on the filesystem to watch"),
        Key::new("max", "a size, or a percentage of the disk"),
    ],
    parse: disk,
};

fn cpu(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let v = t.max_value(r)?;
    match amount(r, v, false, None)? {
        Amount::Percent(p) => Some(Probe::Resource(Resource::Cpu { max: p })),
        Amount::Absolute(_) => {
            r.error(
                v.span(),
                "a cpu limit is a percentage of a core, like \"80%\"",
                None,
            );
            None
        }
    }
}

fn memory(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let v = t.max_value(r)?;
    let max = amount(r, v, true, Some("of the host's memory"))?;
    Some(Probe::Resource(Resource::Memory { max }))
}

fn system_memory(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let v = t.max_value(r)?;
    let max = amount(r, v, true, Some("of the host's memory"))?;
    Some(Probe::Resource(Resource::SystemMemory { max }))
}

fn children(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let v = t.max_value(r)?;
    match r.integer("max", v).map(u32::try_from) {
        Some(Ok(max)) => Some(Probe::Resource(Resource::Children { max })),
        Some(Err(_)) => {
            r.error(v.span(), "`max` must be 0 or more", None);
            None
        }
        None => None,
    }
}

fn load(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let v = t.max_value(r)?;
    let max = match v.get_ref() {
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        DeValue::Integer(_) => r.integer("max", v).map(|n| n as f64),
        _ => None,
    };
    let Some(max) = max.filter(|m| m.is_finite() && *m >= 0.0) else {
        r.error(
            v.span(),
            "a load limit is a number of 0 or more, like 4.0",
            None,
        );
        return None;
    };
    let minutes = match t.get("minutes").map(|m| (m, r.integer("minutes", m))) {
        None => 1,
        Some((_, Some(n @ (1 | 5 | 15)))) => n as u8,
        Some((m, _)) => {
            r.error(m.span(), "`minutes` is 1, 5 or 15", None);
            return None;
        }
    };
    Some(Probe::Resource(Resource::Load { max, minutes }))
}

fn disk(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let path = t.required(r, "path")?;
    let v = t.max_value(r)?;
    let max = amount(r, v, true, Some("of the disk"))?;
    Some(Probe::Resource(Resource::Disk { path, max }))
}
