//! Programs the daemon runs on someone's behalf and waits for: `guardian run JOB NAME`
//! and `program` probes. They are started with the job's user, environment and
//! directory, reaped by the one reaper, killed with their group on timeout, and their
//! output (stdout and stderr together, capped) comes back with how they ended.

use std::os::fd::OwnedFd;
use std::time::Duration;

use checks::Ran;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::config::Program;
use crate::job::ProcessEnd;
use crate::process::Pgid;
use crate::process::spawn::Output;

use super::{Daemon, Owner};

/// At most this much of a program's output is kept.
const OUTPUT_CAP: usize = 1 << 19;

/// A program to run for a job; the answer goes to `reply`.
pub(crate) struct RunRequest {
    pub job: String,
    /// As configured: an argv run directly, or shell text run with `sh -e`.
    pub program: Program,
    pub extra_env: Vec<(String, String)>,
    pub timeout: Duration,
    pub reply: oneshot::Sender<Result<Ran, String>>,
}

impl Daemon {
    pub(super) fn run_request(&mut self, req: RunRequest) {
        let Some(job) = self.jobs.get(&req.job) else {
            let _ = req.reply.send(Err(format!("no job named `{}`", req.job)));
            return;
        };
        // A probe's text without shell syntax runs directly, as an `exec` line does:
        // no sh in between (a name that is no program, such as a builtin, keeps sh).
        let direct = match &req.program {
            Program::Script(text) => plain_words(text).and_then(|argv| {
                crate::config::program::resolve(&argv[0], job.spec.path_var(), &job.spec.chdir)
                    .ok()
                    .map(|path| Program::Exec { path, argv })
            }),
            Program::Exec { .. } => None,
        };
        let program = direct.as_ref().unwrap_or(&req.program);
        let env: Vec<(&str, &str)> = req
            .extra_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let spawned = match self.os.spawn(&job.spec, program, &env, Output::Capture) {
            Ok(s) => s,
            Err(e) => {
                let _ = req.reply.send(Err(e.to_string()));
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        self.pids.insert(spawned.pid, Owner::Command(tx));
        let pid = spawned.pid;
        let out = spawned.stdout.map(OwnedFd::from);
        let err = spawned.stderr.map(OwnedFd::from);
        let timeout = req.timeout;
        let reply = req.reply;
        tokio::spawn(async move {
            let collect = async {
                let (a, b) = tokio::join!(read_all(out), read_all(err));
                (a + &b, rx.await.ok())
            };
            let ran = match tokio::time::timeout(timeout, collect).await {
                Ok((output, Some(end))) => Ok(Ran {
                    code: match end {
                        ProcessEnd::Exited(c) => Some(c),
                        ProcessEnd::Signaled(_) | ProcessEnd::Unknown => None,
                    },
                    how: end.to_string(),
                    output,
                }),
                Ok((_, None)) => Err("its end was lost".to_string()),
                Err(_) => {
                    Pgid::of_leader(pid).signal(nix::sys::signal::Signal::SIGKILL);
                    Ok(Ran {
                        code: None,
                        how: format!(
                            "timed out after {}, killed",
                            humantime::format_duration(timeout)
                        ),
                        output: String::new(),
                    })
                }
            };
            let _ = reply.send(ran);
        });
    }
}

/// The words of `text` when it holds nothing a shell would read otherwise than as
/// words separated by blanks (no quotes, variables, globs, redirections, operators,
/// assignments or comments); None when it needs a shell.
fn plain_words(text: &str) -> Option<Vec<String>> {
    const SHELL: &[char] = &[
        '|', '&', ';', '<', '>', '(', ')', '$', '`', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
        '=', '%', '{', '}', '!', '\n',
    ];
    if text.contains(SHELL) {
        return None;
    }
    let argv: Vec<String> = text.split_ascii_whitespace().map(str::to_string).collect();
    (!argv.is_empty()).then_some(argv)
}

/// Reads a pipe to its end, keeping at most [`OUTPUT_CAP`] bytes.
async fn read_all(fd: Option<OwnedFd>) -> String {
    let Some(fd) = fd else {
        return String::new();
    };
    let Ok(mut rx) = pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs probe programs for one job through the daemon's loop.
pub(crate) struct JobSpawner {
    pub owner: super::checking::CheckOwner,
    pub tx: tokio::sync::mpsc::UnboundedSender<super::Internal>,
}

impl checks::Spawner for JobSpawner {
    fn run<'a>(
        &'a self,
        command: &'a str,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ran, String>> + Send + 'a>> {
        Box::pin(async move {
            // Probe programs run as a job's; the host's checks have none to run.
            let super::checking::CheckOwner::Job(job) = &self.owner else {
                return Err("a host check cannot run a program".to_string());
            };
            let (reply, rx) = oneshot::channel();
            let req = RunRequest {
                job: job.clone(),
                program: Program::Script(command.to_string()),
                extra_env: vec![("GUARDIAN_PROBE".into(), "1".into())],
                timeout,
                reply,
            };
            self.tx
                .send(super::Internal::Run(req))
                .map_err(|_| "guardian is shutting down".to_string())?;
            rx.await
                .map_err(|_| "guardian is shutting down".to_string())?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn probe_text_runs_directly_only_without_shell_syntax() {
        assert_eq!(
            plain_words("  pg_isready -h 127.0.0.1  -p 5432 "),
            Some(vec![
                "pg_isready".into(),
                "-h".into(),
                "127.0.0.1".into(),
                "-p".into(),
                "5432".into()
            ])
        );
        for shell in [
            "test -f /x && true",
            "echo $HOME",
            "a | b",
            "x > /dev/null",
            "A=1 env",
            "echo 'quoted'",
            "ls *.txt",
            "true # comment",
            "echo a\nb",
            "",
        ] {
            assert_eq!(plain_words(shell), None, "{shell:?}");
        }
    }
}
