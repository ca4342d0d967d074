//! `summary`: a row per job, written from the jobs straight into the answer's frame
//! (no `JobStatus` made for each, no copy of the JSON to frame it).

use crate::control::frame;
use crate::control::protocol::{CheckReport, Encoded, Response};
use crate::daemon::status::{Rows, SummaryReply};
use crate::daemon::{Daemon, Job, status};

/// Roughly what one row takes in JSON, to size the frame's buffer once.
const ROW_BYTES: usize = 192;

impl Daemon {
    /// `summary`: every job and the host checks, or a group's jobs (in dependency
    /// order, as `status -g` gives them) and no host checks. CPU time and memory are the
    /// main process's, one read of /proc a job, as in `status` of every job.
    pub(super) fn summary(&self, group: Option<&str>) -> Response {
        let encoded = match group {
            None => {
                let host = self.host_checks.iter().map(status::check).collect();
                encode(self.jobs.values().map(|j| &**j), self.jobs.len(), host)
            }
            Some(group) => match self.select("", Some(group)) {
                Ok(names) => {
                    let jobs = names.iter().filter_map(|n| self.jobs.get(n)).map(|j| &**j);
                    encode(jobs, names.len(), Vec::new())
                }
                Err(e) => return e,
            },
        };
        match encoded {
            Ok(frame) => Response::Encoded(Encoded(frame)),
            Err(e) => Response::Error {
                message: format!("the summary could not be written: {e}"),
            },
        }
    }
}

fn encode<'a, I>(jobs: I, count: usize, host: Vec<CheckReport>) -> std::io::Result<Vec<u8>>
where
    I: Iterator<Item = &'a Job> + Clone,
{
    let capacity = count.saturating_add(1).saturating_mul(ROW_BYTES);
    frame::encode(
        &SummaryReply {
            rows: Rows(jobs),
            host,
        },
        capacity,
    )
}
