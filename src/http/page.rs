//! The status page: `/` (every job, like `guardian summary`, with a row of actions per
//! group), `/jobs/NAME` (one job, its checks, its configuration and its log following
//! live), a login form and sessions for browsers.
//!
//! Everything it sends is in the binary: the HTML is made here, the one style sheet and
//! the one script are embedded, and nothing comes from another site. The pages are made
//! from the same status request `summary` sends, through the daemon's one channel;
//! the script asks for the part of the page that changes every two seconds.
//!
//! A browser logs in with a form and gets a session: a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` under TLS) that ends after [`SESSION_LIFETIME`],
//! on logout, or when the daemon stops. Every action is a `POST` that must carry the
//! session's CSRF token; the role is looked up in the users file on each request, so
//! a user removed or made read-only loses what they may do at the next `reload`.
//! Basic and Bearer credentials may read the pages too (scripts), but not act there:
//! the API is for that.

// A handler's error is the answer itself, made once per request: not worth a box.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::Shared;
use super::api::{self, Answer, Body, error, full, reply};
use super::auth::{Offered, Role, offered};
use crate::cli::output::{bytes, duration};
use crate::control::protocol::{CheckReport, Goal, JobState, JobStatus, Request, Response};

/// How long a session lasts after its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once; one more ends the one closest to its end.
pub const MAX_SESSIONS: usize = 1000;
/// The cookie that carries a session's id.
pub const COOKIE: &str = "guardian_session";

const CSS: &str = include_str!("page/app.css");
const JS: &str = include_str!("page/app.js");
const ICON: &str = include_str!("page/icon.svg");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the Content-Security-Policy allows: this server's own style sheet and script,
/// no inline script, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone)]
struct Session {
    user: String,
    csrf: String,
    expires: Instant,
}

/// The sessions open now, in memory only.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> Result<String, String> {
    let mut b = [0u8; 32];
    super::auth::getrandom(&mut b)?;
    let mut s = String::with_capacity(64);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    Ok(s)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self, user: &str) -> Result<(String, Session), String> {
        let id = random_hex()?;
        let now = Instant::now();
        let session = Session {
            user: user.to_string(),
            csrf: random_hex()?,
            expires: now.checked_add(SESSION_LIFETIME).unwrap_or(now),
        };
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(first) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&first);
        }
        map.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        self.lock().get(id).filter(|s| s.expires > now).cloned()
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How many sessions are open (expired ones included until the next login).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who asks for a page.
struct Who {
    user: String,
    role: Role,
    /// The session's id and its CSRF token, when logged in through the form.
    session: Option<(String, String)>,
}

/// Whether `path` is one of the page's: everything but the API and the metrics.
pub fn is_page(path: &str) -> bool {
    path == "/"
        || path == "/login"
        || path == "/logout"
        || path.starts_with("/jobs/")
        || path.starts_with("/groups/")
        || path.starts_with("/static/")
        || path == "/favicon.ico"
}

fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn who(
    shared: &Shared,
    headers: &http::HeaderMap,
) -> Result<Option<Who>, hyper::Response<Body>> {
    if let Some(id) = cookie(headers, COOKIE)
        && let Some(s) = shared.sessions.get(id)
        && let Some(role) = shared.auth().users.role_of(&s.user)
    {
        return Ok(Some(Who {
            user: s.user,
            role,
            session: Some((id.to_string(), s.csrf)),
        }));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    Ok(match value.to_str().ok().and_then(offered) {
        Some(Offered::Bearer(t)) => shared.auth().tokens.verify(&t).map(|role| Who {
            user: "token".to_string(),
            role,
            session: None,
        }),
        Some(Offered::Basic { user, password }) => {
            let role = api::verify_user(shared, user.clone(), password).await?;
            role.map(|role| Who {
                user,
                role,
                session: None,
            })
        }
        None => None,
    })
}

/// Answers a request for a page, with the headers every page carries.
pub async fn handle(
    shared: &Arc<Shared>,
    parts: http::request::Parts,
    incoming: Incoming,
) -> hyper::Response<Body> {
    let mut r = route(shared, &parts, incoming).await.unwrap_or_else(|r| r);
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, page: String) -> hyper::Response<Body> {
    reply(status, "text/html; charset=utf-8", full(page))
}

fn see_other(to: &str) -> hyper::Response<Body> {
    let mut r = reply(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", full(""));
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Where to go after a login or an action: a path of this server, else `/`.
fn local(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((api::percent_decode(k)?, api::percent_decode(v)?))
        })
        .collect()
}

/// A POST that another site's page made: the browser says so, or its Origin is not
/// this server's.
fn foreign(parts: &http::request::Parts) -> bool {
    let h = &parts.headers;
    if h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return true;
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    host.is_none() || authority != host
}

async fn route(shared: &Arc<Shared>, parts: &http::request::Parts, incoming: Incoming) -> Answer {
    let path = parts.uri.path();
    let method = &parts.method;
    if let Some(name) = path.strip_prefix("/static/") {
        return asset(method, name);
    }
    if path == "/favicon.ico" {
        return asset(method, "icon.svg");
    }
    let is_post = method == Method::POST;
    if !is_post && method != Method::GET {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, or POST for an action",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return Err(r);
    }
    let body = if is_post {
        if foreign(parts) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "a request from another site's page may not act",
            ));
        }
        api::body(shared, incoming).await?
    } else {
        bytes::Bytes::new()
    };
    let who = who(shared, &parts.headers).await?;
    let next = api::query(&parts.uri, "next");
    if path == "/login" {
        return if is_post {
            login(shared, &body).await
        } else if who.as_ref().is_some_and(|w| w.session.is_some()) {
            Ok(see_other(&local(next.as_deref())))
        } else {
            Ok(html(
                StatusCode::OK,
                login_page(&local(next.as_deref()), None),
            ))
        };
    }
    let Some(who) = who else {
        // No credentials: the login form, at the address asked for.
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        return Err(html(
            StatusCode::UNAUTHORIZED,
            login_page(&local(Some(&here)), None),
        ));
    };
    if path == "/logout" {
        if !is_post {
            return Err(error(StatusCode::METHOD_NOT_ALLOWED, "log out with POST"));
        }
        csrf_ok(&who, &parts.headers, &body)?;
        if let Some((id, _)) = &who.session {
            shared.sessions.close(id);
        }
        let mut r = see_other("/login");
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "guardian_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
            ),
        );
        return Ok(r);
    }
    let live = api::query(&parts.uri, "part").as_deref() == Some("live");
    if path == "/" {
        if is_post {
            return Err(error(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
        }
        return overview(shared, &who, live).await;
    }
    if let Some(rest) = path.strip_prefix("/groups/") {
        return match (rest.split('/').collect::<Vec<_>>().as_slice(), is_post) {
            ([name, "action"], true) => {
                let group = api::percent_decode(name)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        error(StatusCode::BAD_REQUEST, "a broken group name in the path")
                    })?;
                act(shared, &who, &parts.headers, &body, Target::Group(group)).await
            }
            _ => Err(error(StatusCode::NOT_FOUND, "no such page")),
        };
    }
    let rest = path.strip_prefix("/jobs/").unwrap_or("");
    let segments: Vec<&str> = rest.split('/').collect();
    let decoded = |s: &str| {
        api::percent_decode(s)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "a broken job name in the path"))
    };
    match (segments.as_slice(), is_post) {
        ([name], false) => job_page(shared, &who, &decoded(name)?, live).await,
        ([name, "logs"], false) => {
            let job = decoded(name)?;
            let lines = api::query(&parts.uri, "lines")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(200)
                .min(2000);
            let file = match api::call(shared, Request::Logs { job: job.clone() }).await? {
                Response::LogFile { path } => std::path::PathBuf::from(path),
                other => return Ok(api::outcome(other)),
            };
            api::logs(shared, job, file, lines, true).await
        }
        ([name, "action"], true) => {
            let job = decoded(name)?;
            act(shared, &who, &parts.headers, &body, Target::Job(job)).await
        }
        _ => Err(error(StatusCode::NOT_FOUND, "no such page")),
    }
}

fn asset(method: &Method, name: &str) -> Answer {
    if method != Method::GET {
        return Err(error(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
    }
    let (kind, text) = match name {
        "app.css" => ("text/css; charset=utf-8", CSS),
        "app.js" => ("text/javascript; charset=utf-8", JS),
        "icon.svg" => ("image/svg+xml", ICON),
        _ => return Err(error(StatusCode::NOT_FOUND, "no such file")),
    };
    let mut r = reply(StatusCode::OK, kind, full(text));
    // The address carries the version: a new release is a new address.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    Ok(r)
}

/// The CSRF token the request carries (field `csrf` or header `x-csrf-token`) must be
/// its session's.
fn csrf_ok(who: &Who, headers: &http::HeaderMap, body: &[u8]) -> Result<(), hyper::Response<Body>> {
    let Some((_, token)) = &who.session else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "actions on the page need a login through its form; scripts use the API",
        ));
    };
    let fields = form(body);
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| fields.get("csrf").cloned())
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or not this session's: reload the page",
        ))
    }
}

async fn login(shared: &Shared, body: &[u8]) -> Answer {
    let f = form(body);
    let user = f.get("user").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let next = local(f.get("next").map(String::as_str));
    let role = if super::auth::valid_user_name(&user) {
        api::verify_user(shared, user.clone(), password).await?
    } else {
        None
    };
    if role.is_none() {
        return Err(html(
            StatusCode::UNAUTHORIZED,
            login_page(&next, Some("Wrong user or password.")),
        ));
    }
    let (id, _) = shared
        .sessions
        .open(&user)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let secure = if shared.settings.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        SESSION_LIFETIME.as_secs()
    );
    let mut r = see_other(&next);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    tracing::info!("http: {user} logged in");
    Ok(r)
}

/// What a button of the page acts on.
enum Target {
    Job(String),
    /// Every job of the group, in the order `guardian ACTION -g GROUP` takes them.
    Group(String),
}

async fn act(
    shared: &Shared,
    who: &Who,
    headers: &http::HeaderMap,
    body: &[u8],
    target: Target,
) -> Answer {
    csrf_ok(who, headers, body)?;
    if who.role != Role::Admin {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("permission denied: {} may only read", who.user),
        ));
    }
    let f = form(body);
    let verb = f.get("verb").map(String::as_str);
    let target = match target {
        Target::Job(name) => name,
        Target::Group(group) => {
            if !crate::config::valid_name(&group) {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("no group named `{}`", crate::logtext::escape(&group)),
                ));
            }
            let request = verb
                .and_then(|v| api::group_request(v, group, true))
                .ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "the action is start, stop, restart, monitor or unmonitor",
                    )
                })?;
            let answer = api::call(shared, request).await?;
            return Ok(acted(headers, &f, answer));
        }
    };
    let request = match verb {
        Some("start") => Request::Start {
            target,
            group: None,
            wait: true,
        },
        Some("stop") => Request::Stop {
            target,
            group: None,
            wait: true,
        },
        Some("restart") => Request::Restart {
            target,
            group: None,
            wait: true,
            all_at_once: false,
        },
        Some("monitor") => Request::Monitor {
            target,
            group: None,
        },
        Some("unmonitor") => Request::Unmonitor {
            target,
            group: None,
        },
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the action is start, stop, restart, monitor or unmonitor",
            ));
        }
    };
    let answer = api::call(shared, request).await?;
    Ok(acted(headers, &f, answer))
}

/// The answer to an action: the outcome for the page's script, else back to the page.
fn acted(
    headers: &http::HeaderMap,
    f: &HashMap<String, String>,
    answer: Response,
) -> hyper::Response<Body> {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        api::outcome(answer)
    } else {
        see_other(&local(f.get("next").map(String::as_str)))
    }
}

async fn status(
    shared: &Shared,
    job: Option<String>,
) -> Result<(Vec<JobStatus>, Vec<CheckReport>), Answer> {
    match api::call(shared, Request::Status { job, group: None })
        .await
        .map_err(Err)?
    {
        Response::Jobs { jobs, host } => Ok((jobs, host)),
        other => Err(Ok(api::outcome(other))),
    }
}

async fn overview(shared: &Shared, who: &Who, live: bool) -> Answer {
    let (jobs, host) = match status(shared, None).await {
        Ok(s) => s,
        Err(a) => return a,
    };
    let mut out = String::with_capacity(1024 + jobs.len() * 700);
    if !live {
        head(&mut out, "Jobs", who, "/?part=live");
    }
    overview_live(&mut out, &jobs, &host, who);
    if !live {
        foot(&mut out);
    }
    Ok(html(StatusCode::OK, out))
}

async fn job_page(shared: &Shared, who: &Who, name: &str, live: bool) -> Answer {
    let (mut jobs, _) = match status(shared, Some(name.to_string())).await {
        Ok(s) => s,
        Err(a) => return a,
    };
    let Some(job) = jobs.pop() else {
        return Err(error(StatusCode::NOT_FOUND, "no such job"));
    };
    let mut out = String::with_capacity(8 * 1024);
    if !live {
        let self_url = format!("/jobs/{}?part=live", enc(name));
        head(&mut out, name, who, &self_url);
    }
    job_live(&mut out, &job, who);
    if !live {
        out.push_str("</div>");
        let request = Request::Config {
            job: job.name.clone(),
            hide_secrets: who.role != Role::Admin,
        };
        if let Response::Config { text, .. } = api::call(shared, request).await? {
            out.push_str("<section class=card><h2>Configuration</h2><pre class=config>");
            esc(&mut out, &text);
            out.push_str("</pre></section>");
        }
        let _ = write!(
            out,
            "<section class=card><h2>Log <span class=muted id=logstate>following</span></h2><pre id=log data-src=\"/jobs/{}/logs?lines=200\"></pre></section>",
            enc(name)
        );
        out.push_str("</main></body></html>\n");
    }
    Ok(html(StatusCode::OK, out))
}

/// HTML-escapes `s` into `out`.
fn esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    esc(&mut out, s);
    out
}

/// Percent-encodes a job's name for a path segment.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The login form; `next` is where to go once logged in.
fn login_page(next: &str, message: Option<&str>) -> String {
    let host = escaped(&hostname());
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>Log in · guardian on {host}</title><link rel=stylesheet href=\"/static/app.css?v={VERSION}\"><link rel=icon href=\"/static/icon.svg?v={VERSION}\"></head><body><form class=login method=post action=\"/login\"><h1>guardian <span class=muted>{host}</span></h1>"
    );
    if let Some(m) = message {
        let _ = write!(out, "<p class=err>{}</p>", escaped(m));
    }
    let _ = write!(
        out,
        "<input type=hidden name=next value=\"{}\"><label for=user>User</label><input id=user name=user autocomplete=username autocapitalize=none required autofocus><label for=password>Password</label><input id=password name=password type=password autocomplete=current-password required><button>Log in</button></form></body></html>",
        escaped(next)
    );
    out.push('\n');
    out
}

fn head(out: &mut String, title: &str, who: &Who, live_url: &str) {
    let host = escaped(&hostname());
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>{} · guardian on {host}</title><link rel=stylesheet href=\"/static/app.css?v={VERSION}\"><link rel=icon href=\"/static/icon.svg?v={VERSION}\"><script src=\"/static/app.js?v={VERSION}\" defer></script></head><body data-live=\"{}\"><header class=top><a class=brand href=\"/\">guardian</a><span class=host>{host}</span><span class=grow></span><span class=who>{} <span class=role>{}</span></span>",
        escaped(title),
        escaped(live_url),
        escaped(&who.user),
        who.role.as_str(),
    );
    if let Some((_, csrf)) = &who.session {
        let _ = write!(
            out,
            "<form method=post action=\"/logout\"><input type=hidden name=csrf value=\"{csrf}\"><button class=link>Log out</button></form>"
        );
    }
    out.push_str("</header><main><div id=toast role=status></div><div id=live>");
}

fn foot(out: &mut String) {
    out.push_str("</div></main></body></html>\n");
}

fn state_class(s: JobState) -> &'static str {
    match s {
        JobState::Running => "ok",
        JobState::Failed | JobState::Killed => "bad",
        JobState::Waiting => "off",
        _ => "busy",
    }
}

fn health_class(h: &str) -> &'static str {
    match h {
        "healthy" | "done" => "ok",
        "unhealthy" | "failing" => "bad",
        _ => "off",
    }
}

fn dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

/// The buttons of a job's actions, in one form, for an admin logged in by the form.
fn actions(out: &mut String, j: &JobStatus, who: &Who, next: &str) {
    let Some((_, csrf)) = &who.session else {
        return;
    };
    if who.role != Role::Admin {
        return;
    }
    let _ = write!(
        out,
        "<form class=acts method=post action=\"/jobs/{}/action\"><input type=hidden name=csrf value=\"{csrf}\"><input type=hidden name=next value=\"{}\">",
        enc(&j.name),
        escaped(next)
    );
    let mut button = |a: &str, cls: &str| {
        let _ = write!(
            out,
            "<button name=verb value={a} class=\"{cls}\">{a}</button>"
        );
    };
    if j.goal == Goal::Start {
        button("restart", "");
        button("stop", "warn");
    } else {
        button("start", "");
    }
    if j.monitored {
        button("unmonitor", "quiet");
    } else {
        button("monitor", "quiet");
    }
    out.push_str("</form>");
}

/// A row of buttons per group, for an admin logged in by the form: each acts on every
/// job of the group, as `guardian ACTION -g GROUP` does.
fn group_actions(out: &mut String, jobs: &[JobStatus], who: &Who) {
    let Some((_, csrf)) = &who.session else {
        return;
    };
    if who.role != Role::Admin {
        return;
    }
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for g in jobs.iter().flat_map(|j| j.groups.iter()) {
        match groups.iter_mut().find(|(n, _)| *n == g.as_str()) {
            Some((_, count)) => *count += 1,
            None => groups.push((g.as_str(), 1)),
        }
    }
    if groups.is_empty() {
        return;
    }
    groups.sort_unstable();
    out.push_str("<section class=groups>");
    for (g, count) in groups {
        let _ = write!(
            out,
            "<div class=group data-group=\"{}\"><span class=gname>{}</span> <span class=muted>{count} {}</span><form class=acts method=post action=\"/groups/{}/action\"><input type=hidden name=csrf value=\"{csrf}\"><input type=hidden name=next value=\"/\">",
            escaped(g),
            escaped(g),
            if count == 1 { "job" } else { "jobs" },
            enc(g),
        );
        for (verb, cls) in [
            ("start", ""),
            ("stop", "warn"),
            ("restart", ""),
            ("monitor", "quiet"),
            ("unmonitor", "quiet"),
        ] {
            let _ = write!(
                out,
                "<button name=verb value={verb} class=\"{cls}\">{verb}</button>"
            );
        }
        out.push_str("</form></div>");
    }
    out.push_str("</section>");
}

fn check_outcome(c: &CheckReport) -> (&'static str, &'static str) {
    match c.passed {
        Some(true) => ("ok", "passed"),
        Some(false) => ("bad", "failed"),
        None => ("off", "not run"),
    }
}

fn overview_live(out: &mut String, jobs: &[JobStatus], host: &[CheckReport], who: &Who) {
    let running = jobs.iter().filter(|j| j.state == JobState::Running).count();
    let failed = jobs
        .iter()
        .filter(|j| j.state == JobState::Failed || j.health == "unhealthy")
        .count();
    let unmonitored = jobs.iter().filter(|j| !j.monitored).count();
    let _ = write!(
        out,
        "<div class=counts><span><b>{}</b> jobs</span><span class=ok><b>{running}</b> running</span>",
        jobs.len()
    );
    if failed > 0 {
        let _ = write!(out, "<span class=bad><b>{failed}</b> failing</span>");
    }
    if unmonitored > 0 {
        let _ = write!(
            out,
            "<span class=off><b>{unmonitored}</b> unmonitored</span>"
        );
    }
    out.push_str("</div>");
    group_actions(out, jobs, who);
    if !host.is_empty() {
        out.push_str("<section class=hostchecks>");
        for c in host {
            let (cls, word) = check_outcome(c);
            let _ = write!(
                out,
                "<div class=\"hc {cls}\" title=\"{} {}: {word}\"><span class=dot></span><b>{}</b> {}</div>",
                escaped(&c.kind),
                escaped(&c.target),
                escaped(&c.name),
                escaped(c.reason.as_deref().unwrap_or(word))
            );
        }
        out.push_str("</section>");
    }
    let admin = who.role == Role::Admin && who.session.is_some();
    out.push_str("<table class=jobs><thead><tr><th data-sort>Name</th><th data-sort>State</th><th data-sort>Health</th><th data-sort class=\"num o3\">PID</th><th data-sort class=num>Uptime</th><th data-sort class=\"num o1\">CPU</th><th data-sort class=\"num o1\">Memory</th><th data-sort class=\"num o2\">Restarts</th><th data-sort class=o3>Monitored</th>");
    if admin {
        out.push_str("<th class=actions></th>");
    }
    out.push_str("</tr></thead><tbody>");
    for j in jobs {
        let name = escaped(&j.name);
        let st = j.state.as_str();
        let _ = write!(
            out,
            "<tr data-job=\"{name}\"><td class=name><a href=\"/jobs/{}\">{name}</a>",
            enc(&j.name)
        );
        if let Some(d) = &j.description {
            let _ = write!(out, "<span class=desc>{}</span>", escaped(d));
        }
        let _ = write!(
            out,
            "</td><td class=state><span class=\"badge {}\">{st}</span>",
            state_class(j.state)
        );
        if j.goal == Goal::Stop && j.state != JobState::Waiting {
            out.push_str(" <span class=muted>→ stop</span>");
        }
        let _ = write!(
            out,
            "</td><td class=health><span class=\"dot {}\"></span><span class=htext>{}</span></td>",
            health_class(&j.health),
            escaped(&j.health)
        );
        let _ = write!(
            out,
            "<td class=\"pid num o3\">{}</td><td class=num data-v=\"{}\">{}</td><td class=\"num o1\" data-v=\"{}\">{}</td><td class=\"num o1\" data-v=\"{}\">{}</td><td class=\"num o2\">{}</td><td class=o3>{}</td>",
            dash(j.pid, |p| p.to_string()),
            j.uptime_secs.unwrap_or(-1.0),
            dash(j.uptime_secs, duration),
            j.cpu_secs.unwrap_or(-1.0),
            dash(j.cpu_secs, |c| format!("{c:.1}s")),
            j.rss_bytes.map_or(-1.0, |b| b as f64),
            dash(j.rss_bytes, bytes),
            j.restarts,
            if j.monitored {
                "yes"
            } else {
                "<span class=muted>no</span>"
            },
        );
        if admin {
            out.push_str("<td class=actions>");
            actions(out, j, who, "/");
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if jobs.is_empty() {
        out.push_str("<p class=muted>No jobs: put a job's file into the jobs directory and run <code>guardian reload</code>.</p>");
    }
}

fn fact(out: &mut String, label: &str, value: &str) {
    let _ = write!(out, "<dt>{label}</dt><dd>{value}</dd>");
}

fn job_live(out: &mut String, j: &JobStatus, who: &Who) {
    let name = escaped(&j.name);
    let _ = write!(
        out,
        "<div class=jobhead><h1>{name}</h1><span class=\"badge {}\">{}</span><span class=health><span class=\"dot {}\"></span>{}</span><span class=grow></span>",
        state_class(j.state),
        j.state.as_str(),
        health_class(&j.health),
        escaped(&j.health)
    );
    actions(out, j, who, &format!("/jobs/{}", enc(&j.name)));
    out.push_str("</div>");
    if let Some(d) = &j.description {
        let _ = write!(out, "<p class=muted>{}</p>", escaped(d));
    }
    out.push_str("<section class=card><dl class=facts>");
    fact(out, "pid", &dash(j.pid, |p| p.to_string()));
    fact(out, "uptime", &dash(j.uptime_secs, duration));
    fact(out, "cpu", &dash(j.cpu_secs, |c| format!("{c:.2}s")));
    fact(out, "memory", &dash(j.rss_bytes, bytes));
    fact(out, "restarts", &j.restarts.to_string());
    fact(out, "monitored", if j.monitored { "yes" } else { "no" });
    fact(out, "goal", j.goal.as_str());
    fact(
        out,
        "stopped by hand",
        if j.manual_stop { "yes" } else { "no" },
    );
    if let Some(s) = j.respawn_in_secs {
        fact(out, "respawn in", &format!("{s:.1}s"));
    }
    if let Some(c) = &j.cgroup {
        fact(out, "cgroup", &escaped(c));
    }
    if let Some(c) = &j.cpu_from {
        fact(out, "cpu from", &escaped(c));
    }
    if let Some(c) = &j.rss_from {
        fact(out, "memory from", &escaped(c));
    }
    out.push_str("</dl></section>");
    if let Some(f) = &j.last_failure {
        let _ = write!(
            out,
            "<section class=\"card failure\"><h2>Last failure</h2><p><b>{}</b> {} <span class=muted>at {}</span></p></section>",
            escaped(&f.process),
            escaped(&f.status),
            escaped(&f.at)
        );
    }
    out.push_str("<section class=card><h2>Checks</h2>");
    if j.checks.is_empty() {
        out.push_str("<p class=muted>No checks configured.</p>");
    } else {
        out.push_str("<table class=checks><thead><tr><th>Check</th><th>Last outcome</th><th class=o1>Kind</th><th class=o2>Target</th><th class=o2>On failure</th><th class=\"num o1\">Latency</th><th class=\"num o2\">Runs</th><th class=\"num o2\">Failures</th><th class=o3>At</th></tr></thead><tbody>");
        for c in &j.checks {
            let (cls, word) = check_outcome(c);
            let _ = write!(
                out,
                "<tr><td>{}</td><td><span class=\"dot {cls}\"></span>{word}<span class=desc>{}</span></td><td class=o1>{}</td><td class=\"o2 mono\">{}</td><td class=o2>{}</td><td class=\"num o1\">{}</td><td class=\"num o2\">{}</td><td class=\"num o2\">{}</td><td class=\"o3 muted\">{}</td></tr>",
                escaped(&c.name),
                escaped(c.reason.as_deref().unwrap_or("")),
                escaped(&c.kind),
                escaped(&c.target),
                escaped(&c.action),
                dash(c.latency_ms, |l| format!("{l:.1} ms")),
                c.runs,
                c.failures,
                escaped(c.at.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
    if let Some(ps) = &j.processes
        && !ps.is_empty()
    {
        out.push_str("<section class=card><h2>Processes</h2><table class=procs><thead><tr><th class=num>PID</th><th class=\"num o2\">PPID</th><th>Command</th></tr></thead><tbody>");
        for p in ps {
            let _ = write!(
                out,
                "<tr><td class=num>{}</td><td class=\"num o2\">{}</td><td class=mono>{}</td></tr>",
                p.pid,
                p.ppid,
                escaped(&p.command)
            );
        }
        out.push_str("</tbody></table></section>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_next() {
        assert_eq!(local(Some("/jobs/web")), "/jobs/web");
        assert_eq!(local(Some("//evil.example/")), "/");
        assert_eq!(local(Some("https://evil.example/")), "/");
        assert_eq!(local(Some("/\\evil")), "/");
        assert_eq!(local(None), "/");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escaped("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(enc("web 1/x"), "web%201%2Fx");
    }

    #[test]
    fn forms_and_cookies() {
        let f = form(b"user=ann&password=a%26b+c&next=%2Fjobs%2Fweb");
        assert_eq!(f.get("password").map(String::as_str), Some("a&b c"));
        assert_eq!(f.get("next").map(String::as_str), Some("/jobs/web"));
        let mut h = http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; guardian_session=abc"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
    }

    #[test]
    fn sessions_end() {
        let s = Sessions::default();
        let (id, session) = s.open("ann").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert!(s.get(&id).is_some());
        s.close(&id);
        assert!(s.get(&id).is_none());
    }
}
