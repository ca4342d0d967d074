//! `/metrics` in Prometheus's text format 0.0.4, written by the daemon's loop straight
//! from its jobs (see `daemon::requests::metrics`): a [`JobFigures`] and a
//! [`CheckFigures`] borrowed from each, no status made first. Jobs are labelled `name`
//! (Prometheus adds its own `job` label); host checks have no `name`.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::control::protocol::JobState;

/// What the exposition says of one job.
pub struct JobFigures<'a> {
    pub name: &'a str,
    pub state: JobState,
    pub monitored: bool,
    pub restarts: u64,
    /// Seconds since its main process started, when it runs.
    pub uptime_secs: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// What the exposition says of one check: of the job at `job` in the list of jobs, or
/// of the host.
pub struct CheckFigures<'a> {
    pub job: Option<usize>,
    pub name: &'a str,
    /// Whether its last run passed, and how long that took; none before the first.
    pub last: Option<(bool, Duration)>,
    pub failures: u64,
}

/// A label value with `\`, `"` and newlines escaped, added to `out`.
fn push_label(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
fn label(s: &str) -> String {
    let mut out = String::new();
    push_label(&mut out, s);
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    for part in [
        "# HELP ",
        name,
        " ",
        help,
        "\n# TYPE ",
        name,
        " ",
        kind,
        "\n",
    ] {
        out.push_str(part);
    }
}

fn push_int(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

fn push_num(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v > 0.0 {
        out.push_str("+Inf");
    } else {
        out.push_str("-Inf");
    }
}

/// One value of a job's metric.
enum V {
    Int(u64),
    Num(f64),
}

/// The whole exposition for `jobs` and `checks`, at `now`.
///
/// A scrape of 500 jobs is some 18,000 lines: each is put together with `push_str`
/// from the pieces, the `{name="..."` of each job escaped once, not formatted line by
/// line.
pub fn render(jobs: &[JobFigures], checks: &[CheckFigures], now: SystemTime) -> String {
    let mut out = String::with_capacity(
        1200usize
            .saturating_mul(jobs.len())
            .saturating_add(250usize.saturating_mul(checks.len()))
            .saturating_add(4096),
    );
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // `{name="web"` for each job: the lines add `}` or more labels.
    let names: Vec<String> = jobs
        .iter()
        .map(|j| {
            let mut l = String::with_capacity(j.name.len() + 8);
            l.push_str("{name=\"");
            push_label(&mut l, j.name);
            l.push('"');
            l
        })
        .collect();
    let each = |out: &mut String, metric: &str, v: &dyn Fn(&JobFigures) -> Option<V>| {
        for (j, n) in jobs.iter().zip(&names) {
            if let Some(v) = v(j) {
                out.push_str(metric);
                out.push_str(n);
                out.push_str("} ");
                match v {
                    V::Int(i) => push_int(out, i),
                    V::Num(f) => push_num(out, f),
                }
                out.push('\n');
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
        Some(V::Int(u64::from(j.state == JobState::Running)))
    });
    head(
        &mut out,
        "guardian_job_state",
        "gauge",
        "1 for the state the job is in, 0 for the others.",
    );
    for (j, n) in jobs.iter().zip(&names) {
        for s in JobState::ALL {
            for part in ["guardian_job_state", n, ",state=\"", s.as_str(), "\"} "] {
                out.push_str(part);
            }
            out.push_str(if j.state == s { "1\n" } else { "0\n" });
        }
    }
    head(
        &mut out,
        "guardian_job_monitored",
        "gauge",
        "1 if guardian acts on the job's checks.",
    );
    each(&mut out, "guardian_job_monitored", &|j| {
        Some(V::Int(u64::from(j.monitored)))
    });
    head(
        &mut out,
        "guardian_job_restarts_total",
        "counter",
        "Restarts of the job since the daemon started.",
    );
    each(&mut out, "guardian_job_restarts_total", &|j| {
        Some(V::Int(j.restarts))
    });
    head(
        &mut out,
        "guardian_job_start_time_seconds",
        "gauge",
        "When the running job started, in seconds since the epoch.",
    );
    each(&mut out, "guardian_job_start_time_seconds", &|j| {
        j.uptime_secs
            .map(|u| V::Num((now_secs - u).max(0.0).floor()))
    });
    head(
        &mut out,
        "guardian_job_cpu_seconds_total",
        "counter",
        "CPU time of the running job (its cgroup, or its main process).",
    );
    each(&mut out, "guardian_job_cpu_seconds_total", &|j| {
        j.cpu_secs.map(V::Num)
    });
    head(
        &mut out,
        "guardian_job_memory_bytes",
        "gauge",
        "Resident memory of the running job (its cgroup, or its main process).",
    );
    each(&mut out, "guardian_job_memory_bytes", &|j| {
        j.rss_bytes.map(V::Int)
    });

    // `{name="web",check="http"` or `{check="disk"`, for each check.
    let check_labels: Vec<String> = checks
        .iter()
        .map(|c| {
            let n = c.job.and_then(|i| names.get(i));
            let mut l = String::with_capacity(c.name.len() + n.map_or(0, String::len) + 12);
            match n {
                Some(n) => {
                    l.push_str(n);
                    l.push_str(",check=\"");
                }
                None => l.push_str("{check=\""),
            }
            push_label(&mut l, c.name);
            l.push('"');
            l
        })
        .collect();
    let each_check = |out: &mut String, metric: &str, v: &dyn Fn(&CheckFigures) -> Option<V>| {
        for (l, c) in check_labels.iter().zip(checks) {
            if let Some(v) = v(c) {
                out.push_str(metric);
                out.push_str(l);
                out.push_str("} ");
                match v {
                    V::Int(i) => push_int(out, i),
                    V::Num(f) => push_num(out, f),
                }
                out.push('\n');
            }
        }
    };
    head(
        &mut out,
        "guardian_check_success",
        "gauge",
        "1 if the check's last run passed, 0 if it failed; absent before its first run.",
    );
    each_check(&mut out, "guardian_check_success", &|c| {
        c.last.map(|(p, _)| V::Int(u64::from(p)))
    });
    head(
        &mut out,
        "guardian_check_duration_seconds",
        "gauge",
        "How long the check's last run took.",
    );
    each_check(&mut out, "guardian_check_duration_seconds", &|c| {
        // Whole microseconds: 0.006467, not 0.0064666619999999995.
        c.last
            .map(|(_, d)| V::Num(d.as_micros() as f64 / 1_000_000.0))
    });
    head(
        &mut out,
        "guardian_check_failures_total",
        "counter",
        "Failed runs of the check since the daemon started.",
    );
    each_check(&mut out, "guardian_check_failures_total", &|c| {
        Some(V::Int(c.failures))
    });
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

    fn sample() -> (Vec<JobFigures<'static>>, Vec<CheckFigures<'static>>) {
        let job = |name, state, up: Option<f64>| JobFigures {
            name,
            state,
            monitored: state == JobState::Running,
            restarts: 3,
            uptime_secs: up,
            cpu_secs: up.map(|_| 1.25),
            rss_bytes: up.map(|_| 4096),
        };
        let check = |job, name, last: Option<(bool, u64)>, failures| CheckFigures {
            job,
            name,
            last: last.map(|(p, us)| (p, Duration::from_micros(us))),
            failures,
        };
        (
            vec![
                job("web", JobState::Running, Some(10.5)),
                job("odd\"name\\", JobState::Failed, None),
            ],
            vec![
                check(Some(0), "health", Some((true, 12_500)), 1),
                check(Some(1), "c", None, 0),
                check(None, "disk", Some((false, 250)), 7),
            ],
        )
    }

    #[test]
    fn every_metric_of_a_job_its_checks_and_the_host() {
        let (jobs, checks) = sample();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let text = render(&jobs, &checks, now);
        for line in [
            "guardian_job_up{name=\"web\"} 1",
            "guardian_job_up{name=\"odd\\\"name\\\\\"} 0",
            "guardian_job_state{name=\"web\",state=\"running\"} 1",
            "guardian_job_state{name=\"web\",state=\"failed\"} 0",
            "guardian_job_state{name=\"odd\\\"name\\\\\",state=\"failed\"} 1",
            "guardian_job_monitored{name=\"web\"} 1",
            "guardian_job_restarts_total{name=\"web\"} 3",
            "guardian_job_start_time_seconds{name=\"web\"} 999989",
            "guardian_job_cpu_seconds_total{name=\"web\"} 1.25",
            "guardian_job_memory_bytes{name=\"web\"} 4096",
            "guardian_check_success{name=\"web\",check=\"health\"} 1",
            "guardian_check_success{check=\"disk\"} 0",
            "guardian_check_duration_seconds{name=\"web\",check=\"health\"} 0.0125",
            "guardian_check_duration_seconds{check=\"disk\"} 0.00025",
            "guardian_check_failures_total{name=\"web\",check=\"health\"} 1",
            "guardian_check_failures_total{check=\"disk\"} 7",
            "guardian_check_failures_total{name=\"odd\\\"name\\\\\",check=\"c\"} 0",
            "# TYPE guardian_job_restarts_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        // Not running: no start time, CPU or memory; a check never run: no success.
        assert!(
            !text.contains("guardian_job_start_time_seconds{name=\"odd"),
            "{text}"
        );
        assert!(
            !text.contains("guardian_job_memory_bytes{name=\"odd"),
            "{text}"
        );
        assert!(
            !text.contains("check=\"c\"} 0\nguardian_check_duration"),
            "{text}"
        );
        assert!(
            !text.contains("guardian_check_success{name=\"odd"),
            "{text}"
        );
    }
}
