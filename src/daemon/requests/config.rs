//! `config`: a job's configuration as the daemon runs it, which is not always what its
//! file says now (the file may have changed since the last reload).

use crate::config::{instances, render};
use crate::control::protocol::Response;
use crate::daemon::Daemon;

impl Daemon {
    pub(super) fn config_of(&self, job: &str, hide_secrets: bool) -> Response {
        match self.job_named(job) {
            Ok(j) => {
                let every = self.config.settings.every;
                Response::Config {
                    job: j.spec.name.clone(),
                    text: render::toml(&j.spec, every, hide_secrets),
                    config: render::json(&j.spec, every, hide_secrets),
                }
            }
            Err(e) => {
                let names = instances::members(job, self.jobs.iter().map(|(n, j)| (n, &j.spec)));
                match instances::hint(job, &names) {
                    Some(message) => Response::Error { message },
                    None => e,
                }
            }
        }
    }
}
