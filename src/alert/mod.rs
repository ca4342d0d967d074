//! Alerts: what happened, to whom it goes, and getting it there. Every alert is written
//! to the outbox in state-dir before delivery is tried and removed only once the mail
//! server (or the webhook) accepted it; alerts close together go out as one digest.

mod outbox;
mod smtp;

use serde::{Deserialize, Serialize};

use crate::config::alert::{AlertSettings, Recipient};

pub use outbox::{Msg, sent, start};

/// What an alert is about. Written (in mail, webhooks, the outbox, `on` / `not-on`) as
/// the kebab-case words of `config::alert::KINDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    CheckFailed,
    CheckRecovered,
    Unmonitored,
    Died,
    StartFailed,
    HookFailed,
    RespawnLimit,
    Reminder,
    DaemonStarted,
    DaemonStopping,
    Test,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::CheckFailed,
        Kind::CheckRecovered,
        Kind::Unmonitored,
        Kind::Died,
        Kind::StartFailed,
        Kind::HookFailed,
        Kind::RespawnLimit,
        Kind::Reminder,
        Kind::DaemonStarted,
        Kind::DaemonStopping,
        Kind::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CheckFailed => "check-failed",
            Kind::CheckRecovered => "check-recovered",
            Kind::Unmonitored => "unmonitored",
            Kind::Died => "died",
            Kind::StartFailed => "start-failed",
            Kind::HookFailed => "hook-failed",
            Kind::RespawnLimit => "respawn-limit",
            Kind::Reminder => "reminder",
            Kind::DaemonStarted => "daemon-started",
            Kind::DaemonStopping => "daemon-stopping",
            Kind::Test => "test",
        }
    }

    /// The `alertname` label in Alertmanager. A recovery is sent as the end of its
    /// failure's alert, so it carries that name; reminders are Alertmanager's own
    /// `repeat_interval` and never go there.
    pub fn alertname(self) -> &'static str {
        match self {
            Kind::CheckFailed | Kind::CheckRecovered => "GuardianCheckFailed",
            Kind::Unmonitored => "GuardianUnmonitored",
            Kind::Died => "GuardianJobDied",
            Kind::StartFailed => "GuardianStartFailed",
            Kind::HookFailed => "GuardianHookFailed",
            Kind::RespawnLimit => "GuardianRespawnLimit",
            Kind::Reminder => "GuardianReminder",
            Kind::DaemonStarted => "GuardianDaemonStarted",
            Kind::DaemonStopping => "GuardianDaemonStopping",
            Kind::Test => "GuardianTest",
        }
    }

    /// The `severity` label in Alertmanager: `critical` for a job that stays down,
    /// `info` for news that is not bad and the test, `warning` for the rest.
    pub fn severity(self) -> &'static str {
        match self {
            Kind::RespawnLimit => "critical",
            Kind::DaemonStarted | Kind::DaemonStopping | Kind::Test => "info",
            // A recovery ends the alert of its failure: the same labels.
            Kind::CheckFailed
            | Kind::CheckRecovered
            | Kind::Unmonitored
            | Kind::Died
            | Kind::StartFailed
            | Kind::HookFailed
            | Kind::Reminder => "warning",
        }
    }

    /// News that is not bad: logged as information rather than as a warning.
    pub fn is_good_news(self) -> bool {
        matches!(
            self,
            Kind::CheckRecovered | Kind::DaemonStarted | Kind::DaemonStopping
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What guardian did about what an alert tells (`{action}` in a template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The main process died and is being respawned.
    Respawn,
    Restart,
    Stop,
    Alert,
    Unmonitor,
    Exec,
    /// The respawn limit gave up.
    #[serde(rename = "none: the job stays failed until `guardian start`")]
    StaysFailed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Respawn => "respawn",
            Action::Restart => "restart",
            Action::Stop => "stop",
            Action::Alert => "alert",
            Action::Unmonitor => "unmonitor",
            Action::Exec => "exec",
            Action::StaysFailed => "none: the job stays failed until `guardian start`",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&crate::config::check::Action> for Action {
    fn from(a: &crate::config::check::Action) -> Action {
        use crate::config::check::Action as Check;
        match a {
            Check::Restart => Action::Restart,
            Check::Stop => Action::Stop,
            Check::Alert => Action::Alert,
            Check::Unmonitor => Action::Unmonitor,
            Check::Exec(_) => Action::Exec,
        }
    }
}

/// One thing worth telling a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The job it is about; `host` for host checks, `guardian` for the daemon itself.
    pub job: String,
    pub kind: Kind,
    pub check: Option<String>,
    /// What happened, in words: the probe's reason, how the process ended...
    pub description: String,
    /// What guardian did about it.
    pub action: Option<Action>,
    pub host: String,
    /// RFC 3339.
    pub time: String,
    /// The report taken on the job before the action, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportNote>,
    /// When what the alert tells ended (RFC 3339): set on what resolves an alert in
    /// Alertmanager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// A report in an alert: its short summary and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportNote {
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Alert {
    pub fn new(job: &str, kind: Kind, description: String) -> Alert {
        Alert {
            job: job.to_string(),
            kind,
            check: None,
            description,
            action: None,
            host: hostname(),
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            report: None,
            ended: None,
        }
    }

    /// The alert as Alertmanager's API v2 takes it: labels, annotations, `startsAt`
    /// and `endsAt` (when it ended, or `ends` for an alert that still fires, after
    /// which Alertmanager resolves it unless it is sent again).
    pub fn alertmanager(&self, ends: std::time::SystemTime) -> serde_json::Value {
        let mut labels = serde_json::Map::new();
        let mut label = |k: &str, v: &str| {
            labels.insert(k.into(), serde_json::Value::String(v.into()));
        };
        label("alertname", self.kind.alertname());
        label("name", &self.job);
        if let Some(c) = &self.check {
            label("check", c);
        }
        label("instance", &self.host);
        label("severity", self.kind.severity());
        let mut annotations = serde_json::Map::new();
        let mut note = |k: &str, v: String| {
            annotations.insert(k.into(), serde_json::Value::String(v));
        };
        note("summary", format!("{}: {}", self.job, self.event()));
        note("description", self.description.clone());
        if let Some(a) = self.action {
            note("action", a.as_str().into());
        }
        if let Some(r) = &self.report {
            note("report_summary", r.summary.clone());
            if let Some(p) = &r.path {
                note("report", p.clone());
            }
        }
        let ends = self
            .ended
            .clone()
            .unwrap_or_else(|| humantime::format_rfc3339_seconds(ends).to_string());
        serde_json::json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": self.time,
            "endsAt": ends,
        })
    }

    /// What tells this alert apart in Alertmanager: its labels but `instance` and
    /// `severity` (the same on every one this host sends for it).
    pub fn alertmanager_key(&self) -> (&'static str, &str, Option<&str>) {
        (self.kind.alertname(), &self.job, self.check.as_deref())
    }

    /// The event in words, for a subject line.
    pub fn event(&self) -> String {
        match (self.kind, &self.check) {
            (Kind::CheckFailed, Some(c)) => format!("check {c} failed"),
            (Kind::CheckRecovered, Some(c)) => format!("check {c} recovered"),
            (Kind::Reminder, Some(c)) => format!("check {c} still failing"),
            (Kind::Reminder, None) => "still failed".into(),
            (kind, _) => kind.as_str().replace('-', " "),
        }
    }

    /// Fills a subject or body template.
    pub fn render(&self, template: &str) -> String {
        template
            .replace("{job}", &self.job)
            .replace("{event}", &self.event())
            .replace("{description}", &self.description)
            .replace("{action}", self.action.map_or("none", Action::as_str))
            .replace("{host}", &self.host)
            .replace("{time}", &self.time)
            .replace("{check}", self.check.as_deref().unwrap_or("-"))
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Where one delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum To {
    Email(String),
    Webhook(String),
    /// An Alertmanager's base URL.
    Alertmanager(String),
}

impl To {
    pub fn shown(&self) -> &str {
        match self {
            To::Email(a) | To::Webhook(a) | To::Alertmanager(a) => a,
        }
    }
}

/// One alert for one recipient, as kept in the outbox until delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub to: To,
    pub alert: Alert,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The deliveries of `alert`: the recipients (`to` of guardian.toml, unless the job
/// says `alert = false`, and the job's own) and webhooks that want its kind.
pub fn route(
    settings: &AlertSettings,
    job_extra: &[Recipient],
    job_off: bool,
    alert: &Alert,
) -> Vec<To> {
    if job_off {
        return Vec::new();
    }
    let mut out: Vec<To> = Vec::new();
    for r in settings.to.iter().chain(job_extra) {
        let to = To::Email(r.address.clone());
        if r.filter.wants(alert.kind.as_str()) && !out.contains(&to) {
            out.push(to);
        }
    }
    for w in &settings.webhooks {
        if w.filter.wants(alert.kind.as_str()) {
            out.push(To::Webhook(w.url.clone()));
        }
    }
    out
}

/// Whether any alert can go anywhere.
pub fn configured(settings: &AlertSettings) -> bool {
    !settings.to.is_empty() || !settings.webhooks.is_empty() || !settings.alertmanager.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alert::Filter;

    #[test]
    fn routing_honours_filters_and_job_opt_out() {
        let s = AlertSettings {
            to: vec![
                Recipient {
                    address: "ops@example.com".into(),
                    filter: Filter::default(),
                    reminder: None,
                },
                Recipient {
                    address: "pager@example.com".into(),
                    filter: Filter {
                        on: vec!["respawn-limit".into()],
                        not_on: vec![],
                    },
                    reminder: None,
                },
                Recipient {
                    address: "dev@example.com".into(),
                    filter: Filter {
                        on: vec![],
                        not_on: vec!["check-recovered".into()],
                    },
                    reminder: None,
                },
            ],
            ..AlertSettings::default()
        };
        let a = Alert::new("web", Kind::CheckRecovered, "HTTP 200".into());
        assert_eq!(
            route(&s, &[], false, &a),
            vec![To::Email("ops@example.com".into())]
        );
        let b = Alert::new("web", Kind::RespawnLimit, "gave up".into());
        assert_eq!(route(&s, &[], false, &b).len(), 3);
        assert!(route(&s, &[], true, &b).is_empty());
    }

    #[test]
    fn templates() {
        let mut a = Alert::new("web", Kind::CheckFailed, "HTTP 503 after 3 ms".into());
        a.check = Some("health".into());
        a.action = Some(Action::Restart);
        assert_eq!(
            a.render("[{host}] {job}: {event} / {action} / {description}"),
            format!(
                "[{}] web: check health failed / restart / HTTP 503 after 3 ms",
                a.host
            )
        );
    }

    #[test]
    fn alertmanager_labels_and_annotations() {
        let mut a = Alert::new("web", Kind::CheckFailed, "HTTP 503 after 3 ms".into());
        a.check = Some("health".into());
        a.action = Some(Action::Restart);
        a.report = Some(ReportNote {
            summary: "main thread in futex_wait".into(),
            path: Some("/var/lib/guardian/reports/web/1.json".into()),
        });
        let ends = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let v = a.alertmanager(ends);
        assert_eq!(v["labels"]["alertname"], "GuardianCheckFailed");
        assert_eq!(v["labels"]["name"], "web");
        assert_eq!(v["labels"]["check"], "health");
        assert_eq!(v["labels"]["instance"], a.host.as_str());
        assert_eq!(v["labels"]["severity"], "warning");
        assert_eq!(v["annotations"]["summary"], "web: check health failed");
        assert_eq!(v["annotations"]["description"], "HTTP 503 after 3 ms");
        assert_eq!(v["annotations"]["action"], "restart");
        assert_eq!(
            v["annotations"]["report_summary"],
            "main thread in futex_wait"
        );
        assert_eq!(
            v["annotations"]["report"],
            "/var/lib/guardian/reports/web/1.json"
        );
        assert_eq!(v["startsAt"], a.time.as_str());
        assert_eq!(v["endsAt"], "2027-01-15T08:00:00Z");
        // What ended carries when it did; a recovery has the labels of its failure.
        a.ended = Some("2026-12-01T00:00:00Z".into());
        assert_eq!(a.alertmanager(ends)["endsAt"], "2026-12-01T00:00:00Z");
        let mut r = Alert::new("web", Kind::CheckRecovered, "HTTP 200".into());
        r.check = Some("health".into());
        assert_eq!(r.alertmanager(ends)["labels"], v["labels"]);
        let d = Alert::new("guardian", Kind::DaemonStarted, "started".into());
        let dv = d.alertmanager(ends);
        assert_eq!(dv["labels"]["severity"], "info");
        assert!(dv["labels"].get("check").is_none());
        assert!(dv["annotations"].get("action").is_none());
        // Every name is one Alertmanager takes, and each kind has its own.
        let mut names: Vec<&str> = Kind::ALL
            .iter()
            .filter(|k| **k != Kind::CheckRecovered)
            .map(|k| k.alertname())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_alphanumeric()))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len() - 1);
    }

    #[test]
    fn kinds_are_the_words_of_the_configuration() {
        let words: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(words, crate::config::alert::KINDS);
        for k in Kind::ALL {
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::String(k.as_str().into()))
            );
        }
    }

    #[test]
    fn an_alert_is_written_as_before() {
        let mut a = Alert::new("worker", Kind::RespawnLimit, "main exited 1".into());
        a.action = Some(Action::StaysFailed);
        let json = serde_json::to_value(&a).unwrap_or_default();
        assert_eq!(json["kind"], "respawn-limit");
        assert_eq!(
            json["action"],
            "none: the job stays failed until `guardian start`"
        );
        let back: Result<Alert, _> = serde_json::from_value(json);
        assert_eq!(back.ok(), Some(a));
        for action in [
            Action::Respawn,
            Action::Restart,
            Action::Stop,
            Action::Alert,
            Action::Unmonitor,
            Action::Exec,
            Action::StaysFailed,
        ] {
            assert_eq!(
                serde_json::to_value(action).ok(),
                Some(serde_json::Value::String(action.as_str().into()))
            );
        }
    }
}
