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
    assert_eq!(
        complete(&script, &["guardian", "-c", &dir, "config", "w"]),
        ["web", "worker"]
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

/// The zsh and fish completion files, generated into a temporary directory.
fn generated() -> tempfile::TempDir {
    let out_dir = tempfile::tempdir().expect("tempdir");
    for shell in ["zsh", "fish"] {
        let status = Command::new(BIN)
            .args(["generate", "completions", shell])
            .arg(out_dir.path())
            .status()
            .expect("generate");
        assert!(status.success());
    }
    out_dir
}

fn have(shell: &str) -> bool {
    let found = Command::new(shell).arg("-c").arg("true").status().is_ok();
    if !found {
        eprintln!("SKIPPED: no {shell} (apt-get install {shell})");
    }
    found
}

fn lines(out: &std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').next().unwrap_or(l).to_string())
        .collect();
    got.sort();
    got
}

#[test]
fn fish_completes_job_names() {
    if !have("fish") {
        return;
    }
    let c = Conf::new();
    for name in ["web", "worker"] {
        c.job(name, "exec = \"sleep 600\"\n");
    }
    let files = generated();
    let script = files.path().join("guardian.fish");
    let dir = c.path().display().to_string();
    let ask = |line: &str| {
        let program = format!("source '{}'; complete -C'{line}'", script.display());
        lines(
            &Command::new("fish")
                .arg("--no-config")
                .arg("-c")
                .arg(program)
                .output()
                .expect("fish"),
        )
    };
    assert_eq!(
        ask(&format!("guardian -c {dir} restart ")),
        ["all", "web", "worker"]
    );
    assert_eq!(
        ask(&format!("guardian --config {dir} logs w")),
        ["web", "worker"]
    );
    assert_eq!(ask(&format!("guardian -c {dir} env we")), ["web"]);
    assert_eq!(ask(&format!("guardian -c {dir} config we")), ["web"]);
}

#[test]
fn zsh_finds_job_names_in_the_directory_on_the_line() {
    if !have("zsh") {
        return;
    }
    let c = Conf::new();
    for name in ["web", "worker"] {
        c.job(name, "exec = \"sleep 600\"\n");
    }
    std::fs::write(c.path().join("jobs/.example.toml"), "# not a job\n").expect("hidden");
    let files = generated();
    let script = files.path().join("_guardian");
    let dir = c.path().display().to_string();
    for line in [
        format!("guardian -c {dir} restart "),
        format!("guardian --config={dir} status "),
    ] {
        let program = format!(
            "autoload -U compinit && compinit -u -D && source '{}' && BUFFER='{line}' && _guardian_job_names && print -l -- $reply",
            script.display()
        );
        let got = lines(
            &Command::new("zsh")
                .arg("-f")
                .arg("-c")
                .arg(program)
                .output()
                .expect("zsh"),
        );
        assert_eq!(got, ["web", "worker"], "{line}");
    }
}

/// Jobs in groups, one written as an operator might (spaces, single quotes).
fn grouped() -> Conf {
    let c = Conf::new();
    c.job(
        "web",
        "exec = \"sleep 600\"\ngroups = [\"frontend\", \"django\"]\n",
    );
    c.job("db", "exec = \"sleep 600\"\n  groups=[ 'django' ]\n");
    c.job("solo", "exec = \"sleep 600\"\n");
    c
}

#[test]
fn every_shell_completes_group_names_after_g() {
    let c = grouped();
    let dir = c.path().display().to_string();
    let out_dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let status = Command::new(BIN)
            .args(["generate", "completions", shell])
            .arg(out_dir.path())
            .status()
            .expect("generate");
        assert!(status.success());
    }
    let bash = out_dir.path().join("guardian.bash");
    assert_eq!(
        complete(&bash, &["guardian", "-c", &dir, "start", "-g", ""]),
        ["django", "frontend"]
    );
    assert_eq!(
        complete(
            &bash,
            &["guardian", "-c", &dir, "summary", "--group", "=", "f"]
        ),
        ["frontend"]
    );
    assert_eq!(
        complete(
            &bash,
            &["guardian", "-c", &dir, "unmonitor", "--group", "d"]
        ),
        ["django"]
    );
    // After the group, no job is asked for: -g takes its word.
    let after = complete(&bash, &["guardian", "-c", &dir, "stop", "-g", "django", ""]);
    assert!(!after.contains(&"web".to_string()), "{after:?}");

    if have("fish") {
        let script = out_dir.path().join("guardian.fish");
        let program = format!(
            "source '{}'; complete -C'guardian -c {dir} restart -g '",
            script.display()
        );
        let got = lines(
            &Command::new("fish")
                .arg("--no-config")
                .arg("-c")
                .arg(program)
                .output()
                .expect("fish"),
        );
        assert_eq!(got, ["django", "frontend"]);
    }
    if have("zsh") {
        let script = out_dir.path().join("_guardian");
        let program = format!(
            "autoload -U compinit && compinit -u -D && source '{}' && BUFFER='guardian -c {dir} stop -g ' && _guardian_group_names && print -l -- $reply",
            script.display()
        );
        let got = lines(
            &Command::new("zsh")
                .arg("-f")
                .arg("-c")
                .arg(program)
                .output()
                .expect("zsh"),
        );
        assert_eq!(got, ["django", "frontend"]);
    }
}
