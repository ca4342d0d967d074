//! `diagnose JOB` (take a report now, keep it, answer with it) and `reports JOB
//! [WHICH]` (list a job's reports, or read one). Reading the reports' files happens on a
//! blocking thread, never in the loop.

use tokio::sync::oneshot;

use crate::control::protocol::Response;
use crate::daemon::Daemon;
use crate::daemon::reports::Then;
use crate::diagnose::store;

impl Daemon {
    pub(super) fn diagnose(&mut self, name: &str, reply: oneshot::Sender<Response>) {
        if let Err(e) = self.job_named(name) {
            let _ = reply.send(e);
            return;
        }
        self.take_report(name, "guardian diagnose".into(), None, Then::Reply(reply));
    }

    pub(super) fn reports(
        &mut self,
        name: &str,
        which: Option<String>,
        reply: oneshot::Sender<Response>,
    ) {
        // The reports of a job removed from the configuration can still be read.
        let state_dir = self.config.settings.state_dir.clone();
        let plain = !name.is_empty() && !name.starts_with('.') && !name.contains('/');
        if !(plain && store::dir(&state_dir, name).is_dir())
            && let Err(e) = self.job_named(name)
        {
            let _ = reply.send(e);
            return;
        }
        let job = name.to_string();
        tokio::spawn(async move {
            let work = tokio::task::spawn_blocking(move || match which {
                None => Response::Reports {
                    reports: store::list(&state_dir, &job),
                    job,
                },
                Some(which) => match store::find(&state_dir, &job, &which)
                    .and_then(|p| store::read(&p).map(|r| (p, r)))
                {
                    Ok((path, report)) => Response::Report {
                        path: Some(path.display().to_string()),
                        report: Box::new(report),
                    },
                    Err(message) => Response::Error { message },
                },
            });
            let response = work.await.unwrap_or_else(|e| Response::Error {
                message: format!("cannot read the reports: {e}"),
            });
            let _ = reply.send(response);
        });
    }
}
