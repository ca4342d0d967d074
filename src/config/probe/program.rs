//! `type = "program"`: run shell text and judge its exit status and output.

use checks::{Probe, ProgramProbe};

use super::super::reader::Reader;
use super::shared::Table;
use super::{Key, ProbeType};

pub const PROGRAM: ProbeType = ProbeType {
    name: "program",
    about: "The exit status and output of a command",
    host: false,
    keys: &[
        Key::new("exec", "shell text, run as the job's user"),
        Key::new("status", "the exit status that passes (0)"),
        Key::new("output", "a regular expression the output must match"),
    ],
    parse,
};

fn parse(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let command = t.required(r, "exec")?;
    let status = match t.get("status").map(|s| (s, r.integer("status", s))) {
        Some((_, Some(n @ 0..=255))) => n as i32,
        Some((sv, Some(_))) => {
            r.error(sv.span(), "an exit status is between 0 and 255", None);
            return None;
        }
        _ => 0,
    };
    Some(Probe::Program(ProgramProbe {
        command,
        status,
        output: t.pattern(r, "output"),
    }))
}
