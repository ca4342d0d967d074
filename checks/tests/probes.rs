//! The probes against real servers on 127.0.0.1, started by the tests.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use checks::{
    Amount, Context, DnsProbe, FileProbe, FlockProbe, HttpProbe, Probe, ProgramProbe, Ran,
    Resource, Spawner, Target, TcpProbe, http_client,
};

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
                how: format!("exited {}", code.unwrap_or(-1)).into(),
                output: String::from_utf8_lossy(&out.stdout).into_owned(),
            })
        })
    }
}

fn ctx() -> Context {
    Context {
        http: http_client().expect("client"),
        http_insecure: None,
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
        matches: None,
        headers: vec![],
        cert_min_days: None,
        tls_verify: true,
    })
}

#[tokio::test]
async fn http_passes_on_200_and_fails_on_500_with_a_reason() {
    let c = ctx();
    let ok = http_server(200, "all good", false);
    let o = http(ok, Some("good")).run(&c, Duration::from_secs(5)).await;
    assert!(o.passed, "{o:?}");
    assert!(
        o.reason()
            .starts_with(&format!("HTTP 200 from http://127.0.0.1:{ok}/health after"))
    );
    assert_eq!(o.value, Some(200.0));

    let o = http(ok, Some("missing"))
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(
        !o.passed && o.reason().contains("lacks \"missing\""),
        "{o:?}"
    );

    let bad = http_server(500, "oops", false);
    let o = http(bad, None).run(&c, Duration::from_secs(5)).await;
    assert!(!o.passed);
    assert!(
        o.reason()
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
    assert!(o.reason().contains("no answer within 300 ms"), "{o:?}");
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
            expect: expect.map(|e| checks::TcpExpect::Text(e.to_string())),
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
        !o.passed && o.reason().contains("did not answer with \"PONG\""),
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
    assert!(!o.passed && o.reason().contains("cannot connect"), "{o:?}");
}

#[tokio::test]
async fn program_passes_on_the_expected_status() {
    let c = ctx();
    let p = |command: &str, status: i32| {
        Probe::Program(ProgramProbe {
            command: command.into(),
            status,
            output: None,
        })
    };
    let o = p("echo fine; exit 0", 0)
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(o.passed && o.reason().ends_with(": fine"), "{o:?}");
    let o = p("echo broken; exit 2", 0)
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(!o.passed && o.reason().contains("exited 2"), "{o:?}");
    assert_eq!(o.value, Some(2.0));
    let o = p("exit 2", 2).run(&c, Duration::from_secs(5)).await;
    assert!(o.passed);
}

/// A DNS server on 127.0.0.1 that answers A queries for `name` with `addr` and
/// everything else with no answer.
fn dns_server(name: &'static str, addr: [u8; 4]) -> std::net::SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..50 {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let q = &buf[..n];
            if n < 12 {
                continue;
            }
            // The question: labels, then type and class.
            let mut i = 12;
            let mut labels = Vec::new();
            while i < n && q[i] != 0 {
                let len = q[i] as usize;
                labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + len]).into_owned());
                i += 1 + len;
            }
            let qend = i + 5;
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let asked = labels.join(".");
            let answer = qtype == 1 && asked == name;
            let mut r = Vec::from(&q[..2]);
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..qend]);
            if answer {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&addr);
            }
            let _ = sock.send_to(&r, from);
        }
    });
    local
}

#[tokio::test]
async fn dns_resolves_against_a_given_server_and_checks_the_address() {
    let c = ctx();
    let server = dns_server("app.test", [10, 1, 2, 3]);
    let p = |name: &str, expect: Option<&str>| {
        Probe::Dns(DnsProbe {
            name: name.into(),
            server: Some(server),
            expect: expect.map(|e| e.parse().expect("ip")),
        })
    };
    let o = p("app.test", Some("10.1.2.3"))
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(o.passed, "{o:?}");
    assert!(
        o.reason().contains("app.test resolves to 10.1.2.3"),
        "{o:?}"
    );
    let o = p("app.test", Some("10.9.9.9"))
        .run(&c, Duration::from_secs(5))
        .await;
    assert!(!o.passed && o.reason().contains("not 10.9.9.9"), "{o:?}");
    let o = p("other.test", None).run(&c, Duration::from_secs(5)).await;
    assert!(
        !o.passed && o.reason().contains("does not resolve"),
        "{o:?}"
    );
}

#[tokio::test]
async fn file_and_flock() {
    let c = ctx();
    let dir = std::env::temp_dir().join(format!("checks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("app.lock");
    std::fs::write(&path, b"12345").expect("write");
    let path_s = path.display().to_string();
    let file = |max_size: Option<u64>| {
        Probe::File(FileProbe {
            path: path_s.clone(),
            max_age: Some(Duration::from_secs(3600)),
            min_size: Some(1),
            max_size,
        })
    };
    assert!(file(None).run(&c, Duration::from_secs(5)).await.passed);
    let o = file(Some(3)).run(&c, Duration::from_secs(5)).await;
    assert!(!o.passed && o.reason().contains("above"), "{o:?}");

    let flock = Probe::Flock(FlockProbe {
        path: path_s.clone(),
    });
    let o = flock.run(&c, Duration::from_secs(5)).await;
    assert!(
        !o.passed && o.reason().contains("nobody holds a lock"),
        "{o:?}"
    );
    let held = nix::fcntl::Flock::lock(
        std::fs::File::open(&path).expect("open"),
        nix::fcntl::FlockArg::LockSharedNonblock,
    )
    .expect("lock");
    let o = flock.run(&c, Duration::from_secs(5)).await;
    assert!(
        o.passed && o.reason().contains("locked by 1 process"),
        "{o:?}"
    );
    // The blocking wait returns the moment the last holder lets go.
    let waiter = std::thread::spawn({
        let p = path_s.clone();
        move || checks::flock_wait_released(&p)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "still held");
    drop(held);
    assert!(waiter.join().expect("join").is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn resource_limits_of_a_process_tree_and_the_host() {
    let c = ctx();
    let mut me = Target::default();
    me.pid = Some(std::process::id());
    let mem = |max: f64| {
        Probe::Resource(Resource::Memory {
            max: Amount::Absolute(max),
        })
    };
    let o = mem(1e12).run_on(&c, &mut me, Duration::from_secs(5)).await;
    assert!(o.passed && o.value.is_some_and(|v| v > 0.0), "{o:?}");
    let o = mem(1000.0)
        .run_on(&c, &mut me, Duration::from_secs(5))
        .await;
    assert!(!o.passed && o.reason().contains("limit 1 KB"), "{o:?}");

    let cpu = Probe::Resource(Resource::Cpu { max: 1000.0 });
    // The first run measures a rate too: it samples twice, a moment apart.
    let first = cpu.run_on(&c, &mut me, Duration::from_secs(5)).await;
    assert!(
        first.passed && first.value.is_some() && first.reason().contains("% of a core over"),
        "the first run has a rate: {first:?}"
    );
    let second = cpu.run_on(&c, &mut me, Duration::from_secs(5)).await;
    assert!(second.value.is_some(), "{second:?}");

    let disk = Probe::Resource(Resource::Disk {
        path: "/".into(),
        max: Amount::Percent(100.0),
    });
    assert!(disk.run(&c, Duration::from_secs(5)).await.passed);
    let load = Probe::Resource(Resource::Load {
        max: 0.0,
        minutes: 1,
    });
    let o = load.run(&c, Duration::from_secs(5)).await;
    assert!(o.reason().starts_with("load average (1 min) is"), "{o:?}");
    let gone = Probe::Resource(Resource::Children { max: 5 });
    let o = gone
        .run_on(&c, &mut Target::default(), Duration::from_secs(5))
        .await;
    assert!(!o.passed && o.reason().contains("no main process"), "{o:?}");
}
