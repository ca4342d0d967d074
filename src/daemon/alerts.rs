//! The daemon's side of alerts: turning what happens to jobs into alerts, routing them
//! to the outbox, and reminding those who asked while a failure lasts.

use std::time::{Duration, Instant};

use crate::alert::{self, Action, Alert, Kind, To};
use crate::job::{FailureKind, Proc, State};

use super::{Daemon, Timer};

/// How often lasting failures are looked at for reminders: often enough for the
/// shortest reminder interval, at most every 10 s.
fn reminder_tick(settings: &crate::config::alert::AlertSettings) -> Duration {
    settings
        .to
        .iter()
        .filter_map(|r| r.reminder)
        .min()
        .map_or(Duration::from_secs(10), |d| {
            (d / 2).clamp(Duration::from_millis(200), Duration::from_secs(10))
        })
}

/// Whom an alert is about, as its `job` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum About<'a> {
    /// The daemon itself: `guardian`.
    Daemon,
    /// A host check (guardian.toml): `host`.
    Host,
    Job(&'a str),
}

impl About<'_> {
    pub fn name(&self) -> &str {
        match self {
            About::Daemon => "guardian",
            About::Host => "host",
            About::Job(name) => name,
        }
    }
}

impl Daemon {
    pub(super) fn start_alerts(&mut self) {
        let settings = self.config.settings.alert.clone();
        let job_recipients = self.jobs.values().any(|j| !j.spec.alert.extra.is_empty());
        if !alert::configured(&settings) && !job_recipients {
            return;
        }
        let http = if settings.webhooks.is_empty() {
            None
        } else {
            match checks::http_client() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("webhooks cannot be sent: {e}");
                    None
                }
            }
        };
        let dir = self.config.settings.state_dir.join("outbox");
        match alert::start(settings.clone(), dir.clone(), http) {
            Ok(tx) => self.alerts = Some(tx),
            Err(e) => tracing::error!(
                "alerts cannot be sent: cannot use {}: {e}",
                crate::logtext::EscPath(&dir)
            ),
        }
        if settings.to.iter().any(|r| r.reminder.is_some()) {
            let tick = reminder_tick(&settings);
            self.timers.push(std::cmp::Reverse((
                crate::config::limits::deadline(tick),
                Timer::Reminders,
            )));
        }
    }

    /// Something worth telling: logged always, queued for those who want this kind.
    pub(super) fn alert(
        &mut self,
        about: About<'_>,
        kind: Kind,
        check: Option<&str>,
        description: String,
        action: Option<Action>,
    ) {
        let mut a = Alert::new(about.name(), kind, description);
        a.check = check.map(str::to_string);
        a.action = action;
        let line = format!(
            "alert: {}: {}: {}{}",
            about.name(),
            crate::logtext::Esc(&a.event()),
            crate::logtext::Esc(&a.description),
            action
                .map(|x| format!(" (action: {x})"))
                .unwrap_or_default()
        );
        if kind.is_good_news() {
            tracing::info!("{line}");
        } else {
            tracing::warn!("{line}");
        }
        let Some(tx) = &self.alerts else {
            return;
        };
        // A job's own recipients and opt-out; the daemon and the host have none.
        let (extra, off) = match about {
            About::Job(job) => self
                .jobs
                .get(job)
                .map(|j| (j.spec.alert.extra.clone(), j.spec.alert.off))
                .unwrap_or_default(),
            About::Daemon | About::Host => Default::default(),
        };
        let targets = alert::route(&self.config.settings.alert, &extra, off, &a);
        if !targets.is_empty() {
            let _ = tx.send(alert::Msg::Queue(
                targets.into_iter().map(|t| (t, a.clone())).collect(),
            ));
        }
    }

    /// A job's run failed (a hook, the main process, the respawn limit): tell it once.
    pub(super) fn alert_failure(&mut self, name: &str) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let Some(f) = job.m.last_failure.clone() else {
            return;
        };
        if job.failure_alerted == Some(f.at) {
            return;
        }
        // A run that is going down is told about once it is down, so that the alert
        // says where it ended (failed for good, or waiting).
        if job.m.goal == crate::job::Goal::Stop && !job.m.state.is_down() {
            return;
        }
        job.failure_alerted = Some(f.at);
        let (kind, action) = if job.m.state == State::Failed {
            (Kind::RespawnLimit, Some(Action::StaysFailed))
        } else if f.process != Proc::Main {
            (Kind::HookFailed, None)
        } else if matches!(f.kind, FailureKind::NotReady | FailureKind::SpawnFailed) {
            (Kind::StartFailed, None)
        } else if job.m.goal == crate::job::Goal::Start {
            (Kind::Died, Some(Action::Respawn))
        } else {
            (Kind::Died, None)
        };
        let description = format!("{} {}", f.process.as_str(), f.status);
        self.alert(About::Job(name), kind, None, description, action);
    }

    /// Reminds recipients who asked for it of failures that last: a failing check, a job
    /// that gave up.
    pub(super) fn remind(&mut self) {
        let tick = reminder_tick(&self.config.settings.alert);
        self.timers.push(std::cmp::Reverse((
            crate::config::limits::deadline(tick),
            Timer::Reminders,
        )));
        let now = Instant::now();
        let mut lasting: Vec<(String, Option<String>, String)> = Vec::new();
        for (name, job) in &self.jobs {
            if job.spec.alert.off {
                continue;
            }
            if job.m.state == State::Failed {
                let why = job
                    .m
                    .last_failure
                    .as_ref()
                    .map(|f| format!("{} {}", f.process.as_str(), f.status))
                    .unwrap_or_default();
                lasting.push((name.clone(), None, why));
            }
            for c in &job.checks {
                if c.failing {
                    let why = c
                        .last
                        .as_ref()
                        .map(|(o, _)| o.reason.clone())
                        .unwrap_or_default();
                    lasting.push((name.clone(), Some(c.spec.name.clone()), why));
                }
            }
        }
        let keys: std::collections::HashSet<String> = lasting
            .iter()
            .map(|(j, c, _)| format!("{j}/{}", c.as_deref().unwrap_or("")))
            .collect();
        self.reminded.retain(|(k, _), _| keys.contains(k));
        let recipients = self.config.settings.alert.to.clone();
        let mut out: Vec<(To, Alert)> = Vec::new();
        for (job, check, why) in lasting {
            let key = format!("{job}/{}", check.as_deref().unwrap_or(""));
            let extra = self
                .jobs
                .get(&job)
                .map(|j| j.spec.alert.extra.clone())
                .unwrap_or_default();
            for r in recipients.iter().chain(&extra) {
                let Some(every) = r.reminder else { continue };
                if !r.filter.wants("reminder") {
                    continue;
                }
                let slot = (key.clone(), r.address.clone());
                match self.reminded.get(&slot) {
                    // The first alert just went out: remind from now on.
                    None => {
                        self.reminded.insert(slot, now);
                    }
                    Some(last) if now.duration_since(*last) >= every => {
                        self.reminded.insert(slot, now);
                        let mut a = Alert::new(&job, Kind::Reminder, why.clone());
                        a.check = check.clone();
                        out.push((To::Email(r.address.clone()), a));
                    }
                    Some(_) => {}
                }
            }
        }
        if let (Some(tx), false) = (&self.alerts, out.is_empty()) {
            let _ = tx.send(alert::Msg::Queue(out));
        }
    }

    /// At exit: a last try to deliver what waits (the `daemon-stopping` alert, say). What
    /// cannot go now stays in the outbox for the next start.
    pub(super) async fn flush_alerts(&mut self) {
        let Some(tx) = &self.alerts else {
            return;
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        if tx.send(alert::Msg::Flush(reply)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}
