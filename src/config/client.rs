//! What a client command reads of `guardian.toml`: where the control socket is (and,
//! for `logs` when no daemon runs, where the logs are). Nothing else is read or
//! validated: a client needs nothing else, and may not be allowed to read what the rest
//! of the file names (a password file); checking the whole configuration is the work of
//! `guardian check` and of the daemon.

use std::path::{Path, PathBuf};

use super::reader::Reader;
use super::{Diagnostics, Settings, source};

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
    // The same judgement as the daemon's: a guardian.toml that others may write could
    // point a client (root, often) at a socket of theirs.
    let bytes = match source::read(&file, source::Trust::Config, source::MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(refused) if refused.not_found => return Ok(paths),
        Err(refused) => {
            let hint = refused.hint.clone().or(Some(
                "a client needs only the socket: give it with --socket PATH or GUARDIAN_SOCKET"
                    .into(),
            ));
            return Err(Diagnostics(vec![refused.about(&file).with_hint(hint)]));
        }
    };
    let text = source::text(&file, &bytes).map_err(|d| Diagnostics(vec![*d]))?;
    let mut r = Reader::new(&file, text);
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
