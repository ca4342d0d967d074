//! `reload` (the configuration) and `reload JOB` / `reload --all-jobs` (a job's
//! reload signal).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::control::protocol::Response;
use crate::daemon::Daemon;
use crate::job::State;

impl Daemon {
    /// `reload`: re-reads the configuration; with errors nothing changes.
    pub(super) fn reload_config(&mut self) -> Response {
        match self.reload() {
            Ok(message) => Response::Done {
                message: format!("reloaded: {message}"),
            },
            Err(message) => Response::Error {
                message: format!("reload refused, nothing changed:\n{message}"),
            },
        }
    }

    /// `reload JOB`: sends one job its reload signal. `all` is refused, for it reads
    /// too much like `reload` of the configuration.
    pub(super) fn reload_job(&mut self, target: &str) -> Response {
        if target == "all" {
            return Response::Error {
                message:
                    "`reload all` would send every job its reload signal, so it is not taken: \
                          `guardian reload` re-reads the configuration, and \
                          `guardian reload --all-jobs` signals every running job"
                        .into(),
            };
        }
        self.reload_jobs(Some(target))
    }

    /// Sends one job (or, with None, every job) its reload signal.
    pub(super) fn reload_jobs(&mut self, target: Option<&str>) -> Response {
        let names = match target {
            Some(name) => match self.select(name, None) {
                Ok(names) => names,
                Err(e) => return e,
            },
            None => self.jobs.keys().cloned().collect(),
        };
        let mut lines = Vec::new();
        let mut all_ok = true;
        for name in names {
            let Some(job) = self.jobs.get(&name) else {
                continue;
            };
            let sig = job.spec.reload_signal.unwrap_or(Signal::SIGHUP);
            let which = match job.spec.reload_signal {
                Some(_) => "its reload-signal",
                None => "the default reload-signal: the job sets no `reload-signal`",
            };
            match job.m.main_pid().and_then(|p| i32::try_from(p).ok()) {
                Some(pid) if job.m.state() == State::Running => match kill(Pid::from_raw(pid), sig)
                {
                    Ok(()) => lines.push(format!(
                        "{name}: sent SIG{} ({which}) to pid {pid}",
                        crate::config::signal::name(sig)
                    )),
                    Err(e) => {
                        all_ok = false;
                        lines.push(format!("{name}: cannot signal pid {pid}: {e}"));
                    }
                },
                _ => {
                    if target.is_some() {
                        all_ok = false;
                    }
                    lines.push(format!("{name}: not running, nothing to reload"));
                }
            }
        }
        let message = lines.join("\n");
        if all_ok {
            Response::Done { message }
        } else {
            Response::No { message }
        }
    }
}
