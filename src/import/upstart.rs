//! Upstart job files (`/etc/init/NAME.conf`, with `NAME.override` applied) to job files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::writer::{self, Doc};
use super::{At, Command, Error, Output};

/// One stanza: its first line, its words, and a script block if it has one.
#[derive(Debug, Clone)]
struct Stanza {
    at: At,
    /// The stanza's own words: `start on`, `pre-start exec` ...
    kind: String,
    args: String,
    body: Option<String>,
    comments: Vec<String>,
}

/// A parsed file: its stanzas, the comment block at its top, and what follows the last.
#[derive(Debug, Default)]
struct Parsed {
    header: Vec<String>,
    stanzas: Vec<Stanza>,
    footer: Vec<String>,
}

/// The stanzas whose first word needs the second one to say what they are.
const TWO_WORDS: &[&str] = &[
    "start",
    "stop",
    "respawn",
    "normal",
    "kill",
    "reload",
    "pre-start",
    "post-start",
    "pre-stop",
    "post-stop",
    "oom",
];

fn parse(file: &Path, text: &str) -> Result<Parsed, Error> {
    let mut p = Parsed::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut pending: Vec<String> = Vec::new();
    let mut seen_stanza = false;
    let mut i = 0usize;
    while i < lines.len() {
        let raw = lines[i];
        let line_no = i.saturating_add(1);
        let t = raw.trim();
        i = i.saturating_add(1);
        if t.is_empty() {
            if !seen_stanza && p.header.is_empty() && !pending.is_empty() {
                p.header = std::mem::take(&mut pending);
            }
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            pending.push(c.to_string());
            continue;
        }
        seen_stanza = true;
        // A stanza: join lines while parentheses are open (start on / stop on) or the
        // line ends in a backslash.
        let (mut joined, mut trailing) = split_comment(t);
        while (depth(&joined) > 0 || joined.ends_with('\\')) && i < lines.len() {
            if joined.ends_with('\\') {
                joined.pop();
            }
            let (more, c) = split_comment(lines[i].trim());
            if c.is_some() {
                trailing = c;
            }
            joined.push(' ');
            joined.push_str(&more);
            i = i.saturating_add(1);
        }
        if depth(&joined) != 0 {
            return Err(Error::new(file, line_no, "unbalanced parentheses"));
        }
        let mut words = joined
            .splitn(3, char::is_whitespace)
            .filter(|w| !w.is_empty());
        let first = words.next().unwrap_or_default().to_string();
        let rest: String = joined[first.len()..].trim().to_string();
        let (kind, args) = if TWO_WORDS.contains(&first.as_str()) {
            let mut it = rest.splitn(2, char::is_whitespace);
            let second = it.next().unwrap_or_default();
            let args = it.next().unwrap_or_default().trim().to_string();
            // `respawn` alone, `respawn limit ...`.
            match (first.as_str(), second) {
                ("respawn", "limit") => ("respawn limit".to_string(), args),
                ("respawn", _) => ("respawn".to_string(), rest.clone()),
                _ => (format!("{first} {second}"), args),
            }
        } else {
            (first.clone(), rest)
        };
        let mut comments = std::mem::take(&mut pending);
        if let Some(c) = trailing {
            comments.push(c);
        }
        let at = At {
            file: file.to_path_buf(),
            line: line_no,
            text: raw.to_string(),
        };
        let body = if kind == "script" || kind.ends_with(" script") {
            let mut body = Vec::new();
            let mut closed = false;
            while i < lines.len() {
                let l = lines[i];
                i = i.saturating_add(1);
                if l.trim() == "end script" {
                    closed = true;
                    break;
                }
                body.push(l);
            }
            if !closed {
                return Err(Error::new(file, line_no, "`script` without `end script`"));
            }
            Some(dedent(&body))
        } else {
            None
        };
        p.stanzas.push(Stanza {
            at,
            kind,
            args,
            body,
            comments,
        });
    }
    p.footer = pending;
    Ok(p)
}

/// A stanza line and the comment after it (`respawn # keep it up`), outside quotes.
fn split_comment(line: &str) -> (String, Option<String>) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => {
                return (
                    line[..i].trim_end().to_string(),
                    Some(line[i.saturating_add(1)..].to_string()),
                );
            }
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (line.to_string(), None)
}

fn depth(s: &str) -> i64 {
    s.chars().fold(0i64, |d, c| match c {
        '(' => d.saturating_add(1),
        ')' => d.saturating_sub(1),
        _ => d,
    })
}

/// Script lines without their common indentation, ending in a newline.
fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len().saturating_sub(l.trim_start().len()))
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        out.push_str(l.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    out
}

/// The key a stanza has for `.override`: stanzas of the same key are replaced.
fn override_key(s: &Stanza) -> String {
    match s.kind.as_str() {
        "exec" | "script" => "main".into(),
        k if k.starts_with("pre-") || k.starts_with("post-") => {
            k.split(' ').next().unwrap_or(k).to_string()
        }
        "env" | "export" => format!(
            "{} {}",
            s.kind,
            s.args.split('=').next().unwrap_or_default().trim()
        ),
        "limit" => format!("limit {}", s.args.split_whitespace().next().unwrap_or("")),
        "respawn" | "respawn limit" => s.kind.clone(),
        k => k.to_string(),
    }
}

/// Applies `over` to `base` as Upstart does: a stanza in the override replaces the
/// base's stanzas of the same kind.
fn apply_override(base: &mut Parsed, over: Parsed) {
    for s in over.stanzas {
        let key = override_key(&s);
        base.stanzas.retain(|b| override_key(b) != key);
        base.stanzas.push(s);
    }
    base.footer.extend(over.footer);
}

pub fn import(files: &[PathBuf], existing: &BTreeSet<String>) -> Result<Output, Error> {
    let mut out = Output::default();
    let mut parsed = Vec::new();
    let mut known = existing.clone();
    for file in files {
        let text = super::read_text(file)?;
        let mut p = parse(file, &text)?;
        let over = file.with_extension("override");
        if over.exists() {
            let otext = super::read_text(&over)?;
            apply_override(&mut p, parse(&over, &otext)?);
        }
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let name = super::job_name(&stem);
        known.insert(name.clone());
        parsed.push((file.clone(), stem, name, p));
    }
    for (file, stem, name, p) in parsed {
        if name != stem {
            let at = At {
                file: file.clone(),
                line: 0,
                text: stem.clone(),
            };
            out.approx(
                &at,
                format!("`{stem}` is not a job name guardian takes: the job is `{name}`"),
            );
        }
        let doc = translate(&mut out, p, &known);
        out.jobs.push((name, doc));
    }
    Ok(out)
}

/// A job's PATH from its `env` stanzas, for finding its programs.
fn env_path(p: &Parsed) -> Option<String> {
    p.stanzas
        .iter()
        .filter(|s| s.kind == "env")
        .filter_map(|s| s.args.strip_prefix("PATH="))
        .map(unquote)
        .next_back()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len().saturating_sub(1)].to_string();
        }
    }
    s.to_string()
}

fn translate(out: &mut Output, p: Parsed, known: &BTreeSet<String>) -> Doc {
    let mut doc = Doc {
        header: p.header.clone(),
        ..Doc::default()
    };
    let path = env_path(&p);
    let mut env: Vec<(String, String)> = Vec::new();
    let mut env_comments: Vec<String> = Vec::new();
    // Comments of stanzas that became no key go above the next key.
    let mut carried: Vec<String> = Vec::new();
    for s in p.stanzas {
        let mut comments = std::mem::take(&mut carried);
        comments.extend(s.comments.iter().cloned());
        let at = &s.at;
        match s.kind.as_str() {
            "description" => doc.set(comments, "description", writer::string(&unquote(&s.args))),
            "author" | "version" | "usage" => {
                comments.push(format!(" Upstart: {} {}", s.kind, s.args));
                carried = comments;
            }
            "emits" => {
                for e in s.args.split_whitespace() {
                    comments.push(format!(" Upstart: this job emits {e} (guardian emit {e})"));
                }
                carried = comments;
            }
            "start on" | "stop on" => {
                let start = s.kind == "start on";
                match event_expr(out, at, &s.args, start, known) {
                    Some(expr) => doc.set(
                        comments,
                        if start { "start-on" } else { "stop-on" },
                        writer::string(&expr),
                    ),
                    None => {
                        comments.push(format!(
                            " Upstart: {} {}: {}",
                            s.kind,
                            s.args,
                            if start {
                                "the job starts when the daemon starts"
                            } else {
                                "every job stops when the daemon stops"
                            }
                        ));
                        carried = comments;
                    }
                }
            }
            "exec" => match super::command(out, at, &s.args, path.as_deref()) {
                Command::Exec(c) => doc.set(comments, "exec", writer::string(&c)),
                Command::Shell(c) => {
                    doc.set(comments, "script", writer::string(&format!("exec {c}")))
                }
            },
            "script" => doc.set(
                comments,
                "script",
                writer::string(s.body.as_deref().unwrap_or("")),
            ),
            k if k.ends_with(" exec") || k.ends_with(" script") => {
                let hook = k.split(' ').next().unwrap_or_default();
                if !matches!(hook, "pre-start" | "post-start" | "pre-stop" | "post-stop") {
                    out.drop_line(at, format!("`{k}` is not an Upstart stanza guardian knows"));
                    carried = comments;
                    continue;
                }
                let value = if k.ends_with(" exec") {
                    match super::command(out, at, &s.args, path.as_deref()) {
                        Command::Exec(c) => format!("{{ exec = {} }}", writer::string_inline(&c)),
                        Command::Shell(c) => writer::string(&c),
                    }
                } else {
                    writer::string(s.body.as_deref().unwrap_or(""))
                };
                doc.set(comments, hook, value);
            }
            "expect" => match s.args.as_str() {
                "fork" | "daemon" | "stop" => doc.set(comments, "expect", writer::string(&s.args)),
                other => {
                    out.drop_line(
                        at,
                        format!("`expect {other}` is not one of fork, daemon, stop"),
                    );
                    carried = comments;
                }
            },
            "respawn" => doc.set(comments, "respawn", "true".into()),
            "respawn limit" => match respawn_limit(&s.args) {
                Some(v) => doc.set(comments, "respawn-limit", v),
                None => {
                    out.drop_line(
                        at,
                        "expected `respawn limit COUNT INTERVAL` or `respawn limit unlimited`",
                    );
                    carried = comments;
                }
            },
            "normal exit" => {
                let mut items = vec!["0".to_string()];
                let mut bad = false;
                for w in s.args.split_whitespace() {
                    if let Ok(n) = w.parse::<u8>() {
                        if !items.contains(&n.to_string()) {
                            items.push(n.to_string());
                        }
                    } else if w.chars().all(|c| c.is_ascii_alphanumeric()) {
                        items.push(writer::string_inline(w.trim_start_matches("SIG")));
                    } else {
                        bad = true;
                    }
                }
                if bad {
                    out.approx(
                        at,
                        "a value here is neither an exit status nor a signal; it was left out",
                    );
                }
                doc.set(comments, "normal-exit", format!("[{}]", items.join(", ")));
            }
            "task" => doc.set(comments, "task", "true".into()),
            "manual" => doc.set(comments, "manual", "true".into()),
            "kill signal" => doc.set(comments, "kill-signal", writer::string(&s.args)),
            "reload signal" => doc.set(comments, "reload-signal", writer::string(&s.args)),
            "kill timeout" => match s.args.trim().parse::<u64>() {
                Ok(n) => doc.set(comments, "kill-timeout", writer::string(&format!("{n}s"))),
                Err(_) => {
                    out.drop_line(at, "the kill timeout is not a number of seconds");
                    carried = comments;
                }
            },
            "env" => {
                let (k, v) = s.args.split_once('=').unwrap_or((s.args.as_str(), ""));
                if !s.args.contains('=') {
                    out.drop_line(at, "`env NAME` without a value takes it from `initctl start`'s environment; guardian's jobs start from a clean one");
                    carried = comments;
                    continue;
                }
                env_comments.extend(comments);
                env.retain(|(name, _)| name != k.trim());
                env.push((k.trim().to_string(), unquote(v)));
            }
            "export" => {
                out.drop_line(
                    at,
                    "guardian's job events carry no variables of the job's environment",
                );
                carried = comments;
            }
            "setuid" | "setgid" => {
                let who = unquote(&s.args);
                let check = if s.kind == "setuid" {
                    super::user_ok(&who)
                } else {
                    super::group_ok(&who)
                };
                match check {
                    Ok(()) => doc.set(comments, &s.kind, writer::string(&who)),
                    Err(why) => {
                        out.drop_line(at, format!("{why}; written commented out"));
                        doc.disabled(comments, &s.kind, writer::string(&who), &why);
                    }
                }
            }
            "chdir" => {
                let dir = unquote(&s.args);
                match super::dir_ok(&dir) {
                    Ok(()) => doc.set(comments, "chdir", writer::string(&dir)),
                    Err(why) => {
                        out.drop_line(at, format!("{why}, and `check` refuses a chdir that does not exist; written commented out"));
                        doc.disabled(comments, "chdir", writer::string(&dir), &why);
                    }
                }
            }
            "umask" => doc.set(comments, "umask", writer::string(s.args.trim())),
            "nice" => match s.args.trim().parse::<i32>() {
                Ok(n) if (-20..=19).contains(&n) => {
                    if n < 0 && !nix::unistd::geteuid().is_root() {
                        out.drop_line(at, "a negative nice needs guardian to run as root");
                        doc.disabled(comments, "nice", n.to_string(), "needs root");
                    } else {
                        doc.set(comments, "nice", n.to_string());
                    }
                }
                _ => {
                    out.drop_line(at, "nice is a number from -20 to 19");
                    carried = comments;
                }
            },
            "limit" => {
                let w: Vec<&str> = s.args.split_whitespace().collect();
                let value = |v: &str| {
                    if v == "unlimited" {
                        Some(writer::string_inline("unlimited"))
                    } else {
                        v.parse::<u64>().ok().map(|n| n.to_string())
                    }
                };
                match (
                    w.first(),
                    w.get(1).and_then(|v| value(v)),
                    w.get(2).and_then(|v| value(v)),
                ) {
                    (Some(&"nofile"), _, _) if s.args.contains("unlimited") => {
                        out.drop_line(at, "nofile cannot be unlimited (the kernel caps it at fs.nr_open): give a number");
                        carried = comments;
                    }
                    (Some(res), Some(soft), Some(hard)) if w.len() == 3 => {
                        let v = if soft == hard {
                            soft
                        } else {
                            format!("[{soft}, {hard}]")
                        };
                        doc.table("[limit]").set(comments, res, v);
                    }
                    _ => {
                        out.drop_line(at, "expected `limit RESOURCE SOFT HARD`");
                        carried = comments;
                    }
                }
            }
            "console" => match s.args.trim() {
                "log" => {
                    comments
                        .push(" Upstart: console log (the output goes to the job's log)".into());
                    carried = comments;
                }
                other => {
                    out.approx(at, format!("`console {other}`: guardian writes a job's output to its log, LOG-DIR/JOB.log"));
                    carried = comments;
                }
            },
            "instance" => {
                out.drop_line(at, "Upstart makes an instance for each `start JOB VAR=...`; guardian's are a number fixed in the file: set `instances = N` and use $INSTANCE (0 to N-1) where the job used the variable");
                carried = comments;
            }
            other => {
                let why = match other {
                    "oom score" | "oom" => "guardian sets no OOM score",
                    "apparmor" => "guardian does not switch AppArmor profiles",
                    "chroot" => "guardian does not chroot a job",
                    "cgroup" => {
                        "guardian puts each job in a cgroup of its own; named controllers are not set"
                    }
                    "start" | "stop" => "not an Upstart stanza (`start on` / `stop on`?)",
                    _ => "guardian has no such setting",
                };
                out.drop_line(at, why);
                carried = comments;
            }
        }
    }
    if !env.is_empty() {
        doc.set(env_comments, "env", writer::inline_strings(&env));
    }
    doc.footer = carried;
    doc.footer.extend(p.footer);
    doc
}

fn respawn_limit(args: &str) -> Option<String> {
    let w: Vec<&str> = args.split_whitespace().collect();
    match w.as_slice() {
        ["unlimited"] => Some(writer::string_inline("unlimited")),
        [count, interval] => {
            let c: u64 = count.parse().ok()?;
            let i: u64 = interval.parse().ok()?;
            if c == 0 || i == 0 {
                // Upstart: a zero count or interval means no limit.
                return Some(writer::string_inline("unlimited"));
            }
            let c = c.min(10_000);
            Some(format!(
                "{{ count = {c}, interval = {} }}",
                writer::string_inline(&format!("{i}s"))
            ))
        }
        _ => None,
    }
}

// --------------------------------------------------------------- event expressions

#[derive(Debug, Clone)]
enum Expr {
    /// Holds once the system is up: the daemon's start.
    Up,
    /// The system goes down: the daemon's shutdown.
    Down,
    /// An event guardian has, written in its words.
    Event(String),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, '(' | ')') => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Events Upstart systems emit while booting: guardian runs once they are past.
const BOOT_EVENTS: &[&str] = &[
    "filesystem",
    "local-filesystems",
    "remote-filesystems",
    "virtual-filesystems",
    "all-swaps",
    "mounted",
    "mounting",
    "net-device-up",
    "net-device-added",
    "static-network-up",
    "socket",
    "desktop-session-start",
];

/// Events Upstart systems emit going down.
const SHUTDOWN_EVENTS: &[&str] = &[
    "deconfiguring-networking",
    "net-device-down",
    "unmounted-remote-filesystems",
];

struct ExprCtx<'a> {
    out: &'a mut Output,
    at: &'a At,
    start: bool,
    known: &'a BTreeSet<String>,
}

fn parse_or(t: &[String], i: &mut usize, cx: &mut ExprCtx<'_>) -> Option<Expr> {
    let mut items = vec![parse_and(t, i, cx)?];
    while t.get(*i).map(String::as_str) == Some("or") {
        *i = i.saturating_add(1);
        items.push(parse_and(t, i, cx)?);
    }
    Some(if items.len() == 1 {
        items.remove(0)
    } else {
        Expr::Or(items)
    })
}

fn parse_and(t: &[String], i: &mut usize, cx: &mut ExprCtx<'_>) -> Option<Expr> {
    let mut items = vec![parse_atom(t, i, cx)?];
    while t.get(*i).map(String::as_str) == Some("and") {
        *i = i.saturating_add(1);
        items.push(parse_atom(t, i, cx)?);
    }
    Some(if items.len() == 1 {
        items.remove(0)
    } else {
        Expr::And(items)
    })
}

fn parse_atom(t: &[String], i: &mut usize, cx: &mut ExprCtx<'_>) -> Option<Expr> {
    let first = t.get(*i)?.clone();
    *i = i.saturating_add(1);
    if first == "(" {
        let e = parse_or(t, i, cx)?;
        if t.get(*i).map(String::as_str) != Some(")") {
            return None;
        }
        *i = i.saturating_add(1);
        return Some(e);
    }
    let mut args = Vec::new();
    while let Some(w) = t.get(*i) {
        if matches!(w.as_str(), "and" | "or" | "(" | ")") {
            break;
        }
        args.push(w.clone());
        *i = i.saturating_add(1);
    }
    Some(atom(&first, &args, cx))
}

fn atom(event: &str, args: &[String], cx: &mut ExprCtx<'_>) -> Expr {
    let text = std::iter::once(event.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let up = if cx.start { Expr::Up } else { Expr::Down };
    match event {
        "runlevel" => {
            let levels = args
                .first()
                .map(|a| a.trim_start_matches("RUNLEVEL="))
                .unwrap_or("");
            let set = levels.trim_matches(['[', ']']);
            let (negate, set) = match set.strip_prefix('!') {
                Some(s) => (true, s),
                None => (false, set),
            };
            let has = |c: char| set.contains(c) != negate;
            let multi_user = ['2', '3', '4', '5'].iter().any(|&c| has(c));
            let going_down = ['0', '1', '6'].iter().any(|&c| has(c));
            match (cx.start, multi_user, going_down) {
                (true, true, _) => Expr::Up,
                (false, _, true) => Expr::Down,
                _ => {
                    cx.out.approx(cx.at, format!("`{text}`: guardian has no run levels; it starts its jobs when it starts and stops them when it stops"));
                    up
                }
            }
        }
        "startup" if cx.start => Expr::Up,
        "starting" | "started" | "stopping" | "stopped" => {
            let job = args
                .first()
                .map(|a| a.trim_start_matches("JOB="))
                .unwrap_or("");
            if !job.is_empty() && (cx.known.contains(job) || job.contains(['*', '?'])) {
                let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
                if rest.iter().all(|a| a.contains('=') && plain_value(a)) {
                    return Expr::Event(text_of(event, job, &rest));
                }
                cx.out.approx(
                    cx.at,
                    format!("`{text}`: the values after the job name were left out"),
                );
                return Expr::Event(text_of(event, job, &[]));
            }
            cx.out.approx(
                cx.at,
                format!(
                    "`{text}`: there is no job `{job}` among the imported and existing jobs; {}",
                    if cx.start {
                        "the job starts when the daemon starts instead"
                    } else {
                        "the job stops when the daemon stops"
                    }
                ),
            );
            up
        }
        e if cx.start && BOOT_EVENTS.contains(&e) => {
            cx.out.approx(cx.at, format!("`{text}`: a boot event guardian does not see; guardian starts its jobs once it runs, after the system is up"));
            Expr::Up
        }
        e if !cx.start && (SHUTDOWN_EVENTS.contains(&e) || e == "shutdown") => {
            if e != "shutdown" {
                cx.out.approx(cx.at, format!("`{text}`: a system event guardian does not see; every job stops when the daemon stops"));
            }
            Expr::Down
        }
        e => {
            let name_ok = !e.is_empty()
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'));
            if name_ok && args.iter().all(|a| plain_value(a)) {
                Expr::Event(text)
            } else {
                cx.out.approx(
                    cx.at,
                    format!("`{text}` cannot be written as a guardian event; left out"),
                );
                up
            }
        }
    }
}

/// A value guardian's expressions take as written: `IFACE!=lo`, `ENV=prod`, `web-*`.
fn plain_value(a: &str) -> bool {
    !a.is_empty()
        && a.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | ':' | '@' | '=' | '!' | '*' | '?' | '/')
        })
}

fn text_of(event: &str, job: &str, rest: &[&str]) -> String {
    let mut s = format!("{event} {job}");
    for r in rest {
        s.push(' ');
        s.push_str(r);
    }
    s
}

/// Simplifies: the system being up holds once guardian runs; it going down is the
/// daemon's shutdown, which stops every job anyway.
fn simplify(e: Expr, start: bool) -> Expr {
    match e {
        Expr::And(items) => {
            let items: Vec<Expr> = items.into_iter().map(|i| simplify(i, start)).collect();
            if start {
                let rest: Vec<Expr> = items
                    .into_iter()
                    .filter(|i| !matches!(i, Expr::Up))
                    .collect();
                match rest.len() {
                    0 => Expr::Up,
                    1 => rest.into_iter().next().unwrap_or(Expr::Up),
                    _ => Expr::And(rest),
                }
            } else if items.iter().any(|i| matches!(i, Expr::Down)) {
                Expr::Down
            } else {
                Expr::And(items)
            }
        }
        Expr::Or(items) => {
            let items: Vec<Expr> = items.into_iter().map(|i| simplify(i, start)).collect();
            if start {
                // `startup or deploy-done` keeps its meaning; the runlevel alone is "startup".
                if items.iter().all(|i| matches!(i, Expr::Up)) {
                    return Expr::Up;
                }
                let mut rest: Vec<Expr> = Vec::new();
                let mut up = false;
                for i in items {
                    if matches!(i, Expr::Up) {
                        up = true;
                    } else {
                        rest.push(i);
                    }
                }
                if up {
                    rest.push(Expr::Event("startup".into()));
                }
                if rest.len() == 1 {
                    rest.into_iter().next().unwrap_or(Expr::Up)
                } else {
                    Expr::Or(rest)
                }
            } else {
                let rest: Vec<Expr> = items
                    .into_iter()
                    .filter(|i| !matches!(i, Expr::Down))
                    .collect();
                match rest.len() {
                    0 => Expr::Down,
                    1 => rest.into_iter().next().unwrap_or(Expr::Down),
                    _ => Expr::Or(rest),
                }
            }
        }
        other => other,
    }
}

fn render(e: &Expr) -> String {
    match e {
        Expr::Up => "startup".into(),
        Expr::Down => "shutdown".into(),
        Expr::Event(t) => t.clone(),
        Expr::And(items) => items
            .iter()
            .map(|i| match i {
                Expr::Or(_) => format!("({})", render(i)),
                _ => render(i),
            })
            .collect::<Vec<_>>()
            .join(" and "),
        Expr::Or(items) => items.iter().map(render).collect::<Vec<_>>().join(" or "),
    }
}

/// `start on` / `stop on` in guardian's words; None when it means "when the daemon
/// starts" (no start-on) or "when it stops" (no stop-on).
fn event_expr(
    out: &mut Output,
    at: &At,
    text: &str,
    start: bool,
    known: &BTreeSet<String>,
) -> Option<String> {
    let t = tokens(text);
    let mut i = 0usize;
    let mut cx = ExprCtx {
        out,
        at,
        start,
        known,
    };
    let parsed = parse_or(&t, &mut i, &mut cx);
    let Some(e) = parsed.filter(|_| i == t.len()) else {
        out.drop_line(at, "this expression could not be read; left out");
        return None;
    };
    match simplify(e, start) {
        Expr::Up if start => None,
        Expr::Down if !start => None,
        e => Some(render(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(text: &str, start: bool, known: &[&str]) -> (Option<String>, usize) {
        let mut out = Output::default();
        let at = At {
            file: "x.conf".into(),
            line: 1,
            text: text.into(),
        };
        let known: BTreeSet<String> = known.iter().map(|s| s.to_string()).collect();
        let e = event_expr(&mut out, &at, text, start, &known);
        (e, out.items.len())
    }

    #[test]
    fn runlevels_are_the_daemons_start_and_stop() {
        assert_eq!(expr("runlevel [2345]", true, &[]), (None, 0));
        assert_eq!(expr("runlevel [!016]", true, &[]), (None, 0));
        assert_eq!(expr("runlevel [016]", false, &[]), (None, 0));
        assert_eq!(expr("runlevel [!2345]", false, &[]), (None, 0));
        assert_eq!(expr("filesystem or runlevel [2345]", true, &[]), (None, 1));
    }

    #[test]
    fn job_events_are_kept() {
        assert_eq!(
            expr(
                "started redis-server and started celerybeat and started asyncserver",
                true,
                &["redis-server", "celerybeat", "asyncserver"]
            ),
            (
                Some("started redis-server and started celerybeat and started asyncserver".into()),
                0
            )
        );
        assert_eq!(
            expr(
                "stopping redis-server or runlevel [016]",
                false,
                &["redis-server"]
            ),
            (Some("stopping redis-server".into()), 0)
        );
        assert_eq!(
            expr(
                "(started a and runlevel [2345]) or deploy-done ENV=prod",
                true,
                &["a"]
            ),
            (Some("started a or deploy-done ENV=prod".into()), 0)
        );
        assert_eq!(expr("started mysql", true, &[]), (None, 1));
    }

    #[test]
    fn override_replaces_stanzas() {
        let mut base = parse(
            Path::new("a.conf"),
            "start on runlevel [2345]\nexec /bin/true\nenv A=1\n",
        )
        .expect("parse");
        let over = parse(Path::new("a.override"), "manual\nenv A=2\n").expect("parse");
        apply_override(&mut base, over);
        let kinds: Vec<String> = base
            .stanzas
            .iter()
            .map(|s| format!("{} {}", s.kind, s.args))
            .collect();
        assert_eq!(
            kinds,
            [
                "start on runlevel [2345]",
                "exec /bin/true",
                "manual ",
                "env A=2"
            ]
        );
    }
}
