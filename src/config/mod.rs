//! The configuration directory: `guardian.toml` and `jobs/*.toml`, read into validated
//! [`Config`] or into every [`Diagnostic`] found, never half of either.

pub mod alert;
pub mod check;
pub mod client;
pub mod deps;
pub mod diag;
pub mod fingerprint;
pub mod http;
pub mod instances;
pub mod job;
pub mod limits;
pub mod probe;
pub mod program;
pub mod rare;
mod reader;
pub mod render;
pub mod settings;
pub mod signal;
pub mod source;
pub mod words;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics};
pub use job::{ExitMatch, JobSpec};
pub use program::Program;
pub use settings::Settings;

use reader::Reader;
use source::Trust;

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

/// Whether `name` may be a job's name (and so a file stem under `jobs/` and `log-dir`):
/// no `/`, no leading `.`, not a reserved word.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && !name.starts_with('.')
        && !RESERVED_NAMES.contains(&name)
}

/// The error for a job file whose stem is not a job name, if it is not.
fn name_error(name: &str, file: &Path) -> Option<Diagnostic> {
    if valid_name(name) {
        return None;
    }
    Some(Diagnostic::file(
        file,
        format!(
            "`{name}` is not a valid job name: use at most {} letters, digits, `-`, `_`, `.` and `@`{}",
            limits::MAX_NAME,
            if RESERVED_NAMES.contains(&name) {
                " (and not `all`, which means every job)"
            } else {
                ""
            }
        ),
    ))
}

/// One job file, read: its spec (when it parsed), its text (when it was UTF-8) and
/// every problem found in it.
#[derive(Debug)]
pub struct JobText {
    /// The job's spec, or, for a file with `instances`, the first instance's.
    pub spec: Option<JobSpec>,
    /// Every job the file makes: the spec alone, or each instance's.
    pub specs: Vec<JobSpec>,
    pub text: Option<String>,
    pub errors: Vec<Diagnostic>,
}

/// Reads and validates the contents of one job file, `path`, for the job `name`: what
/// `check` and the daemon do with each file of `jobs/` once it is read. Anything may be
/// in `bytes`; the answer is a spec or diagnostics, never a panic.
pub fn read_job_text(name: &str, path: &Path, bytes: &[u8]) -> JobText {
    let mut out = JobText {
        spec: None,
        specs: Vec::new(),
        text: None,
        errors: Vec::new(),
    };
    if let Some(d) = name_error(name, path) {
        out.errors.push(d);
        return out;
    }
    if bytes.len() as u64 > source::MAX_FILE_BYTES {
        out.errors.push(Diagnostic::file(
            path,
            format!(
                "is larger than the limit of {} bytes",
                source::MAX_FILE_BYTES
            ),
        ));
        return out;
    }
    let text = match source::text(path, bytes) {
        Ok(t) => t,
        Err(d) => {
            out.errors.push(*d);
            return out;
        }
    };
    let mut r = Reader::new(path, text);
    if let Some(table) = r.parse() {
        match instances::count(&mut r, name, table.get_ref()) {
            None => {
                let mut spec = job::read(&mut r, name, table.get_ref());
                spec.fingerprint = fingerprint::Fingerprint(fingerprint::of(name, table.get_ref()));
                out.specs.push(spec);
            }
            Some(n) => {
                for number in 0..n {
                    let table = instances::substitute(&mut r, table.get_ref(), number);
                    let job_name = instances::name(name, number);
                    r.instance = Some(number);
                    let mut spec = job::read(&mut r, &job_name, &table);
                    r.instance = None;
                    spec.fingerprint = fingerprint::Fingerprint(fingerprint::of(&job_name, &table));
                    instances::mark(&mut spec, name, number);
                    out.specs.push(spec);
                }
            }
        }
        out.spec = out.specs.first().cloned();
    }
    // Each instance reads the same file: a mistake in it is told once.
    let mut errors: Vec<Diagnostic> = Vec::new();
    for e in r.errors {
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    r.errors = errors;
    out.errors = r.errors;
    out.text = Some(text.to_string());
    out
}

/// Every problem in one job file's contents (see [`read_job_text`]).
pub fn check_job_text(name: &str, path: &Path, bytes: &[u8]) -> Diagnostics {
    Diagnostics(read_job_text(name, path, bytes).errors)
}

/// Reads and validates the contents of `guardian.toml` (`path`, in the configuration
/// directory `dir`). Anything may be in `bytes`.
pub fn read_settings_text(dir: &Path, path: &Path, bytes: &[u8]) -> (Settings, Vec<Diagnostic>) {
    if bytes.len() as u64 > source::MAX_FILE_BYTES {
        let d = Diagnostic::file(
            path,
            format!(
                "is larger than the limit of {} bytes",
                source::MAX_FILE_BYTES
            ),
        );
        return (Settings::defaults(), vec![d]);
    }
    let text = match source::text(path, bytes) {
        Ok(t) => t,
        Err(d) => return (Settings::defaults(), vec![*d]),
    };
    let mut r = Reader::new(path, text);
    let settings = match r.parse() {
        Some(t) => settings::read(&mut r, dir, t.get_ref()),
        None => Settings::defaults(),
    };
    (settings, r.errors)
}

/// Every problem in the contents of `guardian.toml` (see [`read_settings_text`]).
pub fn check_settings_text(dir: &Path, path: &Path, bytes: &[u8]) -> Diagnostics {
    Diagnostics(read_settings_text(dir, path, bytes).1)
}

/// Reads only `guardian.toml`, for client commands that need to find the socket.
pub fn load_settings(dir: &Path) -> Result<Settings, Diagnostics> {
    let file = dir.join("guardian.toml");
    match source::read(&file, Trust::Config, source::MAX_FILE_BYTES) {
        Ok(bytes) => {
            let (settings, errors) = read_settings_text(dir, &file, &bytes);
            if errors.is_empty() {
                Ok(settings)
            } else {
                Err(Diagnostics(errors))
            }
        }
        Err(e) if e.not_found => Ok(Settings::defaults()),
        Err(e) => Err(Diagnostics(vec![e.about(&file)])),
    }
}

/// Reads and validates the whole configuration directory.
pub fn load(dir: &Path) -> Result<Config, Diagnostics> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    match source::check_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.not_found => {
            return Err(Diagnostics(vec![Diagnostic::file(
                &dir,
                "no such directory (give the configuration directory with -c DIR)",
            )]));
        }
        Err(e) => return Err(Diagnostics(vec![e.about(&dir)])),
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
    match source::check_dir(&jobs_dir) {
        Err(e) if e.not_found => {
            warnings.push(format!(
                "{}: no such directory, so no jobs",
                jobs_dir.display()
            ));
        }
        Err(e) => errors.push(e.about(&jobs_dir)),
        Ok(()) => match std::fs::read_dir(&jobs_dir) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(e) => files.push(e.path()),
                        Err(e) => {
                            errors.push(Diagnostic::file(&jobs_dir, format!("cannot list: {e}")))
                        }
                    }
                }
            }
            Err(e) => errors.push(Diagnostic::file(&jobs_dir, format!("cannot list: {e}"))),
        },
    }
    files.sort();

    let mut jobs: BTreeMap<String, JobSpec> = BTreeMap::new();
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
        if let Some(d) = name_error(name, &file) {
            errors.push(d);
            continue;
        }
        let bytes = match source::read(&file, Trust::Config, source::MAX_FILE_BYTES) {
            Ok(b) => b,
            Err(e) => {
                errors.push(e.about(&file));
                continue;
            }
        };
        let mut read = read_job_text(name, &file, &bytes);
        if let Some(text) = &read.text {
            for spec in read.specs.iter().filter(|s| s.instance.is_some()) {
                texts.insert(spec.name.clone(), text.clone());
            }
        }
        for spec in read.specs {
            if let Some(other) = jobs.get(&spec.name) {
                errors.push(Diagnostic::file(
                    &file,
                    format!(
                        "makes the job `{}`, which {} makes too",
                        spec.name,
                        other.file.display()
                    ),
                ));
                continue;
            }
            jobs.insert(spec.name.clone(), spec);
        }
        errors.append(&mut read.errors);
        if let Some(text) = read.text {
            texts.insert(name.to_string(), text);
        }
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
