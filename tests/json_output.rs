//! `--json` on every command a script reads (docs/cli.md, "JSON output"): each parsed
//! as JSON and its documented fields checked, against the real daemon where the
//! command asks one.

use serde_json::Value;

use crate::util::{Conf, ROOT_DISK_CHECK, free_port, text};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[test]
fn check_json_gives_each_diagnostic_its_file_line_and_column() {
    let c = Conf::new();
    c.job("web", "exec = \"sleep 600\"\nkill-timout = \"5s\"\n");
    let out = c.cli(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v = json(&out);
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["jobs"], Value::Null, "{v}");
    let d = &v["diagnostics"][0];
    assert_eq!(d["severity"], "error", "{v}");
    assert!(
        d["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("jobs/web.toml")),
        "{v}"
    );
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains("kill-timout")),
        "{v}"
    );
    assert!(
        d["hint"]
            .as_str()
            .is_some_and(|h| h.contains("kill-timeout")),
        "{v}"
    );

    // Valid, with a warning: the event nobody emits.
    c.job("web", "exec = \"sleep 600\"\nstart-on = \"deploy-done\"\n");
    let out = c.cli(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    assert_eq!(
        (v["valid"].as_bool(), v["jobs"].as_u64()),
        (Some(true), Some(1)),
        "{v}"
    );
    let w = &v["diagnostics"][0];
    assert_eq!(w["severity"], "warning", "{v}");
    assert!(
        w["message"]
            .as_str()
            .is_some_and(|m| m.contains("deploy-done")),
        "{v}"
    );
}

#[test]
fn env_json_from_the_daemon_and_from_the_configuration() {
    let c = Conf::new();
    c.job(
        "web",
        "exec = \"sleep 600\"\nchdir = \"/tmp\"\nenv = { GREETING = \"hello world\" }\nlimit = { nofile = [1024, 2048] }\n",
    );
    let check = |v: &Value| {
        assert_eq!(v["job"], "web", "{v}");
        assert_eq!(v["chdir"], "/tmp", "{v}");
        assert_eq!(v["env"]["GREETING"], "hello world", "{v}");
        assert_eq!(v["env"]["GUARDIAN_JOB"], "web", "{v}");
        assert!(v["uid"].is_u64() && v["gid"].is_u64(), "{v}");
        let nofile = v["limits"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["resource"] == "nofile").cloned())
            .unwrap_or_default();
        assert_eq!(
            (nofile["soft"].as_str(), nofile["hard"].as_str()),
            (Some("1024"), Some("2048")),
            "{v}"
        );
    };
    let out = c.cli(&["env", "web", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    check(&json(&out));
    let d = c.start();
    d.wait_state("web", "running");
    check(&json(&d.ok(&["env", "web", "--json"], 0)));
}

#[test]
fn graph_json_has_the_jobs_events_and_edges_of_the_dot() {
    let c = Conf::new();
    c.job("db", "exec = \"sleep 600\"\n");
    c.job(
        "web",
        "exec = \"sleep 600\"\nstart-on = \"started db\"\nstop-on = \"stopping db\"\n",
    );
    c.job(
        "migrate",
        "exec = \"true\"\ntask = true\nmanual = true\nstart-on = \"deploy\"\n",
    );
    c.job(
        "deployer",
        "exec = \"sh -c 'guardian emit deploy'\"\nmanual = true\n",
    );
    let out = c.cli(&["graph", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 4, "{v}");
    let migrate = jobs
        .iter()
        .find(|j| j["name"] == "migrate")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (migrate["task"].as_bool(), migrate["manual"].as_bool()),
        (Some(true), Some(true)),
        "{v}"
    );
    assert_eq!(v["events"], serde_json::json!(["deploy"]), "{v}");
    let edges = v["edges"].as_array().cloned().unwrap_or_default();
    let has = |from: &str, kind: &str, to: &str, event: &str, edge: &str| {
        edges.iter().any(|e| {
            e["from"] == from
                && e["from_kind"] == kind
                && e["to"] == to
                && e["event"] == event
                && e["kind"] == edge
        })
    };
    assert!(has("db", "job", "web", "started", "start-on"), "{v}");
    assert!(has("db", "job", "web", "stopping", "stop-on"), "{v}");
    assert!(
        has("deploy", "event", "migrate", "deploy", "start-on"),
        "{v}"
    );
}

#[test]
fn logs_json_is_one_object_per_line() {
    let c = Conf::new();
    let script = c.file("say.sh");
    std::fs::write(
        &script,
        "echo one\necho 'two \"quoted\"' >&2\necho three\nexec sleep 600\n",
    )
    .expect("script");
    c.job("web", &format!("exec = \"sh {script}\"\n"));
    let d = c.start();
    d.wait_state("web", "running");
    let mut objects = Vec::new();
    d.wait_until("three lines in the log", || {
        let out = d.ok(&["logs", "web", "--json"], 0);
        objects = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        objects.len() == 3
    });
    let texts: Vec<&str> = objects.iter().filter_map(|o| o["text"].as_str()).collect();
    assert_eq!(texts, ["one", "two \"quoted\"", "three"], "{objects:?}");
    for o in &objects {
        assert!(o["time"].is_null() && o["stream"].is_null(), "{o}");
    }
    let out = d.ok(&["logs", "web", "-n", "1", "--json"], 0);
    let last: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(last["text"], "three", "{}", text(&out));
}

#[test]
fn test_alert_json_says_how_each_webhook_went() {
    // A webhook receiver that answers 200, and a port where nothing listens.
    let (hook_port, _) = crate::util::webhook();
    let closed = free_port();
    let c = Conf::new();
    std::fs::write(
        c.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n[alert]\n\
             [[alert.webhook]]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n\
             [[alert.webhook]]\nurl = \"http://127.0.0.1:{closed}/gone\"\n"
        ),
    )
    .expect("guardian.toml");
    c.job("web", "exec = \"sleep 600\"\n");
    let d = c.start();
    d.wait_state("web", "running");
    let out = d.ok(&["test-alert", "--json"], 1);
    let v = json(&out);
    assert_eq!(v["ok"], false, "{v}");
    let results = v["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 2, "{v}");
    let by = |path: &str| {
        results
            .iter()
            .find(|r| r["to"].as_str().is_some_and(|t| t.ends_with(path)))
            .cloned()
            .unwrap_or_default()
    };
    let good = by("/hook");
    assert_eq!(good["sent"], true, "{v}");
    assert!(good["via"].is_string() && good["error"].is_null(), "{v}");
    let bad = by("/gone");
    assert_eq!(bad["sent"], false, "{v}");
    // The cause under reqwest's "error sending request": nothing listens there.
    assert!(
        bad["error"].as_str().is_some_and(|e| e.contains("refused")),
        "{v}"
    );
}

#[test]
fn status_host_shows_the_host_checks_alone() {
    let c = Conf::new();
    c.settings(ROOT_DISK_CHECK);
    c.job("web", "exec = \"sleep 600\"\n");
    let d = c.start();
    d.wait_state("web", "running");
    d.wait_until("the host check to have run", || {
        let out = d.ok(&["status", "--host", "--json"], 0);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["passed"] == true
    });
    let v = json(&d.ok(&["status", "--host", "--json"], 0));
    let host = v.as_array().cloned().unwrap_or_default();
    assert_eq!(host.len(), 1, "{v}");
    assert_eq!(host[0]["name"], "root", "{v}");
    assert_eq!(host[0]["action"], "alert", "{v}");
    let out = d.ok(&["status", "--host"], 0);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.lines().any(|l| l.starts_with("system ")), "{shown}");
    assert!(!shown.lines().any(|l| l.starts_with("web ")), "{shown}");
    assert!(
        shown.contains("check root (disk /, then alert): ok"),
        "{shown}"
    );
    // `status --host JOB` is refused by the argument parser.
    d.ok(&["status", "--host", "web"], 2);
}
