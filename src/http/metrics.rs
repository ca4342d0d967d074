//! `/metrics` in Prometheus's text format 0.0.4, from the status the loop gives
//! `summary`. Jobs are labelled `name` (Prometheus adds its own `job` label); host
//! checks have no `name`.

use std::fmt::Write;
use std::time::SystemTime;

use crate::control::protocol::{CheckReport, JobState, JobStatus};

/// A label value with `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// The whole exposition for `jobs` and the `host` checks, at `now`.
pub fn render(jobs: &[JobStatus], host: &[CheckReport], now: SystemTime) -> String {
    let mut out = String::with_capacity(256usize.saturating_mul(jobs.len().saturating_add(8)));
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let names: Vec<String> = jobs.iter().map(|j| label(&j.name)).collect();
    let each = |out: &mut String, metric: &str, v: &dyn Fn(&JobStatus) -> Option<String>| {
        for (j, n) in jobs.iter().zip(&names) {
            if let Some(v) = v(j) {
                let _ = writeln!(out, "{metric}{{name=\"{n}\"}} {v}");
            }
        }
    };
    head(
        &mut out,
        "guardian_job_up",
        "gauge",
        "1 if the job is running, else 0.",
    );
    each(&mut out, "guardian_job_up", &|j| {
        Some(u8::from(j.state == JobState::Running).to_string())
    });
    head(
        &mut out,
        "guardian_job_state",
        "gauge",
        "1 for the state the job is in, 0 for the others.",
    );
    for (j, n) in jobs.iter().zip(&names) {
        for s in JobState::ALL {
            let _ = writeln!(
                out,
                "guardian_job_state{{name=\"{n}\",state=\"{}\"}} {}",
                s.as_str(),
                u8::from(j.state == s)
            );
        }
    }
    head(
        &mut out,
        "guardian_job_monitored",
        "gauge",
        "1 if guardian acts on the job's checks.",
    );
    each(&mut out, "guardian_job_monitored", &|j| {
        Some(u8::from(j.monitored).to_string())
    });
    head(
        &mut out,
        "guardian_job_restarts_total",
        "counter",
        "Restarts of the job since the daemon started.",
    );
    each(&mut out, "guardian_job_restarts_total", &|j| {
        Some(j.restarts.to_string())
    });
    head(
        &mut out,
        "guardian_job_start_time_seconds",
        "gauge",
        "When the running job started, in seconds since the epoch.",
    );
    each(&mut out, "guardian_job_start_time_seconds", &|j| {
        j.uptime_secs.map(|u| num((now_secs - u).max(0.0).floor()))
    });
    head(
        &mut out,
        "guardian_job_cpu_seconds_total",
        "counter",
        "CPU time of the running job (its cgroup, or its main process).",
    );
    each(&mut out, "guardian_job_cpu_seconds_total", &|j| {
        j.cpu_secs.map(num)
    });
    head(
        &mut out,
        "guardian_job_memory_bytes",
        "gauge",
        "Resident memory of the running job (its cgroup, or its main process).",
    );
    each(&mut out, "guardian_job_memory_bytes", &|j| {
        j.rss_bytes.map(|b| b.to_string())
    });

    let checks = || {
        jobs.iter()
            .zip(&names)
            .flat_map(|(j, n)| j.checks.iter().map(move |c| (Some(n.as_str()), c)))
            .chain(host.iter().map(|c| (None, c)))
    };
    let labels = |n: Option<&str>, c: &CheckReport| match n {
        Some(n) => format!("name=\"{n}\",check=\"{}\"", label(&c.name)),
        None => format!("check=\"{}\"", label(&c.name)),
    };
    head(
        &mut out,
        "guardian_check_success",
        "gauge",
        "1 if the check's last run passed, 0 if it failed; absent before its first run.",
    );
    for (n, c) in checks() {
        if let Some(p) = c.passed {
            let _ = writeln!(
                out,
                "guardian_check_success{{{}}} {}",
                labels(n, c),
                u8::from(p)
            );
        }
    }
    head(
        &mut out,
        "guardian_check_duration_seconds",
        "gauge",
        "How long the check's last run took.",
    );
    for (n, c) in checks() {
        if let Some(ms) = c.latency_ms {
            let _ = writeln!(
                out,
                "guardian_check_duration_seconds{{{}}} {}",
                labels(n, c),
                num(ms / 1000.0)
            );
        }
    }
    head(
        &mut out,
        "guardian_check_failures_total",
        "counter",
        "Failed runs of the check since the daemon started.",
    );
    for (n, c) in checks() {
        let _ = writeln!(
            out,
            "guardian_check_failures_total{{{}}} {}",
            labels(n, c),
            c.failures
        );
    }
    head(
        &mut out,
        "guardian_alert_outbox_messages",
        "gauge",
        "Alert deliveries waiting in the outbox.",
    );
    let pending = crate::alert::sent::PENDING.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "guardian_alert_outbox_messages {pending}");
    head(
        &mut out,
        "guardian_alerts_sent_total",
        "counter",
        "Alert delivery attempts since the daemon started, by channel and result.",
    );
    for (c, channel) in crate::alert::sent::CHANNELS.iter().enumerate() {
        for (r, result) in crate::alert::sent::RESULTS.iter().enumerate() {
            let n = crate::alert::sent::total(c, r);
            let _ = writeln!(
                out,
                "guardian_alerts_sent_total{{channel=\"{channel}\",result=\"{result}\"}} {n}"
            );
        }
    }
    head(
        &mut out,
        "guardian_build_info",
        "gauge",
        "Always 1; the version of guardian in its label.",
    );
    let _ = writeln!(
        out,
        "guardian_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn an_empty_daemon_still_says_its_build() {
        let text = render(&[], &[], SystemTime::now());
        assert!(text.contains("guardian_build_info{version=\""), "{text}");
        assert!(text.contains("# TYPE guardian_job_up gauge"), "{text}");
        assert!(text.contains("guardian_alerts_sent_total{channel=\"email\",result=\"sent\"}"));
    }
}
