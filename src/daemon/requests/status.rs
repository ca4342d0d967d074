//! The read-only requests about jobs: `status`, `summary`, `logs`, `env`.

use crate::control::protocol::Response;
use crate::daemon::{Daemon, status};
use crate::process::env;

impl Daemon {
    /// `status` / `summary`: every job, or one, or a group's (in dependency order). Every job's CPU and memory are its main
    /// process's (one read of /proc each, as `summary` of 2,000 jobs must stay quick);
    /// one job's come from its cgroup where it has one, with its processes.
    pub(super) fn status(&self, job: Option<&str>, group: Option<&str>) -> Response {
        if let Some(group) = group {
            return match self.select("", Some(group)) {
                Ok(names) => Response::Jobs {
                    jobs: names
                        .iter()
                        .filter_map(|n| self.jobs.get(n))
                        .map(|j| status::of(j, None))
                        .collect(),
                    host: Vec::new(),
                },
                Err(e) => e,
            };
        }
        match job {
            None => Response::Jobs {
                jobs: self.jobs.values().map(|j| status::of(j, None)).collect(),
                host: self.host_checks.iter().map(status::check).collect(),
            },
            Some(target) => match self.select(target, None) {
                Ok(names) => Response::Jobs {
                    jobs: names
                        .iter()
                        .filter_map(|name| {
                            let job = self.jobs.get(name)?;
                            let mut s = status::of(job, self.rest.cgroups());
                            s.processes = Some(self.processes_of(name));
                            Some(s)
                        })
                        .collect(),
                    host: Vec::new(),
                },
                Err(e) => e,
            },
        }
    }

    /// `logs`: where the job's log file is; the client reads it.
    pub(super) fn log_file(&self, job: &str) -> Response {
        match self.job_named(job) {
            Ok(_) => Response::LogFile {
                path: self.log_path(job).display().to_string(),
            },
            Err(e) => e,
        }
    }

    /// `env`: what the job's processes run with.
    pub(super) fn env(&self, job: &str) -> Response {
        match self.job_named(job) {
            Ok(j) => Response::Env {
                report: Box::new(env::report(&j.spec)),
            },
            Err(e) => e,
        }
    }
}
