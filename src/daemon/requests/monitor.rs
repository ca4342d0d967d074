//! `monitor` and `unmonitor`: whether a job's checks act on their failures.

use crate::control::protocol::Response;
use crate::daemon::Daemon;

impl Daemon {
    pub(super) fn set_monitored(
        &mut self,
        target: &str,
        group: Option<&str>,
        monitored: bool,
    ) -> Response {
        let names = match self.select(target, group) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let mut changed = false;
        for name in &names {
            if let Some(job) = self.jobs.get_mut(name)
                && job.m.set_monitored(monitored)
            {
                changed = true;
                if monitored {
                    // Re-armed: a check that failed while unmonitored acts on its next
                    // failures (and the machine forgot earlier restarts by checks).
                    for c in &mut job.checks {
                        c.rearm();
                    }
                }
            }
        }
        if changed {
            self.save_state();
        }
        let word = if monitored {
            "monitored"
        } else {
            "unmonitored"
        };
        Response::Done {
            message: format!("{}: {word}", names.join(", ")),
        }
    }
}
