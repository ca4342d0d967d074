//! The routes: `/api/v1/...` and `/metrics`. Each handler checks who asks, turns the
//! HTTP request into a control [`Request`], sends it to the daemon's loop and maps the
//! answer to a status and a JSON body:
//!
//! | answer              | CLI exit | HTTP |
//! |---------------------|----------|------|
//! | done                | 0        | 200  |
//! | no (did not start)  | 1        | 409  |
//! | error: no such job  | 2        | 404  |
//! | error (other)       | 2        | 400  |
//! | daemon shutting down| 2        | 503  |
//! | daemon re-executing | 2        | 503  |

// A handler's error is the answer itself, made once per request: not worth a box.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::auth::{Offered, Role, offered};
use super::{Shared, Ticket};
use crate::control::protocol::{REEXECUTING, Request, Response};

/// Every answer's body: whole, or a stream of log lines.
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The most lines `logs?lines=N` gives.
pub const MAX_LINES: usize = 10_000;

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(super) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_reply(status: StatusCode, v: &impl serde::Serialize) -> hyper::Response<Body> {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    reply(status, "application/json", full(bytes))
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> hyper::Response<Body> {
    let mut r = json_reply(
        status,
        &json!({"outcome": "error", "message": message.into()}),
    );
    // Shutting down, re-executing, busy: asking again soon may be answered.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn unauthorized(message: &str) -> hyper::Response<Body> {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"guardian\", charset=\"UTF-8\""),
    );
    r
}

/// Who sent the request, from its `Authorization` header.
async fn authenticate(
    shared: &Shared,
    headers: &http::HeaderMap,
) -> Result<Role, hyper::Response<Body>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "credentials needed: HTTP Basic (a user of the users-file) or Bearer (a token of the tokens-file)",
        ));
    };
    let Some(offer) = value.to_str().ok().and_then(offered) else {
        return Err(unauthorized(
            "the Authorization header is neither Basic nor Bearer",
        ));
    };
    let auth = shared.auth();
    let role = match offer {
        Offered::Bearer(token) => auth.tokens.verify(&token),
        Offered::Basic { user, password } => verify_user(shared, user, password).await?,
    };
    role.ok_or_else(|| unauthorized("wrong user, password or token"))
}

/// A user's role if the password is right: argon2 on a blocking thread, one at a time.
pub(super) async fn verify_user(
    shared: &Shared,
    user: String,
    password: String,
) -> Result<Option<Role>, hyper::Response<Body>> {
    let auth = shared.auth();
    let Ok(_permit) = shared.verify_gate.acquire().await else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "guardian is shutting down",
        ));
    };
    Ok(
        tokio::task::spawn_blocking(move || auth.users.verify(&user, &password))
            .await
            .ok()
            .flatten(),
    )
}

/// Sends one request to the daemon's loop and waits for its answer.
pub(super) async fn call(
    shared: &Shared,
    request: Request,
) -> Result<Response, hyper::Response<Body>> {
    request
        .validate()
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let (tx, rx) = oneshot::channel();
    let down = || error(StatusCode::SERVICE_UNAVAILABLE, "guardian is shutting down");
    shared
        .to_daemon
        .send((request, tx))
        .await
        .map_err(|_| down())?;
    rx.await.map_err(|_| down())
}

/// The status an answer of the daemon gets (see the table above).
pub fn status_of(response: &Response) -> StatusCode {
    match response {
        Response::No { .. } => StatusCode::CONFLICT,
        Response::Error { message }
            if message.starts_with("no job named") || message.starts_with("no group named") =>
        {
            StatusCode::NOT_FOUND
        }
        Response::Error { message } if message == REEXECUTING => StatusCode::SERVICE_UNAVAILABLE,
        Response::Error { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// An action's answer: `{"outcome": "done" | "no" | "error", "message": ...}`.
pub(super) fn outcome(response: Response) -> hyper::Response<Body> {
    let status = status_of(&response);
    match response {
        Response::Done { message } => {
            json_reply(status, &json!({"outcome": "done", "message": message}))
        }
        Response::No { message } => {
            json_reply(status, &json!({"outcome": "no", "message": message}))
        }
        Response::Error { message } => error(status, message),
        other => json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"outcome": "error", "message": format!("unexpected answer: {other:?}")}),
        ),
    }
}

pub(super) fn query(uri: &http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v).unwrap_or_default())
    })
}

fn flag(uri: &http::Uri, name: &str, default: bool) -> Result<bool, hyper::Response<Body>> {
    match query(uri, name).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        Some(v) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("`{name}` is 1 or 0, not `{}`", crate::logtext::escape(v)),
        )),
    }
}

/// Decodes `%XX` escapes; None if they are broken or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i.checked_add(1)?..i.checked_add(3)?)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i = i.checked_add(3)?;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a request's body, bounded in size and time.
pub(super) async fn body(shared: &Shared, body: Incoming) -> Result<Bytes, hyper::Response<Body>> {
    let max = usize::try_from(shared.settings.max_body_size).unwrap_or(usize::MAX);
    let limited = Limited::new(body, max);
    match tokio::time::timeout(shared.settings.body_timeout, limited.collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than max-body-size ({max} bytes)"),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Answers one request.
pub async fn handle(
    shared: &Arc<Shared>,
    _ticket: &Ticket,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Body> {
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_string();
    if super::page::is_page(&path) {
        return super::page::handle(shared, parts, incoming).await;
    }
    let open_metrics = path == "/metrics" && !shared.settings.metrics_auth;
    let role = if open_metrics {
        Role::ReadOnly
    } else {
        match authenticate(shared, &parts.headers).await {
            Ok(r) => r,
            Err(response) => return response,
        }
    };
    if parts.method == Method::POST
        && let Some(refusal) = cross_site(&parts.headers)
    {
        return refusal;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.settings.max_body_size) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than max-body-size ({} bytes)",
                shared.settings.max_body_size
            ),
        );
    }
    let body = match body(shared, incoming).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    route(shared, role, &parts.method, &parts.uri, &path, body)
        .await
        .unwrap_or_else(|response| response)
}

/// A POST that a page of another site could have made a browser send: a form's
/// content type (which needs no CORS preflight), or a browser that says so. Refused,
/// so that Basic credentials a browser remembers cannot act for another site.
fn cross_site(headers: &http::HeaderMap) -> Option<hyper::Response<Body>> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(t) = essence
        && matches!(
            t.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        )
    {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a POST with Content-Type {t} is what a form of another site can send: send application/json, or no body"
            ),
        ));
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return Some(error(
            StatusCode::FORBIDDEN,
            "a request from another site's page may not act",
        ));
    }
    None
}

pub(super) type Answer = Result<hyper::Response<Body>, hyper::Response<Body>>;

fn method_not_allowed(allow: &'static str) -> hyper::Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn want(
    method: &Method,
    wanted: &Method,
    allow: &'static str,
) -> Result<(), hyper::Response<Body>> {
    if method == wanted {
        Ok(())
    } else {
        Err(method_not_allowed(allow))
    }
}

/// An action on jobs: refused with 403 for the read-only role, else carried out.
async fn act(shared: &Shared, role: Role, request: Request) -> Answer {
    if role != Role::Admin && !request.is_read_only() {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "permission denied: `{}` acts on jobs, and this user or token may only read",
                request.verb()
            ),
        ));
    }
    Ok(outcome(call(shared, request).await?))
}

async fn route(
    shared: &Arc<Shared>,
    role: Role,
    method: &Method,
    uri: &http::Uri,
    path: &str,
    body: Bytes,
) -> Answer {
    if path == "/metrics" {
        want(method, &Method::GET, "GET")?;
        return metrics(shared).await;
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no such page: the status page is at /, the API under /api/v1/ (see /api/v1/openapi.json), metrics at /metrics",
        ));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    // A name no job can have (see the document's pattern) is no job's: 404, as the
    // daemon answers for a name it does not know, not 400 for a request it refuses.
    let decoded = |s: &str| {
        let name = percent_decode(s)
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "a broken %-escape in the path"))?;
        if name == "all" || crate::config::valid_name(&name) {
            Ok(name)
        } else {
            Err(error(
                StatusCode::NOT_FOUND,
                format!("no job named `{}`", crate::logtext::escape(&name)),
            ))
        }
    };
    let wait = flag(uri, "wait", true)?;
    match segments.as_slice() {
        ["openapi.json"] => {
            want(method, &Method::GET, "GET")?;
            Ok(reply(StatusCode::OK, "application/json", full(OPENAPI)))
        }
        ["jobs"] => {
            want(method, &Method::GET, "GET")?;
            let group = query(uri, "group");
            // As for a job's name: a name no group can have is no group's, 404.
            if let Some(g) = group.as_deref().filter(|g| !crate::config::valid_name(g)) {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("no group named `{}`", crate::logtext::escape(g)),
                ));
            }
            match call(shared, Request::Status { job: None, group }).await? {
                Response::Jobs { jobs, host } => Ok(json_reply(
                    StatusCode::OK,
                    &json!({"jobs": jobs, "host": host}),
                )),
                other => Ok(outcome(other)),
            }
        }
        ["host"] => {
            want(method, &Method::GET, "GET")?;
            match call(
                shared,
                Request::Status {
                    job: None,
                    group: None,
                },
            )
            .await?
            {
                Response::Jobs { host, .. } => {
                    Ok(json_reply(StatusCode::OK, &json!({"host": host})))
                }
                other => Ok(outcome(other)),
            }
        }
        ["alerts"] => {
            want(method, &Method::GET, "GET")?;
            match call(shared, Request::Alerts).await? {
                Response::Alerts { pending } => {
                    Ok(json_reply(StatusCode::OK, &json!({"pending": pending})))
                }
                other => Ok(outcome(other)),
            }
        }
        ["reload"] => {
            want(method, &Method::POST, "POST")?;
            act(shared, role, Request::ReloadConfig).await
        }
        ["emit"] => {
            want(method, &Method::POST, "POST")?;
            let request = emit_request(&body, wait)?;
            act(shared, role, request).await
        }
        ["jobs", name] => {
            want(method, &Method::GET, "GET")?;
            let job = decoded(name)?;
            match call(
                shared,
                Request::Status {
                    job: Some(job.clone()),
                    group: None,
                },
            )
            .await?
            {
                Response::Jobs { mut jobs, .. } if jobs.len() == 1 && jobs[0].name == job => {
                    Ok(json_reply(StatusCode::OK, &jobs.remove(0)))
                }
                // The instances of a job file.
                Response::Jobs { jobs, .. } => Ok(json_reply(StatusCode::OK, &jobs)),
                other => Ok(outcome(other)),
            }
        }
        ["jobs", name, "logs"] => {
            want(method, &Method::GET, "GET")?;
            let job = decoded(name)?;
            let lines = match query(uri, "lines") {
                None => 20,
                Some(n) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_LINES)
                    .ok_or_else(|| {
                        error(
                            StatusCode::BAD_REQUEST,
                            format!("`lines` is a number from 0 to {MAX_LINES}"),
                        )
                    })?,
            };
            let follow = flag(uri, "follow", false)?;
            let path = match call(shared, Request::Logs { job: job.clone() }).await? {
                Response::LogFile { path } => PathBuf::from(path),
                other => return Ok(outcome(other)),
            };
            logs(shared, job, path, lines, follow).await
        }
        ["jobs", name, "config"] => {
            want(method, &Method::GET, "GET")?;
            let job = decoded(name)?;
            let request = Request::Config {
                job,
                hide_secrets: role != Role::Admin,
            };
            match call(shared, request).await? {
                Response::Config { job, text, config } => Ok(json_reply(
                    StatusCode::OK,
                    &json!({"job": job, "text": text, "config": config}),
                )),
                other => Ok(outcome(other)),
            }
        }
        ["jobs", name, action] => {
            want(method, &Method::POST, "POST")?;
            let target = decoded(name)?;
            let request = match *action {
                "start" => Request::Start {
                    target,
                    group: None,
                    wait,
                },
                "stop" => Request::Stop {
                    target,
                    group: None,
                    wait,
                },
                "restart" => Request::Restart {
                    target,
                    group: None,
                    wait,
                    all_at_once: flag(uri, "all-at-once", false)?,
                },
                "monitor" => Request::Monitor {
                    target,
                    group: None,
                },
                "unmonitor" => Request::Unmonitor {
                    target,
                    group: None,
                },
                "reload" => Request::ReloadJob { target },
                _ => {
                    return Err(error(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no action `{}`: start, stop, restart, reload, monitor, unmonitor",
                            crate::logtext::escape(action)
                        ),
                    ));
                }
            };
            act(shared, role, request).await
        }
        ["groups", group, action] => {
            want(method, &Method::POST, "POST")?;
            let group = percent_decode(group)
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, "a broken %-escape in the path"))?;
            // As for a job's name: a name no group can have is no group's, 404.
            if !crate::config::valid_name(&group) {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("no group named `{}`", crate::logtext::escape(&group)),
                ));
            }
            let request = group_request(action, group, wait).ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no action `{}` for a group: start, stop, restart, monitor, unmonitor",
                        crate::logtext::escape(action)
                    ),
                )
            })?;
            act(shared, role, request).await
        }
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "no such endpoint (see /api/v1/openapi.json)",
        )),
    }
}

/// The request of an action on a group's jobs: what `guardian ACTION -g GROUP` sends, so
/// that the daemon orders them as it does for the command line (dependency order, stop
/// in reverse).
pub(super) fn group_request(action: &str, group: String, wait: bool) -> Option<Request> {
    let group = Some(group);
    let target = String::new();
    Some(match action {
        "start" => Request::Start {
            target,
            group,
            wait,
        },
        "stop" => Request::Stop {
            target,
            group,
            wait,
        },
        "restart" => Request::Restart {
            target,
            group,
            wait,
            all_at_once: false,
        },
        "monitor" => Request::Monitor { target, group },
        "unmonitor" => Request::Unmonitor { target, group },
        _ => return None,
    })
}

/// `POST /api/v1/emit`: `{"event": NAME, "env": ["KEY=VALUE", ...]}`.
fn emit_request(body: &[u8], wait: bool) -> Result<Request, hyper::Response<Body>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Emit {
        event: String,
        #[serde(default)]
        env: Vec<String>,
    }
    let e: Emit = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is {{\"event\": NAME, \"env\": [\"KEY=VALUE\", ...]}}: {e}"),
        )
    })?;
    let mut env = Vec::with_capacity(e.env.len());
    for kv in e.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("`{}` is not KEY=VALUE", crate::logtext::escape(&kv)),
            ));
        };
        env.push((k.to_string(), v.to_string()));
    }
    Ok(Request::Emit {
        event: e.event,
        env,
        wait,
    })
}

async fn metrics(shared: &Shared) -> Answer {
    match call(shared, Request::Metrics).await? {
        Response::Metrics(text) => Ok(reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            full(text),
        )),
        other => Ok(outcome(other)),
    }
}

/// The last `n` lines of a file (all of it if shorter); none if it is not there yet.
fn last_lines(
    path: &std::path::Path,
    n: usize,
) -> std::io::Result<(Vec<u8>, Option<std::fs::File>)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(e),
    };
    let len = f.seek(SeekFrom::End(0))?;
    let mut pos = len;
    let mut tail: Vec<u8> = Vec::new();
    while pos > 0 && tail.iter().filter(|b| **b == b'\n').count() <= n {
        let step = pos.min(64 * 1024);
        pos -= step;
        f.seek(SeekFrom::Start(pos))?;
        let mut block = vec![0u8; usize::try_from(step).unwrap_or(0)];
        f.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
    }
    f.seek(SeekFrom::Start(len))?;
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            tail.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|i| *i < tail.len())
        .collect();
    let skip = starts.len().saturating_sub(n);
    let from = if n == 0 {
        tail.len()
    } else {
        starts.get(skip).copied().unwrap_or(0)
    };
    Ok((tail.split_off(from), Some(f)))
}

pub(super) async fn logs(
    shared: &Shared,
    job: String,
    path: PathBuf,
    lines: usize,
    follow: bool,
) -> Answer {
    let permit = if follow {
        match Arc::clone(&shared_follows(shared)).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many log streams open: try again later",
                ));
            }
        }
    } else {
        None
    };
    let p = path.clone();
    let read = tokio::task::spawn_blocking(move || last_lines(&p, lines))
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "guardian is shutting down"))?;
    let (tail, file) = read.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    if !follow {
        let text = String::from_utf8_lossy(&tail);
        let lines: Vec<&str> = text.lines().collect();
        return Ok(json_reply(
            StatusCode::OK,
            &json!({"job": job, "lines": lines}),
        ));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let _ = tx.try_send(Bytes::from(tail));
    let closing = shared.closing.clone();
    tokio::spawn(async move {
        let _permit = permit;
        follow_file(path, file, tx, closing).await;
    });
    let stream = ChannelBody { rx };
    let mut r = reply(StatusCode::OK, "text/plain; charset=utf-8", stream.boxed());
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(r)
}

fn shared_follows(shared: &Shared) -> Arc<tokio::sync::Semaphore> {
    Arc::clone(&shared.follows)
}

/// Sends what is added to the log as it comes, across rotations, until the client goes
/// or the server closes (then the stream ends, cleanly).
async fn follow_file(
    path: PathBuf,
    mut file: Option<std::fs::File>,
    tx: mpsc::Sender<Bytes>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tx.closed() => return,
            () = async { drop(closing.wait_for(|c| *c).await) } => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let p = path.clone();
        let step = tokio::task::spawn_blocking(move || read_more(&p, file)).await;
        let Ok((more, f)) = step else { return };
        file = f;
        if !more.is_empty() && tx.send(Bytes::from(more)).await.is_err() {
            return;
        }
    }
}

/// What was added to the file since the last read; reopens it after a rotation.
fn read_more(
    path: &std::path::Path,
    file: Option<std::fs::File>,
) -> (Vec<u8>, Option<std::fs::File>) {
    let mut out = Vec::new();
    let Some(mut f) = file.or_else(|| std::fs::File::open(path).ok()) else {
        return (out, None);
    };
    let _ = (&f).take(1024 * 1024).read_to_end(&mut out);
    let moved = match (std::fs::metadata(path), f.metadata()) {
        (Ok(now), Ok(open)) => {
            now.ino() != open.ino() || now.len() < f.stream_position().unwrap_or(0)
        }
        (Err(_), _) => false,
        _ => true,
    };
    if moved {
        return (out, std::fs::File::open(path).ok());
    }
    (out, Some(f))
}

/// A body that sends what a channel gives, chunk by chunk, until it closes.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("web").as_deref(), Some("web"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn statuses() {
        let done = Response::Done {
            message: String::new(),
        };
        let no = Response::No {
            message: String::new(),
        };
        let missing = Response::Error {
            message: "no job named `x`".into(),
        };
        let bad = Response::Error {
            message: "nope".into(),
        };
        assert_eq!(status_of(&done), StatusCode::OK);
        assert_eq!(status_of(&no), StatusCode::CONFLICT);
        assert_eq!(status_of(&missing), StatusCode::NOT_FOUND);
        assert_eq!(status_of(&bad), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn tails() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("l");
        std::fs::write(&p, "a\nb\nc\n").unwrap_or_else(|e| panic!("{e}"));
        let tail = |n| last_lines(&p, n).map(|(t, _)| t).unwrap_or_default();
        assert_eq!(tail(2), b"b\nc\n");
        assert_eq!(tail(10), b"a\nb\nc\n");
        assert_eq!(tail(0), b"");
        assert!(
            last_lines(&dir.path().join("none"), 3).is_ok_and(|(t, f)| t.is_empty() && f.is_none())
        );
    }
}
