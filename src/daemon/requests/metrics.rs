//! `/metrics`: the exposition written from the jobs straight into its text, with one
//! read of /proc a job (its main process's, as in `summary`) and no `JobStatus` made
//! for each.

use std::time::SystemTime;

use crate::control::protocol::Response;
use crate::daemon::checking::CheckRt;
use crate::daemon::{Daemon, status};
use crate::http::metrics::{self, CheckFigures};

impl Daemon {
    /// Prometheus's text for every job, its checks, and the host checks.
    pub(super) fn metrics(&self) -> Response {
        let check_count = self
            .jobs
            .values()
            .map(|j| j.checks.len())
            .fold(self.host_checks.len(), usize::saturating_add);
        let mut checks = Vec::with_capacity(check_count);
        let jobs: Vec<_> = self
            .jobs
            .values()
            .enumerate()
            .map(|(i, job)| {
                checks.extend(job.checks.iter().map(|c| figures(Some(i), c)));
                status::figures(job)
            })
            .collect();
        checks.extend(self.host_checks.iter().map(|c| figures(None, c)));
        Response::Metrics(metrics::render(&jobs, &checks, SystemTime::now()))
    }
}

fn figures(job: Option<usize>, c: &CheckRt) -> CheckFigures<'_> {
    CheckFigures {
        job,
        name: &c.spec.name,
        last: c.last_brief(),
        failures: c.failures(),
    }
}
