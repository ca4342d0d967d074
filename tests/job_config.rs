//! `guardian config JOB`: the rendering of a job's spec reads back as the same job, has
//! every key the documentation lists, and is what the CLI prints.

use std::path::Path;
use std::time::Duration;

use guardian::config::{JobSpec, read_job_text, render};

use crate::util::{Conf, text};

/// Nearly every key, every probe type, and values that need escaping.
const EVERYTHING: &str = r#"
description = "Every key, \"quoted\"\tand tabbed"
groups = ["reference", "all-keys"]
exec = "/bin/sh -c 'exec sleep 3600' \"it's\""
pre-start = "echo \"pre-start of $GUARDIAN_JOB\""
post-start = { exec = "/bin/echo post-start done" }
pre-stop = { script = "echo pre-stop\necho second line" }
post-stop = "echo post-stop"
env = { PATH = "/usr/local/bin:/usr/bin:/bin", LANG = "C.UTF-8", SECRET_TOKEN = "s3cr=t" }
setuid = "nobody"
setgid = "nogroup"
chdir = "/tmp"
umask = "027"
nice = 5
limit = { nofile = [1024, 4096], core = "unlimited", nproc = 512 }
respawn = true
respawn-limit = { count = 7, interval = "90s" }
respawn-delay = { initial = "250ms", max = "1m", stable = "2s" }
normal-exit = [0, 2, "TERM"]
task = false
manual = true
kill-signal = "INT"
kill-timeout = "10s"
reload-signal = "USR1"
start-on = "started all-keys-db or deploy-done ENV=prod"
stop-on = "stopping all-keys-db"
expect = "fork"
pidfile = "/run/everything.pid"
handover-timeout = "7s"
alert = ["ops@example.com", { address = "dev@example.com", on = ["died", "check-failed"], not-on = ["reminder"], reminder = "30m" }]
commands = { flush = "echo flush", "re.index" = "echo two" }
restart-limit = { count = 3, interval = "1h" }
diagnose = "py-spy dump --pid $MAINPID"
diagnose-timeout = "2s"

[ready]
type = "tcp"
host = "127.0.0.1"
port = 8000
every = "200ms"
timeout = "2s"
deadline = "30s"

[[check]]
name = "port"
type = "tcp"
port = 6379
send = "PING\r\n"
expect = "PONG"
every = "10s"
timeout = "1s"
failures = 2
within = 3
grace = "5s"
action = "restart"

[[check]]
name = "port-re"
type = "tcp"
host = "localhost"
port = 6380
expect-regex = "^\\+PONG"
every = "10s"
action = "alert"

[[check]]
type = "http"
url = "https://example.org/health"
method = "post"
status = [200, 204]
contains = "ok"
matches = "up|ok"
headers = { Authorization = "Bearer abc", X-Probe = "guardian" }
cert-min-days = 14
tls-verify = false
every = "30s"
action = { exec = "/bin/echo failed" }

[[check]]
type = "program"
exec = "test -e /tmp"
status = 0
output = ".*"
every = "1m"
action = { script = "echo failed; exit 0" }

[[check]]
type = "dns"
host = "localhost"
server = "127.0.0.53:53"
expect = "127.0.0.1"
every = "1m"
action = "unmonitor"

[[check]]
type = "file"
path = "/tmp"
max-age = "1d"
min-size = 1
max-size = "10MB"
every = "1m"
action = "stop"

[[check]]
type = "flock"
path = "/tmp/everything.lock"
deadline = "2m"
every = "1m"

[[check]]
type = "cpu"
max = "80.5%"
every = "1m"

[[check]]
type = "memory"
max = "500MB"
every = "1m"

[[check]]
name = "memory-share"
type = "memory"
max = "25%"
every = "1m"

[[check]]
type = "children"
max = 20
every = "1m"

[[check]]
type = "load"
max = 4.5
minutes = 5
every = "1m"

[[check]]
type = "system-memory"
max = "90%"
every = "1m"

[[check]]
type = "disk"
path = "/"
max = "95%"
every = "1m"

[[check]]
type = "backlog"
threshold = 10
port = 8000
every = "1m"
"#;

fn read(name: &str, path: &Path, text: &str) -> JobSpec {
    let out = read_job_text(name, path, text.as_bytes());
    let errors: Vec<String> = out.errors.iter().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{text}");
    out.spec.expect("a spec")
}

/// What two readings of the same job may differ in: where the file is, its fingerprint
/// and where the event expressions stood in it.
fn normalized(mut spec: JobSpec) -> JobSpec {
    spec.file = "/jobs/everything.toml".into();
    spec.fingerprint = guardian::config::fingerprint::Fingerprint(0);
    for on in [&mut spec.start_on, &mut spec.stop_on]
        .into_iter()
        .flatten()
    {
        on.offset = None;
        on.span = 0..0;
    }
    spec
}

/// `spec` with the defaults a rendering writes out as values: guardian.toml's `every`
/// and the timeouts of checks that set none, SIGHUP for `reload-signal`.
fn filled(mut spec: JobSpec, every: Duration) -> JobSpec {
    spec.reload_signal = spec
        .reload_signal
        .or(Some(nix::sys::signal::Signal::SIGHUP));
    for c in spec.checks.get_mut().into_iter().flatten() {
        c.timeout = Some(c.timeout(every));
        c.every = Some(c.every(every));
        if c.probe.kind() == "flock" {
            c.deadline = Some(c.lock_deadline());
        }
    }
    spec
}

/// The keys of the table "All keys at a glance" of docs/configuration.md, in order.
fn documented_keys() -> Vec<String> {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let table = docs
        .split("### All keys at a glance")
        .nth(1)
        .expect("the table of keys");
    table
        .lines()
        .skip_while(|l| !l.starts_with("| `"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cell = l.split('|').nth(1)?.trim();
            Some(cell.trim_matches('`').to_string())
        })
        .collect()
}

#[test]
fn config_of_a_job_reads_back_as_the_same_job() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let first = read("everything", &dir.path().join("a.toml"), EVERYTHING);
    let every = Duration::from_secs(30);
    let rendered = render::toml(&first, every, false);
    let again = read("everything", &dir.path().join("b.toml"), &rendered);
    assert_eq!(
        normalized(again.clone()),
        filled(normalized(first.clone()), every),
        "{rendered}"
    );
    // And the rendering of the reading of the rendering is the rendering.
    assert_eq!(
        render::toml(&again, every, false)
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        rendered.lines().skip(1).collect::<Vec<_>>()
    );

    // Every key of the documentation, in its order, set or said to be unset.
    let mut at = 0;
    for key in documented_keys() {
        let needle = match key.as_str() {
            "[ready]" => "\n[ready]\n".to_string(),
            "[[check]]" => "\n[[check]]\n".to_string(),
            k => {
                let k = k.trim_start_matches('[').trim_end_matches(']');
                let set = format!("\n{k} = ");
                if rendered[at..].contains(&set) {
                    set
                } else {
                    format!("\n# {k}: not set")
                }
            }
        };
        let found = rendered[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("`{key}` is not in its place in:\n{rendered}"));
        at += found + 1;
    }

    // Unset keys are said to be, and the defaults are filled in.
    let bare = read(
        "bare",
        &dir.path().join("c.toml"),
        "exec = \"/bin/true\"\n[[check]]\ntype = \"flock\"\npath = \"/tmp/x\"\n",
    );
    let text = render::toml(&bare, every, false);
    for line in [
        "# description: not set",
        "# umask: not set",
        "kill-timeout = \"5s\"",
        "reload-signal = \"HUP\"",
        "respawn-limit = { count = 10, interval = \"5s\" }",
        "every = \"30s\"",
        "timeout = \"5s\"",
        "deadline = \"1m\"",
        "action = \"restart\"",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    let again = read("bare", &dir.path().join("d.toml"), &text);
    // Read back, the defaults are values: the same job, but for the keys it left to them.
    let expected = filled(normalized(bare.clone()), every);
    assert_eq!(normalized(again), expected, "{text}");

    // Secrets hidden; the JSON has the same keys and values.
    let hidden = render::toml(&first, every, true);
    assert!(
        !hidden.contains("s3cr=t") && !hidden.contains("Bearer abc"),
        "{hidden}"
    );
    assert!(hidden.contains("SECRET_TOKEN = \"(hidden)\""), "{hidden}");
    assert!(hidden.contains("Authorization = \"(hidden)\""), "{hidden}");
    let json = render::json(&first, every, false);
    assert_eq!(json["env"]["SECRET_TOKEN"], "s3cr=t");
    assert_eq!(json["kill-signal"], "INT");
    assert_eq!(json["check"][2]["headers"]["Authorization"], "Bearer abc");
    assert_eq!(
        json["check"].as_array().map(Vec::len),
        Some(first.checks.len())
    );
    assert_eq!(json["ready"]["port"], 8000);
    assert!(json["instances"].is_null());
    let json = render::json(&first, every, true);
    assert_eq!(json["env"]["SECRET_TOKEN"], "(hidden)");
    assert_eq!(json["check"][2]["headers"]["Authorization"], "(hidden)");
}

#[test]
fn config_without_a_daemon_renders_the_files_and_says_so() {
    let conf = Conf::new();
    conf.job(
        "web",
        "exec = \"/bin/sleep 3600\"\nmanual = true\nenv = { TOKEN = \"abc\" }\n",
    );
    let out = conf.cli(&["config", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exec = \"/bin/sleep 3600\""), "{stdout}");
    assert!(stdout.contains("TOKEN = \"abc\""), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the daemon is not running"),
        "{}",
        text(&out)
    );
    let out = conf.cli(&["config", "web", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["config"]["exec"], "/bin/sleep 3600");
    assert!(
        v["text"]
            .as_str()
            .is_some_and(|t| t.contains("manual = true"))
    );
    let out = conf.cli(&["config", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no job named `nope`"), "{}", text(&out));
}

#[test]
fn config_from_a_daemon_is_the_spec_it_runs() {
    let conf = Conf::new();
    conf.job(
        "web",
        "exec = \"/bin/sleep 3600\"\nenv = { TOKEN = \"abc\" }\n",
    );
    let daemon = conf.start();
    daemon.wait_state("web", "running");
    // The file changes; the daemon runs what it read until it is told to reload.
    conf.job("web", "exec = \"/bin/sleep 1800\"\n");
    let out = daemon.ok(&["config", "web"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exec = \"/bin/sleep 3600\""), "{stdout}");
    assert!(stdout.contains("TOKEN = \"abc\""), "{stdout}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{}",
        text(&out)
    );
    let out = daemon.ok(&["config", "web", "--json"], 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["config"]["exec"], "/bin/sleep 3600");
    let out = daemon.ok(&["config", "nope"], 2);
    assert!(text(&out).contains("no job named `nope`"), "{}", text(&out));
}

#[test]
fn config_of_a_file_with_instances_is_each_instances_own() {
    let conf = Conf::new();
    conf.job(
        "web",
        "instances = 2\nmanual = true\nexec = \"/bin/sleep 3600\"\nenv = { PORT = \"$((8000 + INSTANCE))\" }\n",
    );
    let out = conf.cli(&["config", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("name one, `web@0` to `web@1`"),
        "{}",
        text(&out)
    );
    let daemon = conf.start();
    let out = daemon.ok(&["config", "web@1"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PORT = \"8001\""), "{stdout}");
    assert!(stdout.contains("# Instance 1 of `web`"), "{stdout}");
    let out = daemon.ok(&["config", "web"], 2);
    assert!(
        text(&out).contains("name one, `web@0` to `web@1`"),
        "{}",
        text(&out)
    );
}
