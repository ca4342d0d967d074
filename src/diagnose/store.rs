//! Reports on disk: `state-dir/reports/JOB/TIME.json`, files 0600 in directories 0700
//! (a report holds what the job printed and its command lines). Each job keeps its
//! newest `report-keep` reports; writing one removes the oldest beyond that. Blocking:
//! call it off the async workers.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::report::{Entry, Report};
use crate::files;

/// The largest report file read back, in bytes.
const MAX_FILE: u64 = 8 << 20;

/// Where one job's reports are.
pub fn dir(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join("reports").join(job)
}

/// A file name that sorts as its time: `20261202T193448.123Z.json`, with `-N` added
/// when two reports fall in the same millisecond.
pub fn file_name(at: std::time::SystemTime) -> String {
    let t = humantime::format_rfc3339_millis(at).to_string();
    let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}.json")
}

/// Writes `report` as `name` in the job's directory (made 0700 if missing), then keeps
/// the newest `keep` (at least this one). Returns its path.
pub fn write(state_dir: &Path, report: &Report, name: &str, keep: u32) -> std::io::Result<PathBuf> {
    let d = dir(state_dir, &report.job);
    files::create_dir(&state_dir.join("reports"), files::PRIVATE)?;
    files::create_dir(&d, files::PRIVATE)?;
    let mut path = d.join(name);
    let mut n = 1u32;
    while path.exists() && n < 1000 {
        path = d.join(format!("{}-{n}.json", name.trim_end_matches(".json")));
        n = n.saturating_add(1);
    }
    let tmp = d.join(format!(".{name}.tmp"));
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    {
        let mut f = files::open(
            &tmp,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
            files::PRIVATE,
        )?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    prune(&d, keep.max(1));
    Ok(path)
}

/// The report files of a directory, oldest first.
fn names(d: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(d)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn prune(d: &Path, keep: u32) {
    let all = names(d);
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    let extra = all.len().saturating_sub(keep);
    for old in all.iter().take(extra) {
        let _ = std::fs::remove_file(d.join(old));
    }
}

/// Reads one report file.
pub fn read(path: &Path) -> Result<Report, String> {
    use std::io::Read;
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&buf).map_err(|e| format!("{} is not a report: {e}", path.display()))
}

/// The job's reports, oldest first (one that cannot be read is shown as such).
pub fn list(state_dir: &Path, job: &str) -> Vec<Entry> {
    let d = dir(state_dir, job);
    names(&d)
        .into_iter()
        .map(|name| {
            let path = d.join(&name);
            let (time, why, summary) = match read(&path) {
                Ok(r) => (r.time, r.why, r.summary),
                Err(e) => (String::new(), String::new(), e),
            };
            Entry {
                path: path.display().to_string(),
                name,
                time,
                why,
                summary,
            }
        })
        .collect()
}

/// `LAST` (the newest), `N` (the Nth newest, 1 being LAST) or a file name from the
/// listing: the path of that report.
pub fn find(state_dir: &Path, job: &str, which: &str) -> Result<PathBuf, String> {
    let d = dir(state_dir, job);
    let all = names(&d);
    if all.is_empty() {
        return Err(format!("{job} has no reports"));
    }
    let pick = if which.eq_ignore_ascii_case("last") {
        all.last()
    } else if let Ok(n) = which.parse::<usize>() {
        if n == 0 || n > all.len() {
            return Err(format!(
                "{job} has {} report{}: N is 1 (the newest) to {}",
                all.len(),
                if all.len() == 1 { "" } else { "s" },
                all.len()
            ));
        }
        all.get(all.len() - n)
    } else {
        all.iter()
            .find(|n| n.as_str() == which || n.trim_end_matches(".json") == which)
    };
    pick.map(|n| d.join(n)).ok_or_else(|| {
        format!(
            "{job} has no report `{which}`: name one of `guardian reports {job}`, or LAST, or N"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn written_private_kept_to_n_and_found() {
        let state = tempfile::tempdir().expect("tempdir");
        let mut r = Report {
            job: "web".into(),
            ..Report::default()
        };
        for i in 0..5 {
            r.why = format!("report {i}");
            write(state.path(), &r, &format!("2026010{i}T000000.000Z.json"), 3).expect("written");
        }
        let d = dir(state.path(), "web");
        assert_eq!(
            std::fs::metadata(&d).map(|m| m.mode() & 0o777).ok(),
            Some(0o700)
        );
        let l = list(state.path(), "web");
        let whys: Vec<&str> = l.iter().map(|e| e.why.as_str()).collect();
        assert_eq!(whys, ["report 2", "report 3", "report 4"]);
        let last = find(state.path(), "web", "LAST").expect("last");
        assert_eq!(
            std::fs::metadata(&last).map(|m| m.mode() & 0o777).ok(),
            Some(0o600)
        );
        assert_eq!(read(&last).map(|r| r.why).ok().as_deref(), Some("report 4"));
        let second = find(state.path(), "web", "2").expect("2");
        assert_eq!(
            read(&second).map(|r| r.why).ok().as_deref(),
            Some("report 3")
        );
        assert!(find(state.path(), "web", "4").is_err());
        assert!(find(state.path(), "web", "0").is_err());
        assert!(find(state.path(), "web", &l[0].name).is_ok());
        assert!(find(state.path(), "nope", "LAST").is_err());
        assert!(file_name(std::time::UNIX_EPOCH).starts_with("19700101T000000.000Z"));
    }
}
