//! The daemon's side of alerts: turning what happens to jobs into alerts, routing them
//! to the outbox, and reminding those who asked while a failure lasts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::alert::{self, Action, Alert, Kind, To};
use crate::job::{FailureKind, Proc, State};

use super::{Daemon, Timer};

/// Tells one lasting failure (a check that fails, a job in `failed`) from the next,
/// so that a reminder armed for one is never sent for another.
static EPISODE: AtomicU64 = AtomicU64::new(0);

pub(super) fn next_episode() -> u64 {
    EPISODE.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
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

/// A failure that lasts, as Alertmanager is told of it: a check that fails (of a job, or
/// with `host` a host check), or with no check a job in `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Lasting {
    pub host: bool,
    pub job: String,
    pub check: Option<String>,
}

/// An alert that fires in Alertmanager, and the failure it belongs to.
pub(super) struct Firing {
    alert: Alert,
    episode: u64,
}

impl Daemon {
    pub(super) fn start_alerts(&mut self) {
        let settings = self.config.settings.alert.clone();
        let job_recipients = self.jobs.values().any(|j| !j.spec.alert.extra.is_empty());
        if !alert::configured(&settings) && !job_recipients {
            return;
        }
        let http = if settings.webhooks.is_empty() && settings.alertmanager.is_empty() {
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
        match alert::start(settings, dir.clone(), http) {
            Ok(tx) => self.alerts = Some(tx),
            Err(e) => tracing::error!(
                "alerts cannot be sent: cannot use {}: {e}",
                crate::logtext::EscPath(&dir)
            ),
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
        self.alert_with(about, kind, check, description, action, None);
    }

    /// An alert that may carry the report taken before its action.
    pub(super) fn alert_with(
        &mut self,
        about: About<'_>,
        kind: Kind,
        check: Option<&str>,
        description: String,
        action: Option<Action>,
        report: Option<alert::ReportNote>,
    ) {
        let mut a = Alert::new(about.name(), kind, description);
        a.check = check.map(str::to_string);
        a.action = action;
        a.report = report;
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
        if !off {
            self.tell_alertmanager(about, a);
        }
    }

    /// Alertmanager gets every kind of alert (it routes and silences them itself). A
    /// failure that lasts (a check that fails, a job in `failed`) fires until it ends,
    /// re-sent on a timer of its own; a recovery resolves it; anything else is sent
    /// once and ends by itself.
    fn tell_alertmanager(&mut self, about: About<'_>, a: Alert) {
        if self.config.settings.alert.alertmanager.is_empty() {
            return;
        }
        let lasting = Lasting {
            host: about == About::Host,
            job: a.job.clone(),
            check: a.check.clone(),
        };
        match a.kind {
            // Alertmanager repeats what fires itself (`repeat_interval`).
            Kind::Reminder => {}
            Kind::CheckRecovered => {
                if let Some(f) = self.am_firing.remove(&lasting) {
                    self.am_resolve(f.alert, a.description, a.time);
                }
            }
            Kind::CheckFailed | Kind::RespawnLimit => {
                let Some(episode) = self.lasting_episode(&lasting) else {
                    // Over already (a check that recovered while its report was taken):
                    // told once, and it ends by itself.
                    self.am_send(a);
                    return;
                };
                let known = self
                    .am_firing
                    .get(&lasting)
                    .is_some_and(|f| f.episode == episode);
                self.am_firing.insert(
                    lasting.clone(),
                    Firing {
                        alert: a.clone(),
                        episode,
                    },
                );
                if !known {
                    let every = self.config.settings.alert.alertmanager_resend;
                    self.timers
                        .arm_in(self.now().mono, every, Timer::Resend { lasting, episode });
                }
                self.am_send(a);
            }
            _ => self.am_send(a),
        }
    }

    /// Which turn into failing of `lasting` is under way, if it still lasts.
    fn lasting_episode(&self, lasting: &Lasting) -> Option<u64> {
        let failing = |c: &super::checking::CheckRt, name: &str| {
            (c.spec.name == name && c.failing).then_some(c.episode)
        };
        match (&lasting.check, lasting.host) {
            (Some(name), true) => self.host_checks.iter().find_map(|c| failing(c, name)),
            (Some(name), false) => {
                let j = self.jobs.get(&lasting.job)?;
                if j.spec.alert.off {
                    return None;
                }
                j.checks.iter().find_map(|c| failing(c, name))
            }
            (None, _) => {
                let j = self.jobs.get(&lasting.job)?;
                if j.spec.alert.off || j.m.state() != State::Failed {
                    return None;
                }
                self.failed_episode.get(&lasting.job).copied()
            }
        }
    }

    /// An alert that fires is due to be sent again: sent if it still fires, resolved if
    /// its failure ended unseen (the job stopped, was restarted or removed).
    pub(super) fn am_resend(&mut self, lasting: Lasting, episode: u64) {
        if self
            .am_firing
            .get(&lasting)
            .is_none_or(|f| f.episode != episode)
        {
            return;
        }
        if self.lasting_episode(&lasting) == Some(episode) || self.restarted_from(&lasting) {
            if let Some(f) = self.am_firing.get(&lasting) {
                let a = f.alert.clone();
                self.am_send(a);
            }
            let every = self.config.settings.alert.alertmanager_resend;
            self.timers
                .arm_in(self.now().mono, every, Timer::Resend { lasting, episode });
        } else {
            self.am_ended(&lasting, "no longer failing".into());
        }
    }

    /// Whether `lasting` is a check whose failure restarted its job, and that has not
    /// passed since: the failure lasts until it does (or the job is down, or gone).
    fn restarted_from(&self, lasting: &Lasting) -> bool {
        let (Some(check), false) = (&lasting.check, lasting.host) else {
            return false;
        };
        self.jobs.get(&lasting.job).is_some_and(|j| {
            !j.spec.alert.off
                && !j.m.state().is_down()
                && j.checks.iter().any(|c| c.spec.name == *check)
        })
    }

    /// A check of `job` passed without a recovery (the failure that fired restarted
    /// the job, which starts its checks afresh): its alert in Alertmanager ends.
    pub(super) fn am_passed(&mut self, job: &str, check: &str, reason: &str) {
        let lasting = Lasting {
            host: false,
            job: job.to_string(),
            check: Some(check.to_string()),
        };
        if self.lasting_episode(&lasting).is_none() {
            self.am_ended(&lasting, format!("passes again: {reason}"));
        }
    }

    /// The failure `lasting` ended without a recovery of its own to tell (its job
    /// stopped, left `failed`...): Alertmanager hears that its alert is resolved.
    pub(super) fn am_ended(&mut self, lasting: &Lasting, why: String) {
        if let Some(f) = self.am_firing.remove(lasting) {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            self.am_resolve(f.alert, why, now);
        }
    }

    /// Tells Alertmanager that `firing` ended at `at`, saying why.
    fn am_resolve(&mut self, firing: Alert, why: String, at: String) {
        let mut a = firing;
        a.description = why;
        a.action = None;
        a.ended = Some(at);
        self.am_send(a);
    }

    fn am_send(&self, a: Alert) {
        let Some(tx) = &self.alerts else {
            return;
        };
        let items: Vec<(To, Alert)> = self
            .config
            .settings
            .alert
            .alertmanager
            .iter()
            .map(|u| (To::Alertmanager(u.clone()), a.clone()))
            .collect();
        if !items.is_empty() {
            let _ = tx.send(alert::Msg::Queue(items));
        }
    }

    /// A job's run failed (a hook, the main process, the respawn limit): tell it once.
    pub(super) fn alert_failure(&mut self, name: &str) {
        self.track_failed(name);
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        let Some(f) = job.m.last_failure().cloned() else {
            return;
        };
        if job.failure_alerted == Some(f.id) {
            return;
        }
        // A run that is going down is told about once it is down, so that the alert
        // says where it ended (failed for good, or waiting).
        if job.m.goal() == crate::job::Goal::Stop && !job.m.state().is_down() {
            return;
        }
        job.failure_alerted = Some(f.id);
        let (kind, action) = if job.m.state() == State::Failed {
            (Kind::RespawnLimit, Some(Action::StaysFailed))
        } else if f.process != Proc::Main {
            (Kind::HookFailed, None)
        } else if matches!(f.kind, FailureKind::NotReady | FailureKind::SpawnFailed) {
            (Kind::StartFailed, None)
        } else if job.m.goal() == crate::job::Goal::Start {
            (Kind::Died, Some(Action::Respawn))
        } else {
            (Kind::Died, None)
        };
        let description = format!("{} {}", f.process.as_str(), f.status);
        self.alert(About::Job(name), kind, None, description, action);
    }

    /// Notes when a job enters `failed` (a lasting failure, for reminders) and leaves it.
    fn track_failed(&mut self, name: &str) {
        let failed = self
            .jobs
            .get(name)
            .is_some_and(|j| j.m.state() == State::Failed);
        if !failed {
            if self.failed_episode.remove(name).is_some() {
                let lasting = Lasting {
                    host: false,
                    job: name.to_string(),
                    check: None,
                };
                let state = self
                    .jobs
                    .get(name)
                    .map_or("removed", |j| j.m.state().as_str());
                self.am_ended(&lasting, format!("no longer failed: {state}"));
            }
        } else if !self.failed_episode.contains_key(name) {
            let episode = next_episode();
            self.failed_episode.insert(name.to_string(), episode);
            self.failure_lasts(name, None, episode);
        }
    }

    /// A failure began to last: a check of `job` turned failing, or (`check` None) the
    /// job gave up. Each recipient who wants reminders gets a timer of its own, one
    /// interval from now; nothing wakes for a failure nobody is reminded of.
    pub(super) fn failure_lasts(&mut self, job: &str, check: Option<&str>, episode: u64) {
        if self.alerts.is_none() {
            return;
        }
        let Some(j) = self.jobs.get(job) else {
            return;
        };
        if j.spec.alert.off {
            return;
        }
        let mut armed: Vec<(Duration, String)> = Vec::new();
        for (every, address) in reminded(&self.config.settings.alert.to, &j.spec.alert.extra) {
            if !armed.iter().any(|(_, a)| a == address) {
                armed.push((every, address.clone()));
            }
        }
        for (every, to) in armed {
            let timer = Timer::Remind {
                job: job.to_string(),
                check: check.map(str::to_string),
                to,
                episode,
            };
            self.timers.arm_in(self.now().mono, every, timer);
        }
    }

    /// A reminder's timer: if its failure still lasts, remind the recipient of it and
    /// arm the next one.
    pub(super) fn remind(&mut self, job: String, check: Option<String>, to: String, episode: u64) {
        let Some(j) = self.jobs.get(&job) else {
            self.failed_episode.remove(&job);
            return;
        };
        if j.spec.alert.off {
            return;
        }
        let why = match &check {
            None => {
                if j.m.state() != State::Failed || self.failed_episode.get(&job) != Some(&episode) {
                    return;
                }
                j.m.last_failure()
                    .map(|f| format!("{} {}", f.process.as_str(), f.status))
                    .unwrap_or_default()
            }
            Some(name) => {
                let Some(c) = j
                    .checks
                    .iter()
                    .find(|c| c.spec.name == *name && c.failing && c.episode == episode)
                else {
                    return;
                };
                c.last()
                    .map(|(o, _)| o.reason().into_owned())
                    .unwrap_or_default()
            }
        };
        // The recipient as configured now: a reload may have changed a job's own.
        let every = reminded(&self.config.settings.alert.to, &j.spec.alert.extra)
            .find_map(|(every, address)| (*address == to).then_some(every));
        let (Some(every), Some(tx)) = (every, &self.alerts) else {
            return;
        };
        let mut a = Alert::new(&job, Kind::Reminder, why);
        a.check = check.clone();
        let _ = tx.send(alert::Msg::Queue(vec![(To::Email(to.clone()), a)]));
        let timer = Timer::Remind {
            job,
            check,
            to,
            episode,
        };
        self.timers.arm_in(self.now().mono, every, timer);
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

/// The recipients (guardian.toml's, then the job's own) who want reminders, with how
/// often.
fn reminded<'a>(
    to: &'a [crate::config::alert::Recipient],
    extra: &'a [crate::config::alert::Recipient],
) -> impl Iterator<Item = (Duration, &'a String)> {
    to.iter()
        .chain(extra)
        .filter(|r| r.filter.wants(Kind::Reminder.as_str()))
        .filter_map(|r| r.reminder.map(|every| (every, &r.address)))
}
