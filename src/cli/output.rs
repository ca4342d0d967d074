//! Human output: the summary table, one job's details, a job's environment.

use std::io::{self, Write};

use crate::control::protocol::{CheckReport, JobRow, JobStatus};
use crate::process::env::EnvReport;

pub(crate) fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

pub(crate) fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}MB", n / 1e6)
    } else {
        format!("{:.0}KB", n / 1e3)
    }
}

fn or_dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The health of the host, from its checks' last runs, in the words of a job's.
fn host_health(host: &[CheckReport]) -> &'static str {
    if host.iter().any(|c| c.passed == Some(false)) {
        "unhealthy"
    } else if host.iter().any(|c| c.passed == Some(true)) {
        "healthy"
    } else {
        "unknown"
    }
}

/// One row of the summary table for one job.
fn job_row(j: &JobRow, indent: &str) -> [String; 9] {
    [
        format!("{indent}{}", j.name),
        j.goal.to_string(),
        j.state.to_string(),
        j.health.clone(),
        or_dash(j.pid, |p| p.to_string()),
        or_dash(j.uptime_secs, duration),
        or_dash(j.cpu_secs, |c| format!("{c:.1}s")),
        or_dash(j.rss_bytes, bytes),
        if j.monitored { "yes" } else { "no" }.to_string(),
    ]
}

/// The row of a job file's instances as one: `web  start  3/3 running  healthy ...`,
/// the goal and health they share (the worst health if they differ), the shortest
/// uptime, the sum of their CPU and memory.
fn set_row(base: &str, set: &[&JobRow]) -> [String; 9] {
    let n = set.len();
    let running = set
        .iter()
        .filter(|j| j.state == crate::control::protocol::JobState::Running)
        .count();
    let goal = match set.first() {
        Some(f) if set.iter().all(|j| j.goal == f.goal) => f.goal.to_string(),
        _ => "mixed".to_string(),
    };
    let health = if set.iter().any(|j| j.health == "unhealthy") {
        "unhealthy".to_string()
    } else {
        set.iter()
            .map(|j| j.health.as_str())
            .find(|h| *h != "healthy")
            .unwrap_or("healthy")
            .to_string()
    };
    let uptime = set
        .iter()
        .filter_map(|j| j.uptime_secs)
        .min_by(f64::total_cmp);
    let cpu = set.iter().filter_map(|j| j.cpu_secs).reduce(|a, b| a + b);
    let mem = set
        .iter()
        .filter_map(|j| j.rss_bytes)
        .reduce(u64::saturating_add);
    let monitored = set.iter().filter(|j| j.monitored).count();
    [
        base.to_string(),
        goal,
        format!("{running}/{n} running"),
        health,
        "-".to_string(),
        or_dash(uptime, duration),
        or_dash(cpu, |c| format!("{c:.1}s")),
        or_dash(mem, bytes),
        match monitored {
            0 => "no",
            m if m == n => "yes",
            _ => "some",
        }
        .to_string(),
    ]
}

/// Whether the instances of a set all say the same, so that one line tells them.
fn alike(set: &[&JobRow]) -> bool {
    set.windows(2).all(|w| {
        w[0].goal == w[1].goal
            && w[0].state == w[1].state
            && w[0].health == w[1].health
            && w[0].monitored == w[1].monitored
    })
}

/// The summary's rows: a job a row; with `group`, the instances of a job file as one
/// row of their own (followed by a row per instance, indented, when they differ).
fn rows_of(jobs: &[JobRow], group: bool) -> Vec<[String; 9]> {
    let mut order: Vec<&JobRow> = jobs.iter().collect();
    // `web@2` before `web@10`.
    fn key(j: &JobRow) -> (&str, Option<u32>) {
        (j.base.as_deref().unwrap_or(&j.name), j.instance)
    }
    order.sort_by(|a, b| key(a).cmp(&key(b)));
    let mut rows = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let j = order[i];
        let Some(base) = j.base.as_deref().filter(|_| group) else {
            rows.push(job_row(j, ""));
            i += 1;
            continue;
        };
        let mut end = i;
        while end < order.len() && order[end].base.as_deref() == Some(base) {
            end += 1;
        }
        let set = &order[i..end];
        rows.push(set_row(base, set));
        if !alike(set) {
            rows.extend(set.iter().map(|j| job_row(j, "  ")));
        }
        i = end;
    }
    rows
}

/// The summary table. With `group`, the instances of a job file make one row.
pub fn summary(
    out: &mut impl Write,
    jobs: &[JobRow],
    host: &[CheckReport],
    group: bool,
) -> io::Result<()> {
    // One write for the table, not one per line (stdout is line-buffered).
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    let mut rows = rows_of(jobs, group);
    if !host.is_empty() {
        // Like monit's `System` line; a job of that name keeps it, the host's is bracketed.
        let name = if jobs.iter().any(|j| j.name == "system") {
            "(system)"
        } else {
            "system"
        };
        let dash = || "-".to_string();
        rows.push([
            name.to_string(),
            dash(),
            dash(),
            host_health(host).to_string(),
            dash(),
            dash(),
            dash(),
            dash(),
            "yes".to_string(),
        ]);
    }
    let header = [
        "NAME", "GOAL", "STATE", "HEALTH", "PID", "UPTIME", "CPU", "MEM", "MON",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| -> io::Result<()> {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                writeln!(out, "{cell}")?;
            } else {
                write!(out, "{cell:<w$}  ", w = widths[i])?;
            }
        }
        Ok(())
    };
    line(&mut out, &header)?;
    for row in &rows {
        let cells: [&str; 9] = std::array::from_fn(|i| row[i].as_str());
        line(&mut out, &cells)?;
    }
    for c in host {
        check_line(&mut out, c)?;
    }
    out.flush()
}

/// One `label: value` line of `status JOB`, the values in one column.
fn field(out: &mut impl Write, label: &str, value: impl std::fmt::Display) -> io::Result<()> {
    writeln!(out, "{:<LABEL_WIDTH$}{value}", format!("{label}:"))
}

/// The width of the longest label of `status JOB` ("stopped by hand:") and a space.
const LABEL_WIDTH: usize = 17;

pub fn job_details(out: &mut impl Write, j: &JobStatus) -> io::Result<()> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    field(out, "name", &j.name)?;
    if let Some(d) = &j.description {
        field(out, "description", d)?;
    }
    if !j.groups.is_empty() {
        field(out, "groups", j.groups.join(", "))?;
    }
    field(out, "goal", j.goal)?;
    field(out, "state", j.state)?;
    field(out, "pid", or_dash(j.pid, |p| p.to_string()))?;
    field(out, "health", &j.health)?;
    field(out, "monitored", yes_no(j.monitored))?;
    field(out, "stopped by hand", yes_no(j.manual_stop))?;
    field(out, "uptime", or_dash(j.uptime_secs, duration))?;
    field(out, "cpu", or_dash(j.cpu_secs, |c| format!("{c:.2}s")))?;
    field(out, "memory", or_dash(j.rss_bytes, bytes))?;
    field(out, "restarts", j.restarts)?;
    if let Some(secs) = j.respawn_in_secs {
        let when = if secs < 60.0 {
            format!("{secs:.1}s")
        } else {
            duration(secs)
        };
        field(out, "next try", format!("respawn in {when}"))?;
    }
    match &j.last_failure {
        Some(f) => field(
            out,
            "last failure",
            format!("{} {} at {}", f.process, f.status, f.at),
        )?,
        None => field(out, "last failure", "none")?,
    }
    if let Some(cg) = &j.cgroup {
        field(out, "cgroup", cg)?;
    }
    for c in &j.checks {
        check_line(out, c)?;
    }
    if let Some(procs) = j.processes.as_ref().filter(|p| !p.is_empty()) {
        writeln!(out, "processes:")?;
        writeln!(out, "  {:>7} {:>7}  COMMAND", "PID", "PPID")?;
        for p in procs {
            writeln!(out, "  {:>7} {:>7}  {}", p.pid, p.ppid, p.command)?;
        }
    }
    Ok(())
}

/// `check NAME (TARGET, then ACTION): OUTCOME: REASON`.
fn check_line(out: &mut impl Write, c: &CheckReport) -> io::Result<()> {
    let state = match (c.passed, c.failing) {
        (None, _) => "not run yet",
        (Some(_), true) => "FAILING",
        (Some(true), false) => "ok",
        (Some(false), false) => "failed",
    };
    let reason = c
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    writeln!(
        out,
        "check {} ({}, then {}): {state}{reason}",
        c.name, c.target, c.action
    )
}

pub fn env_report(out: &mut impl Write, r: &EnvReport) -> io::Result<()> {
    writeln!(out, "job:     {}", r.job)?;
    writeln!(out, "user:    {} (uid {})", r.user, r.uid)?;
    writeln!(out, "group:   {} (gid {})", r.group, r.gid)?;
    if !r.groups.is_empty() {
        let g: Vec<String> = r.groups.iter().map(u32::to_string).collect();
        writeln!(out, "groups:  {}", g.join(" "))?;
    }
    writeln!(out, "chdir:   {}", r.chdir)?;
    writeln!(out, "umask:   {}", r.umask)?;
    writeln!(out, "nice:    {}", or_dash(r.nice, |n| n.to_string()))?;
    if r.limits.is_empty() {
        writeln!(out, "limits:  inherited from guardian")?;
    } else {
        writeln!(out, "limits:  (resource soft hard)")?;
        for (name, soft, hard) in &r.limits {
            writeln!(out, "  {name:<10} {soft:<12} {hard}")?;
        }
    }
    writeln!(out, "environment:")?;
    for (k, v) in &r.env {
        writeln!(out, "  {k}={v}")?;
    }
    Ok(())
}

/// The dependency graph in Graphviz DOT, as initctl2dot drew it: jobs are boxes, events
/// that are not about a job are diamonds; `start-on` edges are solid, `stop-on` dashed.
pub fn graph(
    out: &mut impl Write,
    jobs: &std::collections::BTreeMap<String, crate::config::JobSpec>,
) -> io::Result<()> {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    writeln!(out, "digraph guardian {{")?;
    writeln!(out, "  rankdir=LR;")?;
    writeln!(out, "  node [shape=box, style=rounded];")?;
    for (name, spec) in jobs {
        // DOT's `\n` is a line break in a label: it goes after the quoting, which would
        // double its backslash and print a literal `\n`.
        let mut label = quote(name);
        label.pop();
        if spec.manual {
            label.push_str("\\n(manual)");
        }
        if spec.task {
            label.push_str("\\n(task)");
        }
        label.push('"');
        writeln!(out, "  {} [label={label}];", quote(&format!("job:{name}")),)?;
    }
    let edges = crate::config::deps::edges(jobs);
    let mut events: Vec<&str> = edges
        .iter()
        .filter(|e| !e.from_is_job)
        .map(|e| e.from.as_str())
        .collect();
    events.sort_unstable();
    events.dedup();
    for e in events {
        writeln!(
            out,
            "  {} [label={}, shape=diamond];",
            quote(&format!("event:{e}")),
            quote(e)
        )?;
    }
    for e in &edges {
        let from = if e.from_is_job {
            format!("job:{}", e.from)
        } else {
            format!("event:{}", e.from)
        };
        let label = if e.from_is_job {
            let verb = if e.stop { "stop on" } else { "start on" };
            format!("{verb} {}", e.event)
        } else if e.stop {
            "stop on".to_string()
        } else {
            "start on".to_string()
        };
        let style = if e.stop { ", style=dashed" } else { "" };
        writeln!(
            out,
            "  {} -> {} [label={}{style}];",
            quote(&from),
            quote(&format!("job:{}", e.to)),
            quote(&label)
        )?;
    }
    writeln!(out, "}}")
}

/// `check --json`: `{valid, jobs, diagnostics: [{severity, file, line, column,
/// message, hint}]}`; `line` and `column` are 1-based, null for a whole file.
pub fn check_json(
    jobs: Option<usize>,
    warnings: &[String],
    errors: &[crate::config::Diagnostic],
) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut diagnostics: Vec<Value> = errors
        .iter()
        .map(|d| {
            let at = |n: usize| if d.line == 0 { Value::Null } else { json!(n) };
            json!({
                "severity": "error",
                "file": d.file.display().to_string(),
                "line": at(d.line),
                "column": at(d.col),
                "message": d.message,
                "hint": d.hint,
            })
        })
        .collect();
    for w in warnings {
        // A warning about a file reads `PATH: what`; others are about the whole set.
        let (file, message) = match w.split_once(": ") {
            Some((path, rest)) if path.starts_with('/') => (json!(path), rest),
            _ => (Value::Null, w.as_str()),
        };
        diagnostics.push(json!({
            "severity": "warning",
            "file": file,
            "line": null,
            "column": null,
            "message": message,
            "hint": null,
        }));
    }
    json!({ "valid": errors.is_empty(), "jobs": jobs, "diagnostics": diagnostics })
}

/// `test-alert --json`: `{ok, results: [{to, sent, via, error}]}` from the daemon's
/// lines `TO: sent (via VIA)` and `TO: NOT sent: ERROR`.
pub fn test_alert_json(ok: bool, message: &str) -> serde_json::Value {
    use serde_json::json;
    let results: Vec<serde_json::Value> = message
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            if let Some((to, rest)) = line.split_once(": NOT sent: ") {
                json!({ "to": to, "sent": false, "via": null, "error": rest })
            } else if let Some((to, rest)) = line.split_once(": sent (via ") {
                let via = rest.strip_suffix(')').unwrap_or(rest);
                json!({ "to": to, "sent": true, "via": via, "error": null })
            } else {
                json!({ "to": null, "sent": false, "via": null, "error": line })
            }
        })
        .collect();
    json!({ "ok": ok, "results": results })
}

/// `graph --json`: `{jobs: [{name, manual, task}], events: [NAME], edges: [{from,
/// from_kind, to, event, kind}]}`, the same graph as the DOT.
pub fn graph_json(
    jobs: &std::collections::BTreeMap<String, crate::config::JobSpec>,
) -> serde_json::Value {
    use serde_json::json;
    let edges = crate::config::deps::edges(jobs);
    let mut events: Vec<&str> = edges
        .iter()
        .filter(|e| !e.from_is_job)
        .map(|e| e.from.as_str())
        .collect();
    events.sort_unstable();
    events.dedup();
    let nodes: Vec<serde_json::Value> = jobs
        .iter()
        .map(|(name, spec)| json!({ "name": name, "manual": spec.manual, "task": spec.task }))
        .collect();
    let edges: Vec<serde_json::Value> = edges
        .iter()
        .map(|e| {
            json!({
                "from": e.from,
                "from_kind": if e.from_is_job { "job" } else { "event" },
                "to": e.to,
                "event": e.event,
                "kind": if e.stop { "stop-on" } else { "start-on" },
            })
        })
        .collect();
    json!({ "jobs": nodes, "events": events, "edges": edges })
}

/// `env --json`: the report with its pairs as objects.
pub fn env_json(r: &EnvReport) -> serde_json::Value {
    use serde_json::json;
    let limits: Vec<serde_json::Value> = r
        .limits
        .iter()
        .map(|(name, soft, hard)| json!({ "resource": name, "soft": soft, "hard": hard }))
        .collect();
    let env: serde_json::Map<String, serde_json::Value> =
        r.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({
        "job": r.job,
        "user": r.user,
        "uid": r.uid,
        "group": r.group,
        "gid": r.gid,
        "groups": r.groups,
        "chdir": r.chdir,
        "umask": r.umask,
        "nice": r.nice,
        "limits": limits,
        "env": env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{FailureReport, Goal, JobState};

    #[test]
    fn status_values_start_in_one_column() {
        let j = JobStatus {
            name: "web".into(),
            description: Some("the site".into()),
            groups: vec!["frontend".into()],
            goal: Goal::Start,
            state: JobState::Waiting,
            pid: None,
            monitored: true,
            health: "unknown".into(),
            restarts: 3,
            respawn_in_secs: Some(0.7),
            uptime_secs: None,
            cpu_secs: None,
            rss_bytes: None,
            manual_stop: false,
            last_failure: Some(FailureReport {
                process: "main".into(),
                status: "exited 1".into(),
                at: "2026-11-21T09:14:03Z".into(),
            }),
            checks: Vec::new(),
            cgroup: None,
            cpu_from: None,
            rss_from: None,
            processes: None,
            instance: None,
            base: None,
        };
        let mut out = Vec::new();
        job_details(&mut out, &j).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 15, "{text}");
        assert!(text.contains("\ngroups:          frontend\n"), "{text}");
        for line in &lines {
            let colon = line.find(':').expect("a label");
            assert!(colon < LABEL_WIDTH, "{line}");
            assert_eq!(&line[colon + 1..LABEL_WIDTH].trim(), &"", "{line}");
            assert_ne!(line.as_bytes()[LABEL_WIDTH], b' ', "{line}");
        }
        assert!(text.contains("next try:        respawn in 0.7s"), "{text}");
        assert!(
            text.contains("last failure:    main exited 1 at 2026-11-21T09:14:03Z"),
            "{text}"
        );
    }
}
