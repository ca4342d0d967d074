//! `program`: run a command; it passes when it exits with the expected status.
//! The process is started by the caller's [`Spawner`], so that it is a child the
//! caller's one reaper collects: this crate never waits for a process itself.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Outcome, Pattern, Reason, millis};

#[derive(Debug, Clone, PartialEq)]
pub struct ProgramProbe {
    /// Shell text, run with `sh -c`.
    pub command: String,
    pub status: i32,
    /// The output must also match this.
    pub output: Option<Pattern>,
}

/// How a program ended, and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exit status, or None when a signal ended it.
    pub code: Option<i32>,
    /// `exited 3`, `killed by SIGKILL`.
    pub how: Cow<'static, str>,
    pub output: String,
}

pub trait Spawner: Send + Sync {
    /// Runs `command` with `sh -c`, killing it (and its process group) after `timeout`.
    fn run<'a>(
        &'a self,
        command: &'a str,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Ran, String>> + Send + 'a>>;
}

impl ProgramProbe {
    /// Runs the program once. `label` keeps the command for the reasons of the
    /// check's passes (made at its first pass), which are not rendered until read.
    pub(crate) async fn run(
        &self,
        spawner: &dyn Spawner,
        label: &mut Option<Arc<str>>,
        timeout: Duration,
        start: Instant,
    ) -> Outcome {
        match spawner.run(&self.command, timeout).await {
            Ok(ran) => {
                let t = start.elapsed();
                let last = ran.output.lines().last().unwrap_or("").trim();
                let output_ok = self
                    .output
                    .as_ref()
                    .is_none_or(|re| re.is_match(&ran.output));
                let o = if ran.code == Some(self.status) && output_ok {
                    let command = label
                        .get_or_insert_with(|| Arc::from(self.command.as_str()))
                        .clone();
                    let said = (!last.is_empty()).then(|| Box::from(last));
                    Outcome::pass(
                        Reason::Ran {
                            command,
                            how: ran.how,
                            said,
                        },
                        t,
                    )
                } else {
                    let said = if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {last}")
                    };
                    let reason =
                        format!("`{}` {} after {}{said}", self.command, ran.how, millis(t));
                    if !output_ok {
                        let re = self.output.as_ref().map_or("", |r| r.0.as_str());
                        Outcome::fail(format!("{reason} (output does not match /{re}/)"), t)
                    } else {
                        Outcome::fail(reason, t)
                    }
                };
                match ran.code {
                    Some(c) => o.with_value(f64::from(c)),
                    None => o,
                }
            }
            Err(e) => Outcome::fail(
                format!("cannot run `{}`: {e}", self.command),
                start.elapsed(),
            ),
        }
    }
}
