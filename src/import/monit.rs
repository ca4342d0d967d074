//! monitrc (with the files its `include` names) to job files and guardian.toml settings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::writer::{self, Doc, Table};
use super::{At, Command, Error, Output};

#[derive(Debug, Clone)]
struct Tok {
    text: String,
    quoted: bool,
    file: PathBuf,
    line: usize,
    /// The comment lines just above this token's line, for the first token of a line.
    comments: Vec<String>,
}

impl Tok {
    fn is(&self, word: &str) -> bool {
        !self.quoted && self.text.eq_ignore_ascii_case(word)
    }
}

/// The tokens of `text`; `include` lines are replaced by the tokens of their files.
fn tokenize(file: &Path, text: &str, depth: usize, out: &mut Vec<Tok>) -> Result<(), Error> {
    if depth > 8 {
        return Err(Error::new(file, 0, "includes nest more than 8 deep"));
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut pending: Vec<String> = Vec::new();
    let mut raw_brace: Option<(String, usize)> = None;
    let start_len = out.len();
    for (i, line) in lines.iter().enumerate() {
        let line_no = i.saturating_add(1);
        if let Some((mut acc, at)) = raw_brace.take() {
            // Inside mail-format { ... }: kept as written, up to the closing brace.
            match line.find('}') {
                Some(j) => {
                    acc.push('\n');
                    acc.push_str(&line[..j]);
                    push(out, file, at, &acc, true, Vec::new());
                    push(out, file, line_no, "}", false, Vec::new());
                    tokenize_line(
                        file,
                        line_no,
                        &line[j.saturating_add(1)..],
                        out,
                        &mut Vec::new(),
                        &mut raw_brace,
                    );
                }
                None => {
                    acc.push('\n');
                    acc.push_str(line);
                    raw_brace = Some((acc, at));
                }
            }
            continue;
        }
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            pending.push(c.to_string());
            continue;
        }
        tokenize_line(file, line_no, line, out, &mut pending, &mut raw_brace);
    }
    if raw_brace.is_some() {
        return Err(Error::new(file, lines.len(), "`{` without `}`"));
    }
    // Includes: `include GLOB` replaced by the included files' tokens.
    let mut i = start_len;
    while i < out.len() {
        if out[i].is("include") {
            let Some(pattern) = out.get(i.saturating_add(1)).map(|t| t.text.clone()) else {
                return Err(Error::new(file, out[i].line, "`include` without a file"));
            };
            let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut included = Vec::new();
            for f in super::glob(&base, &pattern) {
                let t = super::read_text(&f)?;
                tokenize(&f, &t, depth.saturating_add(1), &mut included)?;
            }
            let n = included.len();
            out.splice(i..i.saturating_add(2), included);
            i = i.saturating_add(n);
            continue;
        }
        i = i.saturating_add(1);
    }
    Ok(())
}

fn push(
    out: &mut Vec<Tok>,
    file: &Path,
    line: usize,
    text: &str,
    quoted: bool,
    comments: Vec<String>,
) {
    out.push(Tok {
        text: text.to_string(),
        quoted,
        file: file.to_path_buf(),
        line,
        comments,
    });
}

fn tokenize_line(
    file: &Path,
    line_no: usize,
    line: &str,
    out: &mut Vec<Tok>,
    pending: &mut Vec<String>,
    raw_brace: &mut Option<(String, usize)>,
) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0usize;
    let mut first = true;
    let mut take_comments = |first: &mut bool| {
        if *first {
            *first = false;
            std::mem::take(pending)
        } else {
            Vec::new()
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i = i.saturating_add(1);
            continue;
        }
        if c == '#' {
            break;
        }
        if c == '"' || c == '\'' {
            let mut s = String::new();
            i = i.saturating_add(1);
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && i.saturating_add(1) < chars.len() {
                    i = i.saturating_add(1);
                }
                s.push(chars[i]);
                i = i.saturating_add(1);
            }
            i = i.saturating_add(1);
            let cm = take_comments(&mut first);
            push(out, file, line_no, &s, true, cm);
            continue;
        }
        if matches!(c, '{' | '}' | '(' | ')' | ',') {
            let cm = take_comments(&mut first);
            push(out, file, line_no, &c.to_string(), false, cm);
            i = i.saturating_add(1);
            // mail-format { ... } is free text.
            let n = out.len();
            if c == '{' && n >= 2 && out[n.saturating_sub(2)].is("mail-format") {
                let rest: String = chars[i..].iter().collect();
                match rest.find('}') {
                    Some(j) => {
                        push(out, file, line_no, &rest[..j], true, Vec::new());
                        push(out, file, line_no, "}", false, Vec::new());
                        i = i
                            .saturating_add(rest[..j].chars().count())
                            .saturating_add(1);
                    }
                    None => {
                        *raw_brace = Some((rest, line_no));
                        return;
                    }
                }
            }
            continue;
        }
        if matches!(c, '<' | '>' | '=' | '!') {
            let mut s = String::new();
            while i < chars.len() && matches!(chars[i], '<' | '>' | '=' | '!') {
                s.push(chars[i]);
                i = i.saturating_add(1);
            }
            let cm = take_comments(&mut first);
            push(out, file, line_no, &s, false, cm);
            continue;
        }
        let mut s = String::new();
        while i < chars.len()
            && !chars[i].is_whitespace()
            && !matches!(
                chars[i],
                '{' | '}' | '(' | ')' | ',' | '"' | '\'' | '<' | '>' | '=' | '#'
            )
        {
            s.push(chars[i]);
            i = i.saturating_add(1);
        }
        let cm = take_comments(&mut first);
        push(out, file, line_no, &s, false, cm);
    }
}

const TOP: &[&str] = &["set", "check"];
const IN_CHECK: &[&str] = &[
    "set", "check", "if", "start", "stop", "restart", "depends", "group", "every", "mode", "alert",
    "noalert", "onreboot",
];

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    lines: std::collections::HashMap<PathBuf, Vec<String>>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.t.get(self.i).cloned();
        self.i = self.i.saturating_add(1);
        t
    }
    fn eat(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.is(word)) {
            self.i = self.i.saturating_add(1);
            true
        } else {
            false
        }
    }
    /// Tokens up to the next statement of `level`.
    fn rest(&mut self, level: &[&str]) -> Vec<Tok> {
        let mut v = Vec::new();
        while let Some(t) = self.peek() {
            if level.iter().any(|w| t.is(w)) {
                break;
            }
            v.push(t.clone());
            self.i = self.i.saturating_add(1);
        }
        v
    }
    fn at(&self, tok: &Tok) -> At {
        let text = self
            .lines
            .get(&tok.file)
            .and_then(|l| l.get(tok.line.saturating_sub(1)))
            .cloned()
            .unwrap_or_else(|| tok.text.clone());
        At {
            file: tok.file.clone(),
            line: tok.line,
            text,
        }
    }
}

/// A condition's `for N cycles` / `N times within M cycles` / `N cycles`, removed.
fn cycles(cond: &mut Vec<Tok>) -> Option<(u64, u64)> {
    let num = |t: &Tok| t.text.parse::<u64>().ok();
    for i in 0..cond.len() {
        let w = |k: usize| cond.get(i.saturating_add(k));
        // N times within M cycles (with an optional `for` before it)
        if let (Some(n), Some(t), Some(wi), Some(m), Some(c)) = (w(0), w(1), w(2), w(3), w(4))
            && t.is("times")
            && wi.is("within")
            && c.is("cycles")
            && let (Some(n), Some(m)) = (num(n), num(m))
        {
            let start = if i > 0 && cond[i.saturating_sub(1)].is("for") {
                i.saturating_sub(1)
            } else {
                i
            };
            cond.drain(start..i.saturating_add(5));
            return Some((n, m));
        }
        if let (Some(n), Some(c)) = (w(0), w(1))
            && c.is("cycles")
            && let Some(n) = num(n)
        {
            let start = if i > 0 && cond[i.saturating_sub(1)].is("for") {
                i.saturating_sub(1)
            } else {
                i
            };
            cond.drain(start..i.saturating_add(2));
            return Some((n, n));
        }
    }
    None
}

/// `then ACTION`: guardian's action, and whether it is exact.
fn action(p: &mut Parser<'_>) -> (Option<String>, Option<String>) {
    let Some(a) = p.next() else {
        return (None, Some("no action after `then`".into()));
    };
    let lower = a.text.to_lowercase();
    let r = match lower.as_str() {
        "alert" => (Some(writer::string_inline("alert")), None),
        "restart" => (Some(writer::string_inline("restart")), None),
        "stop" => (Some(writer::string_inline("stop")), None),
        "unmonitor" => (Some(writer::string_inline("unmonitor")), None),
        "start" => (
            Some(writer::string_inline("restart")),
            Some("`then start`: guardian restarts the job".to_string()),
        ),
        "exec" => {
            let cmd = p.next().map(|t| t.text).unwrap_or_default();
            let mut why = None;
            while p.peek().is_some_and(|t| {
                t.is("as")
                    || t.is("uid")
                    || t.is("gid")
                    || t.is("and")
                    || t.is("repeat")
                    || t.is("every")
            }) {
                let w = p.next();
                if w.as_ref()
                    .is_some_and(|t| t.is("uid") || t.is("gid") || t.is("every"))
                {
                    p.next();
                    if w.as_ref().is_some_and(|t| t.is("every")) {
                        p.eat("cycles");
                    }
                }
                why = Some("`as uid` / `repeat every`: the program runs as the job's user, once per failing period".to_string());
            }
            (
                Some(format!("{{ script = {} }}", writer::string_inline(&cmd))),
                why,
            )
        }
        _ => (
            None,
            Some(format!("`then {}` is not an action guardian has", a.text)),
        ),
    };
    // else if succeeded then ACTION: guardian alerts when a check recovers.
    if p.eat("else") {
        p.eat("if");
        p.next();
        p.eat("then");
        p.next();
    }
    r
}

#[derive(Default)]
struct Proc {
    name: String,
    at: Option<At>,
    comments: Vec<String>,
    doc: Doc,
    depends: Vec<(At, String)>,
    groups: Vec<String>,
    checks: Vec<Table>,
    every_cycles: u64,
    has_start: bool,
}

/// What a size or percentage in a condition says: "80%", "200 MB".
fn amount(toks: &[Tok]) -> Option<String> {
    let mut it = toks.iter().filter(|t| {
        !(t.is(">") || t.is("greater") || t.is("than") || t.is("gt") || t.is("is") || t.is("usage"))
    });
    let n = it.next()?;
    let unit = it.next().map(|t| t.text.clone()).unwrap_or_default();
    let (num, unit) = match n.text.strip_suffix('%') {
        Some(num) => (num.to_string(), "%".to_string()),
        None => (n.text.clone(), unit),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)?;
    let unit = match unit.to_lowercase().as_str() {
        "%" => "%",
        "b" | "byte" | "bytes" => "B",
        "kb" | "k" | "kilobyte" | "kilobytes" => "KB",
        "mb" | "m" | "megabyte" | "megabytes" => "MB",
        "gb" | "g" | "gigabyte" | "gigabytes" => "GB",
        "" => "",
        _ => return None,
    };
    // guardian's sizes are integers with a unit; "200.0 MB" is 200MB.
    let num = match num.split_once('.') {
        Some((a, b)) if b.chars().all(|c| c == '0') => a.to_string(),
        _ => num,
    };
    Some(format!("{num}{unit}"))
}

fn is_greater(toks: &[Tok]) -> bool {
    toks.iter()
        .any(|t| t.is(">") || t.is(">=") || t.is("greater") || t.is("gt"))
}

pub fn import(file: &Path, existing: &BTreeSet<String>) -> Result<Output, Error> {
    let mut out = Output::default();
    let text = super::read_text(file)?;
    let mut toks = Vec::new();
    tokenize(file, &text, 0, &mut toks)?;
    let mut lines = std::collections::HashMap::new();
    for t in &toks {
        if !lines.contains_key(&t.file) {
            let text = super::read_text(&t.file).unwrap_or_default();
            lines.insert(
                t.file.clone(),
                text.lines().map(str::to_string).collect::<Vec<_>>(),
            );
        }
    }
    let mut p = Parser {
        t: &toks,
        i: 0,
        lines,
    };
    let mut cycle: u64 = 30;
    let mut cycle_given = false;
    let mut procs: Vec<Proc> = Vec::new();
    let mut settings = Doc::default();
    let mut alert = Table::new("[alert]");
    let mut host_checks: Vec<Table> = Vec::new();
    let mut to: Vec<String> = Vec::new();
    let mut from: Option<String> = None;
    let mut smtp: Vec<String> = Vec::new();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());

    while let Some(tok) = p.next() {
        let at = p.at(&tok);
        if tok.is("set") {
            let what = p.next().map(|t| t.text.to_lowercase()).unwrap_or_default();
            match what.as_str() {
                "daemon" => {
                    let n = p.next().and_then(|t| t.text.parse::<u64>().ok());
                    match n {
                        Some(n) if n > 0 => {
                            cycle = n;
                            cycle_given = true;
                        }
                        _ => out.drop_line(&at, "expected `set daemon SECONDS`"),
                    }
                    let rest = p.rest(TOP);
                    if !rest.is_empty() {
                        out.approx(&at, "guardian starts its checks when the job runs; `with start delay` has no equivalent (a check's `grace` is per check)");
                    }
                }
                "mailserver" => {
                    let rest = p.rest(TOP);
                    let mut servers: Vec<(String, Option<String>)> = Vec::new();
                    let mut i = 0usize;
                    let mut user = None;
                    let mut password = false;
                    let mut tls = None;
                    while i < rest.len() {
                        let t = &rest[i];
                        if t.is(",") {
                        } else if t.is("port") {
                            i = i.saturating_add(1);
                            if let (Some(last), Some(port)) = (servers.last_mut(), rest.get(i)) {
                                last.1 = Some(port.text.clone());
                            }
                        } else if t.is("username") {
                            i = i.saturating_add(1);
                            user = rest.get(i).map(|t| t.text.clone());
                        } else if t.is("password") {
                            i = i.saturating_add(1);
                            password = true;
                        } else if t.is("using") {
                            i = i.saturating_add(1);
                            tls = rest.get(i).map(|t| t.text.to_lowercase());
                        } else if t.is("with")
                            || t.is("timeout")
                            || t.is("seconds")
                            || t.is("hostname")
                            || t.text.parse::<u64>().is_ok()
                        {
                            if t.is("hostname") {
                                i = i.saturating_add(1);
                            }
                        } else {
                            servers.push((t.text.clone(), None));
                        }
                        i = i.saturating_add(1);
                    }
                    for (h, port) in servers {
                        smtp.push(match port {
                            Some(p) => format!("{h}:{p}"),
                            None => h,
                        });
                    }
                    if let Some(tls) = tls {
                        let v = if tls.starts_with("ssl") {
                            "tls"
                        } else {
                            "starttls"
                        };
                        alert.set(
                            vec![format!(" Monit: using {tls}")],
                            "tls",
                            writer::string_inline(v),
                        );
                    }
                    if let Some(u) = user {
                        let why = "guardian reads the SMTP password from a file: write it to /etc/guardian/smtp-password (mode 0600) and uncomment both lines";
                        out.approx(&at, why);
                        let mut e = writer::Entry::new("user", writer::string_inline(&u));
                        e.disabled = Some(why.into());
                        alert.entries.push(e);
                        let mut e = writer::Entry::new(
                            "password-file",
                            writer::string_inline("/etc/guardian/smtp-password"),
                        );
                        e.disabled = Some("the password was not copied out of the monitrc".into());
                        alert.entries.push(e);
                    } else if password {
                        out.drop_line(&at, "a password without a username is not used");
                    }
                }
                "alert" => {
                    let rest = p.rest(TOP);
                    match rest.first() {
                        Some(addr) => {
                            to.push(addr.text.clone());
                            if rest.len() > 1 {
                                out.approx(&at, "the recipient gets every kind of alert: Monit's event filter and reminder were not carried over (see `on`, `not-on` and `reminder` in docs/alerts.md)");
                            }
                        }
                        None => out.drop_line(&at, "`set alert` without an address"),
                    }
                }
                "mail-format" => {
                    let rest = p.rest(TOP);
                    let body = rest
                        .iter()
                        .find(|t| t.quoted)
                        .map(|t| t.text.clone())
                        .unwrap_or_default();
                    let (f, s, m) = mail_format(&body, &host);
                    if let Some(f) = f {
                        from = Some(f);
                    }
                    let mut approx = false;
                    if let Some((s, a)) = s {
                        alert.set(
                            vec![" Monit: mail-format subject".into()],
                            "subject",
                            writer::string_inline(&s),
                        );
                        approx |= a;
                    }
                    if let Some((m, a)) = m {
                        alert.set(
                            vec![" Monit: mail-format message".into()],
                            "body",
                            writer::string_inline(&m),
                        );
                        approx |= a;
                    }
                    if approx {
                        out.approx(&at, "a $VARIABLE guardian has no placeholder for was left as written; $SERVICE $EVENT $DESCRIPTION $ACTION $HOST $DATE became {job} {event} {description} {action} {host} {time}");
                    }
                }
                other => {
                    p.rest(TOP);
                    let why = match other {
                        "httpd" => {
                            "guardian has no web interface; its control socket is `socket` in guardian.toml"
                        }
                        "logfile" => {
                            "guardian logs to stderr (its service manager keeps the log); job logs are in `log-dir`"
                        }
                        "pidfile" | "idfile" | "statefile" => {
                            "guardian keeps its state in `state-dir`"
                        }
                        "eventqueue" => {
                            "guardian keeps undelivered alerts in STATE-DIR/outbox/, always"
                        }
                        _ => "guardian has no such setting",
                    };
                    out.drop_line(&at, format!("`set {other}`: {why}"));
                }
            }
            continue;
        }
        if tok.is("check") {
            let kind = p.next().map(|t| t.text.to_lowercase()).unwrap_or_default();
            let name = p.next().map(|t| t.text).unwrap_or_default();
            let head = p.rest(IN_CHECK);
            match kind.as_str() {
                "process" => {
                    let mut pr = Proc {
                        name: name.clone(),
                        at: Some(at.clone()),
                        comments: tok.comments.clone(),
                        every_cycles: 1,
                        ..Proc::default()
                    };
                    let pidfile = head
                        .iter()
                        .position(|t| t.is("pidfile"))
                        .and_then(|i| head.get(i.saturating_add(1)));
                    if let Some(pf) = pidfile {
                        if Path::new(&pf.text).is_absolute() {
                            pr.doc.set(vec![], "pidfile", writer::string(&pf.text));
                        } else {
                            out.drop_line(&at, "the pid file is not an absolute path");
                        }
                    } else if head.iter().any(|t| t.is("matching")) {
                        out.approx(&at, "guardian does not look for a process by name: it follows the process its start program leaves (keep it in the foreground, or name a pid file)");
                    }
                    process_body(&mut p, &mut out, &mut pr, cycle);
                    procs.push(pr);
                }
                "system" | "filesystem" | "host" => {
                    let path = head
                        .iter()
                        .position(|t| t.is("path") || t.is("address"))
                        .and_then(|i| head.get(i.saturating_add(1)))
                        .map(|t| t.text.clone())
                        .unwrap_or_default();
                    host_body(
                        &mut p,
                        &mut out,
                        &kind,
                        &name,
                        &path,
                        cycle,
                        &mut host_checks,
                    );
                }
                other => {
                    let body = p.rest(TOP);
                    let _ = body;
                    out.drop_line(&at, format!("`check {other}` (this check and its lines) is not translated: guardian's checks are about jobs and the host (disk, load, memory, a file's age and size, a port, a URL)"));
                }
            }
            continue;
        }
        let rest = p.rest(TOP);
        let _ = rest;
        out.drop_line(
            &at,
            format!("`{}` is not a statement guardian knows here", tok.text),
        );
    }

    // Jobs, with `depends on` resolved against the processes and existing jobs.
    let mut names: BTreeSet<String> = existing.clone();
    for pr in &procs {
        names.insert(super::job_name(&pr.name));
    }
    for mut pr in procs {
        let job = super::job_name(&pr.name);
        let at = pr.at.clone().unwrap_or(At {
            file: file.to_path_buf(),
            line: 0,
            text: String::new(),
        });
        if job != pr.name {
            out.approx(
                &at,
                format!(
                    "`{}` is not a job name guardian takes: the job is `{job}`",
                    pr.name
                ),
            );
        }
        if !pr.has_start {
            out.drop_line(&at, "a process without `start program` is not translated: guardian watches what it starts");
            continue;
        }
        let mut deps = Vec::new();
        for (dat, d) in &pr.depends {
            let dj = super::job_name(d);
            if names.contains(&dj) && dj != job {
                deps.push(dj);
            } else {
                out.drop_line(dat, format!("`{d}` is not a process check here: guardian's jobs wait for other jobs only"));
            }
        }
        if !deps.is_empty() {
            let start: Vec<String> = deps.iter().map(|d| format!("started {d}")).collect();
            let stop: Vec<String> = deps.iter().map(|d| format!("stopping {d}")).collect();
            pr.doc.set(
                vec![" Monit: depends on".into()],
                "start-on",
                writer::string(&start.join(" and ")),
            );
            pr.doc
                .set(vec![], "stop-on", writer::string(&stop.join(" or ")));
        }
        let every = cycle.saturating_mul(pr.every_cycles.max(1));
        for mut c in pr.checks {
            c.entries.insert(
                c.entries.len().min(1),
                writer::Entry::new("every", writer::string_inline(&format!("{every}s"))),
            );
            pr.doc.push_table(c);
        }
        let mut doc = pr.doc;
        let mut header = pr.comments;
        header.push(format!(
            " From `check process {}` of {}",
            pr.name,
            at.file.display()
        ));
        doc.header = header;
        out.jobs.push((job, doc));
    }

    // guardian.toml: the cycle, the host checks and [alert].
    let has_alert = !to.is_empty() || !smtp.is_empty() || !alert.entries.is_empty();
    if cycle_given || !host_checks.is_empty() || has_alert {
        settings.header = vec![format!(" Imported from {}", file.display())];
        if cycle_given {
            settings.set(
                vec![" Monit: set daemon (the cycle)".into()],
                "every",
                writer::string(&format!("{cycle}s")),
            );
        }
        for c in host_checks {
            settings.push_table(c);
        }
        if has_alert {
            let mut a = Table::new("[alert]");
            if !to.is_empty() {
                let from = from.unwrap_or_else(|| format!("monit@{host}"));
                a.set(vec![], "from", writer::string_inline(&from));
                a.set(vec![" Monit: set alert".into()], "to", writer::strings(&to));
            }
            if !smtp.is_empty() {
                a.set(
                    vec![" Monit: set mailserver".into()],
                    "smtp",
                    writer::strings(&smtp),
                );
            }
            a.entries.extend(alert.entries);
            settings.push_table(a);
        }
        out.settings = Some(settings);
    }
    Ok(out)
}

/// Monit's mail-format: (from, (subject, approximated), (message, approximated)).
#[allow(clippy::type_complexity)]
fn mail_format(
    body: &str,
    host: &str,
) -> (
    Option<String>,
    Option<(String, bool)>,
    Option<(String, bool)>,
) {
    let mut from = None;
    let mut subject = None;
    let mut message = None;
    let mut rest = body.trim_start();
    // from: and subject: are one line each; message: is the rest.
    while !rest.is_empty() {
        let (line, tail) = rest.split_once('\n').unwrap_or((rest, ""));
        let l = line.trim();
        if let Some(v) = l.strip_prefix("from:") {
            from = Some(v.trim().replace("$HOST", host));
        } else if let Some(v) = l.strip_prefix("subject:") {
            subject = Some(placeholders(v.trim()));
        } else if let Some(v) = l.strip_prefix("message:") {
            let text = format!("{}\n{}", v.trim_start(), tail);
            message = Some(placeholders(text.trim_end()));
            break;
        }
        rest = tail;
    }
    (from, subject, message)
}

fn placeholders(s: &str) -> (String, bool) {
    let mut t = s.replace('{', "(").replace('}', ")");
    for (m, g) in [
        ("$SERVICE", "{job}"),
        ("$EVENT", "{event}"),
        ("$DESCRIPTION", "{description}"),
        ("$ACTION", "{action}"),
        ("$HOST", "{host}"),
        ("$DATE", "{time}"),
    ] {
        t = t.replace(m, g);
    }
    let approx = t.contains('$');
    (t, approx)
}

fn process_body(p: &mut Parser<'_>, out: &mut Output, pr: &mut Proc, cycle: u64) {
    while let Some(tok) = p.peek().cloned() {
        if tok.is("set") || tok.is("check") {
            return;
        }
        p.next();
        let at = p.at(&tok);
        let comments = tok.comments.clone();
        if tok.is("start") || tok.is("stop") || tok.is("restart") {
            let rest = p.rest(IN_CHECK);
            let cmd = rest
                .iter()
                .find(|t| t.quoted)
                .map(|t| t.text.clone())
                .unwrap_or_default();
            let extra = rest
                .iter()
                .any(|t| t.is("timeout") || t.is("uid") || t.is("gid"));
            if tok.is("start") {
                pr.has_start = true;
                match super::command_words(out, &at, &cmd, None) {
                    Command::Exec(c) => pr.doc.set(comments, "exec", writer::string(&c)),
                    Command::Shell(c) => {
                        pr.doc
                            .set(comments, "script", writer::string(&format!("exec {c}")))
                    }
                }
                pr.doc.set(
                    vec![" Monit starts the process again when it is gone".into()],
                    "respawn",
                    "true".into(),
                );
                if extra {
                    out.approx(&at, "`with timeout` / `as uid`: guardian waits up to 60s (a [ready] deadline) for a started process; a user is `setuid`");
                }
            } else if tok.is("stop") {
                let v = match super::command_words(out, &at, &cmd, None) {
                    Command::Exec(c) => format!("{{ exec = {} }}", writer::string_inline(&c)),
                    Command::Shell(c) => writer::string(&c),
                };
                pr.doc.set(comments, "pre-stop", v);
                out.approx(&at, "the stop program runs as pre-stop; then guardian sends kill-signal to what is left of the job");
            } else {
                out.drop_line(&at, "guardian restarts a job by stopping and starting it");
            }
            continue;
        }
        if tok.is("if") {
            if_statement(p, out, pr, &at, comments, cycle);
            continue;
        }
        let rest = p.rest(IN_CHECK);
        if tok.is("depends") {
            for t in rest.iter().filter(|t| !t.is("on") && !t.is(",")) {
                pr.depends.push((at.clone(), t.text.clone()));
            }
        } else if tok.is("group") {
            match rest.first() {
                Some(t) if rest.len() == 1 => {
                    let group = super::job_name(&t.text);
                    if group != t.text {
                        out.approx(
                            &at,
                            format!(
                                "`{}` is not a group name guardian takes: the group is `{group}`",
                                t.text
                            ),
                        );
                    }
                    if !pr.groups.contains(&group) {
                        pr.groups.push(group);
                    }
                    pr.doc.set(comments, "groups", writer::strings(&pr.groups));
                }
                _ => out.drop_line(&at, "`group` takes one name"),
            }
        } else if tok.is("every") {
            match rest.first().and_then(|t| t.text.parse::<u64>().ok()) {
                Some(n) if n > 0 && rest.get(1).is_some_and(|t| t.is("cycles")) => {
                    pr.every_cycles = n
                }
                _ => out.drop_line(
                    &at,
                    "only `every N cycles` is translated (cron schedules are not)",
                ),
            }
        } else if tok.is("alert") || tok.is("noalert") {
            out.drop_line(&at, "per-job recipients are `alert = [...]` in the job file, which needs guardian.toml's [alert] from: add it by hand");
        } else if tok.is("mode") {
            out.drop_line(&at, "guardian acts on every check; `guardian unmonitor JOB` keeps a job from being acted on");
        } else {
            out.drop_line(&at, format!("`{}` is not translated", tok.text));
        }
    }
}

fn if_statement(
    p: &mut Parser<'_>,
    out: &mut Output,
    pr: &mut Proc,
    at: &At,
    comments: Vec<String>,
    cycle: u64,
) {
    let mut cond = Vec::new();
    while let Some(t) = p.peek() {
        if t.is("then") || t.is("set") || t.is("check") {
            break;
        }
        cond.push(t.clone());
        p.next();
    }
    if !p.eat("then") {
        out.drop_line(at, "an `if` without `then`");
        return;
    }
    let act_word = p.peek().map(|t| t.text.to_lowercase()).unwrap_or_default();
    let (act, act_why) = action(p);
    // N restarts within M cycles then timeout|unmonitor|alert
    if cond.len() >= 4 && cond[1].is("restarts") && cond[2].is("within") {
        if !matches!(act_word.as_str(), "timeout" | "unmonitor") {
            out.drop_line(at, "guardian's restart-limit unmonitors the job; a restart count that only alerts is not translated");
            return;
        }
        let n = cond[0].text.parse::<u64>().unwrap_or(0).clamp(1, 10_000);
        let m = cond[3].text.parse::<u64>().unwrap_or(1).max(1);
        let interval = format!("{}s", cycle.saturating_mul(m));
        let v = format!(
            "{{ count = {n}, interval = {} }}",
            writer::string_inline(&interval)
        );
        pr.doc.set(comments, "restart-limit", v.clone());
        pr.doc.set(vec![], "respawn-limit", v);
        out.approx(at, "guardian unmonitors a job its checks would restart more than this often (restart-limit), and marks one that ends more often `failed` (respawn-limit); Monit counts both together");
        return;
    }
    let Some(act) = act else {
        out.drop_line(at, act_why.unwrap_or_default());
        return;
    };
    let policy = cycles(&mut cond);
    let mut table = Table::new("[[check]]");
    let negate = cond.first().is_some_and(|t| t.is("not"));
    if negate {
        cond.remove(0);
    }
    let Some(first) = cond.first().cloned() else {
        out.drop_line(at, "an `if` without a condition");
        return;
    };
    let mut why: Option<String> = act_why;
    let word = first.text.to_lowercase();
    match word.as_str() {
        "failed" => {
            let find = |w: &str| {
                cond.iter()
                    .position(|t| t.is(w))
                    .and_then(|i| cond.get(i.saturating_add(1)))
                    .map(|t| t.text.clone())
            };
            let host = find("host").unwrap_or_else(|| "localhost".into());
            let proto = find("protocol").map(|s| s.to_lowercase());
            if let Some(url) = find("url") {
                table.set(vec![], "type", writer::string_inline("http"));
                table.set(vec![], "url", writer::string_inline(&url));
            } else if let Some(port) = find("port").and_then(|p| p.parse::<u16>().ok()) {
                match proto.as_deref() {
                    Some("http") | Some("https") => {
                        let scheme = proto.clone().unwrap_or_default();
                        let path = find("request").unwrap_or_else(|| "/".into());
                        let path = if path.starts_with('/') {
                            path
                        } else {
                            format!("/{path}")
                        };
                        table.set(vec![], "type", writer::string_inline("http"));
                        table.set(
                            vec![],
                            "url",
                            writer::string_inline(&format!("{scheme}://{host}:{port}{path}")),
                        );
                        if let Some(status) = find("status").and_then(|s| s.parse::<u16>().ok()) {
                            table.set(vec![], "status", status.to_string());
                        }
                    }
                    other => {
                        table.set(vec![], "type", writer::string_inline("tcp"));
                        table.set(vec![], "port", port.to_string());
                        table.set(vec![], "host", writer::string_inline(&host));
                        if let Some(send) = find("send") {
                            table.set(vec![], "send", writer::string_inline(&send));
                        }
                        if let Some(exp) = find("expect") {
                            table.set(vec![], "expect-regex", writer::string_inline(&exp));
                        }
                        if let Some(o) = other {
                            why = Some(format!(
                                "guardian does not speak `protocol {o}`: the check connects to the port (add send / expect for a dialogue)"
                            ));
                        }
                    }
                }
            } else {
                out.drop_line(at, "only `failed port`, `failed host ... port` and `failed url` tests are translated");
                return;
            }
            if let Some(secs) = cond
                .iter()
                .position(|t| t.is("timeout"))
                .and_then(|i| cond.get(i.saturating_add(1)))
                .and_then(|t| t.text.parse::<u64>().ok())
            {
                table.set(
                    vec![],
                    "timeout",
                    writer::string_inline(&format!("{secs}s")),
                );
            }
        }
        "cpu" | "totalcpu" => {
            if !is_greater(&cond) {
                out.drop_line(at, "guardian's checks test an upper limit (`>`)");
                return;
            }
            let Some(pct) =
                amount(&cond[1..]).and_then(|a| a.strip_suffix('%').map(str::to_string))
            else {
                out.drop_line(at, "expected a percentage");
                return;
            };
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as f64;
            let v: f64 = pct.parse().unwrap_or(0.0);
            let g = (v * cores).round();
            table.set(vec![], "type", writer::string_inline("cpu"));
            table.set(vec![], "max", writer::string_inline(&format!("{g}%")));
            why = Some(format!(
                "Monit's {word} is a share of all cores, guardian's cpu of one core and the job's whole process tree: {pct}% x {cores} cores of this host = {g}%"
            ));
        }
        "mem" | "memory" | "totalmem" | "totalmemory" => {
            if !is_greater(&cond) {
                out.drop_line(at, "guardian's checks test an upper limit (`>`)");
                return;
            }
            let Some(max) = amount(&cond[1..])
                .filter(|a| !a.is_empty() && a.chars().any(|c| !c.is_ascii_digit()))
            else {
                out.drop_line(at, "expected a size or a percentage");
                return;
            };
            table.set(vec![], "type", writer::string_inline("memory"));
            table.set(vec![], "max", writer::string_inline(&max));
            if !word.starts_with("total") {
                why = Some("guardian's memory check counts the job's whole process tree (Monit's totalmem), not the main process alone".into());
            }
        }
        "children" => {
            let Some(n) = cond
                .iter()
                .skip(1)
                .find_map(|t| t.text.parse::<u64>().ok())
                .filter(|_| is_greater(&cond))
            else {
                out.drop_line(at, "expected `children > N`");
                return;
            };
            table.set(vec![], "type", writer::string_inline("children"));
            table.set(vec![], "max", n.to_string());
            why = Some(
                "guardian counts every descendant of the main process, Monit its direct children"
                    .into(),
            );
        }
        "loadavg" => {
            let Some((minutes, max)) = load(&cond) else {
                out.drop_line(at, "expected `loadavg (1min|5min|15min) > N`");
                return;
            };
            table.set(vec![], "type", writer::string_inline("load"));
            table.set(vec![], "max", max);
            table.set(vec![], "minutes", minutes.to_string());
        }
        _ => {
            out.drop_line(
                at,
                format!(
                    "`if {}` tests are not translated",
                    cond.iter()
                        .map(|t| t.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            );
            return;
        }
    }
    if negate {
        out.drop_line(at, "`if not ...` is not translated");
        return;
    }
    if let Some((n, m)) = policy {
        table.set(vec![], "failures", n.clamp(1, 1000).to_string());
        if m != n {
            table.set(
                vec![],
                "within",
                m.clamp(n.clamp(1, 1000), 1000).to_string(),
            );
        }
    }
    table.set(vec![], "action", act);
    table.comments = comments;
    if let Some(w) = why {
        out.approx(at, w);
    }
    pr.checks.push(table);
}

/// `loadavg (5min) > 4`: (minutes, max).
fn load(cond: &[Tok]) -> Option<(u64, String)> {
    let minutes = cond
        .iter()
        .find_map(|t| {
            t.text
                .strip_suffix("min")
                .and_then(|m| m.parse::<u64>().ok())
        })
        .unwrap_or(1);
    if !matches!(minutes, 1 | 5 | 15) || !is_greater(cond) {
        return None;
    }
    let max = cond.iter().rev().find_map(|t| {
        t.text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    })?;
    Some((minutes, format!("{max:?}")))
}

fn host_body(
    p: &mut Parser<'_>,
    out: &mut Output,
    kind: &str,
    name: &str,
    path: &str,
    cycle: u64,
    checks: &mut Vec<Table>,
) {
    let mut count = 0usize;
    while let Some(tok) = p.peek().cloned() {
        if tok.is("set") || tok.is("check") {
            return;
        }
        p.next();
        let at = p.at(&tok);
        if !tok.is("if") {
            p.rest(IN_CHECK);
            out.drop_line(
                &at,
                format!(
                    "`{}` in a `check {kind}` is not translated: host checks only alert",
                    tok.text
                ),
            );
            continue;
        }
        let mut cond = Vec::new();
        while let Some(t) = p.peek() {
            if t.is("then") || t.is("set") || t.is("check") {
                break;
            }
            cond.push(t.clone());
            p.next();
        }
        if !p.eat("then") {
            out.drop_line(&at, "an `if` without `then`");
            continue;
        }
        let (act, _) = action(p);
        let policy = cycles(&mut cond);
        let mut t = Table::new("[[check]]");
        count = count.saturating_add(1);
        let first = cond
            .first()
            .map(|t| t.text.to_lowercase())
            .unwrap_or_default();
        let check_name = super::job_name(&if count == 1 {
            name.to_string()
        } else {
            format!("{name}-{count}")
        });
        t.set(vec![], "name", writer::string_inline(&check_name));
        let ok = match (kind, first.as_str()) {
            ("system", "loadavg") => load(&cond).map(|(m, max)| {
                t.set(vec![], "type", writer::string_inline("load"));
                t.set(vec![], "max", max);
                t.set(vec![], "minutes", m.to_string());
            }),
            ("system", "memory" | "mem") if is_greater(&cond) => {
                amount(&cond[1..]).filter(|a| !a.is_empty()).map(|a| {
                    t.set(vec![], "type", writer::string_inline("system-memory"));
                    t.set(vec![], "max", writer::string_inline(&a));
                })
            }
            ("filesystem", "space") if is_greater(&cond) => {
                amount(&cond[1..]).filter(|a| !a.is_empty()).map(|a| {
                    t.set(vec![], "type", writer::string_inline("disk"));
                    t.set(vec![], "path", writer::string_inline(path));
                    t.set(vec![], "max", writer::string_inline(&a));
                })
            }
            ("host", "failed") => {
                let find = |w: &str| {
                    cond.iter()
                        .position(|x| x.is(w))
                        .and_then(|i| cond.get(i.saturating_add(1)))
                        .map(|x| x.text.clone())
                };
                find("port")
                    .and_then(|p| p.parse::<u16>().ok())
                    .map(
                        |port| match find("protocol").map(|s| s.to_lowercase()).as_deref() {
                            Some(s @ ("http" | "https")) => {
                                let req = find("request").unwrap_or_else(|| "/".into());
                                t.set(vec![], "type", writer::string_inline("http"));
                                t.set(
                                    vec![],
                                    "url",
                                    writer::string_inline(&format!("{s}://{path}:{port}{req}")),
                                );
                            }
                            _ => {
                                t.set(vec![], "type", writer::string_inline("tcp"));
                                t.set(vec![], "host", writer::string_inline(path));
                                t.set(vec![], "port", port.to_string());
                            }
                        },
                    )
            }
            _ => None,
        };
        if ok.is_none() {
            count = count.saturating_sub(1);
            out.drop_line(&at, format!("this test of `check {kind}` is not translated: guardian's host checks are disk space, load, memory in use, a port and a URL"));
            continue;
        }
        t.set(vec![], "every", writer::string_inline(&format!("{cycle}s")));
        if let Some((n, m)) = policy {
            t.set(vec![], "failures", n.clamp(1, 1000).to_string());
            if m != n {
                t.set(
                    vec![],
                    "within",
                    m.clamp(n.clamp(1, 1000), 1000).to_string(),
                );
            }
        }
        t.set(vec![], "action", writer::string_inline("alert"));
        if act.as_deref() != Some("\"alert\"") {
            out.approx(&at, "a host check only alerts");
        }
        t.comments = tok.comments.clone();
        t.comments.push(format!(" Monit: check {kind} {name}"));
        checks.push(t);
    }
}
