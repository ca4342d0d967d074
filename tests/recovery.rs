//! When guardian itself dies: kill -9 of the daemon, then a new one on the same
//! configuration and state. Jobs that were running are adopted (same pids, supervised
//! again); what cannot be adopted is ended cleanly and started anew; a stale record
//! adopts and kills nothing foreign. Job names are unique to each test, so that the
//! /proc counts see only its own processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::{Conf, alive, free_port, lines, ppid, read, signal, wait_until};

/// Every live process whose environment marks it for `job`.
fn marked(job: &str) -> Vec<u32> {
    let needle = format!("GUARDIAN_JOB={job}\0");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if String::from_utf8_lossy(&environ).contains(&needle) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = read(&format!("/proc/{pid}/stat"));
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The processes of `job` whose parent is not one of its own: its main processes.
fn mains(job: &str) -> Vec<u32> {
    let all = marked(job);
    all.iter()
        .copied()
        .filter(|p| ppid(*p).is_none_or(|pp| !all.contains(&pp)))
        .collect()
}

/// Sockets listening on 127.0.0.1:`port`.
fn listeners(port: u16) -> usize {
    let want = format!("0100007F:{port:04X}");
    read("/proc/net/tcp")
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
        .count()
}

fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.ends_with("ok")
}

const SERVER: &str = r"import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    try:
        c.recv(1024)
        c.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok')
    except OSError:
        pass
    c.close()
";

fn no_process_left(jobs: &[&str]) {
    for job in jobs {
        wait_until(&format!("no process of {job} left"), || {
            marked(job).is_empty()
        });
    }
}

#[test]
fn kill_9_of_the_daemon_with_five_jobs_adopts_each_once_and_the_flags_hold() {
    let c = Conf::new();
    let port = free_port();
    std::fs::write(c.path().join("server.py"), SERVER).expect("server.py");
    c.job(
        "k9-port",
        &format!(
            "exec = \"python3 {} {port}\"\n[ready]\ntype = \"tcp\"\nport = {port}\n\
             [[check]]\ntype = \"tcp\"\nport = {port}\nevery = \"200ms\"\n",
            c.file("server.py")
        ),
    );
    // Numbers its lines, and says how far it got in a file of its own, so that the test
    // sees it write while no daemon runs.
    let count = c.file("writer.count");
    c.job(
        "k9-writer",
        &format!(
            "script = '''\nn=0\nwhile :; do n=$((n+1)); echo \"line $n\"; echo $n > {count}; sleep 0.01; done\n'''\n"
        ),
    );
    let written = || read(&count).trim().parse::<u64>().unwrap_or(0);
    c.job(
        "k9-forker",
        "script = '''\nsleep 3600 &\nsleep 3600 &\nwait\n'''\n",
    );
    c.job("k9-unmon", "exec = \"sleep 3600\"\n");
    c.job("k9-stopped", "exec = \"sleep 3600\"\n");
    let jobs = [
        "k9-port",
        "k9-writer",
        "k9-forker",
        "k9-unmon",
        "k9-stopped",
    ];
    let mut d = c.start();
    for job in jobs {
        d.wait_state(job, "running");
    }
    d.ok(&["unmonitor", "k9-unmon"], 0);
    d.ok(&["stop", "k9-stopped"], 0);
    d.wait_until("the forker's workers", || marked("k9-forker").len() == 3);
    assert!(answers(port));
    let before: Vec<(String, Option<u32>)> = jobs
        .iter()
        .map(|j| (j.to_string(), d.main_pid(j)))
        .collect();
    let restarts: Vec<u64> = jobs
        .iter()
        .map(|j| d.status(j)["restarts"].as_u64().unwrap_or(99))
        .collect();

    d.crash();
    // Between the kill and the restart, the port holder goes on answering and the writer
    // goes on writing.
    assert!(answers(port), "the port holder died with the daemon");
    let at_crash = written();
    wait_until("the writer to write 30 lines with no daemon", || {
        written() >= at_crash + 30
    });
    for (job, pid) in &before {
        if let Some(pid) = pid {
            assert!(alive(*pid), "{job}'s process {pid} died with the daemon");
        }
    }

    let d = c.start();
    for (job, pid) in &before {
        if job == "k9-stopped" {
            continue;
        }
        d.wait_state(job, "running");
        assert_eq!(
            d.main_pid(job),
            *pid,
            "{job} is adopted: same pid\n{}",
            d.daemon_log()
        );
    }
    assert!(answers(port), "the port holder answers after the restart");
    assert_eq!(listeners(port), 1, "exactly one process listens");
    for job in ["k9-port", "k9-writer", "k9-forker", "k9-unmon"] {
        assert_eq!(mains(job).len(), 1, "{job} runs once: {:?}", marked(job));
    }
    assert_eq!(
        marked("k9-forker").len(),
        3,
        "the forker's workers, once each"
    );
    assert!(
        marked("k9-stopped").is_empty(),
        "the stopped job stays down"
    );
    let stopped = d.status("k9-stopped");
    assert_eq!(stopped["state"], "waiting");
    assert_eq!(stopped["manual_stop"], true);
    assert_eq!(d.status("k9-unmon")["monitored"], false);
    for (job, r) in jobs.iter().zip(restarts) {
        assert_eq!(
            d.status(job)["restarts"].as_u64(),
            Some(r),
            "{job}'s restarts"
        );
    }
    let up = d.status("k9-port")["uptime_secs"].as_f64().unwrap_or(0.0);
    assert!(up > 0.0, "uptime from the process's start");
    // Its checks resume: the check of the adopted port holder runs again.
    let checked = |d: &crate::util::Daemon<'_>| d.status("k9-port")["checks"][0]["at"].clone();
    let first = checked(&d);
    d.wait_until("the port holder's check to run", || {
        let now = checked(&d);
        !now.is_null() && now != first
    });
    assert_eq!(d.status("k9-port")["checks"][0]["passed"], true);

    // The lines of the gap are in the writer's log, each once and in order.
    let upto = written() + 20;
    let log = c.file("log/k9-writer.log");
    d.wait_until("the writer's lines after the restart", || {
        read(&log).lines().any(|l| l == format!("line {upto}"))
    });
    let numbers: Vec<u64> = read(&log)
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .take_while(|&n| n <= upto)
        .collect();
    assert_eq!(
        numbers,
        (1..=upto).collect::<Vec<u64>>(),
        "every line of the writer, the gap's included, once and in order"
    );

    // Stopping works on an adopted job: its group is signalled, its pidfd seen. The stop
    // is done once the main process has ended and the rest of its group has been sent
    // SIGKILL; the writer's `sleep` may take a moment more to die, so it is waited for.
    d.ok(&["stop", "k9-writer"], 0);
    assert_eq!(d.status("k9-writer")["state"], "waiting");
    d.wait_until("the writer's processes to be gone once stopped", || {
        marked("k9-writer").is_empty()
    });
    drop(d);
    no_process_left(&jobs);
    let rec = read(&c.file("state/running.json"));
    assert!(rec.contains("\"clean_exit\":true"), "{rec}");
}

#[test]
fn kill_9_of_an_adopted_job_is_noticed_and_it_is_respawned() {
    let c = Conf::new();
    c.job("ka-web", "respawn = true\nexec = \"sleep 3600\"\n");
    let mut d = c.start();
    d.wait_state("ka-web", "running");
    let pid = d.main_pid("ka-web").expect("a pid");
    d.crash();
    let d = c.start();
    d.wait_state("ka-web", "running");
    assert_eq!(d.main_pid("ka-web"), Some(pid));
    // The adopted main's stat file is kept open, and read by the summary.
    let held = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .map(|l| l.display().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        held().contains(&format!("/proc/{pid}/stat")),
        "{:?}",
        held()
    );
    let all = d.all();
    assert_eq!(all[0]["cpu_from"], "main", "{all:?}");
    assert!(
        all[0]["rss_bytes"].as_u64().is_some_and(|b| b > 0),
        "{all:?}"
    );
    signal(pid, "KILL");
    d.wait_until("a new main process", || {
        d.main_pid("ka-web").is_some_and(|p| p != pid) && d.state("ka-web") == "running"
    });
    assert!(!alive(pid));
    let new = d.main_pid("ka-web").expect("the new pid");
    let now = held();
    assert!(now.contains(&format!("/proc/{new}/stat")), "{now:?}");
    assert!(!now.contains(&format!("/proc/{pid}/stat")), "{now:?}");
    assert_eq!(mains("ka-web").len(), 1);
    let s = d.status("ka-web");
    assert_eq!(s["last_failure"]["status"], "exited, status unknown");
    assert!(d.daemon_log().contains("status unknown"));
    drop(d);
    no_process_left(&["ka-web"]);
}

#[test]
fn a_job_whose_configuration_changed_while_no_daemon_ran_is_ended_and_started_anew() {
    let c = Conf::new();
    let post = c.file("post-stop.log");
    c.job(
        "kc-web",
        &format!("exec = \"sleep 3600\"\npost-stop = \"echo done >> {post}\"\n"),
    );
    let mut d = c.start();
    d.wait_state("kc-web", "running");
    let pid = d.main_pid("kc-web").expect("a pid");
    d.crash();
    c.job(
        "kc-web",
        &format!("exec = \"sleep 3601\"\npost-stop = \"echo done >> {post}\"\n"),
    );
    let d = c.start();
    d.wait_until("a new main process", || {
        d.main_pid("kc-web").is_some_and(|p| p != pid) && d.state("kc-web") == "running"
    });
    assert!(!alive(pid), "the old one is ended");
    let new = d.main_pid("kc-web").expect("a pid");
    assert!(read(&format!("/proc/{new}/cmdline")).contains("3601"));
    assert_eq!(
        lines(&post),
        ["done"],
        "post-stop ran once, for the ended run"
    );
    assert_eq!(mains("kc-web").len(), 1);
    drop(d);
    no_process_left(&["kc-web"]);
}

#[test]
fn a_job_caught_in_a_long_post_start_is_ended_cleanly_and_started_again() {
    let c = Conf::new();
    let flag = c.file("once");
    let post = c.file("post-stop.log");
    c.job(
        "kh-web",
        &format!(
            "exec = \"sleep 3600\"\n\
             post-start = \"if [ -e {flag} ]; then exit 0; fi; touch {flag}; exec sleep 600\"\n\
             post-stop = \"echo done >> {post}\"\n"
        ),
    );
    let mut d = c.start();
    d.wait_state("kh-web", "post-start");
    d.wait_until("the post-start hook", || marked("kh-web").len() == 2);
    let old = marked("kh-web");
    d.crash();
    let d = c.start();
    d.wait_state("kh-web", "running");
    for pid in &old {
        assert!(!alive(*pid), "{pid} of the interrupted run is ended");
    }
    let new = d.main_pid("kh-web").expect("a pid");
    assert!(!old.contains(&new));
    assert_eq!(
        lines(&post),
        ["done"],
        "post-stop ran for the interrupted run"
    );
    assert_eq!(marked("kh-web"), [new]);
    drop(d);
    no_process_left(&["kh-web"]);
}

#[test]
fn a_stale_record_adopts_nothing_and_kills_nothing_foreign() {
    let c = Conf::new();
    c.job("ks-web", "exec = \"sleep 3600\"\n");
    let mut d = c.start();
    d.wait_state("ks-web", "running");
    let pid = d.main_pid("ks-web").expect("a pid");
    d.crash();
    // The job's process dies while no daemon runs, and a process that is none of
    // guardian's stands where the record points (as if it had reused the pid).
    signal(pid, "KILL");
    wait_until("the job's process to die", || !alive(pid));
    let mut foreign = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let fpid = foreign.id();
    let fstart = start_time(fpid).expect("its start time");
    let rec = read(&c.file("state/running.json"));
    let old = format!("\"pid\":{pid},\"start_time\":{}", start_time_in(&rec));
    assert!(rec.contains(&old), "{rec}");
    let forged = rec.replace(&old, &format!("\"pid\":{fpid},\"start_time\":{fstart}"));
    std::fs::write(c.file("state/running.json"), forged).expect("record");
    let d = c.start();
    d.wait_until("the job started anew", || {
        d.main_pid("ks-web").is_some_and(|p| p != fpid) && d.state("ks-web") == "running"
    });
    // A second start proves the daemon went on: the foreign process was not touched.
    assert!(alive(fpid), "the foreign process was killed");
    assert!(matches!(foreign.try_wait(), Ok(None)));
    assert_eq!(mains("ks-web").len(), 1);
    let _ = foreign.kill();
    let _ = foreign.wait();
    drop(d);
    no_process_left(&["ks-web"]);
}

/// The start time recorded for the first (only) main process of a record's text.
fn start_time_in(rec: &str) -> u64 {
    rec.split("\"start_time\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
