//! The seeds' Upstart jobs of the Django stack (tests/fixtures/import/upstart/django),
//! imported with `guardian import upstart` and run under guardian as imported: the
//! real redis-server (through start-stop-daemon, `expect fork`), uWSGI, nginx
//! (`expect fork`) and Node.js, and small stand-ins for what this host does not have
//! (the project's virtualenv with Celery, the relay's script). Only what names the
//! article's host is changed in the imported files: its paths are moved under a
//! temporary directory (redis-server's binary too: start-stop-daemon finds a running
//! server by its binary), its ports to free ones, its users to the one running the
//! test, and nginx is given the stack's own nginx.conf where it would read
//! /etc/nginx/nginx.conf.
//!
//! Skipped, with a message, where a real program is missing; with CI=true a missing
//! program fails the test, since .ci/run installs them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::django_stack::{
    FIGURE_1, assert_start_order, assert_stop_order, job_lines, leftovers, must, start_deps,
    tree_of,
};
use crate::util::{BIN, Conf, text};

/// How long the stack may take to come up on a loaded machine.
const STACK_DEADLINE: Duration = Duration::from_secs(180);

const PROGRAMS: &[&str] = &[
    "/usr/bin/redis-server",
    "/usr/sbin/start-stop-daemon",
    "/usr/sbin/nginx",
    "/usr/bin/uwsgi",
    "/usr/lib/uwsgi/plugins/python3_plugin.so",
    "/usr/bin/node",
    "/usr/bin/python3",
];

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/import/upstart/django"
);
const WSGI_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wsgi_app.py");

/// The project's `celery`, which this host does not have: `multi start` leaves a worker
/// behind with its pid file, as celery multi does, and `multi stopwait` stops it; `beat`
/// runs until stopped; `flower` answers HTTP on its `--port`.
const CELERY: &str = r#"#!/bin/sh
# A stand-in for Celery, for the imported jobs' exec lines and hooks.
cmd="$1 $2"
node=$3
pidfile=
port=
for a; do
    case $a in
        --pidfile=*) pidfile=${a#--pidfile=} ;;
        --port=*) port=${a#--port=} ;;
    esac
done
case $pidfile in *%n*) pidfile=${pidfile%%%n*}$node${pidfile#*%n} ;; esac
case $cmd in
    "multi start")
        sleep 3600 </dev/null >/dev/null 2>&1 &
        echo $! > "$pidfile"
        echo "celery multi: started $node (pid $!)"
        exit 0 ;;
    "multi stopwait")
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
        rm -f "$pidfile"
        echo "celery multi: stopped $node"
        exit 0 ;;
esac
case " $* " in
    *" flower "*) exec python3 -m http.server "$port" --bind 127.0.0.1 ;;
    *" beat "*) echo "celery beat: running"; exec sleep 3600 ;;
esac
echo "celery stand-in: $*" >&2
exit 2
"#;

/// The relay the asyncserver job runs with the real node.
const SERVER_JS: &str = "// A stand-in for the stack's Node.js relay: answers every request.\n\
require('http').createServer((req, res) => res.end('async ok\\n'))\n\
  .listen(Number(process.env.PORT), '127.0.0.1');\n";

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// One HTTP GET on a fresh connection: the status line and body, or why not.
fn get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: www.example.com\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Redis's answer to PING.
fn ping(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn imported_upstart_django_stack_runs_under_guardian_in_dependency_order() {
    let lacking: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !lacking.is_empty() {
        let msg = format!(
            "the imported Django stack needs {}; .ci/run installs them",
            lacking.join(", ")
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {msg}"
        );
        eprintln!("SKIPPED imported_stack: {msg}");
        return;
    }

    // Import the seven jobs as they are; what the import writes passes `check`.
    let c = Conf::new();
    let root = c.path().to_path_buf();
    let r = root.display().to_string();
    let mut files: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".conf"))
        .collect();
    files.sort();
    let out = Command::new(BIN)
        .args(["import", "upstart"])
        .args(&files)
        .arg("--out")
        .arg(&root)
        .output()
        .expect("import");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let checked = c.cli(&["check"]);
    assert!(checked.status.success(), "{}", text(&checked));
    let jobs = root.join("jobs");
    let deps = start_deps(&jobs);
    let figure: BTreeMap<String, Vec<String>> = FIGURE_1
        .iter()
        .map(|(j, d)| (j.to_string(), d.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(
        deps, figure,
        "the imported start-on is the article's Figure 1"
    );

    // This host in place of the article's: paths, ports, users.
    let mut ports = Vec::new();
    for _ in 0..5 {
        ports.push(crate::util::free_port());
    }
    let (redis, django, relay, flower, web) = (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let (user, group) = (id("-un"), id("-gn"));
    let nginx_conf = format!("{r}/etc/nginx/nginx.conf");
    // start-stop-daemon --exec refuses to start a second process of a binary: a copy
    // of its own keeps the stack apart from other Redis servers on the machine.
    let redis_bin = format!("{r}/usr/bin/redis-server");
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::fs::copy("/usr/bin/redis-server", &redis_bin).expect("copy redis-server");
    let moves: Vec<(String, String)> = vec![
        ("/usr/bin/redis-server".into(), redis_bin.clone()),
        (
            "\"/usr/sbin/nginx\"".into(),
            format!("\"/usr/sbin/nginx -e stderr -c {nginx_conf}\""),
        ),
        ("/srv/proj".into(), format!("{r}/srv/proj")),
        ("/var/run/".into(), format!("{r}/run/")),
        ("/var/".into(), format!("{r}/var/")),
        ("/etc/redis/".into(), format!("{r}/etc/redis/")),
        ("/etc/uwsgi/".into(), format!("{r}/etc/uwsgi/")),
        ("USER = \"redis\"".into(), format!("USER = \"{user}\"")),
        ("GROUP = \"redis\"".into(), format!("GROUP = \"{group}\"")),
        ("PORT = \"8001\"".into(), format!("PORT = \"{relay}\"")),
        ("--port=5555".into(), format!("--port={flower}")),
    ];
    for entry in std::fs::read_dir(&jobs).expect("jobs").flatten() {
        let path = entry.path();
        let mut t = std::fs::read_to_string(&path).expect("job");
        for (from, to) in &moves {
            t = t.replace(from, to);
        }
        std::fs::write(&path, t).expect("job");
    }
    for dir in ["run", "var/lib/celery", "var/log", "var/nginx"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }

    // What the programs read, and the stand-ins for what this host lacks.
    write(
        &root.join("etc/redis/redis.conf"),
        &format!(
            "daemonize yes\nbind 127.0.0.1\nport {redis}\npidfile {r}/run/redis.pid\n\
             dir {r}/var/lib/redis\nlogfile {r}/var/log/redis.log\nsave \"\"\n"
        ),
    );
    write(
        &root.join("etc/uwsgi/proj.ini"),
        &format!(
            "[uwsgi]\nplugins-dir = /usr/lib/uwsgi/plugins\nplugin = python3\n\
             http-socket = 127.0.0.1:{django}\nwsgi-file = {WSGI_APP}\nmaster = true\nprocesses = 1\n"
        ),
    );
    let nginx_user = if user == "root" { "user root;\n" } else { "" };
    write(
        Path::new(&nginx_conf),
        &format!(
            "{nginx_user}worker_processes 1;\npid {r}/run/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n\
               client_body_temp_path {r}/var/nginx/body;\n  proxy_temp_path {r}/var/nginx/proxy;\n\
               fastcgi_temp_path {r}/var/nginx/fastcgi;\n  uwsgi_temp_path {r}/var/nginx/uwsgi;\n\
               scgi_temp_path {r}/var/nginx/scgi;\n\
               server {{\n    listen 127.0.0.1:{web};\n\
                 location /events {{ proxy_pass http://127.0.0.1:{relay}; }}\n\
                 location / {{ proxy_pass http://127.0.0.1:{django}; }}\n  }}\n}}\n"
        ),
    );
    let celery = root.join("srv/proj/venv/bin/celery");
    write(&celery, CELERY);
    std::fs::set_permissions(&celery, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    write(&root.join("srv/proj/asyncserver/server.js"), SERVER_JS);
    let checked = c.cli(&["check"]);
    assert!(checked.status.success(), "{}", text(&checked));

    // Every job reaches running, each after the jobs it starts on.
    let d = c.start();
    let since = Instant::now();
    loop {
        let all = d.all();
        if all.len() == deps.len() && all.iter().all(|j| j["state"] == "running") {
            break;
        }
        assert!(
            since.elapsed() < STACK_DEADLINE,
            "not every imported job is running: {all:?}\nthe daemon's log:\n{}",
            d.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "imported django stack: all {} jobs running {:.1}s after the daemon was started (load {})",
        deps.len(),
        since.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let log = d.daemon_log();
    assert_start_order(&log, 0, &deps);

    // The real programs answer, as the jobs' main processes.
    let answer = |what: &str, f: &dyn Fn() -> Result<String, String>, want: &str| {
        let start = Instant::now();
        loop {
            let got = f();
            if got.as_deref().is_ok_and(|g| g.contains(want)) {
                return;
            }
            assert!(
                start.elapsed() < STACK_DEADLINE,
                "{what}: {got:?}\nthe daemon's log:\n{}",
                d.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    answer("redis-server", &|| ping(redis), "+PONG");
    answer("uwsgi", &|| get(django, "/"), "ok ");
    answer("nginx to uwsgi", &|| get(web, "/"), "ok ");
    answer("nginx to the relay", &|| get(web, "/events"), "async ok");
    answer("flower", &|| get(flower, "/"), "200");
    let redis_pid = std::fs::read_to_string(root.join("run/redis.pid")).unwrap_or_default();
    assert_eq!(
        d.status("redis-server")["pid"]
            .as_u64()
            .map(|p| p.to_string()),
        Some(redis_pid.trim().to_string()),
        "guardian follows the redis-server that forked (expect fork)"
    );
    let nginx_pid = std::fs::read_to_string(root.join("run/nginx.pid")).unwrap_or_default();
    assert_eq!(
        d.status("nginx")["pid"].as_u64().map(|p| p.to_string()),
        Some(nginx_pid.trim().to_string()),
        "guardian follows the nginx master that forked (expect fork)"
    );
    let worker = std::fs::read_to_string(root.join("run/celery/worker1.pid")).unwrap_or_default();
    assert!(
        !worker.trim().is_empty(),
        "celery multi start left its pid file"
    );

    // SIGTERM: dependents first, and nothing of the stack is left.
    let tree = tree_of(d.pid());
    let mut d = d;
    let status = d.terminate_within(STACK_DEADLINE);
    let log = d.daemon_log();
    assert!(status.success(), "{status}: {log}");
    let from = must(&job_lines(&log), 0, "", "stopping every job", &log);
    assert_stop_order(&log, from, &deps, "");
    let start = Instant::now();
    loop {
        let left = leftovers(&root, &tree, &format!("127.0.0.1:{redis}"));
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still running after guardian exited:\n{}\nthe daemon's log:\n{log}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
