//! What a daemon that dies leaves for the next one: `state-dir/running.json`, the
//! processes of every job that is not at rest, so that the next daemon can find them
//! again and adopt them or end them cleanly (`recovery.rs`).
//!
//! Per job: its state and goal, a fingerprint of its configuration, its main process
//! and the hook running now, each as pid, start time (field 22 of /proc/PID/stat),
//! process group and session, and its counts. Also a "clean exit" mark, written when
//! the daemon exits after stopping every job.
//!
//! Written with a temporary file and a rename, without fsync: the record has to survive
//! the daemon's death, not the machine's (after a reboot there is nothing to adopt, and
//! the start times tell a stale record). Writes are coalesced: a change marks the record
//! dirty, and the loop writes it once per turn, before any answer leaves for a client.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files;

/// The format's version. 2: the fingerprint is of the job's file, canonical
/// (`config::fingerprint`). A record of version 1 (guardian before 2) is read too, its
/// fingerprints compared as that version made them ([`legacy_fingerprint`]); one of
/// another version is not read.
pub const VERSION: u32 = 2;
/// The oldest version still read.
pub const OLDEST: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// The daemon that wrote it stopped every job and exited.
    #[serde(default)]
    pub clean_exit: bool,
    /// The jobs that were not at rest.
    #[serde(default)]
    pub jobs: BTreeMap<String, Entry>,
}

/// One job that was not at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The machine's state, in the words of `status`. (Borrowed words while the
    /// daemon keeps the entry: nothing allocated per job for them.)
    pub state: Cow<'static, str>,
    /// `start` or `stop`.
    pub goal: Cow<'static, str>,
    /// Of the job's configuration (see [`fingerprint`]).
    pub fingerprint: u64,
    #[serde(default)]
    pub main: Option<ProcEntry>,
    /// The hook running now: which one, and its process.
    #[serde(default)]
    pub hook: Option<(Cow<'static, str>, ProcEntry)>,
    #[serde(default)]
    pub restarts: u64,
    #[serde(default)]
    pub runs: u64,
    /// The job's kill-signal (a number) and kill-timeout, to end what is left of it
    /// should its file be gone by the next start.
    pub kill_signal: i32,
    pub kill_timeout_ms: u64,
}

/// A process, as it can be found again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcEntry {
    pub pid: u32,
    /// Clock ticks after boot: another process that reuses the pid has another.
    pub start_time: u64,
    pub pgid: u32,
    pub sid: u32,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("running.json")
}

/// The record a previous daemon left: None when there is none (a first start, or a
/// guardian that wrote none), or when it cannot be read (said in the warning; a damaged
/// one is kept aside as `running.json.damaged`).
pub fn load(state_dir: &Path) -> (Option<Record>, Option<String>) {
    let file = path(state_dir);
    match std::fs::read(&file) {
        Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) if (OLDEST..=VERSION).contains(&r.version) => (Some(r), None),
            Ok(r) => (
                None,
                Some(format!(
                    "{} has version {}, not {VERSION}: not read",
                    file.display(),
                    r.version
                )),
            ),
            Err(e) => {
                let aside = state_dir.join("running.json.damaged");
                let _ = std::fs::rename(&file, &aside);
                (
                    None,
                    Some(format!(
                        "{} is damaged ({e}); kept as {}: no job is adopted",
                        file.display(),
                        aside.display()
                    )),
                )
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (None, None),
        Err(e) => (None, Some(format!("cannot read {}: {e}", file.display()))),
    }
}

#[derive(Serialize)]
struct Out<'a, J: Serialize> {
    version: u32,
    clean_exit: bool,
    jobs: &'a J,
}

/// Writes the record: a temporary file, then a rename over the old one; mode 0600.
/// `jobs` is written as the record's `jobs`: a map of names to [`Entry`]s.
pub fn save<J: Serialize>(state_dir: &Path, clean_exit: bool, jobs: &J) -> io::Result<()> {
    let tmp = state_dir.join("running.json.tmp");
    {
        let f = files::open(
            &tmp,
            OpenOptions::new().write(true).create(true).truncate(true),
            files::PRIVATE,
        )?;
        // Streamed: no buffer of the whole record (2,000 jobs make some 400 KB).
        let mut w = BufWriter::with_capacity(64 * 1024, f);
        serde_json::to_writer(
            &mut w,
            &Out {
                version: VERSION,
                clean_exit,
                jobs,
            },
        )
        .map_err(io::Error::other)?;
        w.flush()?;
    }
    std::fs::rename(&tmp, path(state_dir))
}

/// A fingerprint of a job's configuration: of what its file says, the same in every
/// build (see `config::fingerprint`).
pub fn fingerprint(spec: &crate::config::JobSpec) -> u64 {
    spec.fingerprint.0
}

/// The fingerprint a record of version 1 holds: FNV-1a over the debug form of the spec,
/// as guardian 1 wrote it (without the `fingerprint` field it did not have). Only as
/// stable as that form, which is why version 2 left it: used only to read a record the
/// previous release left. Nor the `instance` field, which came later still (that
/// release had no instances: it is None in every spec it could have written).
pub fn legacy_fingerprint(spec: &crate::config::JobSpec) -> u64 {
    let text = format!("{spec:?}");
    let tail = format!(", instance: None, fingerprint: {} }}", spec.fingerprint.0);
    let text = match text.strip_suffix(&tail) {
        Some(head) => Cow::Owned(format!("{head} }}")),
        None => Cow::Borrowed(text.as_str()),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of `spec` as a record of `version` holds it.
pub fn fingerprint_for(version: u32, spec: &crate::config::JobSpec) -> u64 {
    if version == 1 {
        legacy_fingerprint(spec)
    } else {
        fingerprint(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            state: "running".into(),
            goal: "start".into(),
            fingerprint: 7,
            main: Some(ProcEntry {
                pid: 10,
                start_time: 99,
                pgid: 10,
                sid: 1,
            }),
            hook: None,
            restarts: 2,
            runs: 3,
            kill_signal: 15,
            kill_timeout_ms: 5000,
        }
    }

    #[test]
    fn round_trip_version_and_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), (None, None));
        let mut jobs = BTreeMap::new();
        jobs.insert("web".to_string(), entry());
        save(dir.path(), false, &jobs).expect("saved");
        let (r, w) = load(dir.path());
        assert_eq!(w, None);
        let r = r.expect("a record");
        assert_eq!((r.version, r.clean_exit, r.jobs), (VERSION, false, jobs));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path(dir.path()))
                .expect("meta")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(dir.path()), br#"{"version": 99, "jobs": {}}"#).expect("write");
        let (r, w) = load(dir.path());
        assert!(r.is_none() && w.is_some_and(|w| w.contains("version 99")));
        std::fs::write(path(dir.path()), b"{nope").expect("write");
        let (r, w) = load(dir.path());
        assert!(r.is_none() && w.is_some());
        assert!(dir.path().join("running.json.damaged").exists());
    }

    fn spec(text: &str) -> crate::config::JobSpec {
        let read = crate::config::read_job_text(
            "web",
            Path::new("/etc/guardian/jobs/web.toml"),
            text.as_bytes(),
        );
        assert!(read.errors.is_empty(), "{:?}", read.errors);
        read.spec.expect("a spec")
    }

    #[test]
    fn a_changed_spec_has_another_fingerprint() {
        let a = spec("exec = \"/bin/sleep 100\"\n");
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        let b = spec("exec = \"/bin/sleep 100\"\nrespawn = true\n");
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(legacy_fingerprint(&a), legacy_fingerprint(&b));
        // Reordered, re-spelled: the same job.
        let c = spec("respawn = true\n  exec = '/bin/sleep 100'\n");
        assert_eq!(fingerprint(&b), fingerprint(&c));
    }

    /// The debug form version 1 hashed had no `fingerprint` field: it is left out.
    #[test]
    fn the_legacy_fingerprint_leaves_the_new_field_out() {
        let a = spec("exec = \"/bin/sleep 100\"\n");
        let mut b = a.clone();
        b.fingerprint = crate::config::fingerprint::Fingerprint(12345);
        assert_eq!(legacy_fingerprint(&a), legacy_fingerprint(&b));
        let text = format!("{a:?}");
        assert!(text.ends_with(&format!(", fingerprint: {} }}", a.fingerprint.0)));
    }

    /// A record the previous release (version 1) wrote is read, not refused.
    #[test]
    fn a_version_1_record_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/running-v1.json"
        );
        std::fs::copy(fixture, path(dir.path())).expect("copy the fixture");
        let (r, w) = load(dir.path());
        assert_eq!(w, None);
        let r = r.expect("a record");
        assert_eq!((r.version, r.clean_exit), (1, false));
        let web = r.jobs.get("web").expect("web");
        assert_eq!(
            (web.state.as_ref(), web.goal.as_ref()),
            ("running", "start")
        );
        assert_eq!(
            web.main.map(|p| (p.pid, p.start_time)),
            Some((4242, 987654))
        );
        assert_eq!(web.fingerprint, 11_400_714_819_323_198_485);
    }
}
