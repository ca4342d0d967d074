//! What a process runs: a program found as `execvp` would find it and run without a
//! shell (`exec`), or shell text (`script`); and the table form of both, `{ exec = "..." }`
//! or `{ script = "..." }`, that hooks and check actions take.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use toml::de::DeValue;

use super::reader::{Reader, Value};
use super::words;

/// The PATH every job starts with, whatever the daemon's own environment holds.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a process of a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A program found at `path`, run directly with `argv` (argv\[0\] as written).
    Exec { path: PathBuf, argv: Vec<String> },
    /// Shell text, run with `/bin/sh -e -c`.
    Script(String),
}

impl Program {
    /// The program and its arguments as they will be executed.
    pub fn command_line(&self) -> (PathBuf, Vec<String>) {
        match self {
            Program::Exec { path, argv } => (path.clone(), argv.clone()),
            Program::Script(text) => (
                PathBuf::from("/bin/sh"),
                vec!["sh".into(), "-e".into(), "-c".into(), text.clone()],
            ),
        }
    }
}

/// A job's `exec` line: split into words, its program found in `path_var` from `cwd`.
pub fn exec(
    r: &mut Reader<'_>,
    key: &str,
    v: &Value<'_>,
    path_var: &str,
    cwd: &Path,
) -> Option<Program> {
    let line = r.string(key, v)?;
    let argv = match words::split(&line) {
        Ok(w) if !w.is_empty() => w,
        Ok(_) => {
            r.error(v.span(), format!("`{key}` is empty"), None);
            return None;
        }
        Err(e) => {
            r.error(v.span(), format!("`{key}`: {e}"), None);
            return None;
        }
    };
    match resolve(&argv[0], path_var, cwd) {
        Ok(path) => Some(Program::Exec { path, argv }),
        Err(msg) => {
            let hint = (line.contains('|') || line.contains("&&") || line.contains('>'))
                .then(|| "this looks like shell: use `script = \"...\"` instead".to_string());
            r.error(v.span(), format!("`{key}`: {msg}"), hint);
            None
        }
    }
}

/// Finds the executable a command's first word names, as `execvp` would.
pub fn resolve(program: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = cwd.join(program);
        return if executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(format!("{} is not an executable file", p.display()))
        } else {
            Err(format!("{} does not exist", p.display()))
        };
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cwd.join(d).join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("program `{program}` not found in PATH {path_var}"))
}

/// A program given as a table `{ exec = "..." }` or `{ script = "..." }` (as check
/// actions are), with `exec` resolved in the default PATH.
pub fn hook_program(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<Program> {
    match hook(r, key, v)? {
        Program::Exec { argv, .. } => match resolve(&argv[0], DEFAULT_PATH, Path::new("/")) {
            Ok(path) => Some(Program::Exec { path, argv }),
            Err(msg) => {
                r.error(v.span(), format!("`{key}`: {msg}"), None);
                None
            }
        },
        script => Some(script),
    }
}

/// A hook: shell text, or a table `{ exec = "..." }` (left unresolved: its PATH and
/// working directory are the job's, known once the whole file is read) or
/// `{ script = "..." }`.
pub fn hook(r: &mut Reader<'_>, key: &str, v: &Value<'_>) -> Option<Program> {
    match v.get_ref() {
        DeValue::String(_) => r.string(key, v).map(Program::Script),
        DeValue::Table(t) => {
            let mut found = None;
            for (k, val) in t.iter() {
                match k.get_ref().as_ref() {
                    "exec" => {
                        let line = r.string("exec", val)?;
                        match words::split(&line) {
                            Ok(w) if !w.is_empty() => {
                                found = Some(Program::Exec {
                                    path: PathBuf::new(),
                                    argv: w,
                                })
                            }
                            Ok(_) => r.error(val.span(), "`exec` is empty", None),
                            Err(e) => r.error(val.span(), format!("`exec`: {e}"), None),
                        }
                    }
                    "script" => found = r.string("script", val).map(Program::Script),
                    _ => r.unknown_key(k, &["exec", "script"]),
                }
            }
            if found.is_none() && t.is_empty() {
                r.error(v.span(), format!("`{key}` needs `exec` or `script`"), None);
            }
            found
        }
        _ => {
            r.error(
                v.span(),
                format!(
                    "`{key}` must be shell text or a table {{ exec = \"...\" }}, not {}",
                    v.get_ref().type_str()
                ),
                None,
            );
            None
        }
    }
}
