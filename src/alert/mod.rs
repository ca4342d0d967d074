//! Alerts: what happened, to whom it goes, and getting it there. Every alert is written
//! to the outbox in state-dir before delivery is tried and removed only once the mail
//! server (or the webhook) accepted it; alerts close together go out as one digest.

mod outbox;
mod smtp;

use serde::{Deserialize, Serialize};

use crate::config::alert::{AlertSettings, Recipient};

pub use outbox::{Msg, start};

/// One thing worth telling a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub job: String,
    /// `check-failed`, `died`, ... (see `config::alert::KINDS`)
    pub kind: String,
    pub check: Option<String>,
    /// What happened, in words: the probe's reason, how the process ended...
    pub description: String,
    /// What guardian did about it.
    pub action: Option<String>,
    pub host: String,
    /// RFC 3339.
    pub time: String,
}

impl Alert {
    pub fn new(job: &str, kind: &str, description: String) -> Alert {
        Alert {
            job: job.to_string(),
            kind: kind.to_string(),
            check: None,
            description,
            action: None,
            host: hostname(),
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// The event in words, for a subject line.
    pub fn event(&self) -> String {
        match (&self.kind[..], &self.check) {
            ("check-failed", Some(c)) => format!("check {c} failed"),
            ("check-recovered", Some(c)) => format!("check {c} recovered"),
            ("reminder", Some(c)) => format!("check {c} still failing"),
            ("reminder", None) => "still failed".into(),
            (kind, _) => kind.replace('-', " "),
        }
    }

    /// Fills a subject or body template.
    pub fn render(&self, template: &str) -> String {
        template
            .replace("{job}", &self.job)
            .replace("{event}", &self.event())
            .replace("{description}", &self.description)
            .replace("{action}", self.action.as_deref().unwrap_or("none"))
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
}

impl To {
    pub fn shown(&self) -> &str {
        match self {
            To::Email(a) | To::Webhook(a) => a,
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
        if r.filter.wants(&alert.kind) && !out.contains(&to) {
            out.push(to);
        }
    }
    for w in &settings.webhooks {
        if w.filter.wants(&alert.kind) {
            out.push(To::Webhook(w.url.clone()));
        }
    }
    out
}

/// Whether any alert can go anywhere.
pub fn configured(settings: &AlertSettings) -> bool {
    !settings.to.is_empty() || !settings.webhooks.is_empty()
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
        let a = Alert::new("web", "check-recovered", "HTTP 200".into());
        assert_eq!(
            route(&s, &[], false, &a),
            vec![To::Email("ops@example.com".into())]
        );
        let b = Alert::new("web", "respawn-limit", "gave up".into());
        assert_eq!(route(&s, &[], false, &b).len(), 3);
        assert!(route(&s, &[], true, &b).is_empty());
    }

    #[test]
    fn templates() {
        let mut a = Alert::new("web", "check-failed", "HTTP 503 after 3 ms".into());
        a.check = Some("health".into());
        a.action = Some("restart".into());
        assert_eq!(
            a.render("[{host}] {job}: {event} / {action} / {description}"),
            format!(
                "[{}] web: check health failed / restart / HTTP 503 after 3 ms",
                a.host
            )
        );
    }
}
