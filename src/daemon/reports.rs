//! Reports in the daemon: taking one (before a check's restart or stop, or for
//! `guardian diagnose`), and what follows it. The loop only collects what the report is
//! of (the job's processes, its log file, its `diagnose` command, which it starts as
//! its child); the reading happens in a task and a blocking thread
//! ([`crate::diagnose::gather`]), under the report's deadline. The task always comes
//! back, by the deadline plus a moment for the file, with [`Internal::Diagnosed`]: the
//! action that waited for the report is then carried out.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use crate::alert::{self, Kind};
use crate::control::protocol::Response;
use crate::diagnose::{self, DiagnoseRun, Report, store};
use crate::job::{Input, State};
use crate::logtext::{Esc, EscPath};

use super::alerts::About;
use super::run::RunRequest;
use super::{Daemon, Internal, Work};

/// Time the task has, beyond the report's deadline, to write the file before the action
/// goes on without waiting for it (the file is still written).
const WRITE_WAIT: Duration = Duration::from_millis(200);

/// What waits for a report.
pub(crate) enum Then {
    /// A check's restart of the job's start `start`.
    Restart {
        start: u64,
        check: String,
        reason: String,
    },
    /// A check's stop.
    Stop { check: String, reason: String },
    /// `guardian diagnose`.
    Reply(oneshot::Sender<Response>),
}

/// A report taken, and what waited for it.
pub(crate) struct Diagnosed {
    pub job: String,
    pub then: Then,
    pub report: Report,
    /// Where it is (or is being) written; None when it cannot be.
    pub path: Option<PathBuf>,
    pub error: Option<String>,
}

impl Daemon {
    /// Starts taking a report on `name`; `then` is done when it is taken (or its
    /// deadline passed).
    pub(super) fn take_report(
        &mut self,
        name: &str,
        why: String,
        failing_secs: Option<f64>,
        then: Then,
    ) {
        let deadline = self.config.settings.report_deadline;
        let keep = self.config.settings.report_keep;
        let state_dir = self.config.settings.state_dir.clone();
        let log_file = self.log_path(name);
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let main_pid = job.m.main_pid().filter(|_| !job.m.is_down());
        let diag_spec = job.spec.diagnose.clone();
        let mut pids: Vec<u32> = if main_pid.is_some() {
            self.processes_of(name).iter().map(|p| p.pid).collect()
        } else {
            Vec::new()
        };
        if let Some(main) = main_pid {
            pids.retain(|p| *p != main);
            pids.insert(0, main);
        }
        let diagnose = match (diag_spec, main_pid) {
            (Some(d), Some(main)) => Some((
                d.command.clone(),
                self.start_diagnose(name, &d, main, deadline),
            )),
            _ => None,
        };
        let req = diagnose::Request {
            job: name.to_string(),
            why,
            pids,
            main_pid,
            log_file: Some(log_file),
            failing_secs,
            deadline,
            diagnose,
        };
        let tx = self.internal.clone();
        let job = name.to_string();
        tokio::spawn(async move {
            let started = Instant::now();
            let inner = tokio::spawn(diagnose::gather(req));
            let mut report = match tokio::time::timeout(deadline + WRITE_WAIT, inner).await {
                Ok(Ok(r)) => r,
                // Cannot happen short of a bug: the action goes on all the same.
                Ok(Err(e)) => empty(&job, format!("the report failed: {e}")),
                Err(_) => empty(&job, "the report was not taken within its deadline".into()),
            };
            report.took_ms = started.elapsed().as_secs_f64() * 1000.0;
            let name = store::file_name(SystemTime::now());
            let intended = store::dir(&state_dir, &job).join(&name);
            let r = report.clone();
            let write =
                tokio::task::spawn_blocking(move || store::write(&state_dir, &r, &name, keep));
            let (path, error) = match tokio::time::timeout(WRITE_WAIT, write).await {
                Ok(Ok(Ok(p))) => (Some(p), None),
                Ok(Ok(Err(e))) => (None, Some(format!("cannot write the report: {e}"))),
                Ok(Err(e)) => (None, Some(format!("cannot write the report: {e}"))),
                Err(_) => (Some(intended), None),
            };
            let _ = tx.send(Internal::Diagnosed(Box::new(Diagnosed {
                job,
                then,
                report,
                path,
                error,
            })));
        });
    }

    /// Runs the job's `diagnose` command as the daemon's child, `$MAINPID` set, cut at
    /// its timeout (within the report's deadline).
    fn start_diagnose(
        &mut self,
        name: &str,
        d: &crate::config::job::Diagnose,
        main: u32,
        deadline: Duration,
    ) -> diagnose::DiagnoseFuture {
        let timeout = d
            .timeout
            .min(deadline.saturating_sub(Duration::from_millis(100)))
            .max(Duration::from_millis(10));
        let (reply, rx) = oneshot::channel();
        self.run_request(RunRequest {
            job: name.to_string(),
            program: crate::config::Program::Script(d.command.clone()),
            extra_env: vec![
                ("MAINPID".into(), main.to_string()),
                ("GUARDIAN_DIAGNOSE".into(), "1".into()),
            ],
            timeout,
            reply,
        });
        let command = d.command.clone();
        let started = Instant::now();
        Box::pin(async move {
            let (status, output) = match rx.await {
                Ok(Ok(ran)) => (ran.how.into_owned(), diagnose::cap_output(ran.output)),
                Ok(Err(e)) => (format!("could not run: {e}"), String::new()),
                Err(_) => ("guardian is shutting down".into(), String::new()),
            };
            DiagnoseRun {
                command,
                status,
                output,
                took_ms: started.elapsed().as_secs_f64() * 1000.0,
            }
        })
    }

    /// A report is taken: say where, then do what waited for it.
    pub(super) fn diagnosed(&mut self, d: Diagnosed) {
        let Diagnosed {
            job: name,
            then,
            report,
            path,
            error,
        } = d;
        let shown = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "not written".into());
        match &error {
            Some(e) => tracing::warn!("{name}: report: {}", Esc(e)),
            None => tracing::info!(
                "{name}: report taken in {:.0} ms: {}: {}",
                report.took_ms,
                EscPath(path.as_deref().unwrap_or(std::path::Path::new("-"))),
                Esc(&report.summary)
            ),
        }
        let note = alert::ReportNote {
            summary: report.summary.clone(),
            path: path.as_ref().map(|p| p.display().to_string()),
        };
        let with_report = |reason: &str| format!("{reason}; {}; report: {shown}", report.summary);
        match then {
            Then::Reply(reply) => {
                let _ = reply.send(Response::Report {
                    path: path.map(|p| p.display().to_string()),
                    report: Box::new(report),
                });
            }
            Then::Restart {
                start,
                check,
                reason,
            } => {
                self.alert_with(
                    About::Job(&name),
                    Kind::CheckFailed,
                    Some(&check),
                    with_report(&reason),
                    Some(alert::Action::Restart),
                    Some(note.clone()),
                );
                let Some(job) = self.jobs.get(&name) else {
                    return;
                };
                if self.shutdown.is_some() {
                    return;
                }
                if job.m.state() != State::Running || job.m.runs() != start {
                    tracing::info!(
                        "{name}: check {}: no restart: the job moved while its report was taken",
                        Esc(&check)
                    );
                    return;
                }
                self.work.push_back(Work::Feed(name, Input::Restart));
                self.pump();
            }
            Then::Stop { check, reason } => {
                self.alert_with(
                    About::Job(&name),
                    Kind::CheckFailed,
                    Some(&check),
                    with_report(&reason),
                    Some(alert::Action::Stop),
                    Some(note),
                );
                if self.shutdown.is_some() || !self.jobs.contains_key(&name) {
                    return;
                }
                self.work.push_back(Work::Feed(name, Input::Stop));
                self.pump();
            }
        }
    }
}

/// A report with nothing in it but why.
fn empty(job: &str, note: String) -> Report {
    let mut r = Report {
        job: job.to_string(),
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        notes: vec![note],
        ..Report::default()
    };
    r.summary = r.make_summary();
    r
}
