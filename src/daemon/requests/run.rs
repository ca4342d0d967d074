//! `run JOB COMMAND`: one of the job's `[commands]`, run as the daemon's child.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::control::protocol::Response;
use crate::daemon::Daemon;
use crate::daemon::run::RunRequest;

/// A custom command that runs longer than this is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

impl Daemon {
    pub(super) fn run_command(
        &mut self,
        name: &str,
        command: &str,
        reply: oneshot::Sender<Response>,
    ) {
        let job = match self.job_named(name) {
            Ok(j) => j,
            Err(e) => {
                let _ = reply.send(e);
                return;
            }
        };
        let Some(text) = job.spec.commands.get(command) else {
            let known: Vec<&str> = job.spec.commands.keys().map(String::as_str).collect();
            let message = if known.is_empty() {
                format!("{name} has no [commands]")
            } else {
                format!(
                    "{name} has no command `{command}`; it has: {}",
                    known.join(", ")
                )
            };
            let _ = reply.send(Response::Error { message });
            return;
        };
        let (tx, rx) = oneshot::channel();
        self.run_request(RunRequest {
            job: name.to_string(),
            program: crate::config::Program::Script(text.clone()),
            extra_env: vec![("GUARDIAN_COMMAND".into(), command.to_string())],
            timeout: RUN_TIMEOUT,
            reply: tx,
        });
        let label = format!("{name}: cannot run `{command}`");
        tokio::spawn(async move {
            let response = match rx.await {
                Ok(Ok(ran)) => Response::Ran {
                    success: ran.code == Some(0),
                    status: ran.how.into_owned(),
                    output: ran.output,
                },
                Ok(Err(e)) => Response::Error {
                    message: format!("{label}: {e}"),
                },
                Err(_) => Response::Error {
                    message: "guardian is shutting down".into(),
                },
            };
            let _ = reply.send(response);
        });
    }
}
