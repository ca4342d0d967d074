//! A report: what a job's processes were doing when it was taken, its summary line for
//! alerts, and its text for `guardian reports JOB LAST`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::proc::ProcessInfo;
use super::sockets::Listener;

/// Everything one report holds. Written as JSON under `state-dir/reports/JOB/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub job: String,
    /// When it was taken, RFC 3339 with milliseconds.
    pub time: String,
    /// Why: `check health failed (...); action restart`, or `guardian diagnose`.
    pub why: String,
    /// How long taking it took, and the deadline it had.
    pub took_ms: f64,
    pub deadline_ms: u64,
    /// False when the deadline passed before everything was gathered.
    pub complete: bool,
    pub main_pid: Option<u32>,
    /// The main process first, then the rest of the job.
    pub processes: Vec<ProcessInfo>,
    /// Each listening socket of the job, with its accept queue where the kernel shows it.
    pub listeners: Vec<Listener>,
    /// The window over which `cpu_percent` was measured.
    pub cpu_window_ms: u64,
    /// How long the check that acted has been failing, when a check acted.
    #[serde(default)]
    pub failing_secs: Option<f64>,
    /// The job's log file and its last lines.
    pub log_file: Option<String>,
    pub log: Vec<String>,
    /// The job's own `diagnose` command and what it printed.
    pub diagnose: Option<DiagnoseRun>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
    /// The one line an alert carries.
    pub summary: String,
}

/// A run of the job's `diagnose` command.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DiagnoseRun {
    pub command: String,
    /// `exited 0`, `timed out after 1.5s, killed`, `could not run: ...`.
    pub status: String,
    pub output: String,
    pub took_ms: f64,
}

/// One report in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The file's name, which `reports JOB NAME` takes too.
    pub name: String,
    pub path: String,
    pub time: String,
    pub why: String,
    pub summary: String,
}

/// The longest last log line an alert's summary quotes, in characters.
const SUMMARY_LOG: usize = 120;

impl Report {
    /// "main thread in futex_wait_queue (futex), no CPU for 250 ms, check failing for
    /// 14 s; accept queue 6/5 on 127.0.0.1:8000 (full); last log line: ...".
    pub fn make_summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match self.processes.first() {
            Some(main) => {
                let mut s = match main.threads.first() {
                    Some(t) => format!(
                        "main thread {} in {}",
                        short_state(&t.state),
                        esc(&t.waiting_in())
                    ),
                    None => format!("main process {}", main.state),
                };
                if main.cpu_percent.is_some_and(|c| c < 0.5) {
                    let _ = write!(s, ", no CPU for {} ms", self.cpu_window_ms);
                }
                if let Some(f) = self.failing_secs {
                    let _ = write!(s, ", check failing for {f:.0} s");
                }
                parts.push(s);
            }
            None => parts.push("no process of the job was found".into()),
        }
        let queues: Vec<String> = self
            .listeners
            .iter()
            .filter_map(|l| {
                let q = l.queue?;
                let b = l.backlog.map_or("?".to_string(), |b| b.to_string());
                let full = if l.full() { " (full)" } else { "" };
                Some(format!("accept queue {q}/{b} on {}{full}", esc(&l.address)))
            })
            .take(3)
            .collect();
        parts.extend(queues);
        if let Some(d) = &self.diagnose {
            parts.push(format!("diagnose {}", d.status));
        }
        if let Some(last) = self.log.iter().rev().find(|l| !l.trim().is_empty()) {
            let mut cut: String = last.chars().take(SUMMARY_LOG).collect();
            if cut.len() < last.len() {
                cut.push_str("...");
            }
            parts.push(format!("last log line: {}", crate::logtext::escape(&cut)));
        }
        if !self.complete {
            parts.push(format!(
                "incomplete: {} ms deadline passed",
                self.deadline_ms
            ));
        }
        parts.join("; ")
    }

    /// The report for a person, as `guardian diagnose` and `guardian reports JOB LAST`
    /// print it.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "report on {} at {}", self.job, self.time);
        let _ = writeln!(o, "why: {}", self.why);
        let _ = writeln!(
            o,
            "took {:.0} ms (deadline {} ms){}",
            self.took_ms,
            self.deadline_ms,
            if self.complete { "" } else { ", INCOMPLETE" }
        );
        let _ = writeln!(o, "summary: {}", self.summary);
        for p in &self.processes {
            let _ = writeln!(
                o,
                "\nprocess {} (ppid {}): {}",
                p.pid,
                p.ppid,
                esc(&p.command)
            );
            let _ = writeln!(
                o,
                "  state {}; {} thread{}; fds {}; rss {}; cpu {} total{}",
                p.state,
                p.threads_total,
                if p.threads_total == 1 { "" } else { "s" },
                p.fds.map_or("?".into(), |n| n.to_string()),
                p.rss_bytes
                    .map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
                p.cpu_secs.map_or("?".into(), |c| format!("{c:.2} s")),
                p.cpu_percent
                    .map(|c| format!(", {c:.1}% over {} ms", self.cpu_window_ms))
                    .unwrap_or_default()
            );
            for t in &p.threads {
                let _ = writeln!(
                    o,
                    "  thread {} {:?}: {}, wchan {}, syscall {}",
                    t.tid,
                    esc(&t.name),
                    t.state,
                    t.wchan.as_deref().unwrap_or("-"),
                    t.syscall.as_deref().unwrap_or("?")
                );
                for frame in &t.stack {
                    let _ = writeln!(o, "      {frame}");
                }
            }
            let shown = u32::try_from(p.threads.len()).unwrap_or(u32::MAX);
            if shown < p.threads_total {
                let _ = writeln!(o, "  ({} more threads not shown)", p.threads_total - shown);
            }
        }
        if !self.listeners.is_empty() {
            let _ = writeln!(o, "\nlistening sockets:");
            for l in &self.listeners {
                let q = match (l.queue, l.backlog) {
                    (Some(q), Some(b)) => format!(
                        "accept queue {q}/{b}{}",
                        if l.full() { " FULL" } else { "" }
                    ),
                    (Some(q), None) => format!("accept queue {q} (backlog not shown)"),
                    _ => "queue length not shown by /proc".into(),
                };
                let _ = writeln!(o, "  {} {}: {q}", l.kind, esc(&l.address));
            }
        }
        if let Some(d) = &self.diagnose {
            let _ = writeln!(
                o,
                "\ndiagnose `{}`: {} after {:.0} ms",
                esc(&d.command),
                d.status,
                d.took_ms
            );
            for line in d.output.lines() {
                let _ = writeln!(o, "  {}", esc(line));
            }
        }
        if !self.log.is_empty() {
            let _ = writeln!(
                o,
                "\nlast {} log lines ({}):",
                self.log.len(),
                self.log_file.as_deref().unwrap_or("?")
            );
            for line in &self.log {
                let _ = writeln!(o, "  {line}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\nnotes:");
            for n in &self.notes {
                let _ = writeln!(o, "  {n}");
            }
        }
        o
    }
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::logtext::escape(s)
}

/// `sleeping` for `S (sleeping)`.
fn short_state(s: &str) -> &str {
    s.split_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::proc::ThreadInfo;

    #[test]
    fn summary_names_the_wait_the_queue_and_the_last_line() {
        let r = Report {
            job: "web".into(),
            processes: vec![ProcessInfo {
                pid: 10,
                state: "S (sleeping)".into(),
                threads: vec![ThreadInfo {
                    tid: 10,
                    state: "S (sleeping)".into(),
                    wchan: Some("futex_wait_queue".into()),
                    syscall: Some("futex".into()),
                    ..ThreadInfo::default()
                }],
                cpu_percent: Some(0.0),
                ..ProcessInfo::default()
            }],
            listeners: vec![Listener {
                kind: "tcp".into(),
                address: "127.0.0.1:8000".into(),
                inode: 1,
                queue: Some(129),
                backlog: Some(128),
            }],
            cpu_window_ms: 250,
            failing_secs: Some(14.2),
            log: vec![
                "GET /slow".into(),
                "waiting for the lock\u{1b}[0m".into(),
                "".into(),
            ],
            complete: true,
            ..Report::default()
        };
        let s = r.make_summary();
        assert_eq!(
            s,
            "main thread sleeping in futex_wait_queue (futex), no CPU for 250 ms, check failing for 14 s; \
             accept queue 129/128 on 127.0.0.1:8000 (full); last log line: waiting for the lock\\u{1b}[0m"
        );
        assert!(r.text().contains("accept queue 129/128 FULL"));
    }
}
