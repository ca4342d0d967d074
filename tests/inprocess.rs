//! The daemon as a library: `guardian::daemon::run` in this very process, on a
//! temporary configuration, driven through guardian's own client, then stopped by its
//! `shutdown` future. The daemon makes its process a child subreaper and reaps every
//! child, so this test has a binary of its own.

mod util;

use std::path::Path;
use std::time::Duration;

use guardian::control::client::Client;
use guardian::control::protocol::{JobState, JobStatus, Request, Response};

use util::{Conf, wait_until};

fn call(socket: &Path, request: Request) -> Response {
    let mut client = Client::connect(socket, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to the in-process daemon: {e}"));
    client
        .call(&request, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{request:?}: {e}"))
}

fn status(socket: &Path, job: &str) -> JobStatus {
    match call(
        socket,
        Request::Status {
            job: Some(job.into()),
            group: None,
        },
    ) {
        Response::Jobs { mut jobs, .. } if jobs.len() == 1 => jobs.remove(0),
        other => panic!("status {job}: {other:?}"),
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_daemon_runs_in_process_and_stops_when_its_shutdown_fires() {
    let c = Conf::new();
    c.job("sleeper", "exec = \"sleep 1000\"\n");
    let config = guardian::config::load(c.path()).unwrap_or_else(|e| panic!("config: {e}"));
    let socket = c.socket();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let listener = guardian::daemon::bind(&config)?;
            guardian::daemon::run(config, listener, async {
                let _ = stopped.await;
            })
            .await
        })
    });
    wait_until("the in-process daemon's socket", || {
        assert!(
            !daemon.is_finished(),
            "the daemon ended before its shutdown"
        );
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    wait_until("the job to run", || {
        status(&socket, "sleeper").state == JobState::Running
    });
    let first = status(&socket, "sleeper")
        .pid
        .unwrap_or_else(|| panic!("a pid"));
    assert!(alive(first));

    let stopped = call(
        &socket,
        Request::Stop {
            target: "sleeper".into(),
            group: None,
            wait: true,
        },
    );
    assert!(matches!(stopped, Response::Done { .. }), "{stopped:?}");
    let s = status(&socket, "sleeper");
    assert_eq!(
        (s.state, s.pid, s.manual_stop),
        (JobState::Waiting, None, true)
    );
    wait_until("the stopped process to be gone", || !alive(first));

    let started = call(
        &socket,
        Request::Start {
            target: "sleeper".into(),
            group: None,
            wait: true,
        },
    );
    assert!(matches!(started, Response::Done { .. }), "{started:?}");
    let s = status(&socket, "sleeper");
    assert_eq!(s.state, JobState::Running);
    let second = s.pid.unwrap_or_else(|| panic!("a pid"));
    assert_ne!(second, first);
    assert!(alive(second));

    // An idle client is not a reason to wait: the daemon closes it on the way out.
    let idle =
        Client::connect(&socket, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = stop.send(());
    wait_until("run() to return", || daemon.is_finished());
    let result = daemon
        .join()
        .unwrap_or_else(|_| panic!("the daemon's thread panicked"));
    assert!(result.is_ok(), "run() returned {result:?}");
    assert!(!alive(second), "the job's process went with the daemon");
    assert!(!socket.exists(), "the control socket is removed");
    drop(idle);
}
