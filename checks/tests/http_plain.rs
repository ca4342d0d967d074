//! Plain `http://` probes against real servers on 127.0.0.1: the connection a check
//! keeps, servers that close it, and every key of the probe.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checks::{Context, HttpProbe, Pattern, Probe, Ran, Spawner, Target, http_client};

struct NoSpawner;

impl Spawner for NoSpawner {
    fn run<'a>(
        &'a self,
        _command: &'a str,
        _timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ran, String>> + Send + 'a>> {
        Box::pin(async { Err("no programs here".to_string()) })
    }
}

fn ctx() -> Context {
    Context {
        http: http_client().expect("client"),
        http_insecure: None,
        spawner: Box::new(NoSpawner),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// HTTP/1.1 persistent connections.
    KeepAlive,
    /// `Connection: close` and a close after each answer.
    CloseEach,
    /// Says nothing of closing, then closes after each answer (an idle timeout).
    DropKept,
    /// A chunked body, kept alive.
    Chunked,
    /// HTTP/1.0 without a length: the body ends with the connection.
    Http10,
}

/// A server on a thread: it counts the connections it accepts and keeps every
/// request's head.
struct Server {
    port: u16,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn server(mode: Mode, status: u16, body: &'static str) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (a, r) = (accepted.clone(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { continue };
            a.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            std::thread::spawn(move || serve(s, mode, status, body, &r));
        }
    });
    Server {
        port,
        accepted,
        requests,
    }
}

fn serve(mut s: TcpStream, mode: Mode, status: u16, body: &str, seen: &Mutex<Vec<String>>) {
    let mut pending = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
        pending.drain(..end);
        let is_head = head.starts_with("HEAD ");
        seen.lock().expect("lock").push(head);
        let payload = if is_head { "" } else { body };
        let reply = match mode {
            Mode::KeepAlive | Mode::DropKept => format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{payload}",
                body.len()
            ),
            Mode::CloseEach => format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                body.len()
            ),
            Mode::Chunked => {
                let (a, b) = body.split_at(body.len() / 2);
                let mut r = format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n");
                if !is_head {
                    for part in [a, b] {
                        if !part.is_empty() {
                            r.push_str(&format!("{:x};ext=1\r\n{part}\r\n", part.len()));
                        }
                    }
                    r.push_str("0\r\nX-Trailer: t\r\n\r\n");
                }
                r
            }
            Mode::Http10 => format!("HTTP/1.0 {status} X\r\n\r\n{payload}"),
        };
        if s.write_all(reply.as_bytes()).is_err() {
            return;
        }
        if mode != Mode::KeepAlive && mode != Mode::Chunked {
            return;
        }
    }
}

fn probe(port: u16) -> HttpProbe {
    HttpProbe {
        url: format!("http://127.0.0.1:{port}/health?full=1"),
        method: "GET".into(),
        status: vec![],
        contains: None,
        matches: None,
        headers: vec![],
        cert_min_days: None,
        tls_verify: true,
    }
}

async fn runs(p: HttpProbe, times: usize) -> (Vec<checks::Outcome>, Target) {
    let c = ctx();
    let p = Probe::Http(p);
    let mut t = Target::default();
    let mut out = Vec::new();
    for _ in 0..times {
        out.push(p.run_on(&c, &mut t, Duration::from_secs(10)).await);
    }
    (out, t)
}

fn all_passed(outcomes: &[checks::Outcome]) {
    for o in outcomes {
        assert!(o.passed, "{}", o.reason());
    }
}

#[tokio::test]
async fn a_kept_alive_connection_serves_every_run() {
    let s = server(Mode::KeepAlive, 200, "all good");
    let (o, t) = runs(probe(s.port), 20).await;
    all_passed(&o);
    assert!(o[0].reason().starts_with("HTTP 200 from http://127.0.0.1:"));
    assert_eq!(o[0].value, Some(200.0));
    assert_eq!(
        s.accepted.load(Ordering::SeqCst),
        1,
        "one connection for 20 runs"
    );
    assert_eq!(t.http_connections(), Some(1));
    assert_eq!(s.requests.lock().expect("lock").len(), 20);
}

#[tokio::test]
async fn a_server_that_closes_after_each_answer_still_passes() {
    let s = server(Mode::CloseEach, 200, "ok");
    let (o, t) = runs(probe(s.port), 5).await;
    all_passed(&o);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 5);
    assert_eq!(t.http_connections(), Some(5));
}

#[tokio::test]
async fn a_kept_connection_closed_between_runs_is_not_a_failure() {
    let s = server(Mode::DropKept, 200, "ok");
    let c = ctx();
    let p = Probe::Http(probe(s.port));
    let mut t = Target::default();
    for i in 0..5 {
        let o = p.run_on(&c, &mut t, Duration::from_secs(10)).await;
        assert!(o.passed, "run {i}: {}", o.reason());
        // The server closes the connection it answered on: wait until it has, so
        // that the next run finds the kept connection dead.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.accepted.load(Ordering::SeqCst) <= i && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.accepted.load(Ordering::SeqCst), 5);
    assert_eq!(
        s.requests.lock().expect("lock").len(),
        5,
        "no request was lost"
    );
}

#[tokio::test]
async fn chunked_and_unframed_bodies_are_read_and_matched() {
    let s = server(Mode::Chunked, 200, "status: all good here");
    let mut p = probe(s.port);
    p.contains = Some("all good".into());
    let (o, _) = runs(p.clone(), 3).await;
    all_passed(&o);
    assert_eq!(
        s.accepted.load(Ordering::SeqCst),
        1,
        "a chunked answer keeps it"
    );
    p.contains = Some("missing".into());
    let (o, _) = runs(p, 1).await;
    assert!(!o[0].passed);
    assert!(
        o[0].reason().contains("the body lacks \"missing\""),
        "{}",
        o[0].reason()
    );

    let s = server(Mode::Http10, 200, "old but fine");
    let mut p = probe(s.port);
    p.matches = Some(Pattern::new("^old .* fine$").expect("regex"));
    let (o, t) = runs(p.clone(), 3).await;
    all_passed(&o);
    assert_eq!(t.http_connections(), Some(3), "an HTTP/1.0 answer closes");
    p.matches = Some(Pattern::new("^new").expect("regex"));
    let (o, _) = runs(p, 1).await;
    assert!(!o[0].passed);
    assert!(
        o[0].reason().contains("a match for /^new/"),
        "{}",
        o[0].reason()
    );
}

#[tokio::test]
async fn every_key_of_an_http_probe() {
    let s = server(Mode::KeepAlive, 201, "created");
    let mut p = probe(s.port);
    p.method = "POST".into();
    p.headers = vec![
        ("Host".into(), "www.example.test".into()),
        ("X-Token".into(), "abc".into()),
    ];
    p.status = vec![201];
    p.contains = Some("created".into());
    let (o, _) = runs(p.clone(), 2).await;
    all_passed(&o);
    let req = s.requests.lock().expect("lock")[0].clone();
    assert!(req.starts_with("POST /health?full=1 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nHost: www.example.test\r\n"), "{req}");
    assert!(
        !req.contains("\r\nhost: 127.0.0.1"),
        "one host header: {req}"
    );
    assert!(req.contains("\r\nX-Token: abc\r\n"), "{req}");
    assert!(req.contains("\r\nuser-agent: guardian/"), "{req}");
    assert!(req.contains("\r\ncontent-length: 0\r\n"), "{req}");

    // A status that is not listed fails, with the status as the value.
    p.status = vec![200];
    let (o, _) = runs(p.clone(), 1).await;
    assert!(!o[0].passed);
    assert_eq!(o[0].value, Some(201.0));
    assert!(
        o[0].reason().starts_with("HTTP 201 from "),
        "{}",
        o[0].reason()
    );

    // HEAD: a length but no body; the connection stays usable.
    let s = server(Mode::KeepAlive, 200, "a body HEAD does not get");
    let mut p = probe(s.port);
    p.method = "HEAD".into();
    let (o, _) = runs(p, 3).await;
    all_passed(&o);
    assert_eq!(s.accepted.load(Ordering::SeqCst), 1);

    // Redirects are answers, not followed; 3xx passes by default.
    let s = server(Mode::KeepAlive, 302, "");
    let (o, _) = runs(probe(s.port), 1).await;
    all_passed(&o);
    assert_eq!(s.requests.lock().expect("lock").len(), 1);

    // Nobody listening: a failure that says so.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (o, _) = runs(probe(port), 1).await;
    assert!(!o[0].passed);
    assert!(
        o[0].reason().contains("cannot connect"),
        "{}",
        o[0].reason()
    );
}

#[tokio::test]
async fn a_host_name_is_resolved_and_a_hung_server_is_cut() {
    let s = server(Mode::KeepAlive, 200, "ok");
    let mut p = probe(s.port);
    p.url = format!("http://localhost:{}/", s.port);
    let (o, _) = runs(p, 2).await;
    // localhost may resolve to ::1 first: the probe tries each address in turn.
    all_passed(&o);
    let req = s.requests.lock().expect("lock")[0].clone();
    assert!(
        req.contains(&format!("\r\nhost: localhost:{}\r\n", s.port)),
        "{req}"
    );

    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || l.accept().map(|(s, _)| s));
    let c = ctx();
    let o = Probe::Http(probe(port))
        .run_on(&c, &mut Target::default(), Duration::from_millis(300))
        .await;
    assert!(!o.passed);
    assert!(o.reason().contains("no answer within"), "{}", o.reason());
    drop(held);
}
