//! Reports on what a job's processes are doing: taken before a check's `restart` or
//! `stop` kills them (and by `guardian diagnose JOB`), so that the evidence of a hang
//! outlives the process.
//!
//! Taking a report never holds the daemon's loop: /proc is read on a blocking thread
//! and the job's own `diagnose` command runs as the daemon's child (through the one
//! reaper) with its own timeout, both under one overall deadline ([`DEADLINE`] unless
//! `report-deadline` says otherwise). At the deadline the report is made of what was
//! gathered by then and marked incomplete; the action waits for the report or its
//! deadline, whichever comes first.

pub mod proc;
pub mod report;
pub mod sockets;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use report::{DiagnoseRun, Entry, Report};

/// How long a report may take by default, the `diagnose` command included.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// How many reports each job keeps by default (`report-keep`).
pub const DEFAULT_KEEP: u32 = 10;
/// The job's last log lines a report holds.
pub const LOG_LINES: usize = 50;
/// The window over which each process's CPU use is measured (at most a quarter of the
/// deadline).
pub const CPU_WINDOW: Duration = Duration::from_millis(250);
/// How long the `diagnose` command may run by default (`diagnose-timeout`).
pub const DEFAULT_DIAGNOSE_TIMEOUT: Duration = Duration::from_millis(1500);
/// At most this much of the `diagnose` command's output is kept.
pub const OUTPUT_CAP: usize = 64 << 10;
/// At most this many processes of a job are described.
pub const MAX_PROCESSES: usize = 64;
/// The end of the log file read for its last lines.
const LOG_TAIL_BYTES: u64 = 64 << 10;
/// A log line longer than this is cut in a report.
const MAX_LOG_LINE: usize = 1024;

/// The job's `diagnose` command, run by whoever takes the report.
pub type DiagnoseFuture = Pin<Box<dyn Future<Output = DiagnoseRun> + Send>>;

/// What a report is taken of.
pub struct Request {
    pub job: String,
    pub why: String,
    /// The job's processes, its main process first.
    pub pids: Vec<u32>,
    pub main_pid: Option<u32>,
    pub log_file: Option<PathBuf>,
    pub failing_secs: Option<f64>,
    pub deadline: Duration,
    /// The `diagnose` command's text, and its run.
    pub diagnose: Option<(String, DiagnoseFuture)>,
}

/// What the blocking reader has gathered so far.
#[derive(Default)]
struct Partial {
    processes: Vec<proc::ProcessInfo>,
    listeners: Vec<sockets::Listener>,
    log: Vec<String>,
    notes: Vec<String>,
    /// Where the reader is, for the note of an incomplete report.
    step: &'static str,
    done: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes the report: everything gathered by the deadline.
pub async fn gather(req: Request) -> Report {
    let started = Instant::now();
    let at = SystemTime::now();
    let deadline = req.deadline;
    let window = CPU_WINDOW.min(deadline / 4);
    let partial = Arc::new(Mutex::new(Partial::default()));
    let reader = {
        let partial = partial.clone();
        let pids = req.pids.clone();
        let log_file = req.log_file.clone();
        tokio::task::spawn_blocking(move || read_all(&pids, log_file.as_deref(), window, &partial))
    };
    let (diag_tx, mut diag_rx) = tokio::sync::oneshot::channel();
    let command = req.diagnose.as_ref().map(|(c, _)| c.clone());
    let diag_task = req.diagnose.map(|(_, f)| {
        tokio::spawn(async move {
            let _ = diag_tx.send(f.await);
        })
    });
    let wait = async {
        let _ = reader.await;
        if let Some(t) = diag_task {
            let _ = t.await;
        }
    };
    let in_time = tokio::time::timeout(deadline, wait).await.is_ok();
    let mut p = std::mem::take(&mut *lock(&partial));
    let diagnose = diag_rx.try_recv().ok().or_else(|| {
        command.map(|command| DiagnoseRun {
            command,
            status: "no answer within the report's deadline".into(),
            output: String::new(),
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    });
    let mut notes = std::mem::take(&mut p.notes);
    if !p.done {
        notes.push(format!(
            "the deadline of {} passed while reading {}",
            humantime::format_duration(deadline),
            p.step
        ));
    }
    let mut report = Report {
        job: req.job,
        time: humantime::format_rfc3339_millis(at).to_string(),
        why: req.why,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
        deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        complete: in_time && p.done,
        main_pid: req.main_pid,
        processes: p.processes,
        listeners: p.listeners,
        cpu_window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        failing_secs: req.failing_secs,
        log_file: req.log_file.map(|f| f.display().to_string()),
        log: p.log,
        diagnose,
        notes,
        summary: String::new(),
    };
    report.summary = report.make_summary();
    report
}

/// The blocking part: /proc, the sockets, the log, then the CPU window's second look.
fn read_all(
    pids: &[u32],
    log_file: Option<&std::path::Path>,
    window: Duration,
    partial: &Mutex<Partial>,
) {
    let t0 = Instant::now();
    let step = |s: &'static str| lock(partial).step = s;
    let mut first: Vec<(u32, Option<f64>)> = Vec::new();
    if pids.len() > MAX_PROCESSES {
        lock(partial).notes.push(format!(
            "{} processes: the first {MAX_PROCESSES} are described",
            pids.len()
        ));
    }
    let mut budget = proc::Budget {
        threads: proc::MAX_REPORT_THREADS,
        stacks: proc::MAX_STACKS,
    };
    for pid in pids.iter().take(MAX_PROCESSES) {
        step("/proc of the job's processes");
        if let Some(info) = proc::process_within(*pid, &mut budget) {
            first.push((*pid, info.cpu_secs));
            lock(partial).processes.push(info);
        }
    }
    step("the socket tables");
    let (listeners, err) = sockets::of(pids);
    {
        let mut p = lock(partial);
        p.listeners = listeners;
        if let Some(e) = err {
            p.notes.push(format!("listening sockets: {e}"));
        }
        if p.listeners
            .iter()
            .any(|l| l.queue.is_none() || l.backlog.is_none())
        {
            p.notes.push(
                "the job is in another network namespace: /proc shows no backlog, and no queue for a Unix socket".into(),
            );
        }
    }
    if let Some(f) = log_file {
        step("the job's log");
        let lines = log_tail(f, LOG_LINES);
        lock(partial).log = lines;
    }
    step("the CPU window");
    std::thread::sleep(window.saturating_sub(t0.elapsed()));
    let secs = t0.elapsed().as_secs_f64();
    for (pid, before) in first {
        let after = checks::tree::stat(pid).map(|s| s.ticks as f64 / checks::tree::clock_ticks());
        if let (Some(b), Some(a)) = (before, after)
            && secs > 0.0
        {
            let pct = ((a - b).max(0.0) / secs * 100.0 * 10.0).round() / 10.0;
            let mut p = lock(partial);
            if let Some(info) = p.processes.iter_mut().find(|i| i.pid == pid) {
                info.cpu_percent = Some(pct);
            }
        }
    }
    lock(partial).done = true;
}

/// The last `n` lines of a file, from its last 64 KiB, control characters escaped.
pub fn log_tail(path: &std::path::Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(LOG_TAIL_BYTES);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(LOG_TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > 0 && !lines.is_empty() {
        // The first line was cut.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    lines
        .into_iter()
        .skip(skip)
        .map(|l| {
            let mut cut = l.len().min(MAX_LOG_LINE);
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            let more = if cut < l.len() { "..." } else { "" };
            format!("{}{more}", crate::logtext::escape(&l[..cut]))
        })
        .collect()
}

/// Cuts `output` to [`OUTPUT_CAP`] bytes, on a character boundary, saying so.
pub fn cap_output(mut output: String) -> String {
    if output.len() > OUTPUT_CAP {
        let mut cut = OUTPUT_CAP;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
        output.push_str("\n[output cut at 64 KiB]\n");
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn own_process_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("x.log");
        let text: String = (0..80).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).expect("log");
        let r = gather(Request {
            job: "x".into(),
            why: "test".into(),
            pids: vec![std::process::id()],
            main_pid: Some(std::process::id()),
            log_file: Some(log),
            failing_secs: None,
            deadline: Duration::from_secs(2),
            diagnose: Some((
                "true".into(),
                Box::pin(async {
                    DiagnoseRun {
                        command: "true".into(),
                        status: "exited 0".into(),
                        ..DiagnoseRun::default()
                    }
                }),
            )),
        })
        .await;
        assert!(r.complete, "{:?}", r.notes);
        assert_eq!(r.processes.len(), 1);
        assert_eq!(r.log.len(), LOG_LINES);
        assert_eq!(r.log.last().map(String::as_str), Some("line 79"));
        assert!(
            r.summary.contains("last log line: line 79"),
            "{}",
            r.summary
        );
        assert_eq!(r.diagnose.map(|d| d.status).as_deref(), Some("exited 0"));
        assert!(r.took_ms >= 200.0, "the CPU window: {}", r.took_ms);
    }

    #[tokio::test]
    async fn a_hung_diagnose_is_cut_at_the_deadline() {
        let started = Instant::now();
        let r = gather(Request {
            job: "x".into(),
            why: "test".into(),
            pids: vec![],
            main_pid: None,
            log_file: None,
            failing_secs: None,
            deadline: Duration::from_millis(400),
            diagnose: Some(("sleep 100".into(), Box::pin(std::future::pending()))),
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!r.complete);
        assert_eq!(
            r.diagnose.map(|d| d.status).as_deref(),
            Some("no answer within the report's deadline")
        );
        assert!(r.summary.contains("incomplete"), "{}", r.summary);
    }

    #[tokio::test]
    async fn a_report_of_many_threads_fits_in_one_answer() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let threads: Vec<_> = (0..200)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let _ = lock(&rx).recv_timeout(Duration::from_secs(30));
                })
            })
            .collect();
        let pid = std::process::id();
        let r = gather(Request {
            job: "x".into(),
            why: "test".into(),
            pids: vec![pid, pid, pid, pid, pid],
            main_pid: Some(pid),
            log_file: None,
            failing_secs: None,
            deadline: Duration::from_secs(5),
            diagnose: None,
        })
        .await;
        drop(tx);
        for t in threads {
            let _ = t.join();
        }
        assert_eq!(r.processes[0].threads.len(), proc::MAX_THREADS);
        assert!(r.processes[0].threads_total > 200);
        let shown: usize = r.processes.iter().map(|p| p.threads.len()).sum();
        assert!(shown <= proc::MAX_REPORT_THREADS, "{shown}");
        let size = serde_json::to_vec(&r)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        assert!(size < crate::control::frame::MAX_FRAME / 2, "{size} bytes");
    }

    #[test]
    fn output_is_capped() {
        let s = cap_output("é".repeat(OUTPUT_CAP));
        assert!(s.len() < OUTPUT_CAP + 40 && s.ends_with("64 KiB]\n"));
    }
}
