//! `type = "file"` and `type = "flock"`: a file's existence, age and size; a lock on it.

use checks::{FileProbe, FlockProbe, Probe};

use super::super::reader::Reader;
use super::shared::Table;
use super::{Key, ProbeType};

pub const FILE: ProbeType = ProbeType {
    name: "file",
    about: "A file's existence, age and size",
    host: true,
    keys: &[
        Key::new("path", "the file, which must exist"),
        Key::new("max-age", "fail when it was last modified longer ago"),
        Key::new("min-size", "fail when it is smaller"),
        Key::new("max-size", "fail when it is larger"),
    ],
    parse: file,
};

pub const FLOCK: ProbeType = ProbeType {
    name: "flock",
    about: "Whether a process holds a lock on a file",
    host: false,
    keys: &[Key::new("path", "the file whose lock is watched")],
    parse: flock,
};

fn file(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let path = t.required(r, "path")?;
    let max_age = t.get("max-age").and_then(|v| r.duration("max-age", v));
    let min_size = t.get("min-size").and_then(|v| r.size("min-size", v));
    let max_size = t.get("max-size").and_then(|v| r.size("max-size", v));
    Some(Probe::File(FileProbe {
        path,
        max_age,
        min_size,
        max_size,
    }))
}

fn flock(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let path = t.required(r, "path")?;
    Some(Probe::Flock(FlockProbe { path }))
}
