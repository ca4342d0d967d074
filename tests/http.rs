//! The HTTP interface ([http]) against the real daemon on 127.0.0.1: credentials and
//! roles, tokens, the limits that keep slow clients from pinning it, the API round
//! trip checked against its OpenAPI document, and a real Prometheus scraping /metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{BIN, Conf, DEADLINE, Daemon, free_port, text};

const ADMIN_TOKEN: &str = "admin-0123456789abcdef";
const READ_TOKEN: &str = "read-0123456789abcdef";

/// One answer: status, headers (lower-cased names), body.
#[derive(Debug)]
pub(crate) struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

enum Cred<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A plain HTTP/1.1 request on a fresh connection, read to its end.
fn request(port: u16, method: &str, path: &str, cred: &Cred<'_>, body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let auth = match cred {
        Cred::None => String::new(),
        Cred::Basic(u, p) => format!("authorization: Basic {}\r\n", b64(&format!("{u}:{p}"))),
        Cred::Bearer(t) => format!("authorization: Bearer {t}\r\n"),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    parse(&raw).unwrap_or_else(|| panic!("not an HTTP answer: {}", String::from_utf8_lossy(&raw)))
}

/// A request with the headers given (each ending in CRLF) and a form's body, on a
/// fresh connection, as a browser's page would send it.
fn page(port: u16, method: &str, path: &str, headers: &str, body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n{headers}content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    parse(&raw).unwrap_or_else(|| panic!("not an HTTP answer: {}", String::from_utf8_lossy(&raw)))
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// A configuration with [http] on a free port, users ann (admin) and bob (read-only)
/// written by `guardian passwd`, and an admin and a read-only token.
pub(crate) fn conf_with_http(extra: &str) -> (Conf, u16) {
    let conf = Conf::new();
    let port = free_port();
    let toml = format!(
        "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n[http]\nlisten = \"127.0.0.1:{port}\"\nusers-file = \"users\"\ntokens-file = \"tokens\"\n{extra}"
    );
    std::fs::write(conf.path().join("guardian.toml"), toml).expect("guardian.toml");
    std::fs::write(
        conf.path().join("tokens"),
        format!("# scripts\nadmin {ADMIN_TOKEN}\nread-only {READ_TOKEN}\n"),
    )
    .expect("tokens");
    let users = conf.path().join("users");
    for (user, role, pw) in [("ann", "admin", "ann-pw"), ("bob", "read-only", "bob-pw")] {
        let mut child = Command::new(BIN)
            .arg("-c")
            .arg(conf.path())
            .args(["passwd", user, "--role", role, "--file"])
            .arg(&users)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("guardian passwd");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{pw}\n").as_bytes())
            .expect("password");
        let out = child.wait_with_output().expect("passwd ends");
        assert!(out.status.success(), "passwd: {}", text(&out));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&users)
        .expect("users")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the users file is private");
    (conf, port)
}

fn pid_of(d: &Daemon<'_>, job: &str) -> Option<u64> {
    d.status(job)["pid"].as_u64()
}

#[test]
fn http_credentials_roles_and_actions() {
    let (conf, port) = conf_with_http("");
    conf.job("web", "exec = \"sleep 600\"\n");
    conf.job("broken", "exec = \"sleep 600\"\npre-start = \"false\"\n");
    let d = conf.start();
    d.wait_state("web", "running");
    let gets = [
        "/api/v1/jobs",
        "/api/v1/jobs/web",
        "/api/v1/jobs/web/logs?lines=5",
        "/api/v1/alerts",
        "/api/v1/host",
        "/api/v1/openapi.json",
        "/metrics",
        "/nothing-here",
    ];
    let actions = [
        "/api/v1/jobs/web/start",
        "/api/v1/jobs/web/stop",
        "/api/v1/jobs/web/restart",
        "/api/v1/jobs/web/reload",
        "/api/v1/jobs/web/monitor",
        "/api/v1/jobs/web/unmonitor",
        "/api/v1/jobs/all/stop",
        "/api/v1/reload",
        "/api/v1/emit",
    ];
    let emit = r#"{"event":"deploy","env":["REV=1"]}"#;
    let body_of = |path: &str| if path.ends_with("/emit") { emit } else { "" };
    // No credentials, or wrong ones: 401 everywhere, and a Basic challenge.
    for path in gets {
        for cred in [
            Cred::None,
            Cred::Basic("ann", "wrong"),
            Cred::Bearer("no-such-token-000"),
        ] {
            let a = request(port, "GET", path, &cred, "");
            assert_eq!(a.status, 401, "GET {path}: {}", a.text());
            assert!(
                a.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Basic"))
            );
        }
    }
    let pid = pid_of(&d, "web");
    for path in actions {
        let a = request(port, "POST", path, &Cred::None, body_of(path));
        assert_eq!(a.status, 401, "POST {path}: {}", a.text());
        // Read-only users and tokens: 403 on every action, nothing done.
        for cred in [Cred::Basic("bob", "bob-pw"), Cred::Bearer(READ_TOKEN)] {
            let a = request(port, "POST", path, &cred, body_of(path));
            assert_eq!(a.status, 403, "read-only POST {path}: {}", a.text());
            assert_eq!(a.json()["outcome"], "error");
        }
    }
    assert_eq!(
        pid_of(&d, "web"),
        pid,
        "no read-only request touched the job"
    );
    assert_eq!(d.status("web")["monitored"], true);
    // What a form on another site could make a browser send does nothing, even with
    // the admin's credentials (which a browser may remember).
    for content_type in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "POST /api/v1/jobs/web/restart HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Basic {}\r\ncontent-type: {content_type}\r\ncontent-length: 0\r\n\r\n",
            b64("ann:ann-pw")
        )
        .expect("send");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let a = parse(&raw).expect("an answer");
        assert_eq!(a.status, 415, "{content_type}: {}", a.text());
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "POST /api/v1/jobs/web/stop HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {ADMIN_TOKEN}\r\nsec-fetch-site: cross-site\r\ncontent-length: 0\r\n\r\n").expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert_eq!(parse(&raw).expect("an answer").status, 403);
    assert_eq!(
        pid_of(&d, "web"),
        pid,
        "no cross-site request touched the job"
    );
    // Read-only may read.
    let a = request(
        port,
        "GET",
        "/api/v1/jobs/web",
        &Cred::Basic("bob", "bob-pw"),
        "",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["pid"].as_u64(), pid);
    // The admin acts: restart answers once the job runs again, with a new pid.
    let a = request(
        port,
        "POST",
        "/api/v1/jobs/web/restart",
        &Cred::Basic("ann", "ann-pw"),
        "",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["outcome"], "done");
    let new_pid = pid_of(&d, "web");
    assert!(
        new_pid.is_some() && new_pid != pid,
        "{pid:?} -> {new_pid:?}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("pid {}", new_pid.unwrap_or(0)))),
        "{v}"
    );
    // The admin token: stop answers when the job is down, as `guardian stop` does.
    let a = request(
        port,
        "POST",
        "/api/v1/jobs/web/stop",
        &Cred::Bearer(ADMIN_TOKEN),
        "",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(d.state("web"), "waiting");
    let a = request(
        port,
        "POST",
        "/api/v1/jobs/web/unmonitor",
        &Cred::Bearer(ADMIN_TOKEN),
        "",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(d.status("web")["monitored"], false);
    // The CLI's exit codes, as statuses: 1 (no) is 409, an unknown job 404.
    let a = request(
        port,
        "POST",
        "/api/v1/jobs/broken/start",
        &Cred::Bearer(ADMIN_TOKEN),
        "",
    );
    assert_eq!(a.status, 409, "{}", a.text());
    assert_eq!(a.json()["outcome"], "no");
    let cli = conf.cli(&["start", "broken"]);
    assert_eq!(cli.status.code(), Some(1), "{}", text(&cli));
    let a = request(
        port,
        "POST",
        "/api/v1/jobs/nope/start",
        &Cred::Bearer(ADMIN_TOKEN),
        "",
    );
    assert_eq!(a.status, 404, "{}", a.text());
    assert!(a.text().contains("no job named `nope`"), "{}", a.text());
    let a = request(
        port,
        "GET",
        "/api/v1/jobs/web/stop",
        &Cred::Bearer(ADMIN_TOKEN),
        "",
    );
    assert_eq!(a.status, 405, "{}", a.text());
    assert_eq!(a.header("allow"), Some("POST"));
    // A users file changed on disk is read again on reload.
    std::fs::write(conf.path().join("tokens"), format!("admin {ADMIN_TOKEN}\n")).expect("tokens");
    d.ok(&["reload"], 0);
    d.wait_until("the read-only token to be gone", || {
        request(port, "GET", "/api/v1/jobs", &Cred::Bearer(READ_TOKEN), "").status == 401
    });
}

#[test]
fn http_metrics_without_credentials_only_when_told() {
    let (conf, port) = conf_with_http("metrics-auth = false\n");
    conf.job("web", "exec = \"sleep 600\"\n");
    let d = conf.start();
    d.wait_state("web", "running");
    let a = request(port, "GET", "/metrics", &Cred::None, "");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let m = a.text();
    assert!(m.contains("guardian_job_up{name=\"web\"} 1"), "{m}");
    assert!(
        m.contains("guardian_job_state{name=\"web\",state=\"running\"} 1"),
        "{m}"
    );
    assert!(m.contains("guardian_job_monitored{name=\"web\"} 1"), "{m}");
    assert!(m.contains(&format!(
        "guardian_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // Everything else still needs credentials.
    assert_eq!(
        request(port, "GET", "/api/v1/jobs", &Cred::None, "").status,
        401
    );
}

/// Validates `instance` against the schema of `pointer` in the OpenAPI document, with
/// python's jsonschema; `$ref`s resolve within the document.
fn validate(answers: &[(&str, Value)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.json");
    let cases: Vec<Value> = answers
        .iter()
        .map(|(p, v)| serde_json::json!({"pointer": p, "instance": v}))
        .collect();
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases).expect("json")).expect("cases");
    let script = r#"
import json, sys
import jsonschema
doc = json.load(open(sys.argv[1]))
cases = json.load(open(sys.argv[2]))
def at(pointer):
    node = doc
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node
bad = 0
for c in cases:
    schema = dict(at(c["pointer"]))
    schema["components"] = doc["components"]
    try:
        jsonschema.validate(c["instance"], schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        bad += 1
        print(c["pointer"], e.message, file=sys.stderr)
sys.exit(1 if bad else 0)
"#;
    let out = Command::new("python3")
        .args(["-c", script, doc])
        .arg(&cases_path)
        .output()
        .expect("python3 with jsonschema (.ci/run installs it)");
    assert!(
        out.status.success(),
        "answers that do not match the OpenAPI document: {}",
        text(&out)
    );
}

fn schema(path: &str, status: u16) -> String {
    let p = path.replace('~', "~0").replace('/', "~1");
    format!(
        "/paths/{p}/{}/responses/{status}/content/application~1json/schema",
        if path.ends_with("jobs")
            || path.ends_with("host")
            || path.ends_with("alerts")
            || path.ends_with("{name}")
            || path.ends_with("logs")
            || path.ends_with("config")
        {
            "get"
        } else {
            "post"
        }
    )
}

#[test]
fn http_api_round_trip_matches_its_openapi_document() {
    let (conf, port) = conf_with_http(
        "[[check]]\nname = \"root\"\ntype = \"disk\"\npath = \"/\"\nmax = \"100%\"\nevery = \"1s\"\n",
    );
    let out = conf.file("out.txt");
    conf.job(
        "web",
        "groups = [\"frontend\"]\nexec = \"sh -c 'echo one; echo two; echo three; exec sleep 600'\"\n[[check]]\ntype = \"memory\"\nmax = \"1GB\"\nevery = \"1s\"\n",
    );
    conf.job(
        "hook",
        &format!("start-on = \"deploy\"\ntask = true\nexec = \"sh -c 'echo $REV > {out}'\"\n"),
    );
    let d = conf.start();
    d.wait_state("web", "running");
    let t = Cred::Bearer(ADMIN_TOKEN);
    let get = |path: &str| {
        let a = request(port, "GET", path, &t, "");
        assert_eq!(a.status, 200, "GET {path}: {}", a.text());
        a.json()
    };
    let jobs = get("/api/v1/jobs");
    let names: Vec<&str> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["hook", "web"]);
    // A group's jobs, with their groups, and no host checks.
    let frontend = get("/api/v1/jobs?group=frontend");
    assert_eq!(
        frontend["jobs"].as_array().map(Vec::len),
        Some(1),
        "{frontend}"
    );
    assert_eq!(frontend["jobs"][0]["name"], "web");
    assert_eq!(
        frontend["jobs"][0]["groups"],
        serde_json::json!(["frontend"])
    );
    assert_eq!(frontend["host"], serde_json::json!([]));
    assert_eq!(jobs["jobs"][0]["groups"], serde_json::json!([]));
    let no_group = request(port, "GET", "/api/v1/jobs?group=backend", &t, "");
    assert_eq!(no_group.status, 404, "{}", no_group.text());
    assert!(
        no_group.text().contains("no group named `backend`"),
        "{}",
        no_group.text()
    );
    let web = get("/api/v1/jobs/web");
    assert_eq!(web["state"], "running");
    assert_eq!(web["pid"], d.status("web")["pid"]);
    d.wait_until("three lines in web's log", || {
        get("/api/v1/jobs/web/logs?lines=2")["lines"] == serde_json::json!(["two", "three"])
    });
    let logs = get("/api/v1/jobs/web/logs?lines=2");
    let host = get("/api/v1/host");
    let alerts = get("/api/v1/alerts");
    // emit waits for the task it starts, as `guardian emit` does.
    let a = request(
        port,
        "POST",
        "/api/v1/emit",
        &t,
        r#"{"event":"deploy","env":["REV=42"]}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default().trim(),
        "42"
    );
    let emitted = a.json();
    let bad = request(port, "POST", "/api/v1/emit", &t, r#"{"event":"bad name!"}"#);
    assert_eq!(bad.status, 400, "{}", bad.text());
    let missing = request(port, "GET", "/api/v1/jobs/nope", &t, "");
    assert_eq!(missing.status, 404, "{}", missing.text());
    let monitor = request(port, "POST", "/api/v1/jobs/web/monitor", &t, "");
    assert_eq!(monitor.status, 200, "{}", monitor.text());
    let no = request(port, "POST", "/api/v1/jobs/hook/stop", &t, "");
    // A log stream: the last line, then what comes.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(s, "GET /api/v1/jobs/web/logs?lines=1&follow=1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\r\n").expect("send");
    let mut seen = Vec::new();
    let mut read_until = |needle: &str, seen: &mut Vec<u8>| {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(seen).contains(needle) {
            assert!(
                start.elapsed() < DEADLINE,
                "no {needle:?} in {}",
                String::from_utf8_lossy(seen)
            );
            let n = s.read(&mut buf).expect("read the stream");
            assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(seen));
            seen.extend_from_slice(&buf[..n]);
        }
    };
    read_until("three", &mut seen);
    assert!(
        !String::from_utf8_lossy(&seen).contains("two"),
        "only the last line"
    );
    let log = conf.path().join("log/web.log");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("web.log");
    writeln!(f, "four, written later").expect("append");
    read_until("four, written later", &mut seen);
    drop(s);
    validate(&[
        (&schema("/api/v1/jobs", 200), jobs),
        (&schema("/api/v1/jobs", 200), frontend),
        (&schema("/api/v1/jobs", 404), no_group.json()),
        (&schema("/api/v1/jobs/{name}", 200), web),
        (&schema("/api/v1/jobs/{name}", 404), missing.json()),
        (&schema("/api/v1/jobs/{name}/logs", 200), logs),
        (&schema("/api/v1/host", 200), host),
        (&schema("/api/v1/alerts", 200), alerts),
        (&schema("/api/v1/emit", 200), emitted),
        (&schema("/api/v1/emit", 400), bad.json()),
        (&schema("/api/v1/jobs/{name}/monitor", 200), monitor.json()),
        (&schema("/api/v1/jobs/{name}/stop", no.status), no.json()),
    ]);
}

#[test]
fn http_job_config_hides_secrets_from_read_only_and_groups_act_in_order() {
    let (conf, port) = conf_with_http("");
    let out = conf.file("order.txt");
    conf.job(
        "db",
        &format!(
            "groups = [\"backend\"]\nexec = \"sleep 600\"\nenv = {{ SECRET = \"s3cret\", NOTE = \"<b>x</b>\" }}\npre-start = \"echo start db >> {out}\"\npost-stop = \"echo stop db >> {out}\"\n"
        ),
    );
    conf.job(
        "app",
        &format!(
            "groups = [\"backend\"]\nstart-on = \"started db\"\nexec = \"sleep 600\"\npre-start = \"echo start app >> {out}\"\npost-stop = \"echo stop app >> {out}\"\n"
        ),
    );
    conf.job("other", "exec = \"sleep 600\"\n");
    let d = conf.start();
    d.wait_state("db", "running");
    d.wait_state("app", "running");
    d.wait_state("other", "running");

    // The configuration: values for an admin, "(hidden)" for the read-only role.
    let path = "/api/v1/jobs/db/config";
    let admin = request(port, "GET", path, &Cred::Bearer(ADMIN_TOKEN), "");
    assert_eq!(admin.status, 200, "{}", admin.text());
    let seen = admin.json();
    assert_eq!(seen["job"], "db");
    assert_eq!(seen["config"]["env"]["SECRET"], "s3cret", "{seen}");
    assert_eq!(
        seen["config"]["kill-timeout"], "5s",
        "defaults filled in: {seen}"
    );
    assert!(
        seen["text"]
            .as_str()
            .is_some_and(|t| t.contains("SECRET = \"s3cret\"")),
        "{seen}"
    );
    let read_only = request(port, "GET", path, &Cred::Basic("bob", "bob-pw"), "");
    assert_eq!(read_only.status, 200, "{}", read_only.text());
    let hidden = read_only.json();
    assert_eq!(hidden["config"]["env"]["SECRET"], "(hidden)", "{hidden}");
    assert!(!read_only.text().contains("s3cret"), "{}", read_only.text());
    let missing = request(
        port,
        "GET",
        "/api/v1/jobs/nope/config",
        &Cred::Bearer(READ_TOKEN),
        "",
    );
    assert_eq!(missing.status, 404, "{}", missing.text());
    // The job page shows it, escaped, hidden from the read-only user as well.
    let (ann, ann_csrf) = login(port, "ann", "ann-pw");
    let (bob, _) = login(port, "bob", "bob-pw");
    let ann_page = page(port, "GET", "/jobs/db", &format!("cookie: {ann}\r\n"), "").text();
    assert!(ann_page.contains("<h2>Configuration</h2>"), "{ann_page}");
    assert!(
        ann_page.contains("SECRET = &quot;s3cret&quot;"),
        "{ann_page}"
    );
    assert!(ann_page.contains("&lt;b&gt;x&lt;/b&gt;") && !ann_page.contains("<b>x</b>"));
    let bob_page = page(port, "GET", "/jobs/db", &format!("cookie: {bob}\r\n"), "").text();
    assert!(bob_page.contains("<h2>Configuration</h2>"), "{bob_page}");
    assert!(
        bob_page.contains("SECRET = &quot;(hidden)&quot;") && !bob_page.contains("s3cret"),
        "{bob_page}"
    );

    // A group's actions: the read-only role may not, a name no group has is 404.
    let stop = "/api/v1/groups/backend/stop";
    let refused = request(port, "POST", stop, &Cred::Bearer(READ_TOKEN), "");
    assert_eq!(refused.status, 403, "{}", refused.text());
    let refused_basic = request(port, "POST", stop, &Cred::Basic("bob", "bob-pw"), "");
    assert_eq!(refused_basic.status, 403, "{}", refused_basic.text());
    assert_eq!(d.state("db"), "running");
    assert_eq!(d.state("app"), "running");
    let no_group = request(
        port,
        "POST",
        "/api/v1/groups/frontend/stop",
        &Cred::Bearer(ADMIN_TOKEN),
        "",
    );
    assert_eq!(no_group.status, 404, "{}", no_group.text());
    // An admin stops both, dependents first, and is answered once they are down.
    std::fs::write(&out, "").expect("clear the record");
    let stopped = request(port, "POST", stop, &Cred::Bearer(ADMIN_TOKEN), "");
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json()["outcome"], "done");
    assert_eq!(d.state("db"), "waiting");
    assert_eq!(d.state("app"), "waiting");
    assert_eq!(d.state("other"), "running", "not in the group");
    let order = crate::util::lines(&out);
    assert!(
        crate::util::position(&order, "stop app") < crate::util::position(&order, "stop db"),
        "{order:?}"
    );

    // The overview: a row of buttons per group for an admin, none for the read-only user.
    let with_ann = format!("cookie: {ann}\r\n");
    let overview = page(port, "GET", "/", &with_ann, "").text();
    assert!(
        overview.contains("action=\"/groups/backend/action\""),
        "{overview}"
    );
    let overview = page(port, "GET", "/", &format!("cookie: {bob}\r\n"), "").text();
    assert!(!overview.contains("/groups/"), "{overview}");
    // Its start, as the page's script sends it: in dependency order.
    std::fs::write(&out, "").expect("clear the record");
    let started = page(
        port,
        "POST",
        "/groups/backend/action",
        &format!("{with_ann}accept: application/json\r\n"),
        &format!("verb=start&csrf={ann_csrf}"),
    );
    assert_eq!(started.status, 200, "{}", started.text());
    assert_eq!(d.state("db"), "running");
    assert_eq!(d.state("app"), "running");
    let order = crate::util::lines(&out);
    assert!(
        crate::util::position(&order, "start db") < crate::util::position(&order, "start app"),
        "{order:?}"
    );
    let forged = page(
        port,
        "POST",
        "/groups/backend/action",
        &with_ann,
        "verb=stop",
    );
    assert_eq!(forged.status, 403, "no CSRF token: {}", forged.text());
    assert_eq!(d.state("db"), "running");

    validate(&[
        (&schema("/api/v1/jobs/{name}/config", 200), seen),
        (&schema("/api/v1/jobs/{name}/config", 200), hidden),
        (&schema("/api/v1/jobs/{name}/config", 404), missing.json()),
        (&schema("/api/v1/groups/{group}/stop", 200), stopped.json()),
        (&schema("/api/v1/groups/{group}/stop", 404), no_group.json()),
    ]);
}

/// Reads until the server closes the connection: true if it did within the deadline.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(DEADLINE));
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                );
            }
        }
    }
}

#[test]
fn http_slow_and_idle_clients_do_not_pin_it() {
    let (conf, port) = conf_with_http(
        "max-connections = 8\nheader-timeout = \"2s\"\nbody-timeout = \"1s\"\nmax-body-size = \"1KB\"\n",
    );
    conf.job("web", "exec = \"sleep 600\"\n");
    let d = conf.start();
    d.wait_state("web", "running");
    let t = Cred::Bearer(ADMIN_TOKEN);
    // Every slot taken by a connection that sends nothing...
    let mut idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // ...and one more that trickles its headers, a byte at a time.
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _ = s.write_all(b"GET /api/v1/jobs HTTP/1.1\r\n");
        let start = Instant::now();
        for b in
            b"x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .iter()
                .cycle()
        {
            if s.write_all(&[*b]).is_err() || start.elapsed() > DEADLINE {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    });
    // A normal request is answered all the same.
    let a = request(port, "GET", "/api/v1/jobs/web", &t, "");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        !trickler.is_finished(),
        "answered while the trickler was still at it"
    );
    // The idle ones are closed: to make room, or at the header timeout.
    for s in &mut idle {
        assert!(closed_by_server(s), "an idle connection stays open");
    }
    // The trickler is cut at the header timeout, long before its deadline.
    let took = trickler.join().expect("trickler");
    assert!(
        took < DEADLINE,
        "the trickling client was never cut off ({took:?})"
    );
    // A body too large is refused; one that never comes times out.
    let big = "x".repeat(2000);
    let a = request(port, "POST", "/api/v1/emit", &t, &big);
    assert_eq!(a.status, 413, "{}", a.text());
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "POST /api/v1/emit HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\ncontent-length: 100\r\n\r\n{{").expect("send");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let a = parse(&raw).unwrap_or_else(|| panic!("an answer: {}", String::from_utf8_lossy(&raw)));
    assert_eq!(a.status, 408, "{}", a.text());
    // And after all that, still answering.
    let a = request(port, "GET", "/api/v1/jobs", &t, "");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(d.log_count("panicked") == 0, "{}", d.daemon_log());
}

#[test]
fn http_not_on_loopback_without_tls_and_users_is_refused_at_check() {
    let conf = Conf::new();
    std::fs::write(
        conf.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\n[http]\nlisten = \"0.0.0.0:9273\"\n",
    )
    .expect("guardian.toml");
    let out = conf.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("guardian.toml:3:10"), "{err}");
    assert!(err.contains("reachable from other hosts"), "{err}");
    assert!(err.contains("TLS"), "{err}");
    // On loopback it is fine, and a broken tokens file is said with its line.
    std::fs::write(
        conf.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\n[http]\ntokens-file = \"tokens\"\n",
    )
    .expect("guardian.toml");
    std::fs::write(
        conf.path().join("tokens"),
        "admin 0123456789abcdef\nroot 0123456789abcdef\n",
    )
    .expect("tokens");
    let out = conf.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tokens:2: the role is `admin` or `read-only`, not `root`"),
        "{err}"
    );
}

#[test]
fn http_tls_serves_with_the_configured_certificate() {
    let conf = Conf::new();
    let port = free_port();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(conf.path().join("key.pem"))
        .arg("-out")
        .arg(conf.path().join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", text(&made));
    std::fs::write(
        conf.path().join("guardian.toml"),
        format!("socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n[http]\nlisten = \"127.0.0.1:{port}\"\ntls-cert = \"cert.pem\"\ntls-key = \"key.pem\"\ntokens-file = \"tokens\"\nusers-file = \"users\"\n"),
    )
    .expect("guardian.toml");
    let mut passwd = Command::new(BIN)
        .arg("-c")
        .arg(conf.path())
        .args(["passwd", "ann", "--role", "admin", "--file"])
        .arg(conf.path().join("users"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("guardian passwd");
    passwd
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"ann-pw\n")
        .expect("password");
    assert!(passwd.wait().expect("passwd ends").success());
    std::fs::write(
        conf.path().join("tokens"),
        format!("read-only {READ_TOKEN}\n"),
    )
    .expect("tokens");
    conf.job("web", "exec = \"sleep 600\"\n");
    let d = conf.start();
    d.wait_state("web", "running");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(conf.path().join("cert.pem"))
        .args(["-H", &format!("authorization: Bearer {READ_TOKEN}")])
        .arg(format!("https://localhost:{port}/api/v1/jobs/web"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", text(&out));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v["state"], "running");
    // Under TLS, the status page's session cookie is Secure.
    let out = Command::new("curl")
        .args(["-sS", "-i", "--cacert"])
        .arg(conf.path().join("cert.pem"))
        .args(["-d", "user=ann&password=ann-pw"])
        .arg(format!("https://localhost:{port}/login"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no session cookie: {head}"));
    assert!(
        cookie.contains("; secure") && cookie.contains("httponly"),
        "{cookie}"
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = Command::new("curl")
        .args(["-sS", "-m", "10"])
        .arg(format!("http://127.0.0.1:{port}/api/v1/jobs"))
        .output()
        .expect("curl");
    assert!(!plain.status.success() || !String::from_utf8_lossy(&plain.stdout).contains("running"));
}

#[test]
fn prometheus_sees_job_up_then_down() {
    let Some(prometheus) = ["/usr/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!("Debian's prometheus is not installed (.ci/run installs it)");
    };
    let (conf, port) = conf_with_http("");
    conf.job("web", "exec = \"sleep 600\"\n");
    let d = conf.start();
    d.wait_state("web", "running");
    let prom_port = free_port();
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = data.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: guardian\n    scrape_interval: 1s\n    authorization:\n      type: Bearer\n      credentials: {READ_TOKEN}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("prometheus.yml");
    let log = std::fs::File::create(data.path().join("prometheus.log")).expect("log");
    let _prom = Kill(
        Command::new(prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--query.lookback-delta=3s")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let query = |q: &str| -> Option<String> {
        let path = format!(
            "/api/v1/query?query={}",
            q.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
        );
        let mut s = TcpStream::connect(("127.0.0.1", prom_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let a = parse(&raw)?;
        let v: Value = serde_json::from_slice(&a.body).ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    };
    let prom_log =
        || std::fs::read_to_string(data.path().join("prometheus.log")).unwrap_or_default();
    let q = "guardian_job_up{name=\"web\"}";
    let start = Instant::now();
    while query(q).as_deref() != Some("1") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never saw web up:\n{}",
            prom_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    d.ok(&["stop", "web"], 0);
    let start = Instant::now();
    while query(q).as_deref() != Some("0") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never saw web down:\n{}",
            prom_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process of the test's, killed when the test ends however it ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The instances of a job file are jobs named `web@0` ...: the name works in URLs, as
/// written and percent-encoded, and in the labels of /metrics; the job file's name
/// lists its instances; a restart of `web@1` restarts only that one.
#[test]
fn http_names_with_an_at_sign() {
    let (conf, port) = conf_with_http("");
    conf.job("web", "instances = 2\nexec = \"sleep 60$INSTANCE\"\n");
    let d = conf.start();
    d.wait_state("web@0", "running");
    d.wait_state("web@1", "running");
    let admin = Cred::Bearer(ADMIN_TOKEN);
    for path in ["/api/v1/jobs/web@1", "/api/v1/jobs/web%401"] {
        let a = request(port, "GET", path, &admin, "");
        assert_eq!(a.status, 200, "GET {path}: {}", a.text());
        let j = a.json();
        assert_eq!(j["name"], "web@1");
        assert_eq!(j["instance"], 1);
        assert_eq!(j["base"], "web");
    }
    let set = request(port, "GET", "/api/v1/jobs/web", &admin, "");
    assert_eq!(set.status, 200, "{}", set.text());
    let names: Vec<String> = set
        .json()
        .as_array()
        .expect("an array of the instances")
        .iter()
        .filter_map(|j| j["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names, ["web@0", "web@1"]);
    validate(&[
        (&schema("/api/v1/jobs/{name}", 200), set.json()),
        (
            &schema("/api/v1/jobs/{name}", 200),
            request(port, "GET", "/api/v1/jobs/web@0", &admin, "").json(),
        ),
    ]);
    let metrics = request(port, "GET", "/metrics", &admin, "").text();
    assert!(
        metrics.contains("guardian_job_up{name=\"web@1\"} 1"),
        "{metrics}"
    );
    let (p0, p1) = (pid_of(&d, "web@0"), pid_of(&d, "web@1"));
    let a = request(port, "POST", "/api/v1/jobs/web%401/restart", &admin, "");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(pid_of(&d, "web@0"), p0);
    assert_ne!(pid_of(&d, "web@1"), p1);
    let a = request(
        port,
        "POST",
        "/api/v1/jobs/web/restart?all-at-once=1",
        &admin,
        "",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_ne!(pid_of(&d, "web@0"), p0);
}

/// The session cookie a login's answer sets (`guardian_session=ID`).
fn session_cookie(a: &Answer) -> String {
    a.header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no session cookie: {a:?}"))
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=csrf value=\"")
        .unwrap_or_else(|| panic!("no CSRF token in the page: {page}"));
    page[at + 17..].chars().take_while(|c| *c != '"').collect()
}

fn login(port: u16, user: &str, password: &str) -> (String, String) {
    let a = page(
        port,
        "POST",
        "/login",
        "",
        &format!("user={user}&password={password}&next=%2F"),
    );
    assert_eq!(a.status, 303, "login {user}: {}", a.text());
    assert_eq!(a.header("location"), Some("/"));
    let cookie = a.header("set-cookie").unwrap_or_default();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS, no Secure: {cookie}");
    let cookie = session_cookie(&a);
    let overview = page(port, "GET", "/", &format!("cookie: {cookie}\r\n"), "");
    assert_eq!(overview.status, 200, "{}", overview.text());
    (cookie, csrf_of(&overview.text()))
}

#[test]
fn http_status_page_needs_a_session_and_its_csrf_token_to_act() {
    let (conf, port) = conf_with_http("");
    conf.job(
        "web",
        "exec = \"sleep 600\"\ndescription = \"<b>front</b>\"\n",
    );
    let d = conf.start();
    d.wait_state("web", "running");
    // No credentials: the login form, with 401, no Basic challenge (no browser prompt),
    // and the page's headers.
    for path in ["/", "/jobs/web", "/jobs/web/logs"] {
        let a = page(port, "GET", path, "", "");
        assert_eq!(a.status, 401, "GET {path}");
        assert!(a.header("www-authenticate").is_none());
        assert!(a.text().contains("action=\"/login\""), "{}", a.text());
        assert_eq!(a.header("x-frame-options"), Some("DENY"));
        assert_eq!(a.header("cache-control"), Some("no-store"));
        let csp = a.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    }
    assert!(
        page(port, "GET", "/jobs/web", "", "")
            .text()
            .contains("value=\"/jobs/web\"")
    );
    // The style sheet and script are public, and the same for everybody.
    let css = page(port, "GET", "/static/app.css", "", "");
    assert_eq!(css.status, 200);
    assert!(
        css.header("content-type")
            .is_some_and(|t| t.starts_with("text/css"))
    );
    // A wrong password: the form again, no session.
    let a = page(port, "POST", "/login", "", "user=ann&password=nope");
    assert_eq!(a.status, 401);
    assert!(a.header("set-cookie").is_none());
    assert!(a.text().contains("Wrong user or password"));

    let (ann, ann_csrf) = login(port, "ann", "ann-pw");
    let with_ann = format!("cookie: {ann}\r\n");
    let overview = page(port, "GET", "/", &with_ann, "").text();
    assert!(overview.contains("data-job=\"web\""), "{overview}");
    assert!(
        overview.contains("&lt;b&gt;front&lt;/b&gt;"),
        "escaped: {overview}"
    );
    assert!(overview.contains("value=restart"), "an admin gets buttons");
    // The API takes no cookie.
    assert_eq!(page(port, "GET", "/api/v1/jobs", &with_ann, "").status, 401);

    let pid = pid_of(&d, "web");
    let restart = "/jobs/web/action";
    // Without the token, with a wrong one, from another site: 403, nothing done.
    for (headers, body) in [
        (with_ann.clone(), "verb=restart".to_string()),
        (
            with_ann.clone(),
            format!("verb=restart&csrf={}", "0".repeat(64)),
        ),
        (
            format!("{with_ann}origin: http://evil.example\r\n"),
            format!("verb=restart&csrf={ann_csrf}"),
        ),
        (
            format!("{with_ann}sec-fetch-site: cross-site\r\n"),
            format!("verb=restart&csrf={ann_csrf}"),
        ),
    ] {
        let a = page(port, "POST", restart, &headers, &body);
        assert_eq!(a.status, 403, "{headers} {body}: {}", a.text());
    }
    // Basic credentials may read the page, without buttons, and not act there.
    let basic = format!("authorization: Basic {}\r\n", b64("ann:ann-pw"));
    let a = page(port, "GET", "/", &basic, "");
    assert_eq!(a.status, 200);
    assert!(!a.text().contains("value=restart"));
    let a = page(
        port,
        "POST",
        restart,
        &basic,
        &format!("verb=restart&csrf={ann_csrf}"),
    );
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(pid_of(&d, "web"), pid, "nothing was restarted");
    // The right token: done, and answered once the job runs again.
    let a = page(
        port,
        "POST",
        restart,
        &format!("{with_ann}accept: application/json\r\n"),
        &format!("verb=restart&csrf={ann_csrf}"),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["outcome"], "done");
    let restarted = pid_of(&d, "web");
    assert!(
        restarted.is_some() && restarted != pid,
        "{pid:?} {restarted:?}"
    );
    // A form without the script: back to where it was.
    let a = page(
        port,
        "POST",
        restart,
        &with_ann,
        &format!("verb=monitor&csrf={ann_csrf}&next=%2Fjobs%2Fweb"),
    );
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/jobs/web"));

    // A read-only user: no buttons, and 403 with their own valid token.
    let (bob, bob_csrf) = login(port, "bob", "bob-pw");
    let with_bob = format!("cookie: {bob}\r\n");
    let overview = page(port, "GET", "/", &with_bob, "").text();
    assert!(overview.contains("data-job=\"web\""));
    assert!(
        !overview.contains("class=acts"),
        "no buttons for bob: {overview}"
    );
    let job = page(port, "GET", "/jobs/web", &with_bob, "").text();
    assert!(job.contains("<h1>web</h1>") && !job.contains("class=acts"));
    for action in ["start", "stop", "restart", "monitor", "unmonitor"] {
        let a = page(
            port,
            "POST",
            restart,
            &with_bob,
            &format!("verb={action}&csrf={bob_csrf}"),
        );
        assert_eq!(a.status, 403, "bob {action}: {}", a.text());
    }
    // Another session's token is not this one's.
    let a = page(
        port,
        "POST",
        restart,
        &with_bob,
        &format!("verb=stop&csrf={ann_csrf}"),
    );
    assert_eq!(a.status, 403);
    assert_eq!(d.state("web"), "running");
    assert_eq!(pid_of(&d, "web"), restarted, "nothing done for bob");

    // Logging out ends the session.
    let a = page(
        port,
        "POST",
        "/logout",
        &with_ann,
        &format!("csrf={ann_csrf}"),
    );
    assert_eq!(a.status, 303);
    assert!(
        a.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(page(port, "GET", "/", &with_ann, "").status, 401);
    assert_eq!(page(port, "GET", "/", &with_bob, "").status, 200);
}

/// Schemathesis (PyPI, version 4) against the running daemon: requests made from the
/// OpenAPI document, valid and not, to every operation; no answer may be a 5xx, or
/// have a status, a content type or a body the document does not give for it. The
/// jobs it may start, stop and restart are plain ones; `all` is a name it may pick,
/// and nothing it can do stops the daemon. The one thing left out is the follow
/// stream (`follow=1`), which answers until the client goes: the logs operation is
/// run with `follow=0`. A fixed seed and few examples a phase keep it repeatable and
/// under a minute.
#[test]
fn schemathesis_finds_no_mismatch_with_the_openapi_document() {
    let python = "python3";
    let version = Command::new(python)
        .args(["-c", "import schemathesis; print(schemathesis.__version__)"])
        .output()
        .expect("python3");
    if !version.status.success() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is not installed, and CI=true: .ci/run should have installed it"
        );
        eprintln!("SKIPPED: schemathesis is not installed (bash .ci/run installs it)");
        return;
    }
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert!(
        version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            >= Some(4),
        "schemathesis {version}: the command line used here is that of version 4"
    );
    let (conf, port) = conf_with_http(
        "[[check]]\nname = \"root\"\ntype = \"disk\"\npath = \"/\"\nmax = \"100%\"\nevery = \"1s\"\n",
    );
    conf.job(
        "web",
        "exec = \"sh -c 'echo one; echo two; exec sleep 600'\"\n[[check]]\ntype = \"memory\"\nmax = \"1GB\"\nevery = \"1s\"\n",
    );
    conf.job("worker", "exec = \"sleep 600\"\n");
    conf.job(
        "deploy",
        "start-on = \"deploy\"\ntask = true\nexec = \"true\"\n",
    );
    let d = conf.start();
    d.wait_state("web", "running");
    d.wait_state("worker", "running");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        "[[operations]]\ninclude-operation-id = \"jobLogs\"\nparameters = { \"query.follow\" = \"0\" }\n",
    )
    .expect("schemathesis.toml");
    let started = Instant::now();
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
            "--config-file",
        ])
        .arg(dir.path().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
        .args([
            "-H",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance,response_headers_conformance,positive_data_acceptance,negative_data_rejection,unsupported_method,ignored_auth",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(dir.path().join("report"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("schemathesis");
    let said = text(&out);
    assert!(
        out.status.success(),
        "schemathesis found mismatches:\n{said}\ndaemon log:\n{}",
        d.daemon_log()
    );
    assert!(said.contains("Stateful"), "{said}");
    eprintln!(
        "schemathesis took {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        said.lines()
            .filter(|l| l.contains("generated"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // The daemon is still there and still answers.
    assert_eq!(
        request(
            port,
            "GET",
            "/api/v1/jobs/worker",
            &Cred::Bearer(READ_TOKEN),
            ""
        )
        .status,
        200
    );
}

/// A self-signed certificate for localhost, and its key, at `cert` and `key`.
fn make_cert(cert: &std::path::Path, key: &std::path::Path) {
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
        ])
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", text(&made));
}

/// A renewed certificate is served after SIGHUP, without a restart, and the old one no
/// longer.
#[test]
fn http_tls_certificate_is_read_again_on_sighup() {
    let conf = Conf::new();
    let port = free_port();
    let (cert, key) = (conf.path().join("cert.pem"), conf.path().join("key.pem"));
    make_cert(&cert, &key);
    let (old_ca, new_ca) = (
        conf.path().join("old-ca.pem"),
        conf.path().join("new-ca.pem"),
    );
    std::fs::copy(&cert, &old_ca).expect("keep the old certificate");
    std::fs::write(
        conf.path().join("guardian.toml"),
        format!("socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n[http]\nlisten = \"127.0.0.1:{port}\"\ntls-cert = \"cert.pem\"\ntls-key = \"key.pem\"\ntokens-file = \"tokens\"\n"),
    )
    .expect("guardian.toml");
    std::fs::write(
        conf.path().join("tokens"),
        format!("read-only {READ_TOKEN}\n"),
    )
    .expect("tokens");
    conf.job("web", "exec = \"sleep 600\"\n");
    let d = conf.start();
    d.wait_state("web", "running");
    let trusted_by = |ca: &std::path::Path| {
        Command::new("curl")
            .args([
                "-sS",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
            ])
            .arg(ca)
            .args(["-H", &format!("authorization: Bearer {READ_TOKEN}")])
            .arg(format!("https://localhost:{port}/api/v1/jobs/web"))
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout == b"200")
    };
    assert!(trusted_by(&old_ca), "the first certificate is served");
    // Renewed, as certbot does: new files in place, then SIGHUP.
    let (tmp_cert, tmp_key) = (
        conf.path().join("new-cert.pem"),
        conf.path().join("new-key.pem"),
    );
    make_cert(&tmp_cert, &tmp_key);
    std::fs::copy(&tmp_cert, &new_ca).expect("keep the new certificate");
    assert!(
        !trusted_by(&new_ca),
        "the new certificate is not served before SIGHUP"
    );
    std::fs::rename(&tmp_key, &key).expect("the new key");
    std::fs::rename(&tmp_cert, &cert).expect("the new certificate");
    crate::util::signal(d.pid(), "HUP");
    d.wait_until("the renewed certificate to be served", || {
        trusted_by(&new_ca)
    });
    assert!(!trusted_by(&old_ca), "the old certificate is served still");
    assert!(
        d.daemon_log()
            .contains("users, tokens and certificate read again")
    );
}

/// Every metric the interface promises is there, and Prometheus's own linter
/// (`promtool check metrics`, of Debian's prometheus) finds nothing wrong with the page.
#[test]
fn http_metrics_has_every_metric_and_promtool_passes_it() {
    let (conf, port) = conf_with_http(
        "[[check]]\nname = \"root\"\ntype = \"disk\"\npath = \"/\"\nmax = \"100%\"\nevery = \"1s\"\n",
    );
    conf.job(
        "web",
        "exec = \"sleep 600\"\n[[check]]\nname = \"mem\"\ntype = \"memory\"\nmax = \"1GB\"\nevery = \"1s\"\n",
    );
    conf.job(
        "idle",
        "exec = \"sleep 600\"\nstart-on = \"never-emitted\"\n",
    );
    let d = conf.start();
    d.wait_state("web", "running");
    let t = Cred::Bearer(READ_TOKEN);
    let scrape = || request(port, "GET", "/metrics", &t, "").text();
    d.wait_until("both checks to have run", || {
        let m = scrape();
        m.contains("guardian_check_success{name=\"web\",check=\"mem\"} 1")
            && m.contains("guardian_check_success{check=\"root\"} 1")
    });
    let m = scrape();
    for (name, kind, sample) in [
        (
            "guardian_job_up",
            "gauge",
            "guardian_job_up{name=\"web\"} 1",
        ),
        (
            "guardian_job_state",
            "gauge",
            "guardian_job_state{name=\"idle\",state=\"waiting\"} 1",
        ),
        (
            "guardian_job_monitored",
            "gauge",
            "guardian_job_monitored{name=\"web\"} 1",
        ),
        (
            "guardian_job_restarts_total",
            "counter",
            "guardian_job_restarts_total{name=\"web\"} 0",
        ),
        (
            "guardian_job_start_time_seconds",
            "gauge",
            "guardian_job_start_time_seconds{name=\"web\"} ",
        ),
        (
            "guardian_job_cpu_seconds_total",
            "counter",
            "guardian_job_cpu_seconds_total{name=\"web\"} ",
        ),
        (
            "guardian_job_memory_bytes",
            "gauge",
            "guardian_job_memory_bytes{name=\"web\"} ",
        ),
        (
            "guardian_check_success",
            "gauge",
            "guardian_check_success{check=\"root\"} 1",
        ),
        (
            "guardian_check_duration_seconds",
            "gauge",
            "guardian_check_duration_seconds{name=\"web\",check=\"mem\"} ",
        ),
        (
            "guardian_check_failures_total",
            "counter",
            "guardian_check_failures_total{name=\"web\",check=\"mem\"} 0",
        ),
        (
            "guardian_alert_outbox_messages",
            "gauge",
            "guardian_alert_outbox_messages 0",
        ),
        (
            "guardian_alerts_sent_total",
            "counter",
            "guardian_alerts_sent_total{channel=\"webhook\",result=\"failed\"} 0",
        ),
        (
            "guardian_build_info",
            "gauge",
            "guardian_build_info{version=\"",
        ),
    ] {
        assert!(
            m.contains(&format!("# TYPE {name} {kind}\n")),
            "no {name} {kind}:\n{m}"
        );
        assert!(
            m.lines().any(|l| l.starts_with(sample)),
            "no {sample}:\n{m}"
        );
    }
    // The job not running has no start time, CPU or memory.
    assert!(
        !m.contains("guardian_job_start_time_seconds{name=\"idle\"}"),
        "{m}"
    );
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus; .ci/run installs it)");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(m.as_bytes())
        .expect("the page to promtool");
    let out = lint.wait_with_output().expect("promtool ends");
    assert!(out.status.success(), "promtool: {}\n{m}", text(&out));
}
