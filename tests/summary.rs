//! `summary`'s table against what `status --json` says of the same jobs: a row per job
//! whatever its state, the instances of a job file as one row (and a row each when they
//! differ), the host's line and its checks. And against a daemon that does not know the
//! `summary` request: the same table, from its `status`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::util::{BIN, Conf, Daemon, ROOT_DISK_CHECK, text};

/// The table's cells, cut where the header's words begin (an instance's name keeps its
/// indent).
fn cells(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let starts: Vec<usize> = [
        "NAME", "GOAL", "STATE", "HEALTH", "PID", "UPTIME", "CPU", "MEM", "MON",
    ]
    .iter()
    .map(|h| {
        header
            .find(h)
            .unwrap_or_else(|| panic!("no {h} in {table}"))
    })
    .collect();
    lines
        .take_while(|l| !l.starts_with("check "))
        .map(|line| {
            (0..starts.len())
                .map(|i| {
                    let end = starts.get(i + 1).copied().unwrap_or(line.len());
                    line.get(starts[i]..end.min(line.len()))
                        .unwrap_or_default()
                        .trim_end()
                        .to_string()
                })
                .collect()
        })
        .collect()
}

/// `-` for null, else what a value makes in its column (only whether there is one, for
/// the uptime, CPU and memory that change from one request to the next).
fn shown(v: &Value, word: impl Fn(&Value) -> String) -> String {
    if v.is_null() { "-".into() } else { word(v) }
}

fn some(_: &Value) -> String {
    "*".into()
}

fn string(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

/// The row `status --json` says a job has.
fn row_of(j: &Value, indent: &str) -> Vec<String> {
    vec![
        format!("{indent}{}", string(&j["name"])),
        string(&j["goal"]),
        string(&j["state"]),
        string(&j["health"]),
        shown(&j["pid"], string),
        shown(&j["uptime_secs"], some),
        shown(&j["cpu_secs"], some),
        shown(&j["rss_bytes"], some),
        if j["monitored"] == true { "yes" } else { "no" }.into(),
    ]
}

/// The rows `status --json` says a job file's instances have: one for the set, and one
/// each when they differ in goal, state, health or monitoring.
fn set_rows(base: &str, set: &[&Value]) -> Vec<Vec<String>> {
    let all = |key: &str| set.iter().all(|j| j[key] == set[0][key]);
    let running = set.iter().filter(|j| j["state"] == "running").count();
    let health = if set.iter().any(|j| j["health"] == "unhealthy") {
        "unhealthy".to_string()
    } else {
        set.iter()
            .map(|j| string(&j["health"]))
            .find(|h| h != "healthy")
            .unwrap_or_else(|| "healthy".into())
    };
    let any = |key: &str| {
        if set.iter().any(|j| !j[key].is_null()) {
            "*"
        } else {
            "-"
        }
        .to_string()
    };
    let monitored = set.iter().filter(|j| j["monitored"] == true).count();
    let mut rows = vec![vec![
        base.to_string(),
        if all("goal") {
            string(&set[0]["goal"])
        } else {
            "mixed".into()
        },
        format!("{running}/{} running", set.len()),
        health,
        "-".into(),
        any("uptime_secs"),
        any("cpu_secs"),
        any("rss_bytes"),
        match monitored {
            0 => "no",
            m if m == set.len() => "yes",
            _ => "some",
        }
        .into(),
    ]];
    if !["goal", "state", "health", "monitored"]
        .iter()
        .all(|k| all(k))
    {
        rows.extend(set.iter().map(|j| row_of(j, "  ")));
    }
    rows
}

/// The table `status --json` (and `status --host --json`) says `summary` shows, with
/// the uptime, CPU and memory as `*` where there is one.
fn expected(jobs: &[Value], host: &[Value], per_file: bool) -> Vec<Vec<String>> {
    let key = |j: &Value| {
        let base = j["base"].as_str().or(j["name"].as_str()).unwrap_or("");
        (base.to_string(), j["instance"].as_u64())
    };
    let mut order: Vec<&Value> = jobs.iter().collect();
    order.sort_by_key(|j| key(j));
    let mut rows = Vec::new();
    let mut i = 0;
    while i < order.len() {
        match order[i]["base"].as_str().filter(|_| per_file) {
            None => {
                rows.push(row_of(order[i], ""));
                i += 1;
            }
            Some(base) => {
                let n = order[i..].iter().take_while(|j| j["base"] == base).count();
                rows.extend(set_rows(base, &order[i..i + n]));
                i += n;
            }
        }
    }
    if !host.is_empty() {
        let health = if host.iter().any(|c| c["passed"] == false) {
            "unhealthy"
        } else if host.iter().any(|c| c["passed"] == true) {
            "healthy"
        } else {
            "unknown"
        };
        let mut line = vec!["system".to_string(), "-".into(), "-".into(), health.into()];
        line.extend(["-", "-", "-", "-", "yes"].map(String::from));
        rows.push(line);
    }
    rows
}

/// The table as compared: the uptime, CPU and memory as `*` where there is one.
fn masked(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    for row in &mut rows {
        for cell in row.iter_mut().skip(5).take(3) {
            if cell != "-" {
                *cell = "*".into();
            }
        }
    }
    rows
}

fn stdout(d: &Daemon<'_>, args: &[&str]) -> String {
    String::from_utf8_lossy(&d.ok(args, 0).stdout).into_owned()
}

#[test]
fn summary_shows_each_job_as_status_json_says_whatever_its_state() {
    let c = Conf::new();
    c.settings(ROOT_DISK_CHECK);
    let check = |exec: &str| {
        format!(
            "[[check]]\ntype = \"program\"\nexec = \"{exec}\"\naction = \"alert\"\nevery = \"100ms\"\ntimeout = \"10s\"\n"
        )
    };
    c.job("alpha", &format!("exec = \"sleep 600\"\n{}", check("true")));
    c.job("sick", &format!("exec = \"sleep 600\"\n{}", check("false")));
    c.job("plain", "exec = \"sleep 600\"\n");
    c.job("quiet", "exec = \"sleep 600\"\n");
    c.job("down", "manual = true\nexec = \"sleep 600\"\n");
    c.job("once", "task = true\nexec = \"true\"\n");
    c.job(
        "broken",
        "script = \"exit 1\"\nrespawn = true\nrespawn-limit = { count = 2, interval = \"30s\" }\n",
    );
    c.job("web", "instances = 3\nexec = \"sleep 600\"\n");
    c.job("api", "instances = 2\nexec = \"sleep 600\"\n");
    let d = c.start();
    for job in [
        "alpha", "sick", "plain", "quiet", "web@0", "web@1", "web@2", "api@1",
    ] {
        d.wait_state(job, "running");
    }
    d.wait_state("broken", "failed");
    d.ok(&["unmonitor", "quiet"], 0);
    d.ok(&["stop", "api@0"], 0);
    d.wait_until("the checks' and the task's outcomes", || {
        let all = d.all();
        let health = |name: &str| {
            all.iter()
                .find(|j| j["name"] == name)
                .map(|j| string(&j["health"]))
                .unwrap_or_default()
        };
        let host = d.ok(&["status", "--host", "--json"], 0);
        let host: Vec<Value> = serde_json::from_slice(&host.stdout).unwrap_or_default();
        health("alpha") == "healthy"
            && health("sick") == "unhealthy"
            && health("once") == "done"
            && host.iter().all(|c| c["passed"] == true)
    });

    let jobs = d.all();
    let host: Vec<Value> =
        serde_json::from_slice(&d.ok(&["status", "--host", "--json"], 0).stdout).expect("host");
    let table = stdout(&d, &["summary"]);
    let got = masked(cells(&table));
    assert_eq!(got, expected(&jobs, &host, true), "{table}");
    // What was set up is what the table says, word for word where words are certain.
    let row = |name: &str| {
        got.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row {name} in {table}"))
            .clone()
    };
    assert_eq!(row("web")[1..5], ["start", "3/3 running", "unknown", "-"]);
    assert!(
        !table.contains("web@"),
        "alike instances are one row: {table}"
    );
    assert_eq!(row("api")[1..3], ["mixed", "1/2 running"], "{table}");
    assert_eq!(row("  api@0")[1..3], ["stop", "waiting"], "{table}");
    assert_eq!(row("  api@1")[2], "running", "{table}");
    assert_eq!(row("alpha")[3], "healthy");
    assert_eq!(row("sick")[3], "unhealthy");
    assert_eq!(row("quiet")[8], "no");
    assert_eq!(row("down")[1..5], ["stop", "waiting", "unknown", "-"]);
    assert_eq!(row("once")[2..4], ["waiting", "done"]);
    assert_eq!(row("broken")[2], "failed");
    assert_eq!(row("system")[3], "healthy");
    assert!(
        table.contains("\ncheck root (disk /, then alert): ok"),
        "{table}"
    );
    let pid = jobs
        .iter()
        .find(|j| j["name"] == "plain")
        .map(|j| string(&j["pid"]))
        .unwrap_or_default();
    assert_eq!(row("plain")[4], pid);

    // A row per instance; `status` alone prints the same table; a group's table has
    // no host line.
    let per_instance = stdout(&d, &["summary", "--instances"]);
    assert_eq!(
        masked(cells(&per_instance)),
        expected(&jobs, &host, false),
        "{per_instance}"
    );
    let status = stdout(&d, &["status"]);
    assert_eq!(masked(cells(&status)), got, "{status}");
}

/// Reads one frame of the control protocol.
fn read_frame(s: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn write_frame(s: &mut UnixStream, v: &Value) {
    let body = serde_json::to_vec(v).expect("json");
    let mut frame = u32::try_from(body.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&body);
    let _ = s.write_all(&frame);
}

#[test]
fn summary_asks_a_daemon_without_the_summary_request_for_the_status() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("old.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let job = |name: &str, state: &str, pid: Value| {
        json!({
            "name": name, "description": null, "groups": [], "goal": "start",
            "state": state, "pid": pid, "monitored": true, "health": "unknown",
            "restarts": 0, "respawn_in_secs": null, "uptime_secs": 61.5,
            "cpu_secs": 0.5, "rss_bytes": 2_500_000, "manual_stop": false,
            "last_failure": null, "checks": [],
        })
    };
    let jobs = json!([
        job("web", "running", json!(42)),
        job("db", "running", json!(43))
    ]);
    // A daemon of before the request: it says hello, takes `summary` for a malformed
    // request and hangs up, and answers `status` with every job.
    let server = std::thread::spawn(move || {
        let mut asked = Vec::new();
        for _ in 0..2 {
            let Ok((mut s, _)) = listener.accept() else {
                break;
            };
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(20)));
            if read_frame(&mut s).is_none() {
                break;
            }
            write_frame(
                &mut s,
                &json!({"response": "hello", "version": 1, "daemon": "0.1.0 (older)"}),
            );
            let Some(request) = read_frame(&mut s) else {
                break;
            };
            asked.push(string(&request["request"]));
            if request["request"] == "summary" {
                write_frame(
                    &mut s,
                    &json!({"response": "error", "message": "malformed request: unknown variant `summary`, expected one of `hello`, `status`, `start` at line 1 column 20"}),
                );
            } else {
                write_frame(&mut s, &json!({"response": "jobs", "jobs": jobs}));
            }
        }
        asked
    });
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(&path)
        .arg("summary")
        .env_remove("GUARDIAN_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run the guardian CLI");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let asked = server.join().expect("the older daemon");
    assert_eq!(asked, ["summary", "status"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        cells(&table),
        [
            [
                "db", "start", "running", "unknown", "43", "1m1s", "0.5s", "2.5MB", "yes"
            ],
            [
                "web", "start", "running", "unknown", "42", "1m1s", "0.5s", "2.5MB", "yes"
            ],
        ],
        "{table}"
    );
}
