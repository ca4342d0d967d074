//! The configuration directory: `guardian.toml` and `jobs/*.toml`, read into validated
//! [`Config`] or into every [`Diagnostic`] found, never half of either.

pub mod alert;
pub mod check;
pub mod client;
pub mod deps;
pub mod diag;
pub mod job;
pub mod probe;
mod reader;
pub mod settings;
pub mod signal;
pub mod words;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics};
pub use job::{ExitMatch, JobSpec, Program};
pub use settings::Settings;

use reader::Reader;

#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub settings: Settings,
    /// Jobs by name, in name order.
    pub jobs: BTreeMap<String, JobSpec>,
    /// Things worth saying that do not stop the daemon (a stray file in jobs/ ...).
    pub warnings: Vec<String>,
}

/// `all` is a command's word for every job, so no job may be called that.
pub const RESERVED_NAMES: &[&str] = &["all"];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && !name.starts_with('.')
        && !RESERVED_NAMES.contains(&name)
}

/// Reads only `guardian.toml`, for client commands that need to find the socket.
pub fn load_settings(dir: &Path) -> Result<Settings, Diagnostics> {
    let file = dir.join("guardian.toml");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let mut r = Reader::new(&file, &text);
            let settings = match r.parse() {
                Some(t) => settings::read(&mut r, dir, t.get_ref()),
                None => Settings::defaults(),
            };
            if r.errors.is_empty() {
                Ok(settings)
            } else {
                Err(Diagnostics(r.errors))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::defaults()),
        Err(e) => Err(Diagnostics(vec![Diagnostic::file(
            &file,
            format!("cannot read: {e}"),
        )])),
    }
}

/// Reads and validates the whole configuration directory.
pub fn load(dir: &Path) -> Result<Config, Diagnostics> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if !dir.is_dir() {
        return Err(Diagnostics(vec![Diagnostic::file(
            &dir,
            "is not a directory (give the configuration directory with -c DIR)",
        )]));
    }
    let settings = match load_settings(&dir) {
        Ok(s) => s,
        Err(Diagnostics(mut e)) => {
            errors.append(&mut e);
            Settings::defaults()
        }
    };

    let jobs_dir = dir.join("jobs");
    let mut files = Vec::new();
    match std::fs::read_dir(&jobs_dir) {
        Ok(entries) => {
            for entry in entries {
                match entry {
                    Ok(e) => files.push(e.path()),
                    Err(e) => errors.push(Diagnostic::file(&jobs_dir, format!("cannot list: {e}"))),
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warnings.push(format!(
                "{}: no such directory, so no jobs",
                jobs_dir.display()
            ));
        }
        Err(e) => errors.push(Diagnostic::file(&jobs_dir, format!("cannot list: {e}"))),
    }
    files.sort();

    let mut jobs = BTreeMap::new();
    let mut texts = BTreeMap::new();
    for file in files {
        let Some(fname) = file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            errors.push(Diagnostic::file(&file, "file name is not valid UTF-8"));
            continue;
        };
        if fname.starts_with('.') || fname.ends_with('~') {
            continue;
        }
        let Some(name) = fname.strip_suffix(".toml") else {
            warnings.push(format!(
                "{}: ignored, job files end in .toml",
                file.display()
            ));
            continue;
        };
        if !valid_name(name) {
            errors.push(Diagnostic::file(
                &file,
                format!(
                    "`{name}` is not a valid job name: use letters, digits, `-`, `_`, `.` and `@`{}",
                    if RESERVED_NAMES.contains(&name) { " (and not `all`, which means every job)" } else { "" }
                ),
            ));
            continue;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(Diagnostic::file(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        let mut r = Reader::new(&file, &text);
        if let Some(table) = r.parse() {
            let spec = job::read(&mut r, name, table.get_ref());
            jobs.insert(name.to_string(), spec);
        }
        errors.append(&mut r.errors);
        texts.insert(name.to_string(), text);
    }
    deps::check(&jobs, &texts, &mut errors, &mut warnings);
    if settings.alert.from.is_empty()
        && let Some(job) = jobs.values().find(|j| !j.alert.extra.is_empty())
    {
        errors.push(Diagnostic::file(
            &job.file,
            "`alert` names recipients, so guardian.toml's [alert] needs `from`",
        ));
    }

    if errors.is_empty() {
        Ok(Config {
            dir,
            settings,
            jobs,
            warnings,
        })
    } else {
        Err(Diagnostics(errors))
    }
}
