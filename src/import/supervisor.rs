//! supervisord.conf (with the files its `[include]` names) to job files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::writer::{self, Doc};
use super::{At, Command, Error, Output};

/// One `key=value` of a section, with its place and the comments above it.
#[derive(Debug, Clone)]
struct Value {
    at: At,
    key: String,
    value: String,
    comments: Vec<String>,
}

#[derive(Debug, Clone)]
struct Section {
    at: At,
    name: String,
    values: Vec<Value>,
    comments: Vec<String>,
}

fn parse(file: &Path, text: &str) -> Result<Vec<Section>, Error> {
    let mut sections: Vec<Section> = Vec::new();
    let mut pending = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i.saturating_add(1);
        let t = raw.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(c) = t.strip_prefix(';').or_else(|| t.strip_prefix('#')) {
            pending.push(c.to_string());
            continue;
        }
        let at = At {
            file: file.to_path_buf(),
            line: line_no,
            text: raw.to_string(),
        };
        // A continuation line: indented, after a value.
        if raw.starts_with([' ', '\t'])
            && let Some(v) = sections.last_mut().and_then(|s| s.values.last_mut())
        {
            v.value.push(' ');
            v.value.push_str(&strip_inline_comment(t));
            continue;
        }
        if let Some(name) = t.strip_prefix('[') {
            let Some(name) = name.split(']').next().filter(|_| name.contains(']')) else {
                return Err(Error::new(file, line_no, "a section header without `]`"));
            };
            sections.push(Section {
                at,
                name: name.trim().to_string(),
                values: Vec::new(),
                comments: std::mem::take(&mut pending),
            });
            continue;
        }
        let Some((k, v)) = t.split_once(['=', ':']) else {
            return Err(Error::new(
                file,
                line_no,
                "expected `key=value` or a [section]",
            ));
        };
        let Some(section) = sections.last_mut() else {
            return Err(Error::new(
                file,
                line_no,
                "a value before the first [section]",
            ));
        };
        let (value, trailing) = split_inline(v.trim());
        let mut comments = std::mem::take(&mut pending);
        comments.extend(trailing);
        section.values.push(Value {
            at,
            key: k.trim().to_lowercase(),
            value,
            comments,
        });
    }
    Ok(sections)
}

/// `value ; comment`: supervisord takes ` ;` as the start of an inline comment.
fn split_inline(v: &str) -> (String, Option<String>) {
    match v.find(" ;").or_else(|| v.find("\t;")) {
        Some(i) => (
            v[..i].trim_end().to_string(),
            Some(v[i.saturating_add(2)..].to_string()),
        ),
        None => (v.to_string(), None),
    }
}

fn strip_inline_comment(v: &str) -> String {
    split_inline(v).0
}

pub fn import(file: &Path, existing: &BTreeSet<String>) -> Result<Output, Error> {
    let _ = existing;
    let mut out = Output::default();
    let text = super::read_text(file)?;
    let mut sections = parse(file, &text)?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    // [include] files, relative to the file that names them.
    let mut included = Vec::new();
    for s in sections.iter().filter(|s| s.name == "include") {
        for v in &s.values {
            if v.key != "files" {
                out.drop_line(&v.at, "[include] takes only `files`");
                continue;
            }
            for pattern in v.value.split_whitespace() {
                let found = super::glob(&base, pattern);
                if found.is_empty() {
                    out.report(
                        &v.at,
                        super::Kind::Note,
                        format!("`{pattern}` names no file"),
                    );
                }
                for f in found {
                    let t = super::read_text(&f)?;
                    included.extend(parse(&f, &t)?);
                }
            }
        }
    }
    sections.extend(included);
    let here = std::path::absolute(&base).unwrap_or(base);
    let mut group_sections = Vec::new();
    for s in sections {
        let (kind, name) = match s.name.split_once(':') {
            Some((k, n)) => (k.trim().to_string(), n.trim().to_string()),
            None => (s.name.clone(), String::new()),
        };
        match kind.as_str() {
            "program" => {
                let job = super::job_name(&name);
                if job != name {
                    out.approx(&s.at, format!("`{name}` is not a job name guardian takes: the job is `{job}`"));
                }
                let doc = program(&mut out, &s, &name, &here);
                out.jobs.push((job, doc));
            }
            "include" => {}
            // Once every program is read: a group may come before its programs.
            "group" => group_sections.push((name, s)),
            "eventlistener" => out.drop_line(
                &s.at,
                format!(
                    "an event listener (this section and its {} lines) is not translated: guardian has no listener protocol; alerts and webhooks (docs/alerts.md) carry its events",
                    s.values.len()
                ),
            ),
            "fcgi-program" => out.drop_line(
                &s.at,
                format!(
                    "a FastCGI program (this section and its {} lines) is not translated: guardian does not open sockets for its jobs",
                    s.values.len()
                ),
            ),
            _ => {
                let why = match kind.as_str() {
                    "supervisord" => "a setting of supervisord itself; guardian's own settings are in guardian.toml (docs/configuration.md)",
                    "unix_http_server" => "guardian's control socket is `socket` in guardian.toml (mode 0600; `read-group` for readers)",
                    "inet_http_server" => "guardian's control socket is a unix socket; there is no HTTP server to configure here",
                    "supervisorctl" => "guardian's commands find the socket through -c DIR or --socket",
                    "rpcinterface" => "guardian has no RPC interface plug-ins",
                    _ => "not a section guardian knows",
                };
                if s.values.is_empty() {
                    out.drop_line(&s.at, why);
                }
                for v in &s.values {
                    out.drop_line(&v.at, why);
                }
            }
        }
    }
    groups(&mut out, group_sections);
    Ok(out)
}

/// `[group:x]` with `programs=a,b`: `groups = ["x"]` in the jobs of a and b.
fn groups(out: &mut Output, sections: Vec<(String, Section)>) {
    let mut of_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, s) in sections {
        let group = super::job_name(&name);
        if group != name {
            out.approx(
                &s.at,
                format!("`{name}` is not a group name guardian takes: the group is `{group}`"),
            );
        }
        if !s.values.iter().any(|v| v.key == "programs") {
            out.drop_line(&s.at, "a group without `programs` has no jobs");
        }
        for v in &s.values {
            match v.key.as_str() {
                "programs" => {
                    for program in v.value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let job = super::job_name(program);
                        if !out.jobs.iter().any(|(j, _)| *j == job) {
                            out.drop_line(
                                &v.at,
                                format!("there is no [program:{program}] for the group `{group}`"),
                            );
                            continue;
                        }
                        let list = of_job.entry(job).or_default();
                        if !list.contains(&group) {
                            list.push(group.clone());
                        }
                    }
                }
                "priority" => out.drop_line(
                    &v.at,
                    "guardian takes a group's jobs in dependency order (`start-on`), not by priority",
                ),
                _ => out.drop_line(&v.at, "not a key of [group:x]: `programs` and `priority` are"),
            }
        }
    }
    for (job, list) in of_job {
        if let Some((_, doc)) = out.jobs.iter_mut().find(|(j, _)| *j == job) {
            let comment = vec![format!(
                " supervisord's [group:{}]: guardian start|stop|restart -g GROUP",
                list.join("], [group:")
            )];
            doc.set(comment, "groups", writer::strings(&list));
        }
    }
}

/// A program's `numprocs` and `numprocs_start`, when it runs more than one process.
#[derive(Clone, Copy)]
struct Procs {
    count: u32,
    start: u32,
}

/// supervisord's `%(name)s` expansions that have a meaning for one program. With
/// `procs`, `%(process_num)d` is each instance's: `$INSTANCE`, or `$((START +
/// INSTANCE))` from `numprocs_start`.
fn expand(out: &mut Output, v: &Value, program: &str, here: &Path, procs: Option<Procs>) -> String {
    let mut s = v.value.clone();
    let mut approximated = Vec::new();
    let mut guard = 0;
    while let Some(start) = s.find("%(") {
        guard += 1;
        if guard > 100 {
            break;
        }
        let Some(end_rel) = s[start..].find(')') else {
            break;
        };
        let end = start.saturating_add(end_rel);
        let name = s[start.saturating_add(2)..end].to_string();
        // The conversion letter after `)`: s or d, with an optional width (02d).
        let after = end.saturating_add(1);
        let digits = s[after..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let stop = match s[after.saturating_add(digits)..].chars().next() {
            Some(c) => after.saturating_add(digits).saturating_add(c.len_utf8()),
            None => s.len(),
        };
        let value = match name.as_str() {
            "program_name" | "group_name" => program.to_string(),
            "here" => here.display().to_string(),
            "process_num" => match procs {
                None => "0".to_string(),
                Some(p) => {
                    if digits > 0 {
                        approximated.push(format!(
                            "%(process_num){}d is written without its leading zeros: guardian's $INSTANCE is 0, 1, 2 ...",
                            &s[after..after.saturating_add(digits)]
                        ));
                    }
                    if p.start == 0 {
                        "$INSTANCE".to_string()
                    } else {
                        format!("$(({} + INSTANCE))", p.start)
                    }
                }
            },
            "numprocs" => procs.map_or(1, |p| p.count).to_string(),
            "host_node_name" => {
                approximated.push(
                    "%(host_node_name)s is this host's name, where the import ran".to_string(),
                );
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_default()
            }
            n if n.starts_with("ENV_") => {
                let var = &n[4..];
                approximated.push(format!(
                    "%({n})s is supervisord's environment; the value it has here, where the import ran, was written"
                ));
                std::env::var(var).unwrap_or_default()
            }
            _ => {
                approximated.push(format!(
                    "%({name}) is not an expansion guardian knows; left as written"
                ));
                break;
            }
        };
        s.replace_range(start..stop, &value);
    }
    for a in approximated {
        out.approx(&v.at, a);
    }
    s
}

fn bool_of(v: &str) -> Option<bool> {
    match v.to_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// `A="1",B=2` as supervisord's `environment` writes it.
fn environment(v: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        chars.next()?; // '='
        let mut value = String::new();
        match chars.peek() {
            Some(&q) if q == '"' || q == '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        c if c == q => break,
                        '\\' => value.push(chars.next()?),
                        c => value.push(c),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        let key = key.trim().to_string();
        if key.is_empty() {
            return None;
        }
        out.push((key, value.trim_end().to_string()));
    }
    Some(out)
}

fn program(out: &mut Output, s: &Section, name: &str, here: &Path) -> Doc {
    let mut doc = Doc {
        header: s.comments.clone(),
        ..Doc::default()
    };
    doc.set(
        vec![format!(" From [program:{name}] of {}", s.at.file.display())],
        "description",
        writer::string(&format!("{name} (from supervisord)")),
    );
    let get = |k: &str| s.values.iter().rev().find(|v| v.key == k);
    let env: Vec<(String, String)> = get("environment")
        .and_then(|v| environment(&v.value))
        .unwrap_or_default();
    let env_path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let startsecs: u64 = get("startsecs")
        .and_then(|v| v.value.parse().ok())
        .unwrap_or(1);
    let procs = get("numprocs")
        .and_then(|v| v.value.parse::<u32>().ok())
        .filter(|n| *n > 1 && *n <= crate::config::instances::MAX_INSTANCES)
        .map(|count| Procs {
            count,
            start: get("numprocs_start")
                .and_then(|v| v.value.parse().ok())
                .unwrap_or(0),
        });
    let mut restart_given = false;
    let mut stopwait_given = false;
    let mut exitcodes_done = false;
    for v in &s.values {
        let c = v.comments.clone();
        let at = &v.at;
        let value = expand(out, v, name, here, procs);
        match v.key.as_str() {
            "command" => match super::command_words(out, at, &value, env_path.as_deref()) {
                Command::Exec(x) => doc.set(c, "exec", writer::string(&x)),
                Command::Shell(x) => doc.set(c, "script", writer::string(&format!("exec {x}"))),
            },
            "directory" => match super::dir_ok(&value) {
                Ok(()) => doc.set(c, "chdir", writer::string(&value)),
                Err(why) => {
                    out.drop_line(at, format!("{why}, and `check` refuses a chdir that does not exist; written commented out"));
                    doc.disabled(c, "chdir", writer::string(&value), &why);
                }
            },
            "user" => match super::user_ok(&value) {
                Ok(()) => doc.set(c, "setuid", writer::string(&value)),
                Err(why) => {
                    out.drop_line(at, format!("{why}; written commented out"));
                    doc.disabled(c, "setuid", writer::string(&value), &why);
                }
            },
            "umask" => doc.set(c, "umask", writer::string(&value)),
            "environment" => match environment(&value) {
                Some(pairs) => doc.set(c, "env", writer::inline_strings(&pairs)),
                None => out.drop_line(
                    at,
                    "this environment could not be read as KEY=\"value\",KEY2=\"value2\"",
                ),
            },
            "autostart" => match bool_of(&value) {
                Some(false) => doc.set(c, "manual", "true".into()),
                Some(true) => {}
                None => out.drop_line(at, "expected true or false"),
            },
            "autorestart" => {
                restart_given = true;
                match value.to_lowercase().as_str() {
                    "unexpected" => doc.set(c, "respawn", "true".into()),
                    v2 => match bool_of(v2) {
                        // Restart whatever the exit status: no status is normal.
                        Some(true) => {
                            doc.set(c, "respawn", "true".into());
                            doc.set(
                                vec![" autorestart=true: every exit is restarted".into()],
                                "normal-exit",
                                "[]".into(),
                            );
                            exitcodes_done = true;
                        }
                        Some(false) => doc.set(c, "respawn", "false".into()),
                        None => out.drop_line(at, "expected true, false or unexpected"),
                    },
                }
            }
            "exitcodes" => {
                if exitcodes_done {
                    out.approx(at, "with autorestart=true every exit is restarted, so exitcodes only changes what supervisord calls expected");
                    continue;
                }
                let codes: Option<Vec<String>> = value
                    .split(',')
                    .map(|x| x.trim().parse::<u8>().ok().map(|n| n.to_string()))
                    .collect();
                match codes {
                    Some(codes) => doc.set(c, "normal-exit", format!("[{}]", codes.join(", "))),
                    None => out.drop_line(
                        at,
                        "exit codes are numbers from 0 to 255, separated by commas",
                    ),
                }
            }
            "startsecs" => {
                doc.set(
                    c,
                    "respawn-delay",
                    format!(
                        "{{ stable = {} }}",
                        writer::string_inline(&format!("{startsecs}s"))
                    ),
                );
                out.approx(at, "a run shorter than startsecs is a quick failure, respawned after a growing delay; guardian does not wait startsecs before the job counts as running (a [ready] probe does that)");
            }
            "startretries" => match value.parse::<u64>() {
                Ok(n) => {
                    let count = n.clamp(1, 10_000);
                    let interval = startsecs.max(1).saturating_mul(count.saturating_add(1));
                    doc.set(
                        c,
                        "respawn-limit",
                        format!(
                            "{{ count = {count}, interval = {} }}",
                            writer::string_inline(&format!("{interval}s"))
                        ),
                    );
                    out.approx(at, "supervisord gives up after this many failed starts in a row; guardian after this many respawns within the interval (startsecs x (startretries + 1) here)");
                }
                Err(_) => out.drop_line(at, "expected a number"),
            },
            "stopsignal" => doc.set(c, "kill-signal", writer::string(&value)),
            "stopwaitsecs" => match value.parse::<u64>() {
                Ok(n) => {
                    stopwait_given = true;
                    doc.set(c, "kill-timeout", writer::string(&format!("{n}s")));
                }
                Err(_) => out.drop_line(at, "expected a number of seconds"),
            },
            "stopasgroup" | "killasgroup" => match bool_of(&value) {
                Some(true) => {}
                _ => out.approx(
                    at,
                    "guardian always signals the job's whole process group (and cgroup)",
                ),
            },
            "numprocs" => match value.parse::<u32>() {
                Ok(1) => {}
                Ok(n) if procs.is_some() => doc.set(c, "instances", n.to_string()),
                _ => out.drop_line(
                    at,
                    format!(
                        "guardian runs 1 to {} instances of a job",
                        crate::config::instances::MAX_INSTANCES
                    ),
                ),
            },
            // Read with numprocs: it numbers %(process_num)d.
            "numprocs_start" => {
                if procs.is_none() {
                    out.drop_line(at, "numprocs_start without numprocs above 1 numbers nothing")
                }
            }
            "process_name" => match procs {
                Some(p) => out.approx(
                    at,
                    format!(
                        "the processes are the jobs {name}@0 to {name}@{}, not named by process_name",
                        p.count.saturating_sub(1)
                    ),
                ),
                None if value != name => out.approx(
                    at,
                    format!("the process is the job `{name}`, called after the program"),
                ),
                None => {}
            },
            "priority" => {
                out.drop_line(at, "guardian orders starts by `start-on`, not by priority")
            }
            "redirect_stderr" => {
                if bool_of(&value) != Some(true) {
                    out.approx(
                        at,
                        "stdout and stderr both go to the job's log, LOG-DIR/JOB.log",
                    );
                }
            }
            "stdout_logfile" | "stderr_logfile" => out.approx(
                at,
                "guardian writes the job's output to LOG-DIR/JOB.log (`log-dir` in guardian.toml)",
            ),
            "stdout_logfile_maxbytes"
            | "stderr_logfile_maxbytes"
            | "stdout_logfile_backups"
            | "stderr_logfile_backups" => out.approx(
                at,
                "log rotation is `log-max-size` and `log-keep` in guardian.toml, for every job",
            ),
            k if k.ends_with("_capture_maxbytes")
                || k.ends_with("_events_enabled")
                || k.ends_with("_syslog") =>
            {
                out.drop_line(
                    at,
                    "guardian has no capture mode, process-communication events or syslog output",
                )
            }
            "serverurl" => out.drop_line(
                at,
                "guardian's commands find the socket through -c DIR or --socket",
            ),
            _ => out.drop_line(at, "guardian has no such setting"),
        }
    }
    if get("command").is_none() {
        out.drop_line(
            &s.at,
            "a program without `command`: the job has no main process",
        );
    }
    if !restart_given {
        doc.set(
            vec![" supervisord's default: autorestart=unexpected".into()],
            "respawn",
            "true".into(),
        );
    }
    if !stopwait_given {
        doc.set(
            vec![" supervisord's default: stopwaitsecs=10".into()],
            "kill-timeout",
            writer::string("10s"),
        );
    }
    doc
}
