//! `alerts` (what waits in the outbox) and `test-alert`.

use tokio::sync::oneshot;

use crate::control::protocol::Response;
use crate::daemon::Daemon;

impl Daemon {
    pub(super) fn list_alerts(&mut self, reply: oneshot::Sender<Response>) {
        let Some(tx) = &self.alerts else {
            let _ = reply.send(Response::Alerts { pending: vec![] });
            return;
        };
        let (list_tx, list_rx) = oneshot::channel();
        let _ = tx.send(crate::alert::Msg::List(list_tx));
        tokio::spawn(async move {
            let pending = list_rx.await.unwrap_or_default();
            let _ = reply.send(Response::Alerts { pending });
        });
    }

    pub(super) fn test_alert(&mut self, reply: oneshot::Sender<Response>) {
        use crate::alert::{Alert, To};
        let settings = &self.config.settings.alert;
        let Some(tx) = &self.alerts else {
            let _ = reply.send(Response::Error {
                message:
                    "no alert recipients, webhooks or Alertmanagers are configured ([alert] in guardian.toml)"
                        .into(),
            });
            return;
        };
        let mut targets: Vec<To> = settings
            .to
            .iter()
            .map(|r| To::Email(r.address.clone()))
            .collect();
        for job in self.jobs.values() {
            for r in &job.spec.alert.extra {
                let to = To::Email(r.address.clone());
                if !targets.contains(&to) {
                    targets.push(to);
                }
            }
        }
        targets.extend(settings.webhooks.iter().map(|w| To::Webhook(w.url.clone())));
        targets.extend(
            settings
                .alertmanager
                .iter()
                .map(|u| To::Alertmanager(u.clone())),
        );
        let alert = Alert::new(
            "guardian",
            crate::alert::Kind::Test,
            "a test alert sent by `guardian test-alert`: if you read this, alerts reach you".into(),
        );
        let (result_tx, result_rx) = oneshot::channel();
        let _ = tx.send(crate::alert::Msg::Test(targets, Box::new(alert), result_tx));
        tokio::spawn(async move {
            let results = result_rx.await.unwrap_or_default();
            let all_ok = results.iter().all(|(_, r)| r.is_ok());
            let message = results
                .into_iter()
                .map(|(to, r)| match r {
                    Ok(via) => format!("{to}: sent (via {via})"),
                    Err(e) => format!("{to}: NOT sent: {e}"),
                })
                .collect::<Vec<_>>()
                .join("\n");
            let _ = reply.send(if all_ok {
                Response::Done { message }
            } else {
                Response::No { message }
            });
        });
    }
}
