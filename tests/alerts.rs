//! Alerts through a real SMTP server on 127.0.0.1 started by the tests (an embedded
//! SMTP server library), and webhooks to a local HTTP receiver.

use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};

use mailin_embedded::{Handler, Response, Server, response};

use crate::util::{Conf, Daemon, free_port, text, wait_until};

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    fn header(&self, name: &str) -> String {
        self.data
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Clone)]
struct Sink {
    mail: Mail,
    out: Arc<Mutex<Vec<Mail>>>,
    /// The only user and password AUTH accepts, when set.
    login: Option<(String, String)>,
}

impl Handler for Sink {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.mail = Mail {
            from: from.to_string(),
            ..Mail::default()
        };
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        self.mail.to.push(to.to_string());
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.mail.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Ok(mut out) = self.out.lock() {
            out.push(self.mail.clone());
        }
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        match &self.login {
            Some((u, p)) if u == user && p == password => response::AUTH_OK,
            _ => response::INVALID_CREDENTIALS,
        }
    }
}

/// An SMTP server on 127.0.0.1:`port`, on a thread of its own for the rest of the test.
fn smtp_server(port: u16) -> Arc<Mutex<Vec<Mail>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind smtp");
    let mut server = Server::new(Sink {
        mail: Mail::default(),
        out: out.clone(),
        login: None,
    });
    server.with_name("sink.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    out
}

fn mails(box_: &Arc<Mutex<Vec<Mail>>>) -> Vec<Mail> {
    box_.lock().map(|m| m.clone()).unwrap_or_default()
}

fn settings(c: &Conf, alert: &str) {
    std::fs::write(
        c.path().join("guardian.toml"),
        format!(
            "socket = \"run/g.sock\"\nlog-dir = \"log\"\nstate-dir = \"state\"\n[alert]\n{alert}"
        ),
    )
    .expect("guardian.toml");
}

/// A job whose check fails at once: it alerts (restart would loop the test).
fn failing_job(c: &Conf, name: &str) {
    let closed = free_port();
    c.job(
        name,
        &format!(
            "exec = \"sleep 1000\"\n[[check]]\nname = \"port\"\ntype = \"tcp\"\nport = {closed}\nevery = \"100ms\"\naction = \"alert\"\n"
        ),
    );
}

fn outbox_empty(d: &Daemon<'_>) -> bool {
    let out = d.cli(&["alerts", "--json"]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).is_ok_and(|v| v.is_empty())
}

#[test]
fn a_failing_check_mails_the_configured_recipient_once() {
    let port = free_port();
    let inbox = smtp_server(port);
    let c = Conf::new();
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nto = [{{ address = \"ops@example.test\", not-on = [\"daemon-started\", \"daemon-stopping\"] }}]\nsmtp = [\"127.0.0.1:{port}\"]\ndigest = \"200ms\"\n"
        ),
    );
    failing_job(&c, "nginx");
    let d = c.start();
    wait_until("the alert mail", || {
        mails(&inbox)
            .iter()
            .any(|m| m.data.contains("check port failed"))
    });
    let m = mails(&inbox)
        .into_iter()
        .find(|m| m.data.contains("check port failed"))
        .unwrap_or_default();
    assert_eq!(m.from, "guardian@web1.test");
    assert_eq!(m.to, vec!["ops@example.test".to_string()]);
    assert!(
        m.header("From").contains("guardian@web1.test"),
        "{}",
        m.data
    );
    assert!(m.header("To").contains("ops@example.test"), "{}", m.data);
    let subject = m.header("Subject");
    assert!(
        subject.contains("nginx") && subject.contains("check port failed"),
        "{subject}"
    );
    assert!(
        m.data.contains("cannot connect to 127.0.0.1:"),
        "the probe's reason: {}",
        m.data
    );
    wait_until("the outbox to empty", || outbox_empty(&d));
    // One mail per state change: the check goes on failing (three more runs), and once
    // the outbox is empty again there is still only the one mail about it.
    d.wait_log_more("nginx: check port failed: ", 3);
    wait_until("the outbox to empty", || outbox_empty(&d));
    let about: Vec<Mail> = mails(&inbox)
        .into_iter()
        .filter(|m| m.data.contains("check port failed"))
        .collect();
    assert_eq!(about.len(), 1);
}

#[test]
fn the_second_server_takes_over_when_the_first_is_down() {
    let (down, up) = (free_port(), free_port());
    let inbox = smtp_server(up);
    let c = Conf::new();
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nto = [\"ops@example.test\"]\nsmtp = [\"127.0.0.1:{down}\", \"127.0.0.1:{up}\"]\ndigest = \"100ms\"\n"
        ),
    );
    failing_job(&c, "api");
    let d = c.start();
    wait_until("the alert through the second server", || {
        mails(&inbox).iter().any(|m| m.data.contains("api"))
    });
    wait_until("the outbox to empty", || outbox_empty(&d));
    assert!(
        d.daemon_log().contains(&format!("via 127.0.0.1:{up}")),
        "{}",
        d.daemon_log()
    );
}

#[test]
fn an_alert_waits_out_a_dead_relay_and_a_daemon_restart_and_arrives_once() {
    let port = free_port();
    let c = Conf::new();
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nto = [\"ops@example.test\"]\nsmtp = [\"127.0.0.1:{port}\"]\ndigest = \"100ms\"\n"
        ),
    );
    // Manual, so that the second daemon does not run (and fail) it again.
    c.job(
        "worker",
        "manual = true\nscript = \"exit 1\"\nrespawn = true\nrespawn-limit = { count = 2, interval = \"30s\" }\n",
    );
    let mut d = c.start();
    d.ok(&["start", "worker"], 0);
    d.wait_state("worker", "failed");
    wait_until("a failed delivery attempt", || {
        let out = d.cli(&["alerts", "--json"]);
        let pending: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_default();
        pending
            .iter()
            .any(|p| p["alert"]["kind"] == "respawn-limit" && p["attempts"].as_u64() >= Some(1))
    });
    let out = d.ok(&["alerts"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("respawn limit"),
        "{}",
        text(&out)
    );
    // The daemon goes down and comes back with the alert still in its outbox.
    assert!(d.terminate().success());
    drop(d);
    assert!(
        std::fs::read_dir(c.path().join("state/outbox"))
            .map(|e| e.count())
            .unwrap_or(0)
            > 0,
        "the outbox survives on disk"
    );
    let d = c.start();
    let inbox = smtp_server(port);
    wait_until("the alert to arrive", || {
        mails(&inbox)
            .iter()
            .any(|m| m.data.contains("respawn limit"))
    });
    wait_until("the outbox to empty", || outbox_empty(&d));
    let n = mails(&inbox)
        .iter()
        .filter(|m| m.data.contains("worker: respawn limit"))
        .count();
    assert_eq!(n, 1, "delivered exactly once");
}

#[test]
fn many_failures_at_once_go_out_as_one_digest() {
    let port = free_port();
    let inbox = smtp_server(port);
    let c = Conf::new();
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nto = [\"ops@example.test\"]\nsmtp = [\"127.0.0.1:{port}\"]\ndigest = \"2s\"\n"
        ),
    );
    for name in ["a", "b", "c", "d"] {
        failing_job(&c, name);
    }
    let d = c.start();
    wait_until("every failure to be told", || {
        let all: String = mails(&inbox).iter().map(|m| m.data.clone()).collect();
        ["a", "b", "c", "d"]
            .iter()
            .all(|n| all.contains(&format!("{n}: check port failed")))
    });
    wait_until("the outbox to empty", || outbox_empty(&d));
    let digest = mails(&inbox)
        .into_iter()
        .find(|m| m.header("Subject").contains(" alerts: "))
        .unwrap_or_default();
    let told = ["a", "b", "c", "d"]
        .iter()
        .filter(|n| digest.data.contains(&format!("{n}: check port failed")))
        .count();
    assert!(told >= 2, "a digest gathers the failures: {}", digest.data);
    // Five alerts (the daemon's start and four failures), fewer mails: no storm.
    assert!(mails(&inbox).len() < 5, "{} mails", mails(&inbox).len());
}

#[test]
fn filters_reminders_and_jobs_that_opt_out() {
    let port = free_port();
    let inbox = smtp_server(port);
    let c = Conf::new();
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nsmtp = [\"127.0.0.1:{port}\"]\ndigest = \"100ms\"\nto = [{{ address = \"pager@example.test\", on = [\"check-failed\", \"reminder\"], reminder = \"1s\" }}, {{ address = \"ops@example.test\", not-on = [\"check-failed\", \"reminder\"] }}]\n"
        ),
    );
    failing_job(&c, "loud");
    c.job(
        "quiet",
        &format!(
            "alert = false\nexec = \"sleep 1000\"\n[[check]]\ntype = \"tcp\"\nport = {}\nevery = \"100ms\"\naction = \"alert\"\n",
            free_port()
        ),
    );
    let _d = c.start();
    wait_until("a reminder to the pager", || {
        mails(&inbox).iter().any(|m| {
            m.to.contains(&"pager@example.test".to_string()) && m.data.contains("still failing")
        })
    });
    let all = mails(&inbox);
    assert!(
        all.iter().all(|m| !m.data.contains("quiet")),
        "alert = false"
    );
    assert!(
        all.iter()
            .filter(|m| m.to.contains(&"ops@example.test".to_string()))
            .all(|m| !m.data.contains("check port failed")),
        "ops does not want check-failed"
    );
    assert!(
        all.iter()
            .any(|m| m.to.contains(&"ops@example.test".to_string())
                && m.data.contains("daemon started")),
        "ops gets the rest"
    );
}

#[test]
fn test_alert_and_webhooks() {
    let port = free_port();
    let inbox = smtp_server(port);
    // A webhook receiver: answers 200 and keeps the bodies.
    let (hook_port, bodies) = crate::util::webhook();
    let c = Conf::new();
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nto = [\"ops@example.test\"]\nsmtp = [\"127.0.0.1:{port}\"]\ndigest = \"100ms\"\n[[alert.webhook]]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\non = [\"check-failed\", \"test\"]\n"
        ),
    );
    failing_job(&c, "db");
    let d = c.start();
    let out = d.ok(&["test-alert"], 0);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("ops@example.test: sent"), "{said}");
    assert!(said.contains("/hook: sent"), "{said}");
    assert!(
        mails(&inbox)
            .iter()
            .any(|m| m.header("Subject").contains("test"))
    );
    wait_until("the webhook's check-failed", || {
        bodies
            .lock()
            .map(|b| b.iter().any(|x| x.contains("\"check-failed\"")))
            .unwrap_or(false)
    });
    let body = bodies
        .lock()
        .map(|b| b.iter().find(|x| x.contains("check-failed")).cloned())
        .ok()
        .flatten()
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["job"], "db");
    assert_eq!(v["check"], "port");
    assert_eq!(v["action"], "alert");
    assert!(
        v["description"]
            .as_str()
            .unwrap_or("")
            .contains("cannot connect")
    );
}

#[test]
fn alert_settings_are_validated() {
    let c = Conf::new();
    settings(
        &c,
        "to = [\"not an address\", { address = \"a@b.test\", on = [\"check-faild\"] }]\nsubject = \"{jobb} down\"\npassword-file = \"/nonexistent/pw\"\n",
    );
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "`not an address` is not an e-mail address",
        "no alert kind `check-faild`",
        "did you mean `check-failed`?",
        "no placeholder {jobb}",
        "cannot read /nonexistent/pw",
        "`[alert]` with `to` needs `from`",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// STARTTLS with a self-signed certificate and AUTH with the password from a file.
#[test]
fn starttls_and_a_password_from_a_file() {
    let c = Conf::new();
    let (cert, key) = (c.file("cert.pem"), c.file("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout", &key, "-out", &cert])
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", text(&made));
    let port = free_port();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut server = Server::new(Sink {
        mail: Mail::default(),
        out: out.clone(),
        login: Some(("guardian".into(), "s3cret".into())),
    });
    server
        .with_name("sink.test")
        .with_ssl(mailin_embedded::SslConfig::SelfSigned {
            cert_path: cert.clone(),
            key_path: key.clone(),
        })
        .expect("tls config")
        .with_auth(mailin_embedded::AuthMechanism::Plain)
        .with_tcp_listener(TcpListener::bind(("127.0.0.1", port)).expect("bind"));
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    std::fs::write(c.path().join("smtp-password"), "s3cret\n").expect("password file");
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nto = [\"ops@example.test\"]\nsmtp = [\"localhost:{port}\"]\ntls = \"starttls\"\ntls-verify = false\nuser = \"guardian\"\npassword-file = \"smtp-password\"\n"
        ),
    );
    let d = c.start();
    let sent = d.ok(&["test-alert"], 0);
    assert!(
        String::from_utf8_lossy(&sent.stdout).contains("ops@example.test: sent"),
        "{}",
        text(&sent)
    );
    assert!(
        mails(&out)
            .iter()
            .any(|m| m.header("Subject").contains("test"))
    );

    // A wrong password is refused, and says so.
    std::fs::write(c.path().join("smtp-password"), "wrong\n").expect("password file");
    let refused = d.ok(&["test-alert"], 1);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("NOT sent"),
        "{}",
        text(&refused)
    );
}

#[test]
fn a_job_that_gave_up_reminds_its_own_recipient() {
    let port = free_port();
    let inbox = smtp_server(port);
    let c = Conf::new();
    // No reminders in guardian.toml: only the job's own recipient asks for them.
    settings(
        &c,
        &format!(
            "from = \"guardian@web1.test\"\nsmtp = [\"127.0.0.1:{port}\"]\ndigest = \"50ms\"\nto = [\"ops@example.test\"]\n"
        ),
    );
    c.job(
        "flaky",
        "exec = \"false\"\nrespawn = true\nrespawn-limit = { count = 1, interval = \"60s\" }\n\
         alert = [{ address = \"oncall@example.test\", on = [\"respawn-limit\", \"reminder\"], reminder = \"300ms\" }]\n",
    );
    let d = c.start();
    let reminders = |inbox: &Arc<Mutex<Vec<Mail>>>| {
        mails(inbox)
            .iter()
            .filter(|m| {
                m.to.contains(&"oncall@example.test".to_string()) && m.data.contains("still failed")
            })
            .count()
    };
    wait_until("two reminders of the failed job", || reminders(&inbox) >= 2);
    assert_eq!(d.state("flaky"), "failed");
    assert!(
        mails(&inbox)
            .iter()
            .filter(|m| m.to.contains(&"ops@example.test".to_string()))
            .all(|m| !m.data.contains("still failed")),
        "ops asked for no reminders"
    );
}
