//! The generated bash completion offers the jobs of the configuration directory named
//! on the line (`guardian generate completions bash DIR`, as the package ships it).

use std::process::Command;

use crate::util::{BIN, Conf};

/// What `_guardian_with_jobs` puts in COMPREPLY for `words`, the last being the word
/// being completed.
fn complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}' && COMP_WORDS=({}) && COMP_CWORD={cword} && _guardian_with_jobs guardian '{}' '{}' && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words[cword].replace('\'', "'\\''"),
        prev.replace('\'', "'\\''"),
    );
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(program)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    got.sort();
    got
}

#[test]
fn bash_completes_job_names_from_the_configuration_directory() {
    let c = Conf::new();
    for name in ["web", "worker", "api"] {
        c.job(name, "exec = \"sleep 600\"\n");
    }
    std::fs::write(c.path().join("jobs/.example.toml"), "# not a job\n").expect("hidden");
    std::fs::write(c.path().join("jobs/notes.txt"), "not a job\n").expect("notes");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(BIN)
        .args(["generate", "completions", "bash"])
        .arg(out_dir.path())
        .status()
        .expect("generate");
    assert!(status.success());
    let script = out_dir.path().join("guardian.bash");
    let dir = c.path().display().to_string();

    assert_eq!(
        complete(&script, &["guardian", "-c", &dir, "restart", "w"]),
        ["web", "worker"]
    );
    assert_eq!(
        complete(&script, &["guardian", "-c", &dir, "stop", ""]),
        ["all", "api", "web", "worker"]
    );
    // After the command, with --config=DIR split at `=` as bash splits it.
    assert_eq!(
        complete(&script, &["guardian", "status", "--config", "=", &dir, "a"]),
        ["api"]
    );
    assert_eq!(
        complete(&script, &["guardian", "--config", &dir, "logs", ""]),
        ["api", "web", "worker"]
    );
    // `reload all` is refused, so not offered.
    assert_eq!(
        complete(&script, &["guardian", "-c", &dir, "reload", "al"]),
        Vec::<String>::new()
    );
    // Only the first argument is a job: `run web <TAB>` is clap's (no job names).
    let second = complete(&script, &["guardian", "-c", &dir, "run", "web", ""]);
    assert!(!second.contains(&"worker".to_string()), "{second:?}");
    // Options and commands are still clap's.
    let opts = complete(&script, &["guardian", "-c", &dir, "restart", "--no"]);
    assert_eq!(opts, ["--no-wait"]);
    let cmds = complete(&script, &["guardian", "res"]);
    assert_eq!(cmds, ["restart"]);
    // A directory without jobs offers none.
    let empty = tempfile::tempdir().expect("tempdir");
    let none = empty.path().display().to_string();
    assert_eq!(
        complete(&script, &["guardian", "-c", &none, "env", ""]),
        Vec::<String>::new()
    );
}
