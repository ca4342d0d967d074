//! What must survive a daemon restart: which jobs a person stopped and which are
//! unmonitored. Written atomically (temporary file, fsync, rename, fsync of the directory).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files;
use crate::job::Machine;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Persisted {
    #[serde(default)]
    pub unmonitored: BTreeSet<String>,
    /// Jobs stopped by hand: they stay down until `guardian start`.
    #[serde(default)]
    pub stopped: BTreeSet<String>,
}

impl Persisted {
    /// What the jobs' machines hold of it: who is unmonitored, who was stopped by hand.
    pub fn of<'a>(jobs: impl Iterator<Item = (&'a str, &'a Machine)>) -> Persisted {
        let mut p = Persisted::default();
        for (name, m) in jobs {
            if !m.monitored() {
                p.unmonitored.insert(name.to_string());
            }
            if m.manual_stop() {
                p.stopped.insert(name.to_string());
            }
        }
        p
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// Loads the saved state. A missing file is an empty state; a damaged one is kept aside
/// as `state.json.damaged` and reported, so nothing is silently overwritten.
pub fn load(state_dir: &Path) -> (Persisted, Option<String>) {
    let file = path(state_dir);
    match std::fs::read(&file) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(p) => {
                // Written by an older guardian under the umask: private from now on.
                let warning = files::fix_path(&file, files::PRIVATE)
                    .err()
                    .map(|e| format!("cannot make {} private (mode 0600): {e}", file.display()));
                (p, warning)
            }
            Err(e) => {
                let aside = state_dir.join("state.json.damaged");
                let _ = std::fs::rename(&file, &aside);
                let _ = files::fix_path(&aside, files::PRIVATE);
                (
                    Persisted::default(),
                    Some(format!(
                        "{} is damaged ({e}); kept as {} and starting from an empty state",
                        file.display(),
                        aside.display()
                    )),
                )
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Persisted::default(), None),
        Err(e) => (
            Persisted::default(),
            Some(format!("cannot read {}: {e}", file.display())),
        ),
    }
}

pub fn save(state_dir: &Path, state: &Persisted) -> io::Result<()> {
    let file = path(state_dir);
    let tmp = state_dir.join("state.json.tmp");
    let body = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    {
        let mut f = files::open(
            &tmp,
            OpenOptions::new().write(true).create(true).truncate(true),
            files::PRIVATE,
        )?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &file)?;
    File::open(state_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Persisted::default();
        s.unmonitored.insert("nginx".into());
        s.stopped.insert("worker".into());
        save(dir.path(), &s).expect("saved");
        assert_eq!(load(dir.path()), (s, None));
        std::fs::write(path(dir.path()), b"{not json").expect("write");
        let (loaded, warning) = load(dir.path());
        assert_eq!(loaded, Persisted::default());
        assert!(warning.is_some());
        assert!(dir.path().join("state.json.damaged").exists());
    }
}
