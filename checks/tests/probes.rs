//! The probes against real servers on 127.0.0.1, started by the tests.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use checks::{Context, HttpProbe, Probe, ProgramProbe, Ran, Spawner, TcpProbe, http_client};

/// Runs programs with std, for the tests (the daemon routes them through its reaper).
struct TestSpawner;

impl Spawner for TestSpawner {
    fn run<'a>(
        &'a self,
        command: &'a str,
        _timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ran, String>> + Send + 'a>> {
        let command = command.to_string();
        Box::pin(async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .output()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let code = out.status.code();
            Ok(Ran {
                code,
                how: format!("exited {}", code.unwrap_or(-1)),
                output: String::from_utf8_lossy(&out.stdout).into_owned(),
            })
        })
    }
}

fn ctx() -> Context {
    Context {
        http: http_client().expect("client"),
        spawner: Box::new(TestSpawner),
    }
}

/// An HTTP server on a thread: answers every request with `status` and `body`, or, with
/// `hang`, accepts and never answers.
fn http_server(status: u16, body: &'static str, hang: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            if hang {
                held.push(s);
                continue;
            }
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

fn http(port: u16, contains: Option<&str>) -> Probe {
    Probe::Http(HttpProbe {
        url: format!("http://127.0.0.1:{port}/health"),
        method: "GET".into(),
        status: vec![],
        contains: contains.map(str::to_string),
        headers: vec![],
    })
}

#[tokio::test]
async fn http_passes_on_200_and_fails_on_500_with_a_reason() {
    let c = ctx();
    let ok = http_server(200, "all good", false);
    let o = http(ok, Some("good")).run(&c, Duration::from_secs(5)).await;
    assert!(o.passed, "{o:?}");
    assert!(
        o.reason
            .starts_with(&format!("HTTP 200 from http://127.0.0.1:{ok}/health after"))
    );
    assert_eq!(o.value, Some(200.0));

    let o = http(ok, Some("missing"))
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(!o.passed && o.reason.contains("lacks \"missing\""), "{o:?}");

    let bad = http_server(500, "oops", false);
    let o = http(bad, None).run(&c, Duration::from_secs(5)).await;
    assert!(!o.passed);
    assert!(
        o.reason
            .starts_with(&format!("HTTP 500 from http://127.0.0.1:{bad}/health")),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_hung_server_is_cut_at_the_timeout() {
    let c = ctx();
    let port = http_server(200, "", true);
    let o = http(port, None).run(&c, Duration::from_millis(300)).await;
    assert!(!o.passed);
    assert!(o.reason.contains("no answer within 300 ms"), "{o:?}");
    assert!(o.latency < Duration::from_secs(2));
}

#[tokio::test]
async fn tcp_connects_sends_and_expects() {
    let c = ctx();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(5) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf)
                && &buf[..n] == b"PING\r\n"
            {
                let _ = s.write_all(b"+PONG\r\n");
            }
        }
    });
    let probe = |send: Option<&str>, expect: Option<&str>| {
        Probe::Tcp(TcpProbe {
            host: "127.0.0.1".into(),
            port,
            send: send.map(str::to_string),
            expect: expect.map(str::to_string),
        })
    };
    let o = probe(Some("PING\r\n"), Some("PONG"))
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(o.passed, "{o:?}");
    let o = probe(Some("HELLO\r\n"), Some("PONG"))
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(
        !o.passed && o.reason.contains("did not answer with \"PONG\""),
        "{o:?}"
    );

    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let o = Probe::Tcp(TcpProbe {
        host: "127.0.0.1".into(),
        port: closed_port,
        send: None,
        expect: None,
    })
    .run(&c, Duration::from_secs(5))
    .await;
    assert!(!o.passed && o.reason.contains("cannot connect"), "{o:?}");
}

#[tokio::test]
async fn program_passes_on_the_expected_status() {
    let c = ctx();
    let p = |command: &str, status: i32| {
        Probe::Program(ProgramProbe {
            command: command.into(),
            status,
        })
    };
    let o = p("echo fine; exit 0", 0)
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(o.passed && o.reason.ends_with(": fine"), "{o:?}");
    let o = p("echo broken; exit 2", 0)
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(!o.passed && o.reason.contains("exited 2"), "{o:?}");
    assert_eq!(o.value, Some(2.0));
    let o = p("exit 2", 2).run(&c, Duration::from_secs(5)).await;
    assert!(o.passed);
}
