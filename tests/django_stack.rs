//! The Django stack of the seed article (conf/django) with the real programs: Redis, a
//! Celery worker and Celery beat, the Node.js relay, uWSGI running Django, Flower and
//! nginx. conf/django/local.py lays the shipped files out under a temporary directory
//! (host paths moved under it, free ports on 127.0.0.1); guardian runs them as they are.
//!
//! Skipped, with a message, where a program is missing; with CI=true a missing program
//! fails the test, since .ci/run installs them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ::checks::tree;
use serde_json::Value;

use crate::util::{Conf, Daemon, signal, text};

/// How long the stack may take to come up, or to come back after a crash: Celery and
/// Django load slowly on a busy machine.
const STACK_DEADLINE: Duration = Duration::from_secs(240);
/// How long a task may take from its submission to its result.
const TASK_DEADLINE: Duration = Duration::from_secs(90);
/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Django's ALLOWED_HOSTS has it, and nginx's server_name.
const HOST: &str = "www.example.com";

/// What the job files run, and the Python that local.py makes the virtualenv from.
const PROGRAMS: &[&str] = &[
    "/usr/bin/redis-server",
    "/usr/sbin/nginx",
    "/usr/bin/uwsgi",
    "/usr/lib/uwsgi/plugins/python3_plugin.so",
    "/usr/bin/node",
    "/usr/bin/python3",
];
const PYTHON: &str = "/usr/bin/python3";
const MODULES: &str = "django, celery, redis, flower";

const LOCAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/django/local.py");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/django");

/// The seed article's Figure 1: each job and the jobs it starts after.
pub(crate) const FIGURE_1: &[(&str, &[&str])] = &[
    ("redis-server", &[]),
    ("celeryd", &["redis-server"]),
    ("celerybeat", &["celeryd"]),
    ("asyncserver", &["redis-server"]),
    ("uwsgi", &["asyncserver", "celerybeat", "redis-server"]),
    ("celeryflower", &["celeryd"]),
    ("nginx", &["uwsgi"]),
];

/// The stack's ports on a host (as in the shipped files), by local.py's names.
const HOST_PORTS: &[(&str, u16)] = &[
    ("redis", 6379),
    ("django", 8000),
    ("asyncserver", 8001),
    ("flower", 5555),
    ("nginx", 80),
];

/// What is missing here to run the stack.
fn missing() -> Vec<String> {
    let mut m: Vec<String> = PROGRAMS
        .iter()
        .filter(|p| !Path::new(p).exists())
        .map(|p| p.to_string())
        .collect();
    if Path::new(PYTHON).exists() {
        let imports = Command::new(PYTHON)
            .args(["-c", &format!("import {MODULES}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !imports {
            m.push(format!("the Python modules {MODULES} for {PYTHON}"));
        }
    }
    m
}

/// Replaces `from` by `to` where it stands as a whole number.
fn replace_number(text: &str, from: u16, to: u16) -> String {
    let from = from.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        let whole = !before.is_some_and(|c| c.is_ascii_digit())
            && !after.is_some_and(|c| c.is_ascii_digit());
        out.push_str(&rest[..i]);
        if whole {
            out.push_str(&to.to_string());
        } else {
            out.push_str(&from);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// The jobs each job starts on (`started JOB` in its `start-on`), from the job files.
pub(crate) fn start_deps(jobs: &Path) -> BTreeMap<String, Vec<String>> {
    let mut deps = BTreeMap::new();
    for entry in std::fs::read_dir(jobs).expect("jobs dir").flatten() {
        let path = entry.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let spec: toml::Value = toml::from_str(&std::fs::read_to_string(&path).expect("job"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let expr = spec
            .get("start-on")
            .and_then(toml::Value::as_str)
            .unwrap_or("");
        let words: Vec<&str> = expr
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        let mut needs: Vec<String> = words
            .windows(2)
            .filter(|w| w[0] == "started")
            .map(|w| w[1].to_string())
            .collect();
        needs.sort();
        deps.insert(name.to_string(), needs);
    }
    deps
}

/// The daemon's info and warning lines, in order, as (job, what): "nginx: stopped" is
/// ("nginx", "stopped"); a line about no job has the job "".
pub(crate) fn job_lines(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(" INFO ").or_else(|| l.split_once(" WARN "))?;
            let rest = rest.trim_start();
            let (job, what) = rest.split_once(": ").unwrap_or(("", rest));
            Some((job.to_string(), what.to_string()))
        })
        .collect()
}

/// The first line at or after `from` where `job` says something starting with `what`.
fn find(lines: &[(String, String)], from: usize, job: &str, what: &str) -> Option<usize> {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, (j, w))| j == job && w.starts_with(what))
        .map(|(i, _)| i)
}

/// Like `find`, failing the test with the log when the line is missing.
pub(crate) fn must(
    lines: &[(String, String)],
    from: usize,
    job: &str,
    what: &str,
    log: &str,
) -> usize {
    find(lines, from, job, what)
        .unwrap_or_else(|| panic!("no `{job}: {what}` after line {from} of the log:\n{log}"))
}

/// From line `from` on, every job was started only once the jobs it starts on were
/// running, and reached running after them.
pub(crate) fn assert_start_order(log: &str, from: usize, deps: &BTreeMap<String, Vec<String>>) {
    let lines = job_lines(log);
    for (job, needs) in deps {
        let up = must(&lines, from, job, "running", log);
        if needs.is_empty() {
            continue;
        }
        let started = must(&lines, from, job, "starting on `started", log);
        for need in needs {
            let need_up = must(&lines, from, need, "running", log);
            assert!(
                need_up < started && started < up,
                "{job} started (line {started}) or ran (line {up}) before {need} ran (line {need_up}):\n{log}"
            );
        }
    }
}

/// From line `from` on, every job stopped before the jobs it starts on.
pub(crate) fn assert_stop_order(
    log: &str,
    from: usize,
    deps: &BTreeMap<String, Vec<String>>,
    but: &str,
) {
    let lines = job_lines(log);
    for (job, needs) in deps {
        if job == but {
            continue;
        }
        let down = must(&lines, from, job, "stopped", log);
        for need in needs.iter().filter(|n| *n != but) {
            let need_down = must(&lines, from, need, "stopped", log);
            assert!(
                down < need_down,
                "{job} stopped (line {down}) after {need} (line {need_down}):\n{log}"
            );
        }
    }
}

/// An HTTP client on a runtime of its own.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client");
        Http { rt, client }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, String), String> {
        self.rt.block_on(async {
            let resp = req
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp.text().await.map_err(|e| e.to_string())?;
            Ok((status, body))
        })
    }

    fn get(&self, url: &str) -> Result<(u16, String), String> {
        self.send(self.client.get(url).header("Host", HOST))
    }

    fn post_form(&self, url: &str, form: &str) -> Result<(u16, String), String> {
        self.send(
            self.client
                .post(url)
                .header("Host", HOST)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form.to_string()),
        )
    }

    /// Opens the Server-Sent Events stream at `url`.
    fn events(&self, url: &str) -> reqwest::Response {
        let resp = self
            .rt
            .block_on(self.client.get(url).header("Host", HOST).send())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {url}");
        resp
    }

    /// Reads `stream` until it has carried `needle`; what it carried so far.
    fn read_until(&self, stream: &mut reqwest::Response, needle: &str) -> Result<String, String> {
        self.rt.block_on(async {
            let mut seen = String::new();
            let read = async {
                while !seen.contains(needle) {
                    match stream.chunk().await {
                        Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                        Ok(None) => return Err("the stream ended".to_string()),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(())
            };
            match tokio::time::timeout(TASK_DEADLINE, read).await {
                Ok(Ok(())) => Ok(seen),
                Ok(Err(e)) => Err(format!("{e}; it carried {seen:?}")),
                Err(_) => Err(format!("timed out; it carried {seen:?}")),
            }
        })
    }
}

/// The stack under test.
struct Stack<'a> {
    d: Daemon<'a>,
    http: Http,
    ports: BTreeMap<&'static str, u16>,
}

impl Stack<'_> {
    fn url(&self, service: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[service])
    }

    /// Waits until every job is running and `also` holds of the jobs' status.
    fn wait_running(&self, what: &str, also: impl Fn(&[Value]) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            let all = self.d.all();
            if let Some(failed) = all.iter().find(|j| j["state"] == "failed") {
                panic!(
                    "{} failed while waiting for {what}; the daemon's log:\n{}",
                    failed["name"],
                    self.d.daemon_log()
                );
            }
            if all.iter().all(|j| j["state"] == "running") && also(&all) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < STACK_DEADLINE,
                "timed out waiting for {what}: {all:?}\nthe daemon's log:\n{}",
                self.d.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pids(&self) -> BTreeMap<String, u64> {
        self.d
            .all()
            .iter()
            .filter_map(|j| Some((j["name"].as_str()?.to_string(), j["pid"].as_u64()?)))
            .collect()
    }

    /// Every server answers as its readiness probe says it does.
    fn assert_ready(&self) {
        let mut redis = TcpStream::connect(("127.0.0.1", self.ports["redis"])).expect("Redis");
        redis
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .expect("timeout");
        redis.write_all(b"PING\r\n").expect("PING");
        let mut pong = [0u8; 7];
        redis.read_exact(&mut pong).expect("Redis answers");
        assert_eq!(&pong, b"+PONG\r\n");
        for (service, path, body) in [
            ("django", "/health/", "ok"),
            ("asyncserver", "/health", "ok"),
            ("flower", "/healthcheck", "OK"),
            ("nginx", "/health/", "ok"),
        ] {
            let url = self.url(service, path);
            let (status, got) = self.http.get(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(status, 200, "{url}: {got}");
            assert_eq!(got.trim(), body, "{url}");
        }
    }

    /// Queues add(x, y) through nginx, uWSGI and Django, and reads its result back from
    /// the Redis result backend; the async server relays the task's message.
    fn round_trip(&self, x: i64, y: i64) {
        // A client of its own for the stream, so that the stream's connection closes
        // with it, as a browser's does when its tab closes; nginx's graceful stop would
        // otherwise wait for it.
        let sse = Http::new();
        let mut events = sse.events(&self.url("nginx", "/events"));
        let url = self.url("nginx", "/tasks/");
        let (status, body) = self
            .http
            .post_form(&url, &format!("x={x}&y={y}"))
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(status, 202, "POST {url}: {body}");
        let queued: Value = serde_json::from_str(&body).expect("JSON");
        let id = queued["id"].as_str().expect("a task id").to_string();

        let url = self.url("nginx", &format!("/tasks/{id}/"));
        let start = Instant::now();
        let done = loop {
            let (status, body) = self
                .http
                .get(&url)
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(status, 200, "GET {url}: {body}");
            let state: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(state["id"], id.as_str());
            if state["state"] == "SUCCESS" {
                break state;
            }
            assert!(
                ["PENDING", "RECEIVED", "STARTED"].contains(&state["state"].as_str().unwrap_or("")),
                "{state}"
            );
            assert!(
                start.elapsed() < TASK_DEADLINE,
                "task {id} not done: {state}; the worker's log:\n{}",
                std::fs::read_to_string(self.d.conf.path().join("var/log/guardian/celeryd.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(done["result"], x + y, "{done}");

        let seen = sse
            .read_until(&mut events, &id)
            .unwrap_or_else(|e| panic!("the /events stream: {e}"));
        let message = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|m| m["task"] == id.as_str())
            .unwrap_or_else(|| panic!("no message of task {id} in {seen:?}"));
        assert_eq!(message["result"], x + y, "{message}");
        drop(events);
        drop(sse);
    }
}

/// The daemon and its descendants, as (pid, start time).
pub(crate) fn tree_of(root: u32) -> Vec<(u32, u64)> {
    let all: Vec<(u32, tree::Stat)> = tree::pids()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p, tree::stat(p)?)))
        .collect();
    let mut found = vec![(root, tree::stat(root).map_or(0, |s| s.start_time))];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].0;
        for (pid, st) in &all {
            if st.ppid == parent && !found.iter().any(|(p, _)| p == pid) {
                found.push((*pid, st.start_time));
            }
        }
        i += 1;
    }
    found
}

/// Live processes of the stack: one of `known` still running, or any process whose
/// command line or working directory names `root`, or whose command line has `mark`.
pub(crate) fn leftovers(root: &Path, known: &[(u32, u64)], mark: &str) -> Vec<String> {
    let me = std::process::id();
    let root_text = root.display().to_string();
    let mut left = Vec::new();
    for pid in tree::pids().into_iter().flatten() {
        let Some(st) = tree::stat(pid) else {
            continue;
        };
        if pid == me || st.state == 'Z' || st.state == 'X' {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if known.contains(&(pid, st.start_time))
            || cmdline.contains(&root_text)
            || cwd.starts_with(root)
            || cmdline.contains(mark)
        {
            left.push(format!("{pid} {cmdline}"));
        }
    }
    left
}

#[test]
fn django_stack_runs_for_real_and_survives_a_redis_crash() {
    let lacking = missing();
    if !lacking.is_empty() {
        let msg = format!(
            "the Django stack needs {}; .ci/run installs them",
            lacking.join(", ")
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {msg}"
        );
        eprintln!("SKIPPED django_stack: {msg}");
        return;
    }

    let dir = tempfile::Builder::new()
        .prefix("gdj")
        .tempdir()
        .expect("temporary directory");
    let root = dir.path().to_path_buf();
    let mut ports: BTreeMap<&'static str, u16> = BTreeMap::new();
    for (name, _) in HOST_PORTS {
        let port = loop {
            let p = crate::util::free_port();
            if !ports.values().any(|q| *q == p) {
                break p;
            }
        };
        ports.insert(name, port);
    }
    let mut lay = Command::new(PYTHON);
    lay.arg(LOCAL).arg(&root);
    for (name, port) in &ports {
        lay.arg("--port").arg(format!("{name}={port}"));
    }
    let out = lay.output().expect("run local.py");
    assert!(out.status.success(), "local.py: {}", text(&out));

    // What runs is what is shipped, with only local.py's two rewrites: put the host's
    // paths and ports back and the files are the shipped ones, byte for byte.
    let jobs = root.join("jobs");
    let mut laid_out = vec![("guardian.toml".to_string(), "guardian.toml".to_string())];
    for entry in std::fs::read_dir(Path::new(SHIPPED).join("jobs"))
        .expect("shipped jobs")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        laid_out.push((format!("jobs/{name}"), format!("jobs/{name}")));
    }
    laid_out.push((
        "app/deploy/nginx.conf".to_string(),
        "srv/proj/deploy/nginx.conf".to_string(),
    ));
    for (shipped, local) in &laid_out {
        let ours = std::fs::read_to_string(Path::new(SHIPPED).join(shipped)).expect("shipped");
        let mut theirs = std::fs::read_to_string(root.join(local))
            .unwrap_or_else(|e| panic!("{local}: {e}"))
            .replace(&format!("{}/", root.display()), "/");
        for (name, host) in HOST_PORTS {
            theirs = replace_number(&theirs, ports[name], *host);
        }
        assert_eq!(
            theirs, ours,
            "{local} is not {shipped} with paths and ports moved"
        );
    }

    let deps = start_deps(&jobs);
    let figure: BTreeMap<String, Vec<String>> = FIGURE_1
        .iter()
        .map(|(j, d)| (j.to_string(), d.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(
        deps, figure,
        "the job files' start-on is the article's Figure 1"
    );

    let c = Conf::laid_out(dir, root.join("run/guardian.sock"));
    let up_since = Instant::now();
    let stack = Stack {
        d: c.start(),
        http: Http::new(),
        ports,
    };
    stack.wait_running("the stack to come up", |_| true);
    let up = up_since.elapsed();
    println!(
        "django stack: all {} jobs running {:.1}s after the daemon was started",
        deps.len(),
        up.as_secs_f64()
    );
    let log = stack.d.daemon_log();
    assert_start_order(&log, 0, &deps);
    stack.assert_ready();
    stack.round_trip(20, 22);

    // kill -9 of redis-server: its dependents stop, dependents first, and come back in
    // order once guardian has respawned it.
    let before = stack.pids();
    signal(before["redis-server"] as u32, "KILL");
    let back = stack.wait_running("the stack to come back after Redis was killed", |all| {
        all.iter().all(|j| {
            let name = j["name"].as_str().unwrap_or("");
            j["pid"]
                .as_u64()
                .is_some_and(|p| Some(&p) != before.get(name))
        })
    });
    println!(
        "django stack: back {:.1}s after redis-server was killed",
        back.as_secs_f64()
    );
    let log = stack.d.daemon_log();
    let lines = job_lines(&log);
    let crash = must(&lines, 0, "redis-server", "main killed by SIGKILL", &log);
    assert_stop_order(&log, crash, &deps, "redis-server");
    let respawned = must(&lines, crash, "redis-server", "running", &log);
    for job in deps.keys().filter(|j| *j != "redis-server") {
        assert!(
            must(&lines, crash, job, "stopped", &log) < respawned,
            "{job} was still up when redis-server came back:\n{log}"
        );
    }
    assert_start_order(&log, respawned, &deps);
    assert_eq!(stack.d.status("redis-server")["restarts"], 1);
    stack.assert_ready();
    stack.round_trip(1000, 337);

    // SIGTERM: everything stops, dependents first, and nothing is left running.
    let daemon = stack.d.pid();
    let tree = tree_of(daemon);
    let redis_title = format!("127.0.0.1:{}", stack.ports["redis"]);
    let Stack { mut d, .. } = stack;
    let down_since = Instant::now();
    let status = d.terminate_within(STACK_DEADLINE);
    println!(
        "django stack: guardian stopped every job and exited {:.1}s after SIGTERM",
        down_since.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{status}: {}", d.daemon_log());
    let log = d.daemon_log();
    let lines = job_lines(&log);
    let shutdown = must(&lines, 0, "", "stopping every job", &log);
    assert_stop_order(&log, shutdown, &deps, "");
    let start = Instant::now();
    loop {
        let left = leftovers(&root, &tree, &redis_title);
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running after guardian exited:\n{}\nthe daemon's log:\n{log}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shipped files validate on any machine, with or without the programs.
#[test]
fn django_stack_files_pass_check() {
    let out = Command::new(crate::util::BIN)
        .args(["-c", SHIPPED, "check"])
        .output()
        .expect("guardian check");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("7 jobs OK"),
        "{}",
        text(&out)
    );
}
