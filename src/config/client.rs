//! What a client command reads of `guardian.toml`: where the control socket is (and,
//! for `logs` when no daemon runs, where the logs are). Nothing else is read or
//! validated: a client needs nothing else, and may not be allowed to read what the rest
//! of the file names (a password file); checking the whole configuration is the work of
//! `guardian check` and of the daemon.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::reader::Reader;
use super::{Diagnostic, Diagnostics, Settings};

/// A guardian.toml larger than this is not a configuration.
const MAX_FILE: u64 = 1 << 20;

/// The paths a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPaths {
    pub socket: PathBuf,
    pub log_dir: PathBuf,
}

/// Reads `socket` and `log-dir` from `DIR/guardian.toml` (defaults when the file or a
/// key is missing; relative paths are relative to `dir`).
pub fn paths(dir: &Path) -> Result<ClientPaths, Diagnostics> {
    let defaults = Settings::defaults();
    let mut paths = ClientPaths {
        socket: defaults.socket,
        log_dir: defaults.log_dir,
    };
    let file = dir.join("guardian.toml");
    let text = match read(&file) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(paths),
        Err(message) => {
            return Err(Diagnostics(vec![
                Diagnostic::file(&file, message).with_hint(Some(
                    "a client needs only the socket: give it with --socket PATH or GUARDIAN_SOCKET"
                        .into(),
                )),
            ]));
        }
    };
    let mut r = Reader::new(&file, &text);
    let Some(table) = r.parse() else {
        return Err(Diagnostics(r.errors));
    };
    for key in ["socket", "log-dir"] {
        let Some(v) = table.get_ref().get(key) else {
            continue;
        };
        let Some(p) = r.string(key, v) else { continue };
        if p.is_empty() {
            r.error(v.span(), format!("`{key}` is empty"), None);
            continue;
        }
        let p = dir.join(p);
        match key {
            "socket" => paths.socket = p,
            _ => paths.log_dir = p,
        }
    }
    if r.errors.is_empty() {
        Ok(paths)
    } else {
        Err(Diagnostics(r.errors))
    }
}

/// The file's text; None when there is no such file. Never blocks on a FIFO, and reads
/// no more than [`MAX_FILE`] bytes.
fn read(file: &Path) -> Result<Option<String>, String> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    match f.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err("is not a regular file".into()),
        Err(e) => return Err(format!("cannot read: {e}")),
    }
    let mut bytes = Vec::new();
    if let Err(e) = f.take(MAX_FILE + 1).read_to_end(&mut bytes) {
        return Err(format!("cannot read: {e}"));
    }
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("is larger than {MAX_FILE} bytes"));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| format!("is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert_eq!(
            paths(d).map(|p| p.socket).ok(),
            Some(Settings::defaults().socket)
        );
        std::fs::write(
            d.join("guardian.toml"),
            "socket = \"run/g.sock\"\nunknown-key = 1\n[alert]\nuser = \"x\"\npassword-file = \"/nonexistent\"\n",
        )
        .expect("write");
        let p = paths(d).expect("only the paths are read");
        assert_eq!(p.socket, d.join("run/g.sock"));
        std::fs::write(d.join("guardian.toml"), "socket = 3\n").expect("write");
        let e = paths(d).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("guardian.toml:1:10"), "{e}");
    }
}
