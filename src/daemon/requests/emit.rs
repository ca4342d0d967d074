//! `emit`: a user event, offered to every job's `start-on` and `stop-on`.

use tokio::sync::oneshot;

use crate::control::protocol::Response;
use crate::daemon::{Daemon, Waiter};
use crate::job::{Goal, Until};

use super::collect;

impl Daemon {
    pub(super) fn emit(
        &mut self,
        name: String,
        env: Vec<(String, String)>,
        wait: bool,
        reply: oneshot::Sender<Response>,
    ) {
        use crate::event::{DAEMON_EVENTS, Event, JOB_EVENTS};
        if JOB_EVENTS.contains(&name.as_str()) || DAEMON_EVENTS.contains(&name.as_str()) {
            let _ = reply.send(Response::Error {
                message: format!("`{name}` is emitted by guardian itself, not by hand"),
            });
            return;
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
        {
            let _ = reply.send(Response::Error {
                message: format!("`{name}` is not an event name"),
            });
            return;
        }
        let mut event = Event::new(&name);
        event.env = env;
        // The event's Display escapes what the client sent.
        tracing::info!("event `{event}` emitted by hand");
        let moved = self.emit_user_event(event);
        if moved.is_empty() {
            let _ = reply.send(Response::Done {
                message: format!("{name}: no job waits for it"),
            });
            return;
        }
        if !wait {
            let _ = reply.send(Response::Done {
                message: format!("{name}: moves {}", moved.join(", ")),
            });
            return;
        }
        let mut answers = Vec::new();
        for job_name in &moved {
            let Some(job) = self.jobs.get_mut(job_name) else {
                continue;
            };
            let until = if job.m.goal() == Goal::Start {
                Until::Up
            } else {
                Until::Down
            };
            let (tx, rx) = oneshot::channel();
            job.waiters.push(Waiter { until, tx });
            answers.push(rx);
            self.settle(job_name);
        }
        tokio::spawn(collect(answers, reply));
    }
}
