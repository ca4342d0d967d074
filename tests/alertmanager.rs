//! Alerts to a real Alertmanager (Debian's `prometheus-alertmanager`, clustering off),
//! whose receiver is a webhook served by the test: what guardian posts to
//! `/api/v2/alerts` is what Alertmanager notifies, grouped, firing and resolved.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Bodies, Conf, Daemon, free_port, text, webhook};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Alertmanager on a port of its own, with a fresh storage directory, killed when the
/// test ends however it ends.
struct Alertmanager {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Alertmanager {
    fn start(dir: &Path, port: u16, hook_port: u16) -> Alertmanager {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "Debian's prometheus-alertmanager is not installed (.ci/run installs it)"
        );
        let cfg = dir.join("alertmanager.yml");
        std::fs::write(
            &cfg,
            format!(
                "route:\n  receiver: test\n  group_by: ['alertname', 'name', 'check']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: true\n"
            ),
        )
        .expect("alertmanager.yml");
        let log = dir.join("alertmanager.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager { child, port, log };
        am.wait_until("Alertmanager to be ready", || {
            curl(&format!("http://127.0.0.1:{port}/-/ready")).is_some()
        });
        am
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What Alertmanager's own API holds.
    fn alerts(&self) -> Vec<Value> {
        curl(&format!("http://127.0.0.1:{}/api/v2/alerts", self.port))
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; alertmanager's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET answered 2xx: its body.
fn curl(url: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-sSf", "-m", "10", url])
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// The notified alert of `alertname` about `name` in `status` (firing, resolved).
/// (Each body the webhook receiver got is one notification, its `alerts` an array.)
fn notified(got: &Bodies, status: &str, alertname: &str, name: &str) -> Option<Value> {
    let bodies = got.lock().ok()?;
    bodies.iter().rev().find_map(|body| {
        let v: Value = serde_json::from_str(body).ok()?;
        v["alerts"].as_array()?.iter().rev().find_map(|a| {
            (a["status"] == status
                && a["labels"]["alertname"] == alertname
                && a["labels"]["name"] == name)
                .then(|| a.clone())
        })
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn settings(c: &Conf, am_port: u16, extra: &str) {
    std::fs::write(
        c.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n{extra}[alert]\nalertmanager = [\"http://127.0.0.1:{am_port}\"]\nalertmanager-resend = \"2s\"\ndigest = \"100ms\"\n"
        ),
    )
    .expect("guardian.toml");
}

/// Something that listens on `port` from now on, and accepts (a backlog that fills
/// would fail a tcp check again).
fn listen(port: u16) {
    let l = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    std::thread::spawn(move || for _ in l.incoming() {});
}

/// A job whose tcp check fails until something listens on `port`.
fn checked_job(c: &Conf, name: &str, port: u16, action: &str) {
    c.job(
        name,
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\nname = \"port\"\ntype = \"tcp\"\nport = {port}\nevery = \"200ms\"\nfailures = 2\naction = \"{action}\"\n"
        ),
    );
}

fn wait(d: &Daemon<'_>, am: Option<&Alertmanager>, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; guardian's log:\n{}\nalertmanager's log:\n{}",
            d.daemon_log(),
            am.map(Alertmanager::log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_failing_check_fires_and_its_recovery_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_port, got) = webhook();
    let am = Alertmanager::start(dir.path(), free_port(), hook_port);
    let c = Conf::new();
    let http_port = free_port();
    settings(
        &c,
        am.port,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\ntokens-file = \"tokens\"\nmetrics-auth = false\n"
        ),
    );
    std::fs::write(c.path().join("tokens"), "read-only read-0123456789abcdef\n").expect("tokens");
    let port = free_port();
    checked_job(&c, "db", port, "alert");
    let d = c.start();
    wait(&d, Some(&am), "the firing alert at the receiver", || {
        notified(&got, "firing", "GuardianCheckFailed", "db").is_some()
    });
    let a = notified(&got, "firing", "GuardianCheckFailed", "db").unwrap_or_default();
    assert_eq!(a["labels"]["check"], "port", "{a}");
    assert_eq!(a["labels"]["instance"], hostname().as_str(), "{a}");
    assert_eq!(a["labels"]["severity"], "warning", "{a}");
    assert_eq!(a["annotations"]["summary"], "db: check port failed", "{a}");
    assert_eq!(a["annotations"]["action"], "alert", "{a}");
    assert!(
        a["annotations"]["description"]
            .as_str()
            .unwrap_or("")
            .contains("cannot connect"),
        "{a}"
    );
    // Alertmanager's own API holds it, with the same labels, active.
    let held = am.alerts();
    let held = held
        .iter()
        .find(|x| x["labels"]["alertname"] == "GuardianCheckFailed" && x["labels"]["name"] == "db")
        .unwrap_or_else(|| panic!("not in Alertmanager's API: {held:?}"));
    assert_eq!(held["labels"]["check"], "port");
    assert_eq!(held["status"]["state"], "active", "{held}");
    // The daemon started: told once, as news that is not bad.
    wait(&d, Some(&am), "the started alert", || {
        notified(&got, "firing", "GuardianDaemonStarted", "guardian")
            .is_some_and(|a| a["labels"]["severity"] == "info")
    });

    // Something listens: the check recovers, the alert resolves.
    listen(port);
    wait(&d, Some(&am), "the resolved alert at the receiver", || {
        notified(&got, "resolved", "GuardianCheckFailed", "db").is_some()
    });
    let r = notified(&got, "resolved", "GuardianCheckFailed", "db").unwrap_or_default();
    assert_eq!(
        r["labels"], a["labels"],
        "a resolution has the labels of what it ends"
    );
    let metrics = curl(&format!("http://127.0.0.1:{http_port}/metrics")).unwrap_or_default();
    let metrics = String::from_utf8_lossy(&metrics);
    let sent = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("guardian_alerts_sent_total{channel=\"alertmanager\",result=\"sent\"} ")
        })
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(sent >= 2, "{metrics}");
}

/// A check whose failure restarts the job: the alert carries the report's summary and
/// where it is, and resolves once the check passes in the job's next run.
#[test]
fn a_restart_carries_its_report_and_resolves_when_the_check_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_port, got) = webhook();
    let am = Alertmanager::start(dir.path(), free_port(), hook_port);
    let c = Conf::new();
    settings(&c, am.port, "");
    let port = free_port();
    checked_job(&c, "web", port, "restart");
    let d = c.start();
    wait(&d, Some(&am), "the firing alert at the receiver", || {
        notified(&got, "firing", "GuardianCheckFailed", "web").is_some()
    });
    listen(port);
    let a = notified(&got, "firing", "GuardianCheckFailed", "web").unwrap_or_default();
    assert_eq!(a["annotations"]["action"], "restart", "{a}");
    assert!(
        !a["annotations"]["report_summary"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{a}"
    );
    let report = a["annotations"]["report"].as_str().unwrap_or("");
    assert!(Path::new(report).is_file(), "no report at {report:?}: {a}");
    wait(&d, Some(&am), "the resolved alert at the receiver", || {
        notified(&got, "resolved", "GuardianCheckFailed", "web").is_some()
    });
}

/// A job that gave up fires `GuardianRespawnLimit`, critical, while it stays failed;
/// the deaths before are told once each; a start that holds resolves it.
#[test]
fn a_job_in_failed_fires_until_it_is_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_port, got) = webhook();
    let am = Alertmanager::start(dir.path(), free_port(), hook_port);
    let c = Conf::new();
    settings(&c, am.port, "");
    let ok = c.path().join("ok");
    c.job(
        "flaky",
        &format!(
            "exec = \"sh -c 'test -e {} && exec sleep 1000; exit 1'\"\nrespawn = true\nrespawn-limit = {{ count = 1, interval = \"60s\" }}\n",
            ok.display()
        ),
    );
    let d = c.start();
    wait(&d, Some(&am), "the respawn limit firing", || {
        notified(&got, "firing", "GuardianRespawnLimit", "flaky").is_some()
    });
    let a = notified(&got, "firing", "GuardianRespawnLimit", "flaky").unwrap_or_default();
    assert_eq!(a["labels"]["severity"], "critical", "{a}");
    assert!(a["labels"].get("check").is_none(), "{a}");
    wait(&d, Some(&am), "the death before it", || {
        notified(&got, "firing", "GuardianJobDied", "flaky").is_some()
    });
    assert_eq!(d.state("flaky"), "failed");
    std::fs::write(&ok, "").expect("ok file");
    d.ok(&["start", "flaky"], 0);
    wait(&d, Some(&am), "the respawn limit resolved", || {
        notified(&got, "resolved", "GuardianRespawnLimit", "flaky").is_some()
    });
}

#[test]
fn alerts_wait_while_alertmanager_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_port, got) = webhook();
    let am_port = free_port();
    let c = Conf::new();
    settings(&c, am_port, "");
    checked_job(&c, "db", free_port(), "alert");
    let d = c.start();
    let pending = || -> Vec<Value> {
        let out = d.cli(&["alerts", "--json"]);
        serde_json::from_slice::<Vec<Value>>(&out.stdout)
            .unwrap_or_default()
            .into_iter()
            .filter(|x| x["alert"]["kind"] == "check-failed")
            .collect()
    };
    // Not delivered, and why.
    wait(&d, None, "a failed delivery of the check's alert", || {
        pending().iter().any(|x| {
            x["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("Connection refused"))
        })
    });
    // Re-sent while Alertmanager is down, it takes the place of what waits: one alert,
    // one delivery in the outbox.
    let first = pending()
        .first()
        .map(|x| x["id"].clone())
        .unwrap_or_default();
    wait(&d, None, "a re-send in the outbox", || {
        pending().first().is_some_and(|x| x["id"] != first)
    });
    assert_eq!(pending().len(), 1, "{:?}", pending());
    let am = Alertmanager::start(dir.path(), am_port, hook_port);
    wait(&d, Some(&am), "the firing alert at the receiver", || {
        notified(&got, "firing", "GuardianCheckFailed", "db").is_some()
    });
    assert!(am.alerts().iter().any(
        |x| x["labels"]["alertname"] == "GuardianCheckFailed" && x["labels"]["check"] == "port"
    ));
}

#[test]
fn test_alert_reaches_alertmanager() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook_port, got) = webhook();
    let am = Alertmanager::start(dir.path(), free_port(), hook_port);
    let c = Conf::new();
    settings(&c, am.port, "");
    let d = c.start();
    let out = d.ok(&["test-alert"], 0);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("http://127.0.0.1:{}: sent", am.port)),
        "{said}"
    );
    assert!(
        am.alerts()
            .iter()
            .any(|x| x["labels"]["alertname"] == "GuardianTest"),
        "{:?}",
        am.alerts()
    );
    wait(&d, Some(&am), "the test alert at the receiver", || {
        notified(&got, "firing", "GuardianTest", "guardian").is_some()
    });
}

#[test]
fn alertmanager_urls_are_checked() {
    let c = Conf::new();
    std::fs::write(
        c.path().join("guardian.toml"),
        "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n[alert]\nalertmanager = [\"127.0.0.1:9093\", \"http://am.test:9093/api/v2/alerts\", \"http://:9093\", \"http://u:secret@am.test:9093\", \"http://\"]\nalertmanager-resend = \"0s\"\n",
    )
    .expect("guardian.toml");
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "guardian.toml:5:17: ",
        "`127.0.0.1:9093` does not start with http:// or https://",
        "guardian adds /api/v2/alerts",
        "`http://:9093` names no host",
        "`http://` names no host",
        "holds a user or password",
        "alertmanager-resend",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}
