//! The status page in a real browser: Debian's chromium, headless, driven by its
//! chromedriver over W3C WebDriver. Log in through the form, see the jobs, restart one
//! and see its pid change on the page without a reload; a read-only user sees no
//! buttons. Also takes the screenshot of docs/status-page.png (written there when
//! GUARDIAN_SCREENSHOT names a file).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::conf_with_http;
use crate::util::{DEADLINE, free_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element's id in WebDriver's answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, ended with the test.
struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.send("DELETE", "", Value::Null);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Driver {
        for p in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(p).exists(),
                "{p} is missing: apt-get install chromium chromium-driver (.ci/run does)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a client");
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http,
            rt,
            _profile: profile,
        };
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", d._profile.path().display()),
                ],
            },
        }}});
        let v = d.send("POST", "/session", caps).expect("a browser session");
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {v}"))
            .to_string();
        d
    }

    /// One WebDriver command; `path` is under /session/ID unless it is `/session`.
    fn send(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        self.rt.block_on(async {
            let r = req.send().await.map_err(|e| e.to_string())?;
            let status = r.status();
            let text = r.text().await.map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            if status.is_success() {
                Ok(v["value"].clone())
            } else {
                Err(format!("{method} {path}: {status}: {}", v["value"]))
            }
        })
    }

    fn go(&self, url: &str) {
        self.send("POST", "/url", json!({"url": url}))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn script(&self, script: &str) -> Value {
        self.send(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn find(&self, css: &str) -> Option<String> {
        self.send(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }

    fn wait_find(&self, css: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            if Instant::now() > deadline {
                let page = self.script(
                    "return location.href + ' ' + document.documentElement.outerHTML.slice(0, 2000);",
                );
                panic!("no `{css}` on the page: {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let e = self.wait_find(css);
        self.send("POST", &format!("/element/{e}/click"), json!({}))
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.wait_find(css);
        self.send(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    fn log_in(&self, url: &str, user: &str, password: &str) {
        self.send("DELETE", "/cookie", Value::Null)
            .unwrap_or_else(|e| panic!("{e}"));
        self.go(url);
        self.type_in("#user", user);
        self.type_in("#password", password);
        self.click("form.login button");
        self.wait_find("table.jobs tr[data-job]");
    }

    /// The text of the first element `css` selects, "" if none.
    fn text(&self, css: &str) -> String {
        let s = format!(
            "const e = document.querySelector({}); return e ? e.textContent : '';",
            Value::String(css.to_string())
        );
        self.script(&s).as_str().unwrap_or_default().to_string()
    }
}

#[test]
fn browser_logs_in_restarts_a_job_and_sees_its_pid_change() {
    let web = free_port();
    let api = free_port();
    let (conf, port) = conf_with_http(
        "[[check]]\nname = \"rootfs\"\ntype = \"disk\"\npath = \"/\"\nmax = \"99%\"\n[[check]]\nname = \"memory\"\ntype = \"system-memory\"\nmax = \"99%\"\n",
    );
    let server = |p: u16, what: &str| {
        format!(
            "description = \"{what}\"\nexec = \"python3 -u -m http.server {p} --bind 127.0.0.1\"\n[[check]]\ntype = \"http\"\nurl = \"http://127.0.0.1:{p}/\"\nevery = \"1s\"\n"
        )
    };
    conf.job("web", &server(web, "the public site"));
    conf.job("api", &server(api, "JSON API for the mobile app"));
    conf.job(
        "worker",
        "description = \"queue worker\"\ngroups = [\"background\"]\nexec = \"sleep 100000\"\nenv = { QUEUE_PASSWORD = \"hunter2\" }\n",
    );
    conf.job(
        "mailer",
        "description = \"outgoing mail relay\"\ngroups = [\"background\"]\nexec = \"sleep 100000\"\n",
    );
    conf.job(
        "cache",
        &format!(
            "description = \"cache; its port is closed\"\nexec = \"sleep 100000\"\n[[check]]\nname = \"port\"\ntype = \"tcp\"\nport = {}\nevery = \"1s\"\naction = \"alert\"\n",
            free_port()
        ),
    );
    conf.job(
        "reports",
        "description = \"nightly reports, started by hand\"\nmanual = true\nexec = \"sleep 100000\"\n",
    );
    conf.job(
        "legacy-sync",
        "description = \"exits at once: respawn limit reached\"\nexec = \"false\"\nrespawn = true\nrespawn-limit = { count = 2, interval = \"60s\" }\nrespawn-delay = { initial = \"100ms\", max = \"100ms\" }\n",
    );
    let d = conf.start();
    for job in ["web", "api", "worker", "mailer", "cache"] {
        d.wait_state(job, "running");
    }
    d.wait_state("legacy-sync", "failed");
    assert!(d.ok(&["unmonitor", "mailer"], 0).status.success());
    d.wait_until("the checks ran", || {
        ["web", "api"]
            .iter()
            .all(|j| d.status(j)["health"] == "healthy")
            && d.status("cache")["health"] == "unhealthy"
    });

    let b = Driver::start();
    let url = format!("http://127.0.0.1:{port}");
    b.log_in(&format!("{url}/"), "ann", "ann-pw");
    for job in [
        "web",
        "api",
        "worker",
        "mailer",
        "cache",
        "reports",
        "legacy-sync",
    ] {
        assert!(
            b.find(&format!("tr[data-job=\"{job}\"]")).is_some(),
            "{job} on the page"
        );
    }
    let pid_css = "tr[data-job=\"web\"] td.pid";
    let before = b.text(pid_css);
    assert_eq!(
        before.parse::<u64>().ok(),
        d.status("web")["pid"].as_u64(),
        "the page shows web's pid"
    );

    // The screenshot of the overview, before anything is clicked, in a window the
    // size of the table.
    b.send(
        "POST",
        "/window/rect",
        json!({"width": 1200, "height": 780}),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let png = b
        .send("GET", "/screenshot", Value::Null)
        .unwrap_or_else(|e| panic!("{e}"));
    let png = png.as_str().unwrap_or_default();
    assert!(png.starts_with("iVBORw0KGgo"), "a PNG");
    if let Ok(path) = std::env::var("GUARDIAN_SCREENSHOT") {
        std::fs::write(path, base64_decode(png)).expect("the screenshot written");
    }

    b.click("tr[data-job=\"web\"] button[value=restart]");
    let deadline = Instant::now() + DEADLINE;
    let after = loop {
        let now = b.text(pid_css);
        if now != before && now.parse::<u64>().is_ok() {
            break now;
        }
        if Instant::now() > deadline {
            let console = b.send("POST", "/se/log", json!({"type": "browser"}));
            panic!(
                "web's pid stayed {before} on the page; {}; toast {:?}; console {console:?}; daemon pid {}",
                b.script("return location.href + ' ' + document.body.innerHTML.slice(0, 300);"),
                b.text("#toast"),
                d.status("web")["pid"]
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(after.parse::<u64>().ok(), d.status("web")["pid"].as_u64());
    assert!(b.text("#toast").contains("web"), "the answer is shown");

    // A group's restart: answered once both of its jobs run again, with new pids
    // that the page then shows.
    let worker_css = "tr[data-job=\"worker\"] td.pid";
    let (worker, mailer) = (d.main_pid("worker"), d.main_pid("mailer"));
    b.click("div.group[data-group=\"background\"] button[value=restart]");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let toast = b.text("#toast");
        if toast.contains("worker: running") && toast.contains("mailer: running") {
            break;
        }
        assert!(Instant::now() < deadline, "the group's answer: {toast:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = d.main_pid("worker");
    assert!(now.is_some() && now != worker, "{worker:?} {now:?}");
    assert!(d.main_pid("mailer").is_some_and(|p| Some(p) != mailer));
    d.wait_until("the page shows worker's new pid", || {
        b.text(worker_css).parse::<u32>().ok() == now
    });

    // The job's page: its checks and its log, following.
    b.go(&format!("{url}/jobs/web"));
    b.wait_find("table.checks");
    assert!(b.text("table.checks").contains("http"));
    // The check asks every second, and each request adds a line to the log: more
    // lines come without a reload.
    let requests = || b.text("#log").matches("\"GET / HTTP").count();
    let deadline = Instant::now() + DEADLINE;
    while requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the log tail: {}",
            b.text("#log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = requests();
    while requests() <= seen {
        assert!(
            Instant::now() < deadline,
            "the log does not follow: {}",
            b.text("#log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Its configuration, as the daemon runs it.
    assert!(
        b.text("pre.config").contains("kill-timeout = \"5s\""),
        "{}",
        b.text("pre.config")
    );

    // A read-only user: the same jobs, no buttons, and no secrets in a configuration.
    b.log_in(&format!("{url}/"), "bob", "bob-pw");
    assert!(b.find("tr[data-job=\"web\"]").is_some());
    assert_eq!(
        b.script("return document.querySelectorAll('button[name=verb]').length;"),
        0
    );
    assert!(b.find("div.group").is_none(), "no group buttons for bob");
    assert!(b.text("header").contains("read-only"));
    b.go(&format!("{url}/jobs/worker"));
    b.wait_find("pre.config");
    let config = b.text("pre.config");
    assert!(
        config.contains("QUEUE_PASSWORD = \"(hidden)\"") && !config.contains("hunter2"),
        "{config}"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let Some(v) = T.iter().position(|t| *t == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
