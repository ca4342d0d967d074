//! Events, dependencies and readiness: start-on / stop-on, expect, pid files, emit.

use crate::util::{Conf, SVC, alive, free_port, lines, position, read, signal, text, wait_until};

/// A job running the stand-in service `args`, recording into `record` as `name`.
fn svc(record: &str, name: &str, args: &str) -> String {
    format!("exec = \"python3 {SVC} {args} --record {record} --name {name}\"\n")
}

/// A job listening on `port` after `delay` seconds, started only once it answers: a
/// `tcp` readiness probe (a table, so it ends the job file).
fn listener(record: &str, name: &str, port: u16, delay: f64) -> String {
    format!(
        "{}[ready]\ntype = \"tcp\"\nport = {port}\n",
        svc(record, name, &format!("listen {port} --delay {delay}"))
    )
}

/// The same, ready (and so `started`) only once the service has recorded that it is up:
/// a `program` readiness probe. It must end the job file, being a table.
fn svc_ready(record: &str, name: &str, args: &str) -> String {
    format!(
        "{}[ready]\ntype = \"program\"\nexec = \"grep -qx 'up {name}' {record}\"\nevery = \"20ms\"\n",
        svc(record, name, args)
    )
}

#[test]
fn start_on_orders_jobs_and_waits_for_readiness() {
    let c = Conf::new();
    let r = c.file("record");
    let port = free_port();
    c.job("db", &listener(&r, "db", port, 0.4));
    // app may only start once db answers: its pre-start checks that it does.
    c.job(
        "app",
        &format!(
            "start-on = \"started db\"\npre-start = \"python3 -c 'import socket; socket.create_connection((\\\"127.0.0.1\\\", {port}), 1)' && echo db-answers >> {r}\"\n{}",
            svc_ready(&r, "app", "sleep")
        ),
    );
    c.job(
        "web",
        &format!(
            "start-on = \"started app\"\n{}",
            svc_ready(&r, "web", "sleep")
        ),
    );
    let d = c.start();
    d.wait_state("web", "running");
    let l = lines(&r);
    assert!(
        position(&l, "listening db") < position(&l, "db-answers"),
        "{l:?}"
    );
    assert!(position(&l, "db-answers") < position(&l, "up app"), "{l:?}");
    assert!(position(&l, "up app") < position(&l, "up web"), "{l:?}");
}

#[test]
fn stop_on_stopping_stops_dependents_first() {
    let c = Conf::new();
    let r = c.file("record");
    c.job("redis", &svc_ready(&r, "redis", "sleep"));
    c.job(
        "celery",
        &format!(
            "start-on = \"started redis\"\nstop-on = \"stopping redis\"\n{}",
            svc_ready(&r, "celery", "sleep")
        ),
    );
    let d = c.start();
    d.wait_state("celery", "running");
    d.ok(&["stop", "redis"], 0);
    let l = lines(&r);
    assert!(
        position(&l, "down celery") < position(&l, "down redis"),
        "{l:?}"
    );
    assert_eq!(d.state("celery"), "waiting");
    assert_eq!(
        d.status("celery")["manual_stop"],
        false,
        "stopped by an event, not by hand"
    );
    // And it follows redis back up.
    d.ok(&["start", "redis"], 0);
    d.wait_state("celery", "running");
}

#[test]
fn and_rearms_when_a_dependency_restarts() {
    let c = Conf::new();
    c.job("a", "exec = \"sleep 1000\"\n");
    c.job("b", "exec = \"sleep 1000\"\n");
    c.job(
        "both",
        "start-on = \"started a and started b\"\nstop-on = \"stopping a or stopping b\"\nexec = \"sleep 1000\"\n",
    );
    let d = c.start();
    d.wait_state("both", "running");
    let first = d.main_pid("both");
    d.ok(&["restart", "a"], 0);
    wait_until("both to come back after a restarted", || {
        d.state("both") == "running" && d.main_pid("both") != first
    });
    // b restarting twice in a row works the same.
    for _ in 0..2 {
        let before = d.main_pid("both");
        d.ok(&["restart", "b"], 0);
        wait_until("both to follow b", || {
            d.state("both") == "running" && d.main_pid("both") != before
        });
    }
}

#[test]
fn events_carry_upstart_variables_to_hooks() {
    let c = Conf::new();
    let f = c.file("vars");
    c.job("flaky", "manual = true\nscript = \"exit 3\"\n");
    c.job(
        "notifier",
        &format!(
            "task = true\nstart-on = \"stopped flaky RESULT=failed\"\nscript = \"echo $GUARDIAN_EVENT $JOB $RESULT $PROCESS $EXIT_STATUS > {f}.tmp; mv {f}.tmp {f}\"\n"
        ),
    );
    let d = c.start();
    d.ok(&["start", "flaky"], 0);
    wait_until("the notifier to run", || !read(&f).is_empty());
    assert_eq!(read(&f), "stopped flaky failed main 3\n");
}

#[test]
fn emit_starts_jobs_waiting_for_a_user_event() {
    let c = Conf::new();
    let f = c.file("deployed");
    c.job(
        "migrate",
        &format!(
            "task = true\nstart-on = \"deploy-done ENV=prod\"\nscript = \"echo $ENV $APP >> {f}\"\n"
        ),
    );
    let d = c.start();
    let out = d.ok(&["emit", "deploy-done", "ENV=staging"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no job waits"),
        "{}",
        text(&out)
    );
    let out = d.ok(&["emit", "deploy-done", "ENV=prod", "APP=web"], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("migrate"),
        "{}",
        text(&out)
    );
    assert_eq!(read(&f), "prod web\n", "emit waited for the task");
    d.ok(&["emit", "started", "JOB=x"], 2);
    d.ok(&["emit", "deploy-done", "oops"], 2);
}

#[test]
fn expect_fork_and_daemon_follow_the_process_that_remains() {
    let c = Conf::new();
    let r = c.file("record");
    c.job(
        "forker",
        &format!(
            "expect = \"fork\"\nrespawn = true\n{}",
            svc(&r, "forker", "daemon --forks 1")
        ),
    );
    c.job(
        "daemon",
        &format!(
            "expect = \"daemon\"\n{}",
            svc(&r, "daemon", "daemon --forks 2")
        ),
    );
    let d = c.start();
    for job in ["forker", "daemon"] {
        d.wait_state(job, "running");
        wait_until("the daemon's record", || {
            read(&r)
                .lines()
                .any(|l| l.starts_with(&format!("daemon {job} ")))
        });
        let line = lines(&r)
            .into_iter()
            .find(|l| l.starts_with(&format!("daemon {job} ")))
            .unwrap_or_default();
        let daemon_pid: u32 = line
            .rsplit(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        assert_eq!(
            d.main_pid(job),
            Some(daemon_pid),
            "{job} follows its daemon"
        );
    }
    // Killing the followed process is a crash: respawned, and followed again.
    let pid = d.main_pid("forker").expect("pid");
    signal(pid, "KILL");
    wait_until("forker to respawn", || {
        d.state("forker") == "running" && d.main_pid("forker").is_some_and(|p| p != pid)
    });
    let daemon_pid = d.main_pid("daemon").expect("pid");
    d.ok(&["stop", "daemon"], 0);
    assert!(!alive(daemon_pid));
}

#[test]
fn a_pidfile_is_followed_through_a_seamless_restart() {
    let c = Conf::new();
    let r = c.file("record");
    let pidfile = c.file("unicorn.pid");
    c.job(
        "unicorn",
        &format!(
            "pidfile = \"{pidfile}\"\nrespawn = true\nreload-signal = \"USR2\"\n{}",
            svc(&r, "unicorn", &format!("unicorn --pidfile {pidfile}"))
        ),
    );
    let d = c.start();
    d.wait_state("unicorn", "running");
    let old = d.main_pid("unicorn").expect("pid");
    d.ok(&["reload", "unicorn"], 0);
    wait_until("the old master to quit", || {
        read(&r).contains(&format!("quit {old}"))
    });
    wait_until("the new master to be followed", || {
        d.main_pid("unicorn").is_some_and(|p| p != old) && d.state("unicorn") == "running"
    });
    let new = d.main_pid("unicorn").expect("pid");
    assert!(read(&r).contains(&format!("master {new}")));
    assert_eq!(
        d.status("unicorn")["restarts"],
        0,
        "a handover is not a restart"
    );
    assert!(alive(new));
}

#[test]
fn expect_notify_and_stop_wait_for_the_process_to_say_so() {
    let c = Conf::new();
    let r = c.file("record");
    c.job(
        "notifier",
        &format!(
            "expect = \"notify\"\n{}",
            svc(&r, "notifier", "notify --delay 0.3")
        ),
    );
    c.job(
        "stopper",
        &format!(
            "expect = \"stop\"\n{}",
            svc(&r, "stopper", "sigstop --delay 0.3")
        ),
    );
    c.job(
        "after",
        &format!(
            "start-on = \"started notifier and started stopper\"\n{}",
            svc_ready(&r, "after", "sleep")
        ),
    );
    let d = c.start();
    d.wait_state("after", "running");
    let l = lines(&r);
    assert!(
        position(&l, "ready notifier") < position(&l, "up after"),
        "{l:?}"
    );
    assert!(
        position(&l, "ready stopper") < position(&l, "up after"),
        "{l:?}"
    );
    wait_until("the stopped process to be continued", || {
        read(&r).contains("continued stopper")
    });
}

#[test]
fn a_job_that_never_gets_ready_fails_its_start() {
    let c = Conf::new();
    let port = free_port();
    c.job(
        "deaf",
        &format!(
            "manual = true\nexec = \"sleep 1000\"\n[ready]\ntype = \"tcp\"\nport = {port}\ndeadline = \"700ms\"\n"
        ),
    );
    let d = c.start();
    let out = d.ok(&["start", "deaf"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not ready") && err.contains(&port.to_string()),
        "{}",
        text(&out)
    );
    assert_eq!(d.state("deaf"), "waiting");
}

#[test]
fn check_refuses_cycles_and_unknown_jobs_and_warns_of_unemitted_events() {
    let c = Conf::new();
    c.job("a", "start-on = \"started b\"\nexec = \"sleep 1\"\n");
    c.job("b", "start-on = \"started a\"\nexec = \"sleep 1\"\n");
    c.job("c", "start-on = \"started redsi\"\nexec = \"sleep 1\"\n");
    c.job("d", "start-on = \"started a and\"\nexec = \"sleep 1\"\n");
    c.job("redis", "exec = \"sleep 1\"\n");
    let out = c.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "dependency cycle: a -> b -> a",
        "c.toml:1:13: `start-on`: there is no job `redsi`",
        "did you mean `redis`?",
        "d.toml:1:26: `start-on`: expected an event",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }

    let ok = Conf::new();
    ok.job(
        "m",
        "task = true\nstart-on = \"deploy-done\"\nexec = \"true\"\n",
    );
    let out = ok.cli(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("waits for the event `deploy-done`, which no job emits"),
        "{}",
        text(&out)
    );
}

#[test]
fn graph_prints_the_dependencies_as_dot() {
    let c = Conf::new();
    c.job("redis", "exec = \"sleep 1\"\n");
    c.job(
        "celery",
        "start-on = \"started redis\"\nstop-on = \"stopping redis\"\nexec = \"sleep 1\"\n",
    );
    c.job(
        "migrate",
        "task = true\nstart-on = \"deploy-done\"\nexec = \"true\"\n",
    );
    let out = c.cli(&["graph"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph guardian {"), "{dot}");
    assert!(
        dot.contains("\"job:redis\" -> \"job:celery\" [label=\"start on started\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("\"job:redis\" -> \"job:celery\" [label=\"stop on stopping\", style=dashed];"),
        "{dot}"
    );
    assert!(
        dot.contains("\"event:deploy-done\" [label=\"deploy-done\", shape=diamond];"),
        "{dot}"
    );
    // A line break in a label is DOT's `\n`, not a quoted backslash.
    assert!(
        dot.contains("\"job:migrate\" [label=\"migrate\\n(task)\"];"),
        "{dot}"
    );
}

/// The Django backend of the seed article, with stand-ins: redis-server must answer
/// before anything that needs it starts; uwsgi waits for three jobs; at shutdown every
/// dependent is down before what it depends on.
#[test]
fn the_django_stack_starts_in_order_gated_on_readiness_and_stops_in_reverse() {
    let c = Conf::new();
    let r = c.file("record");
    let port = free_port();
    c.job("redis-server", &listener(&r, "redis-server", port, 0.3));
    let deps: &[(&str, &str, &str)] = &[
        ("celeryd", "started redis-server", "stopping redis-server"),
        ("celerybeat", "started celeryd", "stopping celeryd"),
        (
            "asyncserver",
            "started redis-server",
            "stopping redis-server",
        ),
        (
            "uwsgi",
            "started redis-server and started celerybeat and started asyncserver",
            "stopping redis-server or stopping celerybeat or stopping asyncserver",
        ),
        ("celeryflower", "started celeryd", "stopping celeryd"),
        ("nginx", "started uwsgi", "stopping uwsgi"),
    ];
    for (job, start, stop) in deps {
        c.job(
            job,
            &format!(
                "start-on = \"{start}\"\nstop-on = \"{stop}\"\n{}",
                svc_ready(&r, job, "sleep")
            ),
        );
    }
    let mut d = c.start();
    d.wait_state("nginx", "running");
    d.wait_state("celeryflower", "running");
    let l = lines(&r);
    let up = |j: &str| position(&l, &format!("up {j}"));
    assert!(
        position(&l, "listening redis-server") < up("celeryd"),
        "readiness gates: {l:?}"
    );
    assert!(
        position(&l, "listening redis-server") < up("asyncserver"),
        "{l:?}"
    );
    assert!(up("celeryd") < up("celerybeat"), "{l:?}");
    assert!(
        up("celerybeat") < up("uwsgi") && up("asyncserver") < up("uwsgi"),
        "{l:?}"
    );
    assert!(
        up("uwsgi") < up("nginx") && up("celeryd") < up("celeryflower"),
        "{l:?}"
    );

    assert!(d.terminate().success());
    let l = lines(&r);
    let down = |j: &str| position(&l, &format!("down {j}"));
    assert!(down("nginx") < down("uwsgi"), "{l:?}");
    assert!(
        down("uwsgi") < down("celerybeat") && down("uwsgi") < down("asyncserver"),
        "{l:?}"
    );
    assert!(
        down("celerybeat") < down("celeryd") && down("celeryflower") < down("celeryd"),
        "{l:?}"
    );
    assert!(
        down("celeryd") < down("redis-server") && down("asyncserver") < down("redis-server"),
        "{l:?}"
    );
}

/// The delayed_job shape: a start script that daemonizes (fork, setsid, fork), writes a
/// pid file and exits. guardian follows the daemon the pid file names, and respawns it.
#[test]
fn a_start_script_that_daemonizes_is_followed_by_its_pidfile() {
    let c = Conf::new();
    let r = c.file("record");
    let pidfile = c.file("delayed_job.pid");
    c.job(
        "delayed_job",
        &format!(
            "pidfile = \"{pidfile}\"\nrespawn = true\nrespawn-limit = {{ count = 10, interval = \"90s\" }}\n{}",
            svc(&r, "dj", &format!("daemon --forks 2 --pidfile {pidfile}"))
        ),
    );
    let d = c.start();
    d.wait_state("delayed_job", "running");
    let pid = d.main_pid("delayed_job").expect("pid");
    assert_eq!(read(&pidfile).trim(), pid.to_string());
    signal(pid, "KILL");
    wait_until("a new daemon from a new start", || {
        d.state("delayed_job") == "running"
            && d.main_pid("delayed_job").is_some_and(|p| p != pid)
            && read(&pidfile).trim() == d.main_pid("delayed_job").unwrap_or(0).to_string()
    });
    assert_eq!(d.status("delayed_job")["restarts"], 1);
    let pid = d.main_pid("delayed_job").expect("pid");
    d.ok(&["stop", "delayed_job"], 0);
    assert!(!alive(pid));
}

/// A daemon that writes its pid file in a directory it makes itself, after the job
/// started: the directory did not exist while guardian waited, and the pid file in it
/// is found all the same.
#[test]
fn a_pidfile_in_a_directory_made_after_the_start_is_found() {
    let c = Conf::new();
    let r = c.file("record");
    let go = c.file("go");
    let dir = c.file("made-later/app");
    let pidfile = format!("{dir}/app.pid");
    c.job(
        "app",
        &format!(
            "pidfile = \"{pidfile}\"\nrespawn = true\nscript = \"\"\"\n\
             while [ ! -e {go} ]; do sleep 0.02; done\n\
             mkdir -p {dir}\n\
             exec python3 {SVC} daemon --forks 2 --pidfile {pidfile} --record {r} --name app\n\"\"\"\n"
        ),
    );
    let d = c.start();
    // guardian waits for the pid file (its watch is set up with the spawn) ...
    d.wait_state("app", "spawned");
    assert!(!std::path::Path::new(&dir).exists());
    assert!(!std::path::Path::new(&c.file("made-later")).exists());
    // ... and only then is the directory made and the file written in it.
    std::fs::write(&go, "").expect("write go");
    d.wait_state("app", "running");
    let pid = d.main_pid("app").expect("pid");
    assert_eq!(read(&pidfile).trim(), pid.to_string());
    d.ok(&["stop", "app"], 0);
    assert!(!alive(pid));
}

/// A starter that outlives its daemon's pid file (the daemons gem behind
/// `script/delayed_job start`, `unicorn -D`): its late exit is not the job's end.
#[test]
fn a_starter_that_exits_after_the_pidfile_is_written_does_not_end_the_job() {
    let c = Conf::new();
    let r = c.file("record");
    let pidfile = c.file("worker.pid");
    c.job(
        "worker",
        &format!(
            "pidfile = \"{pidfile}\"\nrespawn = true\n{}",
            svc(
                &r,
                "worker",
                &format!("daemon --forks 1 --linger 0.5 --pidfile {pidfile}")
            )
        ),
    );
    let d = c.start();
    d.wait_state("worker", "running");
    let pid = d.main_pid("worker").expect("pid");
    assert_eq!(read(&pidfile).trim(), pid.to_string());
    // The starter lingers, then exits 0: the job runs on with the same daemon.
    wait_until("the starter to be gone", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(3).map(str::to_string))
            .ok()
            .flatten()
            .is_some_and(|ppid| ppid != "1" && ppid == d.pid().to_string())
    });
    assert_eq!(d.state("worker"), "running");
    assert_eq!(d.main_pid("worker"), Some(pid));
    assert_eq!(d.status("worker")["restarts"], 0);
    signal(pid, "KILL");
    wait_until("a respawn", || {
        d.state("worker") == "running" && d.main_pid("worker").is_some_and(|p| p != pid)
    });
}

#[test]
fn stop_all_and_start_all_keep_dependency_order() {
    let c = Conf::new();
    let r = c.file("record");
    let port = free_port();
    c.job("redis", &listener(&r, "redis", port, 0.2));
    c.job(
        "celery",
        &format!(
            "start-on = \"started redis\"\nstop-on = \"stopping redis\"\n{}",
            svc_ready(&r, "celery", "sleep")
        ),
    );
    let d = c.start();
    d.wait_state("celery", "running");
    d.ok(&["stop", "all"], 0);
    let l = lines(&r);
    assert!(
        position(&l, "down celery") < position(&l, "down redis"),
        "{l:?}"
    );

    std::fs::write(&r, "").expect("truncate");
    d.ok(&["start", "all"], 0);
    d.wait_state("celery", "running");
    let l = lines(&r);
    assert!(
        position(&l, "listening redis") < position(&l, "up celery"),
        "{l:?}"
    );
}

#[test]
fn a_job_added_by_reload_starts_when_its_start_on_already_holds() {
    let c = Conf::new();
    c.job("db", "exec = \"sleep 1000\"\n");
    let d = c.start();
    d.wait_state("db", "running");
    c.job("app", "start-on = \"started db\"\nexec = \"sleep 1000\"\n");
    d.ok(&["reload"], 0);
    d.wait_state("app", "running");
}
