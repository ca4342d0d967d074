//! Programs the daemon runs on someone's behalf and waits for: `guardian run JOB NAME`
//! and `program` probes. They are started with the job's user, environment and
//! directory, reaped by the one reaper, killed with their group on timeout, and their
//! output (stdout and stderr together, in one pipe, capped) comes back with how they
//! ended. A probe's spawn is made ready at its first run and kept for its check's life.

use std::borrow::Cow;
use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use checks::Ran;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::config::{JobSpec, Program};
use crate::job::ProcessEnd;
use crate::process::Pgid;
use crate::process::spawn::{Output, Ready, Spawned};

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

/// One run of a check's probe program: its spawn, made ready at the first run.
pub(crate) struct ProbeRun {
    pub spawn: Arc<ProbeSpawn>,
    pub timeout: Duration,
    pub reply: oneshot::Sender<Result<Ran, String>>,
}

/// A probe program of a job's check, and its spawn once made ready. The job's
/// configuration does not change while its checks run (a job takes a new one while it
/// is down, and its checks start afresh, with new spawners, at each start), so what is
/// made at the first run serves every run after it.
pub(crate) struct ProbeSpawn {
    job: String,
    command: String,
    ready: OnceLock<Result<Ready, String>>,
}

impl Daemon {
    pub(super) fn run_request(&mut self, req: RunRequest) {
        let Some(job) = self.jobs.get(&req.job) else {
            let _ = req.reply.send(Err(format!("no job named `{}`", req.job)));
            return;
        };
        let direct = direct(&req.program, &job.spec);
        let program = direct.as_ref().unwrap_or(&req.program);
        let env: Vec<(&str, &str)> = req
            .extra_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let spawned = self.os.spawn(&job.spec, program, &env, Output::Capture);
        self.collect(spawned, req.timeout, req.reply);
    }

    /// Runs a check's probe program: made ready at its first run, spawned as it is
    /// after that.
    pub(super) fn run_probe(&mut self, run: ProbeRun) {
        let Some(job) = self.jobs.get(&run.spawn.job) else {
            let _ = run
                .reply
                .send(Err(format!("no job named `{}`", run.spawn.job)));
            return;
        };
        let ready = run.spawn.ready.get_or_init(|| {
            let script = Program::Script(run.spawn.command.clone());
            let program = direct(&script, &job.spec).unwrap_or(script);
            crate::process::spawn::ready(&job.spec, &program, &[("GUARDIAN_PROBE", "1")])
                .map_err(|e| e.to_string())
        });
        let spawned = match ready {
            Ok(r) => self.os.spawn_ready(r, Output::Capture),
            Err(e) => {
                let _ = run.reply.send(Err(e.clone()));
                return;
            }
        };
        self.collect(spawned, run.timeout, run.reply);
    }

    /// Waits for a spawned program (reaped by the one reaper) and reads its output,
    /// off the loop; the answer goes to `reply`.
    fn collect(
        &mut self,
        spawned: std::io::Result<Spawned>,
        timeout: Duration,
        reply: oneshot::Sender<Result<Ran, String>>,
    ) {
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        self.pids.insert(spawned.pid, Owner::Command(tx));
        let pid = spawned.pid;
        let out = spawned.output;
        tokio::spawn(async move {
            let collect = async { (read_all(out).await, rx.await.ok()) };
            let ran = match tokio::time::timeout(timeout, collect).await {
                Ok((output, Some(end))) => Ok(Ran {
                    code: match end {
                        ProcessEnd::Exited(c) => Some(c),
                        ProcessEnd::Signaled(_) | ProcessEnd::Unknown => None,
                    },
                    how: match end {
                        // The common case, without formatting.
                        ProcessEnd::Exited(0) => Cow::Borrowed("exited 0"),
                        end => Cow::Owned(end.to_string()),
                    },
                    output,
                }),
                Ok((_, None)) => Err("its end was lost".to_string()),
                Err(_) => {
                    Pgid::of_leader(pid).signal(nix::sys::signal::Signal::SIGKILL);
                    Ok(Ran {
                        code: None,
                        how: Cow::Owned(format!(
                            "timed out after {}, killed",
                            humantime::format_duration(timeout)
                        )),
                        output: String::new(),
                    })
                }
            };
            let _ = reply.send(ran);
        });
    }
}

/// A program's text without shell syntax runs directly, as an `exec` line does: no sh
/// in between (a name that is no program, such as a builtin, keeps sh). None: run it as
/// it is.
fn direct(program: &Program, spec: &JobSpec) -> Option<Program> {
    match program {
        Program::Script(text) => plain_words(text).and_then(|argv| {
            crate::config::program::resolve(&argv[0], spec.path_var(), &spec.chdir)
                .ok()
                .map(|path| Program::Exec { path, argv })
        }),
        Program::Exec { .. } => None,
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

/// Reads the (non-blocking) read end of a capture to its end, keeping at most
/// [`OUTPUT_CAP`] bytes. It reads straight into the kept bytes: nothing is cleared or
/// copied for a program that prints little or nothing.
async fn read_all(fd: Option<OwnedFd>) -> String {
    let Some(fd) = fd else {
        return String::new();
    };
    // The spawn made it: a pipe's read end, non-blocking already.
    let Ok(mut rx) = pipe::Receiver::from_owned_fd_unchecked(fd) else {
        return String::new();
    };
    let mut out = Vec::new();
    loop {
        match rx.read_buf(&mut out).await {
            Ok(0) | Err(_) => break,
            Ok(_) => out.truncate(OUTPUT_CAP),
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Runs probe programs for one job through the daemon's loop.
pub(crate) struct JobSpawner {
    pub owner: super::checking::CheckOwner,
    pub tx: tokio::sync::mpsc::UnboundedSender<super::Internal>,
    /// The probe program's spawn, made ready by the daemon at its first run.
    pub probe: OnceLock<Arc<ProbeSpawn>>,
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
            let new = || {
                Arc::new(ProbeSpawn {
                    job: job.clone(),
                    command: command.to_string(),
                    ready: OnceLock::new(),
                })
            };
            // A spawner serves one check, whose command is always the same one.
            let kept = self.probe.get_or_init(new);
            let spawn = if kept.command == command {
                kept.clone()
            } else {
                new()
            };
            let (reply, rx) = oneshot::channel();
            let run = ProbeRun {
                spawn,
                timeout,
                reply,
            };
            self.tx
                .send(super::Internal::Probe(run))
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
