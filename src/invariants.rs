//! What must hold of the configuration readers, the event-expression parser and the
//! control protocol for any input at all. The fuzz targets (`fuzz/`) call these with
//! what libFuzzer makes up, and `tests/fuzz_regressions.rs` with every input that ever
//! broke one. Each function panics when a property does not hold: that is its purpose,
//! and nothing else in guardian calls them.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{self, Diagnostic, JobSpec, Program, limits};
use crate::control::{frame, protocol};
use crate::event::{Event, expr};

/// Every diagnostic about `bytes` (a file's contents) points inside them, and shows
/// at most a short piece of its line.
fn within(bytes: &[u8], diags: &[Diagnostic]) {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.split('\n').collect();
    for d in diags {
        let shown = d.to_string();
        assert!(!shown.is_empty());
        if d.line == 0 {
            assert_eq!(d.col, 0, "{d:?}");
            continue;
        }
        assert!(d.line <= lines.len(), "line past the end: {d:?}");
        let len = lines[d.line - 1].chars().count();
        assert!(
            d.col >= 1 && d.col <= len + 1,
            "column past the line: {d:?}"
        );
        if let Some(src) = &d.source_line {
            let n = src.chars().count();
            assert!(n <= 120, "a source line of {n} characters shown");
            assert!(d.caret <= n, "caret past the shown line: {d:?}");
        }
    }
}

/// A duration that was accepted can be added to the clock.
fn addable(d: Duration, what: &str) {
    assert!(d <= limits::MAX_DURATION, "{what}: {d:?} above the limit");
    assert!(Instant::now().checked_add(d).is_some(), "{what}: {d:?}");
}

fn runnable(p: &Program) {
    let (path, argv) = p.command_line();
    assert!(!path.as_os_str().as_encoded_bytes().contains(&0));
    for a in argv {
        assert!(!a.contains('\0'), "an argument with a NUL byte: {a:?}");
    }
}

/// What a spec that passed `check` must be, to run: every value within its limit.
fn spec_runs(spec: &JobSpec) {
    addable(spec.kill_timeout, "kill-timeout");
    for l in spec.respawn_limit.iter().chain(&spec.restart_limit) {
        addable(l.interval, "interval");
        assert!((1..=limits::MAX_COUNT).contains(&l.count));
    }
    if let Some(r) = &spec.ready {
        for d in [r.every, r.timeout, r.deadline] {
            addable(d, "[ready]");
            assert!(!d.is_zero(), "a zero readiness duration");
        }
    }
    for c in &spec.checks {
        for d in c.every.iter().chain(&c.timeout) {
            addable(*d, "check");
            assert!(!d.is_zero(), "a zero check duration");
        }
        addable(c.grace, "grace");
        assert!(c.failures >= 1 && c.failures <= c.within && c.within <= limits::MAX_WITHIN);
    }
    for (k, v) in crate::process::env::environment(spec) {
        assert!(
            !k.is_empty() && !k.contains('=') && !k.contains('\0'),
            "{k:?}"
        );
        assert!(!v.contains('\0'), "{k}={v:?}");
    }
    for p in spec.main.iter().chain(
        [
            &spec.hooks.pre_start,
            &spec.hooks.post_start,
            &spec.hooks.pre_stop,
            &spec.hooks.post_stop,
        ]
        .into_iter()
        .flatten(),
    ) {
        runnable(p);
    }
    assert!(!spec.chdir.as_os_str().as_encoded_bytes().contains(&0));
}

/// One job file's contents, as `check` and the daemon read it.
pub fn job_file(data: &[u8]) {
    let path = Path::new("/fuzz/jobs/fuzz.toml");
    let read = config::read_job_text("fuzz", path, data);
    within(data, &read.errors);
    if read.errors.is_empty() {
        let spec = read.spec.as_ref();
        assert!(spec.is_some(), "no errors and no spec");
        if let Some(spec) = spec {
            spec_runs(spec);
        }
    }
    // The entry point `check` uses says the same.
    assert_eq!(
        config::check_job_text("fuzz", path, data).0.len(),
        read.errors.len()
    );
}

/// The contents of guardian.toml.
pub fn settings(data: &[u8]) {
    let dir = Path::new("/fuzz");
    let (s, errors) = config::read_settings_text(dir, &dir.join("guardian.toml"), data);
    within(data, &errors);
    if errors.is_empty() {
        addable(s.every, "every");
        assert!(!s.every.is_zero());
        assert!(s.socket.as_os_str().len() <= limits::MAX_SOCKET_PATH);
        addable(s.alert.timeout, "alert timeout");
        addable(s.alert.digest, "digest");
        for r in &s.alert.to {
            if let Some(d) = r.reminder {
                addable(d, "reminder");
            }
        }
        for c in &s.checks {
            for d in c.every.iter().chain(&c.timeout) {
                addable(*d, "check");
            }
        }
    }
}

/// An event expression: it parses or says where it does not; what parses prints as
/// text that parses to the same, and can watch events.
pub fn expr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match expr::parse(text) {
        Err(e) => {
            assert!(e.at <= text.len(), "error past the end: {e:?}");
            assert!(
                text.is_char_boundary(e.at),
                "error inside a character: {e:?}"
            );
        }
        Ok(e) => {
            let shown = e.to_string();
            let again = expr::parse(&shown);
            assert!(again.is_ok(), "{shown:?} does not parse again: {again:?}");
            if let Ok(again) = again {
                assert_eq!(again.to_string(), shown);
            }
            let mut w = expr::Watch::new(e.clone());
            for atom in e.atoms() {
                let mut ev = Event::new(&atom.event);
                for a in &atom.args {
                    ev = ev.with("JOB", a.as_str());
                }
                for (k, v, _) in &atom.matches {
                    ev = ev.with(k, v.as_str());
                }
                w.feed(&ev);
            }
            w.holds();
        }
    }
}

/// Bytes from a client: frames, one after another, each decoded as a request.
pub fn protocol(data: &[u8]) {
    let mut rest = data;
    for _ in 0..8 {
        let before = rest;
        let Ok(body) = frame::read_sync(&mut rest) else {
            break;
        };
        assert!(body.len() <= frame::MAX_FRAME);
        assert_eq!(before.len() - rest.len(), body.len() + 4);
        // The daemon's reader takes the same frame from the same bytes.
        let mut b = before;
        let read = std::pin::pin!(frame::read_async(&mut b));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match read.poll(&mut cx) {
            std::task::Poll::Ready(Ok(same)) => assert_eq!(same, body),
            other => panic!("the async reader differs: {:?}", other.map(|r| r.is_ok())),
        }
        // The server's incremental decoder finds the same frame in the same bytes.
        match frame::decode(before) {
            Ok(Some((same, used))) => {
                assert_eq!(same, body.as_slice());
                assert_eq!(used, body.len() + 4);
            }
            other => panic!(
                "the incremental decoder differs: {:?}",
                other.map(|f| f.is_some())
            ),
        }
        // A frame written is read back whole.
        let mut out = Vec::new();
        assert!(frame::write_sync(&mut out, &body).is_ok());
        assert_eq!(
            frame::read_sync(&mut out.as_slice()).ok(),
            Some(body.clone())
        );
        if let Ok(request) = protocol::decode_request(&body) {
            let encoded = serde_json::to_vec(&request);
            assert!(encoded.is_ok());
            if let Ok(encoded) = encoded {
                assert_eq!(protocol::decode_request(&encoded).ok(), Some(request));
            }
        }
    }
}
