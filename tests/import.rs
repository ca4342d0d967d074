//! `guardian import`: the seeds' Upstart jobs, Supervisor's and Monit's documented
//! examples (tests/fixtures/import/), each imported by the real binary into a
//! configuration directory that `guardian check` then accepts; the key translations;
//! the report, --json, --force and the exit codes; and a supervisord.conf run by real
//! supervisord, imported, and run by guardian with the same programs running.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{BIN, Conf, DEADLINE, free_port, text};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

fn fixture(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

fn upstart_files(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures().join("upstart").join(dir))
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

/// `guardian -c DIR import ARGS...`.
fn import(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("-c")
        .arg(dir)
        .arg("import")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run guardian import")
}

/// A configuration directory with no guardian.toml, only jobs/.
fn empty_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("gi")
        .tempdir()
        .expect("temporary directory");
    std::fs::create_dir(d.path().join("jobs")).expect("jobs dir");
    d
}

fn check(dir: &Path) {
    let out = Command::new(BIN)
        .arg("-c")
        .arg(dir)
        .arg("check")
        .output()
        .expect("run guardian check");
    assert_eq!(out.status.code(), Some(0), "check: {}", text(&out));
}

fn job(dir: &Path, name: &str) -> (String, toml::Table) {
    let t = std::fs::read_to_string(dir.join("jobs").join(format!("{name}.toml")))
        .unwrap_or_else(|e| panic!("jobs/{name}.toml: {e}"));
    let v: toml::Table = toml::from_str(&t).unwrap_or_else(|e| panic!("{name}: {e}\n{t}"));
    (t, v)
}

fn checks(v: &toml::Table) -> Vec<toml::Table> {
    v.get("check")
        .and_then(|c| c.as_array())
        .map(|a| a.iter().filter_map(|c| c.as_table().cloned()).collect())
        .unwrap_or_default()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn import_upstart_seed_jobs_pass_check_with_their_keys() {
    let d = empty_dir();
    let mut files = upstart_files("django");
    files.extend(upstart_files("other"));
    let args: Vec<&str> = std::iter::once("upstart")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = import(d.path(), &args);
    // Directories and users of the articles' hosts are not here: reported, exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = stdout(&out);
    assert!(
        report.contains(
            "unicorn.conf:9: not translated: the directory /srv/dashboard/current does not exist"
        ),
        "{report}"
    );
    check(d.path());
    for name in [
        "redis-server",
        "celeryd",
        "celerybeat",
        "asyncserver",
        "uwsgi",
        "celeryflower",
        "nginx",
        "delayed_job",
        "unicorn",
        "web",
    ] {
        assert!(
            d.path().join("jobs").join(format!("{name}.toml")).is_file(),
            "{name}"
        );
    }

    // delayed_job: respawn limit 10 90, and the comment above each stanza above its key.
    let (t, v) = job(d.path(), "delayed_job");
    assert_eq!(v["respawn"].as_bool(), Some(true));
    assert_eq!(v["respawn-limit"]["count"].as_integer(), Some(10));
    assert_eq!(v["respawn-limit"]["interval"].as_str(), Some("90s"));
    assert!(
        t.contains("# Give up if restart occurs 10 times in 90 seconds.\nrespawn-limit = "),
        "{t}"
    );
    assert!(
        t.contains("# or exit code not given by the 'normal exit' stanza.\nrespawn = true"),
        "{t}"
    );
    // start on runlevel 2 is the daemon's start: no start-on.
    assert!(v.get("start-on").is_none(), "{t}");

    // redis-server: expect fork, runlevels to the daemon's start and stop, the env.
    let (t, v) = job(d.path(), "redis-server");
    assert_eq!(v["expect"].as_str(), Some("fork"));
    assert!(
        v.get("start-on").is_none() && v.get("stop-on").is_none(),
        "{t}"
    );
    assert_eq!(v["env"]["DIR"].as_str(), Some("/var/lib/redis"));
    assert!(
        v["pre-start"]
            .as_str()
            .is_some_and(|s| s.contains("mkdir -p $DIR"))
    );
    // An exec line with $VARIABLES needs a shell, as Upstart gave it one.
    assert!(
        v["script"]
            .as_str()
            .is_some_and(|s| s.starts_with("exec start-stop-daemon")),
        "{t}"
    );

    // uwsgi: the job events are kept, the comment above start on too.
    let (t, v) = job(d.path(), "uwsgi");
    assert_eq!(
        v["start-on"].as_str(),
        Some("started redis-server and started celerybeat and started asyncserver")
    );
    assert_eq!(
        v["stop-on"].as_str(),
        Some("stopping redis-server or stopping celerybeat or stopping asyncserver")
    );
    assert_eq!(v["kill-signal"].as_str(), Some("QUIT"));
    assert!(
        t.contains("# Django needs redis, celery and the async server up.\nstart-on"),
        "{t}"
    );

    // celeryd: the four hooks and the sleeping main process.
    let (_, v) = job(d.path(), "celeryd");
    assert!(
        v["pre-start"]
            .as_str()
            .is_some_and(|s| s.contains("multi start"))
    );
    assert!(
        v["pre-stop"]
            .as_str()
            .is_some_and(|s| s.contains("multi stopwait"))
    );
    assert!(
        v["script"]
            .as_str()
            .is_some_and(|s| s.contains("sleep 3600"))
    );

    // The Unicorn job keeps its flock script; its chdir is there, commented out.
    let (t, v) = job(d.path(), "unicorn");
    assert!(
        v["script"]
            .as_str()
            .is_some_and(|s| s.contains("flock -x 0 < /path/to/pidfile.lock"))
    );
    assert!(t.contains("# chdir = \"/srv/dashboard/current\""), "{t}");
}

#[test]
fn import_upstart_applies_the_override_and_maps_every_stanza() {
    let d = empty_dir();
    let out = import(d.path(), &["upstart", &fixture("upstart/other/web.conf")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("every line was translated exactly"));
    check(d.path());
    let (t, v) = job(d.path(), "web");
    assert_eq!(v["manual"].as_bool(), Some(true), "{t}");
    assert_eq!(v["exec"].as_str(), Some("/bin/sleep 2000"), "{t}");
    assert_eq!(v["kill-signal"].as_str(), Some("INT"));
    assert_eq!(v["kill-timeout"].as_str(), Some("20s"));
    let normal: Vec<String> = v["normal-exit"]
        .as_array()
        .expect("normal-exit")
        .iter()
        .map(|x| x.to_string())
        .collect();
    assert_eq!(normal, ["0", "2", "\"TERM\""]);
    assert!(
        t.contains("# Started by hand on this host.\nmanual = true"),
        "{t}"
    );
}

#[test]
fn import_never_overwrites_without_force_and_says_why() {
    let d = empty_dir();
    let file = fixture("upstart/other/delayed_job.conf");
    let first = import(d.path(), &["upstart", &file]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let path = d.path().join("jobs/delayed_job.toml");
    std::fs::write(&path, "exec = \"/bin/true\"\n").expect("edit the job");
    let again = import(d.path(), &["upstart", &file]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        text(&again)
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("job"),
        "exec = \"/bin/true\"\n"
    );
    let forced = import(d.path(), &["upstart", "--force", &file]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert!(
        std::fs::read_to_string(&path)
            .expect("job")
            .contains("respawn-limit")
    );
    check(d.path());
}

#[test]
fn import_reports_as_json_and_exits_2_on_a_parse_error() {
    let d = empty_dir();
    let out = import(
        d.path(),
        &["upstart", "--json", &fixture("upstart/other/unicorn.conf")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["exact"], false);
    let items = v["items"].as_array().expect("items");
    let chdir = items
        .iter()
        .find(|i| i["line"] == 9)
        .unwrap_or_else(|| panic!("the chdir line: {v}"));
    assert_eq!(chdir["text"], "chdir /srv/dashboard/current");
    assert_eq!(chdir["kind"], "dropped");
    assert!(
        chdir["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("unicorn.conf"))
    );
    assert!(
        v["written"][0]
            .as_str()
            .is_some_and(|w| w.ends_with("jobs/unicorn.toml"))
    );

    // A script block never closed: file:line, exit 2, nothing written.
    let bad = d.path().join("broken.conf");
    std::fs::write(&bad, "description \"x\"\n\nscript\n  echo hi\n").expect("write");
    let e = empty_dir();
    let out = import(e.path(), &["upstart", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.conf:3: `script` without `end script`"),
        "{err}"
    );
    assert!(!e.path().join("jobs/broken.toml").exists());
    let missing = import(e.path(), &["monit", "/nonexistent/monitrc"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
}

#[test]
fn import_supervisor_documentation_example() {
    let d = empty_dir();
    let out = import(
        d.path(),
        &["supervisor", &fixture("supervisor/docs-example.conf")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = stdout(&out);
    check(d.path());
    // [program:cat] of the documentation.
    let (t, v) = job(d.path(), "cat");
    assert_eq!(v["exec"].as_str(), Some("/bin/cat"));
    assert_eq!(v["chdir"].as_str(), Some("/tmp"));
    assert_eq!(v["umask"].as_str(), Some("022"));
    assert_eq!(v["respawn"].as_bool(), Some(true));
    assert_eq!(v["kill-timeout"].as_str(), Some("10s"));
    assert_eq!(v["env"]["A"].as_str(), Some("1"));
    assert_eq!(v["env"]["B"].as_str(), Some("2"));
    assert!(t.contains("# setuid = \"chrism\""), "{t}");
    // From the [include]d file: autorestart=unexpected with exitcodes is normal-exit.
    let (_, v) = job(d.path(), "web");
    assert_eq!(v["respawn"].as_bool(), Some(true));
    let normal: Vec<i64> = v["normal-exit"]
        .as_array()
        .expect("normal-exit")
        .iter()
        .filter_map(|x| x.as_integer())
        .collect();
    assert_eq!(normal, [0, 2]);
    assert_eq!(v["kill-signal"].as_str(), Some("INT"));
    assert_eq!(v["kill-timeout"].as_str(), Some("30s"));
    assert_eq!(v["env"]["MODE"].as_str(), Some("prod"));
    // autorestart=true: every exit restarts; autostart=false: manual.
    let (_, v) = job(d.path(), "worker");
    assert_eq!(v["manual"].as_bool(), Some(true));
    assert_eq!(v["normal-exit"].as_array().map(Vec::len), Some(0));
    for said in [
        "web.conf:16: approximated: the processes are the jobs worker@0 to worker@3",
        "web.conf:16: approximated: %(process_num)02d is written without its leading zeros",
        // The documentation's [group:foo] names programs it does not define.
        "docs-example.conf:56: not translated: there is no [program:bar] for the group `foo`",
        "docs-example.conf:56: not translated: there is no [program:baz] for the group `foo`",
        "docs-example.conf:57: not translated: guardian takes a group's jobs in dependency order",
        "docs-example.conf:59: not translated: an event listener",
        "docs-example.conf:30: not translated: guardian orders starts by `start-on`",
    ] {
        assert!(report.contains(said), "{said}:\n{report}");
    }
}

#[test]
fn import_monit_manual_example_into_jobs_and_host_checks() {
    // A directory with a guardian.toml: the settings go beside it.
    let conf = Conf::new();
    let before = std::fs::read_to_string(conf.path().join("guardian.toml")).expect("toml");
    let out = import(conf.path(), &["monit", &fixture("monit/monitrc")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = stdout(&out);
    check(conf.path());
    assert_eq!(
        std::fs::read_to_string(conf.path().join("guardian.toml")).expect("toml"),
        before
    );
    let imported = std::fs::read_to_string(conf.path().join("guardian.toml.imported"))
        .expect("guardian.toml.imported");

    let (t, v) = job(conf.path(), "apache");
    assert_eq!(
        v["pidfile"].as_str(),
        Some("/usr/local/apache/logs/httpd.pid")
    );
    assert_eq!(v["respawn"].as_bool(), Some(true));
    // depends on mysqld (a process check of the included file); apache_bin is a file check.
    assert_eq!(v["start-on"].as_str(), Some("started mysqld"), "{t}");
    assert_eq!(v["stop-on"].as_str(), Some("stopping mysqld"));
    assert_eq!(v["restart-limit"]["count"].as_integer(), Some(3));
    assert_eq!(v["restart-limit"]["interval"].as_str(), Some("600s"));
    let c = checks(&v);
    // if failed port 80 protocol http then restart
    let http = c
        .iter()
        .find(|c| c["type"].as_str() == Some("http"))
        .unwrap_or_else(|| panic!("an http check: {t}"));
    assert_eq!(http["url"].as_str(), Some("http://localhost:80/"));
    assert_eq!(http["action"].as_str(), Some("restart"));
    assert_eq!(http["every"].as_str(), Some("120s"));
    // if failed host 127.0.0.1 port 443 type tcp for 3 cycles then restart
    let tcp = c
        .iter()
        .find(|c| c["type"].as_str() == Some("tcp"))
        .unwrap_or_else(|| panic!("a tcp check: {t}"));
    assert_eq!(tcp["port"].as_integer(), Some(443));
    assert_eq!(tcp["failures"].as_integer(), Some(3));
    assert_eq!(tcp["every"].as_str(), Some("120s"));
    let mem = c
        .iter()
        .find(|c| c["type"].as_str() == Some("memory"))
        .unwrap_or_else(|| panic!("a memory check: {t}"));
    assert_eq!(mem["max"].as_str(), Some("200MB"));
    assert_eq!(mem["failures"].as_integer(), Some(5));

    let (_, v) = job(conf.path(), "mysqld");
    assert_eq!(checks(&v)[0]["port"].as_integer(), Some(3306));

    // guardian.toml.imported: a valid guardian.toml on its own.
    let s: toml::Table = toml::from_str(&imported).expect("imported settings");
    assert_eq!(s["every"].as_str(), Some("120s"));
    let host = checks(&s);
    let disk = host
        .iter()
        .find(|c| c["type"].as_str() == Some("disk"))
        .unwrap_or_else(|| panic!("a disk check: {imported}"));
    assert_eq!(disk["path"].as_str(), Some("/"));
    assert_eq!(disk["max"].as_str(), Some("80%"));
    assert_eq!(disk["failures"].as_integer(), Some(5));
    assert_eq!(disk["within"].as_integer(), Some(15));
    assert!(host.iter().any(|c| c["type"].as_str() == Some("load")));
    assert!(
        host.iter()
            .any(|c| c["type"].as_str() == Some("system-memory"))
    );
    assert_eq!(
        s["alert"]["smtp"].as_array().map(Vec::len),
        Some(3),
        "{imported}"
    );
    assert!(
        s["alert"]["subject"]
            .as_str()
            .is_some_and(|x| x.contains("{event} {job}"))
    );
    let alone = empty_dir();
    std::fs::write(alone.path().join("guardian.toml"), &imported).expect("write");
    check(alone.path());

    // `group server` is exact: no line of the report.
    assert!(!report.contains("monitrc:64:"), "{report}");
    let (t, v) = job(conf.path(), "apache");
    assert_eq!(
        v["groups"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g.as_str()).collect::<Vec<_>>()),
        Some(vec!["server"]),
        "{t}"
    );
    for said in [
        "monitrc:62: not translated: `apache_bin` is not a process check here",
        "mysql.cfg:8: not translated: `check file`",
    ] {
        assert!(report.contains(said), "{said}:\n{report}");
    }

    // Into a directory without guardian.toml, the settings become guardian.toml.
    let d = empty_dir();
    let out = import(d.path(), &["monit", &fixture("monit/monitrc")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(d.path().join("guardian.toml")).expect("guardian.toml"),
        imported
    );
}

/// The python3 that can import supervisor, or None after saying why the test does not
/// run (a failure under CI, whose .ci/run installs it).
fn supervisor_python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import supervisor, sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    match out {
        Some(o) => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "supervisor is not installed for python3, and CI=true: .ci/run should have installed it"
            );
            eprintln!("SKIPPED: supervisor is not installed (bash .ci/run installs it)");
            None
        }
    }
}

fn http_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE * 3,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn import_supervisor_conf_runs_the_same_programs_as_real_supervisord() {
    let Some(python) = supervisor_python() else {
        return;
    };
    let conf = Conf::new();
    let sup = tempfile::Builder::new()
        .prefix("sup")
        .tempdir()
        .expect("temporary directory");
    let port = free_port();
    let file = sup.path().join("supervisord.conf");
    let s = sup.path().display();
    std::fs::write(
        &file,
        format!(
            "[unix_http_server]\nfile={s}/supervisor.sock\n\n\
             [supervisord]\nlogfile={s}/supervisord.log\npidfile={s}/supervisord.pid\nnodaemon=true\nchildlogdir={s}\n\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{s}/supervisor.sock\n\n\
             ; A web server on a port of its own.\n\
             [program:web]\ncommand={python} -m http.server {port} --bind 127.0.0.1\ndirectory=/tmp\nautorestart=unexpected\nexitcodes=0\nstopsignal=INT\nstopwaitsecs=5\n\n\
             [program:sleeper]\ncommand=/bin/sleep 3600\nenvironment=KIND=\"sleeper\"\n\n\
             [group:site]\nprograms=web,sleeper\n"
        ),
    )
    .expect("supervisord.conf");

    // Real supervisord says the file is valid by running both programs.
    let daemon = Command::new(&python)
        .args(["-m", "supervisor.supervisord", "-c"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start supervisord");
    let mut daemon = Killed(daemon);
    let status = || {
        Command::new(&python)
            .args(["-m", "supervisor.supervisorctl", "-c"])
            .arg(&file)
            .arg("status")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    wait("supervisorctl status to show both programs RUNNING", || {
        let st = status();
        st.lines().filter(|l| l.contains("RUNNING")).count() == 2
    });
    let st = status();
    // supervisorctl names a group's programs GROUP:PROGRAM.
    assert!(
        st.contains("site:web") && st.contains("site:sleeper"),
        "{st}"
    );
    wait("the web program under supervisord to answer", || {
        http_ok(port)
    });
    // Stop supervisord (and with it its programs) to free the port.
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let deadline = Instant::now() + DEADLINE * 3;
    while daemon.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "supervisord did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait("the port to be free", || !http_ok(port));

    // Import, check, run guardian on the result.
    let out = import(conf.path(), &["supervisor", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    check(conf.path());
    let (_, web) = job(conf.path(), "web");
    assert_eq!(web["kill-signal"].as_str(), Some("INT"));
    assert_eq!(web["chdir"].as_str(), Some("/tmp"));
    let d = conf.start();
    d.wait_state("web", "running");
    d.wait_state("sleeper", "running");
    d.wait_until("the web program under guardian to answer", || http_ok(port));
    let env = d.ok(&["env", "sleeper"], 0);
    assert!(stdout(&env).contains("KIND=sleeper"), "{}", text(&env));
    // [group:site] is the group `site`: both programs, stopped together.
    let site = d.ok(&["summary", "-g", "site", "--json"], 0);
    let site: serde_json::Value = serde_json::from_slice(&site.stdout).expect("summary --json");
    let names: Vec<&str> = site["jobs"]
        .as_array()
        .map(|a| a.iter().filter_map(|j| j["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["sleeper", "web"]);
    d.ok(&["stop", "-g", "site"], 0);
    assert!(!http_ok(port));
    assert_eq!(d.state("sleeper"), "waiting");
}

/// Supervisor's numprocs, run by real supervisord and then, imported, by guardian: the
/// same servers on the same ports, `%(process_num)d` numbered from `numprocs_start`.
#[test]
fn numprocs_becomes_instances_on_the_same_ports() {
    let Some(python) = supervisor_python() else {
        return;
    };
    let conf = Conf::new();
    let sup = tempfile::Builder::new()
        .prefix("sup")
        .tempdir()
        .expect("temporary directory");
    // Two ports in a row, both free.
    let base = loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let file = sup.path().join("supervisord.conf");
    let s = sup.path().display();
    std::fs::write(
        &file,
        format!(
            "[unix_http_server]\nfile={s}/supervisor.sock\n\n\
             [supervisord]\nlogfile={s}/supervisord.log\npidfile={s}/supervisord.pid\nnodaemon=true\nchildlogdir={s}\n\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{s}/supervisor.sock\n\n\
             [program:pool]\ncommand={python} -m http.server %(process_num)d --bind 127.0.0.1\ndirectory=/tmp\n\
             numprocs=2\nnumprocs_start={base}\nprocess_name=%(program_name)s_%(process_num)d\n"
        ),
    )
    .expect("supervisord.conf");
    let daemon = Command::new(&python)
        .args(["-m", "supervisor.supervisord", "-c"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start supervisord");
    let mut daemon = Killed(daemon);
    wait("both servers under supervisord to answer", || {
        http_ok(base) && http_ok(base + 1)
    });
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let deadline = Instant::now() + DEADLINE * 3;
    while daemon.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "supervisord did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait("the ports to be free", || {
        !http_ok(base) && !http_ok(base + 1)
    });

    let out = import(conf.path(), &["supervisor", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the processes are the jobs pool@0 to pool@1"),
        "{}",
        text(&out)
    );
    check(conf.path());
    let (_, pool) = job(conf.path(), "pool");
    assert_eq!(pool["instances"].as_integer(), Some(2));
    let d = conf.start();
    d.wait_state("pool@0", "running");
    d.wait_state("pool@1", "running");
    d.wait_until("both servers under guardian to answer", || {
        http_ok(base) && http_ok(base + 1)
    });
    d.ok(&["stop", "pool"], 0);
    assert!(!http_ok(base) && !http_ok(base + 1));
}
