//! `guardian import`: Upstart job files, supervisord.conf and monitrc turned into job
//! files, with a report of every line that could not be carried over exactly.
//!
//! Each importer reads its files into [`Output`]: documents to write (built with the
//! small writer in [`writer`]) and report items. Nothing is written until every document
//! has passed the same validation `guardian check` applies, and no file is replaced
//! without `--force`.

pub mod monit;
pub mod supervisor;
pub mod upstart;
pub mod writer;

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use self::writer::Doc;

/// The arguments of `guardian import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub tool: Tool,
    /// Write into this configuration directory instead of the one given with -c.
    #[arg(long, global = true, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace files that already exist.
    #[arg(long, global = true)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Tool {
    /// Upstart job files (NAME.conf, with NAME.override beside it applied).
    Upstart {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A supervisord.conf, with the files its [include] names.
    Supervisor { file: PathBuf },
    /// A monitrc, with the files its `include` names.
    Monit { file: PathBuf },
}

/// How far a line is from what guardian does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Translated, with a difference in meaning the reader should know.
    Approximated,
    /// Not translated at all.
    Dropped,
    /// Translated exactly, but something about this host is worth saying.
    Note,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Approximated => "approximated",
            Kind::Dropped => "not translated",
            Kind::Note => "note",
        })
    }
}

/// One line of an imported file that did not become guardian's exactly.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub file: PathBuf,
    pub line: usize,
    pub text: String,
    pub kind: Kind,
    pub why: String,
}

/// A place in an imported file.
#[derive(Debug, Clone)]
pub struct At {
    pub file: PathBuf,
    pub line: usize,
    pub text: String,
}

/// What an importer produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Job files, by job name.
    pub jobs: Vec<(String, Doc)>,
    /// Settings for guardian.toml (Monit's mail server, alerts, host checks).
    pub settings: Option<Doc>,
    pub items: Vec<Item>,
}

impl Output {
    pub fn report(&mut self, at: &At, kind: Kind, why: impl Into<String>) {
        self.items.push(Item {
            file: at.file.clone(),
            line: at.line,
            text: at.text.trim().to_string(),
            kind,
            why: why.into(),
        });
    }
    pub fn approx(&mut self, at: &At, why: impl Into<String>) {
        self.report(at, Kind::Approximated, why);
    }
    pub fn drop_line(&mut self, at: &At, why: impl Into<String>) {
        self.report(at, Kind::Dropped, why);
    }
}

/// An input problem: a file that cannot be read or parsed, as `file:line: message`.
#[derive(Debug)]
pub struct Error {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl Error {
    pub fn new(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Error {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Reads a file to import: at most 1 MiB of UTF-8, as guardian's own files.
pub fn read_text(file: &Path) -> Result<String, Error> {
    let bytes =
        std::fs::read(file).map_err(|e| Error::new(file, 0, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > crate::config::source::MAX_FILE_BYTES {
        return Err(Error::new(file, 0, "is larger than 1 MiB"));
    }
    String::from_utf8(bytes).map_err(|e| {
        let upto = e.utf8_error().valid_up_to();
        let line = e
            .as_bytes()
            .get(..upto)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_add(1))
            .unwrap_or(0);
        Error::new(file, line, "is not UTF-8")
    })
}

/// The files a glob pattern names, relative to `base`, sorted; a pattern without
/// wildcards names its file whether it exists or not.
pub fn glob(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        std::path::absolute(base.join(pattern)).unwrap_or_else(|_| base.join(pattern))
    };
    let has_wild = |s: &str| s.contains(['*', '?', '[']);
    if !has_wild(&full.to_string_lossy()) {
        return vec![full];
    }
    // Walk component by component: wildcards may be in directory names too.
    let mut found = vec![PathBuf::from("/")];
    for comp in full.components().skip(1) {
        let part = comp.as_os_str().to_string_lossy().to_string();
        let mut next = Vec::new();
        for dir in &found {
            if !has_wild(&part) {
                next.push(dir.join(&part));
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.') && wildcard(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found
}

/// Shell-style matching: `*`, `?` and `[...]` (with `!` or `^` to negate).
pub fn wildcard(pattern: &str, name: &str) -> bool {
    // Consecutive stars match what one does: collapsing them keeps the search small.
    let mut p: Vec<char> = Vec::new();
    for c in pattern.chars() {
        if !(c == '*' && p.last() == Some(&'*')) {
            p.push(c);
        }
    }
    let n: Vec<char> = name.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, length consumed including ']').
        let mut i = 0;
        let negate = matches!(p.first(), Some('!') | Some('^'));
        if negate {
            i = 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            let a = p[i];
            if a == ']' && !first {
                return Some((matched != negate, i.saturating_add(1)));
            }
            first = false;
            if i.saturating_add(2) < p.len() && p[i.saturating_add(1)] == '-' {
                let b = p[i.saturating_add(2)];
                if a <= c && c <= b {
                    matched = true;
                }
                i = i.saturating_add(3);
            } else {
                if a == c {
                    matched = true;
                }
                i = i.saturating_add(1);
            }
        }
        None
    }
    // The classic matcher with one backtracking point, the last star: time linear in
    // the pattern times the name, whatever the stars.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if let Some(&pc) = p.get(pi) {
            let c = n[ni];
            let step = match pc {
                '*' => {
                    star = Some((pi, ni));
                    pi = pi.saturating_add(1);
                    continue;
                }
                '?' => Some(1),
                '[' => match class(&p[pi.saturating_add(1)..], c) {
                    Some((true, len)) => Some(len.saturating_add(1)),
                    Some((false, _)) => None,
                    None => (c == '[').then_some(1),
                },
                other => (other == c).then_some(1),
            };
            if let Some(len) = step {
                pi = pi.saturating_add(len);
                ni = ni.saturating_add(1);
                continue;
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp.saturating_add(1);
                ni = sn.saturating_add(1);
                star = Some((sp, ni));
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&'*') {
        pi = pi.saturating_add(1);
    }
    pi == p.len()
}

/// A job name from another tool's: kept when guardian takes it, else with every other
/// character made `-` (and reported by the caller).
pub fn job_name(name: &str) -> String {
    if crate::config::valid_name(name) {
        return name.to_string();
    }
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@') {
                c
            } else {
                '-'
            }
        })
        .take(crate::config::limits::MAX_NAME)
        .collect();
    while s.starts_with('.') {
        s.replace_range(..1, "-");
    }
    if s.is_empty() || !crate::config::valid_name(&s) {
        s = format!("imported-{}", s.len());
    }
    s
}

/// The PATH guardian gives a job that sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Characters that make a command line need a shell.
fn needs_shell(line: &str) -> bool {
    line.contains([
        '$', '`', '|', '&', ';', '<', '>', '(', ')', '*', '?', '[', '~', '{', '}', '\n',
    ]) || crate::config::words::split(line).is_err()
}

/// How a command line becomes a main process or a hook: `exec` (words, no shell) when it
/// needs no shell and its program is on this host, else a shell line.
pub enum Command {
    Exec(String),
    Shell(String),
}

/// Decides [`Command`] for `line`; `env_path` is the job's PATH if it sets one. A
/// program that is not on this host is noted: `check` would refuse it as `exec`.
pub fn command(out: &mut Output, at: &At, line: &str, env_path: Option<&str>) -> Command {
    let line = line.trim();
    if needs_shell(line) {
        return Command::Shell(line.to_string());
    }
    let words = crate::config::words::split(line).unwrap_or_default();
    let Some(program) = words.first() else {
        return Command::Shell(line.to_string());
    };
    match crate::config::program::resolve(program, env_path.unwrap_or(DEFAULT_PATH), Path::new("/"))
    {
        Ok(_) => Command::Exec(line.to_string()),
        Err(why) => {
            out.report(
                at,
                Kind::Note,
                format!(
                    "{why} on this host, so it is run through `sh -c` (which `check` does not look into); install it, or fix the path"
                ),
            );
            Command::Shell(line.to_string())
        }
    }
}

/// As [`command`] for a command line that is split into words and run without a shell
/// (supervisord's `command`, Monit's programs): a shell is used only when the program
/// is not on this host (or the line cannot be split into words).
pub fn command_words(out: &mut Output, at: &At, line: &str, env_path: Option<&str>) -> Command {
    let line = line.trim();
    let words = match crate::config::words::split(line) {
        Ok(w) if !w.is_empty() => w,
        _ => return Command::Shell(line.to_string()),
    };
    match crate::config::program::resolve(
        &words[0],
        env_path.unwrap_or(DEFAULT_PATH),
        Path::new("/"),
    ) {
        Ok(_) => Command::Exec(line.to_string()),
        Err(why) => {
            out.report(
                at,
                Kind::Note,
                format!(
                    "{why} on this host, so it is run through `sh -c` (which `check` does not look into); install it, or fix the path"
                ),
            );
            Command::Shell(line.to_string())
        }
    }
}

/// Whether a user exists here and guardian (run as this user) could switch to it.
pub fn user_ok(name: &str) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "switching user needs guardian to run as root, and this import does not run as root"
                .into(),
        );
    }
    let found = match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(name),
    };
    match found {
        Ok(Some(_)) => Ok(()),
        _ => Err(format!("the user `{name}` does not exist on this host")),
    }
}

/// As [`user_ok`] for a group.
pub fn group_ok(name: &str) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "switching group needs guardian to run as root, and this import does not run as root"
                .into(),
        );
    }
    let found = match name.parse::<u32>() {
        Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)),
        Err(_) => nix::unistd::Group::from_name(name),
    };
    match found {
        Ok(Some(_)) => Ok(()),
        _ => Err(format!("the group `{name}` does not exist on this host")),
    }
}

/// Whether `dir` can be a job's `chdir` here.
pub fn dir_ok(dir: &str) -> Result<(), String> {
    let p = Path::new(dir);
    if !p.is_absolute() {
        return Err(format!("`{dir}` is not an absolute path"));
    }
    if !p.is_dir() {
        return Err(format!("the directory {dir} does not exist on this host"));
    }
    Ok(())
}

/// Job names already in the configuration directory `dir`.
pub fn existing_jobs(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("jobs")) {
        for e in entries.flatten() {
            if let Some(stem) = e.file_name().to_str().and_then(|n| n.strip_suffix(".toml")) {
                names.insert(stem.to_string());
            }
        }
    }
    names
}

#[derive(Serialize)]
struct JsonReport<'a> {
    written: Vec<String>,
    exact: bool,
    items: &'a [Item],
}

/// `guardian import ...`: 0 when every line was carried over exactly, 1 when some line
/// was approximated or dropped, 2 on an error (nothing is written then).
pub fn run(config_dir: &Path, args: ImportArgs) -> anyhow::Result<crate::cli::Exit> {
    use crate::cli::Exit;
    let out_dir = args.out.clone().unwrap_or_else(|| config_dir.to_path_buf());
    let existing = existing_jobs(&out_dir);
    let result = match &args.tool {
        Tool::Upstart { files } => upstart::import(files, &existing),
        Tool::Supervisor { file } => supervisor::import(file, &existing),
        Tool::Monit { file } => monit::import(file, &existing),
    };
    let mut output = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("guardian: import: {e}");
            return Ok(Exit::Error);
        }
    };
    let written = match write(&out_dir, &mut output, args.force) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("guardian: import: {e}");
            return Ok(Exit::Error);
        }
    };
    let exact = output.items.iter().all(|i| i.kind == Kind::Note);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let report = JsonReport {
            written: written.iter().map(|p| p.display().to_string()).collect(),
            exact,
            items: &output.items,
        };
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    } else {
        for p in &written {
            writeln!(stdout, "wrote {}", p.display())?;
        }
        for i in &output.items {
            writeln!(
                stdout,
                "{}:{}: {}: {}\n    {}",
                i.file.display(),
                i.line,
                i.kind,
                i.why,
                i.text
            )?;
        }
        let counted = output.items.iter().filter(|i| i.kind != Kind::Note).count();
        if counted == 0 {
            writeln!(stdout, "every line was translated exactly")?;
        } else {
            writeln!(
                stdout,
                "{counted} line{} not translated exactly: see above",
                if counted == 1 { "" } else { "s" }
            )?;
        }
    }
    Ok(if exact { Exit::Ok } else { Exit::No })
}

/// Validates every document as `check` would, then writes them (mode 0644, directories
/// 0755): all or nothing, and nothing over an existing file without `force`.
fn write(dir: &Path, output: &mut Output, force: bool) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut problems = Vec::new();
    let jobs_dir = dir.join("jobs");
    let mut seen = BTreeSet::new();
    for (name, doc) in &output.jobs {
        if !seen.insert(name.clone()) {
            problems.push(format!("two imported jobs are both called `{name}`"));
            continue;
        }
        let path = jobs_dir.join(format!("{name}.toml"));
        let text = doc.render();
        let diags = crate::config::check_job_text(name, &path, text.as_bytes());
        if !diags.0.is_empty() {
            problems.push(format!(
                "the file made for `{name}` does not pass check (please report this):\n{diags}\n--- the file:\n{text}"
            ));
        }
        files.push((path, text));
    }
    if let Some(settings) = &output.settings {
        let main = dir.join("guardian.toml");
        let path = if main.exists() {
            dir.join("guardian.toml.imported")
        } else {
            main
        };
        let text = settings.render();
        let diags = crate::config::check_settings_text(dir, &path, text.as_bytes());
        if !diags.0.is_empty() {
            problems.push(format!(
                "the settings made do not pass check (please report this):\n{diags}\n--- the file:\n{text}"
            ));
        }
        files.push((path, text));
    }
    if !problems.is_empty() {
        return Err(format!("nothing written:\n{}", problems.join("\n")));
    }
    if !force {
        let exist: Vec<String> = files
            .iter()
            .filter(|(p, _)| p.exists())
            .map(|(p, _)| p.display().to_string())
            .collect();
        if !exist.is_empty() {
            return Err(format!(
                "nothing written: {} already exist{}; give --force to replace {}",
                exist.join(", "),
                if exist.len() == 1 { "s" } else { "" },
                if exist.len() == 1 { "it" } else { "them" }
            ));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&jobs_dir)
        .map_err(|e| format!("cannot create {}: {e}", jobs_dir.display()))?;
    let mut written = Vec::new();
    for (path, text) in files {
        let tmp = path.with_extension("import-tmp");
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| {
                // The mode is set whatever the umask: `check` refuses files others write.
                std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", path.display()));
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_a_shell_does() {
        assert!(wildcard("*.conf", "web.conf"));
        assert!(!wildcard("*.conf", "web.conf~"));
        assert!(wildcard("config??.conf", "config01.conf"));
        assert!(wildcard("[a-c]*", "beta"));
        assert!(!wildcard("[!a-c]*", "beta"));
        assert!(wildcard(
            "**********x",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaax"
        ));
        assert!(!wildcard("*a*a*a*a*a*a*a*b", &"a".repeat(60)));
        assert!(wildcard("[", "["));
    }

    #[test]
    fn job_names_are_made_valid() {
        assert_eq!(job_name("redis-server"), "redis-server");
        assert_eq!(job_name("web:app"), "web-app");
        assert_eq!(job_name(".hidden"), "-hidden");
        assert!(crate::config::valid_name(&job_name("all")));
        assert!(crate::config::valid_name(&job_name("")));
    }

    /// Whatever the importers are given (cut short anywhere, with a character changed
    /// into one their readers treat specially) they answer, and do not panic.
    #[test]
    fn importers_never_panic_on_mangled_input() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import");
        let samples = [
            ("upstart", root.join("upstart/django/celeryd.conf")),
            ("upstart", root.join("upstart/django/uwsgi.conf")),
            ("supervisor", root.join("supervisor/docs-example.conf")),
            ("monit", root.join("monit/monitrc")),
        ];
        let dir = tempfile::tempdir().expect("temporary directory");
        let specials = [
            '"', '\'', '(', ')', '{', '}', '%', '\\', '[', ']', '#', ';', '=', '\n', 'é',
        ];
        let existing = BTreeSet::new();
        for (tool, path) in samples {
            let text = std::fs::read_to_string(&path).expect("fixture");
            let chars: Vec<char> = text.chars().collect();
            let file = dir.path().join(format!("input-{tool}.conf"));
            let mut variants: Vec<String> = Vec::new();
            for cut in (0..chars.len()).step_by(11) {
                variants.push(chars[..cut].iter().collect());
            }
            for (k, at) in (0..chars.len()).step_by(5).enumerate() {
                let mut c = chars.clone();
                c[at] = specials[k % specials.len()];
                variants.push(c.into_iter().collect());
            }
            for v in variants {
                std::fs::write(&file, &v).expect("write");
                let mut out = match tool {
                    "upstart" => upstart::import(std::slice::from_ref(&file), &existing),
                    "supervisor" => supervisor::import(&file, &existing),
                    _ => monit::import(&file, &existing),
                };
                if let Ok(o) = &mut out {
                    for (_, doc) in &o.jobs {
                        let _ = doc.render();
                    }
                }
            }
        }
    }
}
