//! The outbox: a directory of deliveries (one JSON file each) and the task that works it
//! off. A delivery's file is written before anything is sent and removed only after
//! the server (or webhook) accepted it, so nothing is lost to a daemon restart or to a
//! mail relay that is down; failed deliveries are retried with a growing pause.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::alert::AlertSettings;
use crate::files;
use crate::logtext::{Esc, EscPath};

use super::{Alert, Delivery, To, smtp};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub enum Msg {
    /// New deliveries: keep them, send them after the digest window.
    Queue(Vec<(To, Alert)>),
    /// What waits to be delivered.
    List(oneshot::Sender<Vec<Delivery>>),
    /// Send this alert to these now, outside the outbox, and say how it went.
    Test(
        Vec<To>,
        Box<Alert>,
        oneshot::Sender<Vec<(String, Result<String, String>)>>,
    ),
    /// Try to deliver everything now; answer when done.
    Flush(oneshot::Sender<()>),
}

struct Entry {
    d: Delivery,
    due: Instant,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:020}-{:04}", SEQ.fetch_add(1, Ordering::Relaxed))
}

fn file_of(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn write(dir: &Path, d: &Delivery) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{}.tmp", d.id));
    let body = serde_json::to_vec_pretty(d).map_err(std::io::Error::other)?;
    {
        let mut f = files::open(
            &tmp,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
            files::PRIVATE,
        )?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file_of(dir, &d.id))
}

fn load(dir: &Path) -> Vec<Delivery> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        // Left by an older guardian under the umask: private from now on.
        let _ = files::fix_path(&path, files::PRIVATE);
        match std::fs::read(&path).map(|b| serde_json::from_slice::<Delivery>(&b)) {
            Ok(Ok(d)) => out.push(d),
            Ok(Err(e)) => {
                tracing::error!("outbox: {} is damaged ({e}); kept aside", EscPath(&path));
                let mut aside = path.clone().into_os_string();
                aside.push(".damaged");
                let _ = std::fs::rename(&path, aside);
            }
            Err(e) => tracing::error!("outbox: cannot read {}: {e}", EscPath(&path)),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Starts the sender. Deliveries left in `dir` by an earlier run go out first.
pub fn start(
    settings: AlertSettings,
    dir: PathBuf,
    http: Option<checks::HttpClient>,
) -> std::io::Result<mpsc::UnboundedSender<Msg>> {
    files::create_dir(&dir, files::PRIVATE)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let left = load(&dir);
    if !left.is_empty() {
        tracing::info!(
            "outbox: {} alert(s) from before the restart to deliver",
            left.len()
        );
    }
    tokio::spawn(run(settings, dir, http, rx, left));
    Ok(tx)
}

async fn run(
    settings: AlertSettings,
    dir: PathBuf,
    http: Option<checks::HttpClient>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    left: Vec<Delivery>,
) {
    let mut pending: Vec<Entry> = left
        .into_iter()
        .map(|d| Entry {
            d,
            due: Instant::now(),
        })
        .collect();
    loop {
        sent::PENDING.store(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let next = pending.iter().map(|e| e.due).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                match msg {
                    Msg::Queue(items) => {
                        let due = crate::config::limits::deadline(settings.digest);
                        for (to, alert) in items {
                            if matches!(to, To::Alertmanager(_)) && alert.ended.is_none() {
                                supersede(&dir, &mut pending, &to, &alert);
                            }
                            let d = Delivery { id: new_id(), to, alert, attempts: 0, last_error: None };
                            if let Err(e) = write(&dir, &d) {
                                tracing::error!("outbox: cannot write {}: {e}; delivering from memory only", EscPath(&dir));
                            }
                            pending.push(Entry { d, due });
                        }
                    }
                    Msg::List(reply) => {
                        let _ = reply.send(pending.iter().map(|e| e.d.clone()).collect());
                    }
                    Msg::Test(targets, alert, reply) => {
                        let mut results = Vec::new();
                        for to in targets {
                            let r = deliver(&settings, http.as_ref(), &to, std::slice::from_ref(&alert)).await;
                            results.push((to.shown().to_string(), r));
                        }
                        let _ = reply.send(results);
                    }
                    Msg::Flush(reply) => {
                        for e in &mut pending {
                            e.due = Instant::now();
                        }
                        work(&settings, http.as_ref(), &dir, &mut pending).await;
                        let _ = reply.send(());
                    }
                }
            }
            _ = sleep => work(&settings, http.as_ref(), &dir, &mut pending).await,
        }
    }
}

/// Alertmanager keeps one state per alert: an alert that fires, sent again, takes the
/// place of what waits to say the same, so that an Alertmanager that was down for an
/// hour gets one message per alert, not sixty re-sends. What says an alert ended is
/// never dropped, nor the firing it ends (Alertmanager tells no one of an alert it
/// never saw fire).
fn supersede(dir: &Path, pending: &mut Vec<Entry>, to: &To, alert: &Alert) {
    let key = alert.alertmanager_key();
    let ends_wait = pending
        .iter()
        .any(|e| e.d.to == *to && e.d.alert.ended.is_some() && e.d.alert.alertmanager_key() == key);
    if ends_wait {
        return;
    }
    pending.retain(|e| {
        let older =
            e.d.to == *to && e.d.alert.ended.is_none() && e.d.alert.alertmanager_key() == key;
        if older
            && let Err(err) = std::fs::remove_file(file_of(dir, &e.d.id))
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!("outbox: cannot remove {}: {err}", e.d.id);
        }
        !older
    });
}

/// Delivers what is due: per recipient, one message (a digest when several alerts wait).
async fn work(
    settings: &AlertSettings,
    http: Option<&checks::HttpClient>,
    dir: &Path,
    pending: &mut Vec<Entry>,
) {
    let now = Instant::now();
    let key = |d: &Delivery| match &d.to {
        To::Email(a) => format!("email:{a}"),
        // Webhooks get one request per alert: a digest would change their shape.
        To::Webhook(u) => format!("webhook:{u}:{}", d.id),
        // Alertmanager takes a list: everything for one goes in one request.
        To::Alertmanager(u) => format!("alertmanager:{u}"),
    };
    let due: std::collections::BTreeSet<String> = pending
        .iter()
        .filter(|e| e.due <= now)
        .map(|e| key(&e.d))
        .collect();
    // A recipient with anything due gets everything that waits for it, in one message.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in pending.iter().enumerate() {
        let k = key(&e.d);
        if due.contains(&k) {
            groups.entry(k).or_default().push(i);
        }
    }
    let mut delivered = Vec::new();
    for (_, idxs) in groups {
        let to = pending[idxs[0]].d.to.clone();
        let alerts: Vec<Alert> = idxs.iter().map(|i| pending[*i].d.alert.clone()).collect();
        match deliver(settings, http, &to, &alerts).await {
            Ok(via) => {
                sent::count(&to, true);
                tracing::info!(
                    "alert delivered to {} via {} ({} alert(s))",
                    Esc(to.shown()),
                    Esc(&via),
                    alerts.len()
                );
                delivered.extend(idxs);
            }
            Err(e) => {
                sent::count(&to, false);
                for i in idxs {
                    let entry = &mut pending[i];
                    entry.d.attempts += 1;
                    entry.d.last_error = Some(e.clone());
                    let pause = Duration::from_secs(1 << entry.d.attempts.min(5)).min(MAX_BACKOFF);
                    entry.due = crate::config::limits::deadline(pause);
                    let _ = write(dir, &entry.d);
                }
                tracing::warn!(
                    "alert to {} not delivered, will retry: {}",
                    Esc(to.shown()),
                    Esc(&e)
                );
            }
        }
    }
    delivered.sort_unstable();
    for i in delivered.into_iter().rev() {
        let e = pending.remove(i);
        if let Err(err) = std::fs::remove_file(file_of(dir, &e.d.id))
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!("outbox: cannot remove {}: {err}", e.d.id);
        }
    }
}

async fn deliver(
    settings: &AlertSettings,
    http: Option<&checks::HttpClient>,
    to: &To,
    alerts: &[Alert],
) -> Result<String, String> {
    match to {
        To::Email(address) => {
            let (subject, body) = compose(settings, alerts);
            smtp::send(settings, address, &subject, &body).await
        }
        To::Webhook(url) => {
            let Some(client) = http else {
                return Err("no HTTP client".into());
            };
            let Some(alert) = alerts.first() else {
                return Ok(url.clone());
            };
            let mut req = client
                .post(url)
                .timeout(settings.timeout)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(alert).map_err(|e| e.to_string())?);
            if let Some(w) = settings.webhooks.iter().find(|w| &w.url == url) {
                for (k, v) in &w.headers {
                    req = req.header(k, v);
                }
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => Ok(url.clone()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(with_causes(&e)),
            }
        }
        To::Alertmanager(base) => {
            let Some(client) = http else {
                return Err("no HTTP client".into());
            };
            // An alert that still fires ends after four re-sends that did not come (as
            // Prometheus does): Alertmanager resolves what a guardian gone quiet left.
            let ends = std::time::SystemTime::now()
                .checked_add(settings.alertmanager_resend.saturating_mul(4))
                .unwrap_or_else(std::time::SystemTime::now);
            let body: Vec<serde_json::Value> =
                alerts.iter().map(|a| a.alertmanager(ends)).collect();
            let endpoint = crate::config::alert::alertmanager_endpoint(base);
            let req = client
                .post(&endpoint)
                .timeout(settings.timeout)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
            match req.send().await {
                Ok(r) if r.status().is_success() => Ok(endpoint),
                Ok(r) => {
                    let status = r.status().as_u16();
                    // Alertmanager says in the body what it did not like.
                    let said = r.text().await.unwrap_or_default();
                    let said: String = said.trim().chars().take(300).collect();
                    if said.is_empty() {
                        Err(format!("HTTP {status}"))
                    } else {
                        Err(format!("HTTP {status}: {said}"))
                    }
                }
                Err(e) => Err(with_causes(&e)),
            }
        }
    }
}

/// An error with the causes under it: reqwest's own text is only "error sending
/// request for url (...)", and why (refused, a timeout, a certificate) is in its
/// sources. A cause already said by the text above it is not repeated.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// Subject and body: one alert through the templates, or a digest of several.
fn compose(settings: &AlertSettings, alerts: &[Alert]) -> (String, String) {
    if let [one] = alerts {
        return (one.render(&settings.subject), one.render(&settings.body));
    }
    let host = alerts
        .first()
        .map_or_else(super::hostname, |a| a.host.clone());
    let mut jobs: Vec<&str> = Vec::new();
    for a in alerts {
        if !jobs.contains(&a.job.as_str()) {
            jobs.push(&a.job);
        }
    }
    let subject = format!(
        "[{host}] {} alerts: {}",
        alerts.len(),
        jobs.iter().take(5).copied().collect::<Vec<_>>().join(", ")
    );
    let body = alerts
        .iter()
        .map(|a| a.render(&settings.body))
        .collect::<Vec<_>>()
        .join("\n----\n\n");
    (subject, body)
}

/// What the outbox has done since the daemon started, for /metrics: plain counters,
/// written by the outbox's task and read by whoever asks; nothing else is kept.
pub mod sent {
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::alert::To;

    /// Deliveries waiting in the outbox.
    pub static PENDING: AtomicU64 = AtomicU64::new(0);
    /// [channel][result]: channel 0 email, 1 webhook, 2 alertmanager; result 0 sent,
    /// 1 failed.
    static SENT: [[AtomicU64; 2]; 3] = [
        [AtomicU64::new(0), AtomicU64::new(0)],
        [AtomicU64::new(0), AtomicU64::new(0)],
        [AtomicU64::new(0), AtomicU64::new(0)],
    ];

    pub const CHANNELS: [&str; 3] = ["email", "webhook", "alertmanager"];
    pub const RESULTS: [&str; 2] = ["sent", "failed"];

    pub(super) fn count(to: &To, ok: bool) {
        let c = match to {
            To::Email(_) => 0,
            To::Webhook(_) => 1,
            To::Alertmanager(_) => 2,
        };
        SENT[c][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries so far, by channel and result (indices into CHANNELS, RESULTS).
    pub fn total(channel: usize, result: usize) -> u64 {
        SENT.get(channel)
            .and_then(|r| r.get(result))
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Kind;

    fn entry(to: &To, alert: Alert) -> Entry {
        Entry {
            d: Delivery {
                id: new_id(),
                to: to.clone(),
                alert,
                attempts: 0,
                last_error: None,
            },
            due: Instant::now(),
        }
    }

    fn failed(job: &str) -> Alert {
        let mut a = Alert::new(job, Kind::CheckFailed, "refused".into());
        a.check = Some("port".into());
        a
    }

    #[test]
    fn a_resend_takes_the_place_of_what_waits_but_an_end_stays() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let am = To::Alertmanager("http://127.0.0.1:9093".into());
        let other = To::Alertmanager("http://127.0.0.1:9094".into());
        let mut pending = vec![
            entry(&am, failed("web")),
            entry(&am, failed("db")),
            entry(&other, failed("web")),
        ];
        supersede(dir.path(), &mut pending, &am, &failed("web"));
        let left: Vec<(&str, &str)> = pending
            .iter()
            .map(|e| (e.d.to.shown(), e.d.alert.job.as_str()))
            .collect();
        assert_eq!(
            left,
            [
                ("http://127.0.0.1:9093", "db"),
                ("http://127.0.0.1:9094", "web")
            ]
        );
        // A firing followed by its end: both stay, and so does the next firing.
        let mut ended = failed("db");
        ended.ended = Some("2026-12-01T00:00:00Z".into());
        pending.push(entry(&am, ended));
        supersede(dir.path(), &mut pending, &am, &failed("db"));
        assert_eq!(pending.len(), 3);
    }
}
