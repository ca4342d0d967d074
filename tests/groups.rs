//! Groups (`groups = [...]` in a job) with the real binary: `start|stop|restart -g`
//! in dependency order, seen in the jobs' own output; `monitor|unmonitor -g`;
//! `summary -g` and `status -g` list only the group; an unknown group is an error.

use serde_json::Value;

use crate::util::{Conf, lines, text};

/// A manual job of `groups` that writes `started NAME` to `out` from its post-start
/// (so before it counts as running) and `stopped NAME` from its post-stop (so before it
/// counts as down).
fn job(name: &str, groups: &str, start_on: Option<&str>, out: &str) -> String {
    let on = start_on.map_or(String::new(), |o| format!("start-on = \"{o}\"\n"));
    format!(
        "manual = true\ngroups = {groups}\n{on}exec = \"sleep 600\"\n\
         post-start = \"echo started {name} >> {out}\"\n\
         post-stop = \"echo stopped {name} >> {out}\"\n"
    )
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn names(jobs: &Value) -> Vec<String> {
    jobs.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|j| j["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn group_commands_act_in_dependency_order_on_the_group_only() {
    let c = Conf::new();
    let out = c.file("order.txt");
    // Name order is api, cache, web, zdb; dependency order zdb, then api (which waits
    // for zdb), then web (which waits for api and cache), cache on its own.
    c.job("zdb", &job("zdb", "[\"stack\"]", None, &out));
    c.job(
        "api",
        &job("api", "[\"stack\", \"backend\"]", Some("started zdb"), &out),
    );
    c.job(
        "web",
        &job(
            "web",
            "[\"stack\", \"frontend\"]",
            Some("started api and started cache"),
            &out,
        ),
    );
    c.job("cache", &job("cache", "[\"stack\"]", None, &out));
    c.job("other", "manual = true\nexec = \"sleep 600\"\n");
    let d = c.start();

    let started = d.ok(&["start", "-g", "stack"], 0);
    let said = stdout(&started);
    for name in ["zdb", "api", "cache", "web"] {
        assert!(said.contains(&format!("{name}: running, pid ")), "{said}");
    }
    let got = lines(&out);
    let at = |l: &str| got.iter().position(|x| x == l).unwrap_or(usize::MAX);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(at("started zdb") < at("started api"), "{got:?}");
    assert!(at("started api") < at("started web"), "{got:?}");
    assert!(at("started cache") < at("started web"), "{got:?}");
    assert_eq!(d.state("other"), "waiting");

    // summary -g / status -g: the group's jobs only, in dependency order, with their
    // groups; no host lines.
    let summary = d.ok(&["summary", "-g", "stack", "--json"], 0);
    let summary = json(&summary);
    assert_eq!(
        names(&summary["jobs"]),
        ["zdb", "api", "cache", "web"],
        "{summary}"
    );
    assert_eq!(summary["host"], serde_json::json!([]));
    let status = json(&d.ok(&["status", "--group", "frontend", "--json"], 0));
    assert_eq!(names(&status), ["web"]);
    assert_eq!(
        status[0]["groups"],
        serde_json::json!(["stack", "frontend"])
    );
    let table = stdout(&d.ok(&["summary", "-g", "backend"], 0));
    assert!(table.contains("api"), "{table}");
    for name in ["zdb", "web", "cache", "other"] {
        assert!(!table.contains(name), "{table}");
    }
    let details = stdout(&d.ok(&["status", "api"], 0));
    assert!(details.contains("stack, backend"), "{details}");

    // unmonitor -g / monitor -g: the group's jobs, and only them.
    let said = stdout(&d.ok(&["unmonitor", "-g", "stack"], 0));
    assert!(said.contains("unmonitored"), "{said}");
    for job in d.all() {
        let member = job["name"] != "other";
        assert_eq!(job["monitored"], Value::Bool(!member), "{job}");
    }
    d.ok(&["monitor", "--group", "stack"], 0);
    assert!(d.all().iter().all(|j| j["monitored"] == Value::Bool(true)));

    // stop -g: dependents first, each down before the next is stopped.
    std::fs::write(&out, "").expect("empty the output");
    let stopped = stdout(&d.ok(&["stop", "-g", "stack"], 0));
    assert!(stopped.contains("zdb: stopped"), "{stopped}");
    let got = lines(&out);
    let at = |l: &str| got.iter().position(|x| x == l).unwrap_or(usize::MAX);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(at("stopped web") < at("stopped api"), "{got:?}");
    assert!(at("stopped api") < at("stopped zdb"), "{got:?}");
    assert!(at("stopped web") < at("stopped cache"), "{got:?}");
    for name in ["zdb", "api", "cache", "web"] {
        assert_eq!(d.state(name), "waiting", "{name}");
    }

    // restart -g: one after another in dependency order; each runs with a new pid.
    d.ok(&["start", "-g", "backend"], 0);
    let before = d.main_pid("api");
    std::fs::write(&out, "").expect("empty the output");
    d.ok(&["restart", "-g", "backend"], 0);
    assert_eq!(lines(&out), ["stopped api", "started api"]);
    assert_ne!(d.main_pid("api"), before);
    assert_eq!(d.state("zdb"), "waiting");
}

#[test]
fn an_unknown_group_is_an_error_as_an_unknown_job_is() {
    let c = Conf::new();
    c.job(
        "web",
        "manual = true\ngroups = [\"frontend\"]\nexec = \"sleep 600\"\n",
    );
    let d = c.start();
    let job = d.ok(&["start", "nope"], 2);
    for args in [
        &["start", "-g", "frontnd"][..],
        &["stop", "-g", "frontnd"],
        &["restart", "-g", "frontnd"],
        &["monitor", "-g", "frontnd"],
        &["unmonitor", "-g", "frontnd"],
        &["summary", "-g", "frontnd"],
        &["status", "-g", "frontnd", "--json"],
    ] {
        let out = d.ok(args, job.status.code().unwrap_or(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no group named `frontnd` (did you mean `frontend`?)"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(d.state("web"), "waiting");
    // A job and a group at once is not a command.
    let both = d.cli(&["start", "web", "-g", "frontend"]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
    // --no-wait: asked for in order, not waited for.
    let said = stdout(&d.ok(&["start", "-g", "frontend", "--no-wait"], 0));
    assert!(said.contains("start requested for web"), "{said}");
    d.wait_state("web", "running");
}

#[test]
fn a_bad_group_name_is_said_with_its_place() {
    let c = Conf::new();
    c.job(
        "web",
        "exec = \"sleep 600\"\ngroups = [\"front end\", \"all\", \"ok\", \"ok\"]\n",
    );
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("web.toml:2:11: `front end` is not a valid group name"),
        "{err}"
    );
    assert!(
        err.contains("(and not `all`, which means every job)"),
        "{err}"
    );
    assert!(
        err.contains("web.toml:2:37: the group `ok` is listed twice"),
        "{err}"
    );
    c.job("web", "exec = \"sleep 600\"\ngroups = \"frontend\"\n");
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("web.toml:2:10"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_reload_that_changes_only_groups_leaves_the_job_running() {
    let c = Conf::new();
    c.job("web", "groups = [\"frontend\"]\nexec = \"sleep 600\"\n");
    let d = c.start();
    d.wait_state("web", "running");
    let pid = d.main_pid("web");
    c.job(
        "web",
        "groups = [\"site\", \"frontend\"]\nexec = \"sleep 600\"\n",
    );
    let said = stdout(&d.ok(&["reload"], 0));
    assert!(said.contains("1 changed"), "{said}");
    let site = json(&d.ok(&["status", "-g", "site", "--json"], 0));
    assert_eq!(names(&site), ["web"]);
    assert_eq!(site[0]["groups"], serde_json::json!(["site", "frontend"]));
    assert_eq!(d.main_pid("web"), pid, "the job was not restarted");
    assert_eq!(d.status("web")["restarts"], 0);
    // Out of every group: the group is gone, as an unknown one.
    c.job("web", "exec = \"sleep 600\"\n");
    d.ok(&["reload"], 0);
    d.ok(&["summary", "-g", "site"], 2);
    assert_eq!(d.main_pid("web"), pid);
}

/// A CLI command run in the background.
fn spawn(c: &Conf, args: &[&str]) -> std::process::Child {
    std::process::Command::new(crate::util::BIN)
        .arg("-c")
        .arg(c.path())
        .args(args)
        .env_remove("GUARDIAN_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the guardian CLI")
}

#[test]
fn a_reexec_waits_for_a_group_command_between_its_jobs() {
    let c = Conf::new();
    // Each job's post-start holds it until its file appears: the test says when.
    for (name, on) in [("first", ""), ("second", "start-on = \"started first\"\n")] {
        let go = c.file(&format!("go-{name}"));
        c.job(
            name,
            &format!(
                "manual = true\ngroups = [\"pair\"]\n{on}exec = \"sleep 600\"\n\
                 post-start = \"while [ ! -e {go} ]; do sleep 0.02; done\"\n"
            ),
        );
    }
    let d = c.start();
    let start = spawn(&c, &["start", "-g", "pair"]);
    d.wait_state("first", "post-start");
    let reexec = spawn(&c, &["reexec"]);
    d.wait_until("the re-execution to be asked for", || {
        d.daemon_log().contains("re-execut")
    });
    // first comes up; the group's command goes on to second, the exec still waits.
    std::fs::write(c.file("go-first"), "").expect("go");
    d.wait_state("second", "post-start");
    assert!(
        !d.daemon_log().contains(") re-executed"),
        "re-executed in the middle of the group's start:\n{}",
        d.daemon_log()
    );
    std::fs::write(c.file("go-second"), "").expect("go");
    let started = start.wait_with_output().expect("start -g");
    assert_eq!(started.status.code(), Some(0), "{}", text(&started));
    let said = stdout(&started);
    assert!(
        said.contains("first: running") && said.contains("second: running"),
        "{said}"
    );
    let reexec = reexec.wait_with_output().expect("reexec");
    assert_eq!(reexec.status.code(), Some(0), "{}", text(&reexec));
    d.wait_until("the new image", || d.daemon_log().contains(") re-executed"));
    assert_eq!(d.state("second"), "running");
}
