//! What `summary` and `status` report of a job.

use crate::control::protocol::{self, CheckReport, FailureReport, JobRowRef, JobState, JobStatus};
use crate::job::{Goal, Reached, State, Until};
use crate::process::cgroup::Cgroups;
use crate::process::stat;

use super::Job;

/// Seconds to the millisecond: what a reader of `status --json` can use, without the
/// float's noise (`12.345678901234`).
fn to_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// What `status` says of `job`; `cgroups`, when the daemon's jobs have cgroups, is where
/// its CPU time and memory are read (falling back to its main process for what the
/// cgroup does not count).
pub fn of(job: &Job, cgroups: Option<&Cgroups>) -> JobStatus {
    let m = &job.m;
    let cg = cgroups
        .filter(|_| !m.is_down())
        .map(|c| (c.dir(&job.spec.name), c.usage(&job.spec.name)))
        .filter(|(_, u)| u.cpu_secs.is_some());
    // The main process only for what the cgroup does not count: nothing when it counts
    // both, its statm alone when it counts the CPU time (with 2,000 jobs a read of
    // /proc/PID/stat is most of a summary's cost).
    // A kept stat file is read for both: its resident memory is the same counter as
    // statm's, and it is the file that stays true to the process.
    let main = match &cg {
        Some((_, u)) if u.memory_bytes.is_some() => None,
        Some(_) if job.stat.is_some() => {
            job.main_usage().map(|u| stat::Usage { cpu_secs: 0.0, ..u })
        }
        Some(_) => m.main_pid().and_then(|pid| {
            stat::rss(pid).map(|rss_bytes| stat::Usage {
                cpu_secs: 0.0,
                rss_bytes,
            })
        }),
        None => job.main_usage(),
    };
    let (cpu, cpu_from) = match (&cg, main) {
        (Some((_, u)), _) => (u.cpu_secs, Some("cgroup")),
        (None, Some(u)) => (Some(u.cpu_secs), Some("main")),
        (None, None) => (None, None),
    };
    let (rss, rss_from) = match (cg.as_ref().and_then(|(_, u)| u.memory_bytes), main) {
        (Some(b), _) => (Some(b), Some("cgroup")),
        (None, Some(u)) => (Some(u.rss_bytes), Some("main")),
        (None, None) => (None, None),
    };
    JobStatus {
        name: job.spec.name.clone(),
        description: job.spec.description.as_deref().map(str::to_string),
        groups: job.spec.groups.to_vec(),
        goal: goal(m.goal()),
        state: state(m.state()),
        pid: m.main_pid(),
        monitored: m.monitored(),
        health: health(job).into(),
        restarts: m.restarts(),
        respawn_in_secs: m.respawn_due().map(|t| {
            to_ms(
                t.saturating_duration_since(std::time::Instant::now())
                    .as_secs_f64(),
            )
        }),
        uptime_secs: m.running_since().map(|t| to_ms(t.elapsed().as_secs_f64())),
        cpu_secs: cpu.map(to_ms),
        rss_bytes: rss,
        manual_stop: m.manual_stop(),
        last_failure: m.last_failure().map(|f| FailureReport {
            process: f.process.as_str().into(),
            status: f.status.clone(),
            at: humantime::format_rfc3339_seconds(f.at).to_string(),
        }),
        checks: job.checks.iter().map(check).collect(),
        cgroup: cg.map(|(dir, _)| dir.display().to_string()),
        cpu_from: cpu_from.map(String::from),
        rss_from: rss_from.map(String::from),
        processes: None,
        instance: job.spec.instance.as_ref().map(|i| i.number),
        base: job.spec.instance.as_ref().map(|i| i.base.clone()),
    }
}

/// What `summary` shows of `job`: what [`of`] says of it without cgroups (the CPU time
/// and memory of its main process, one read of /proc), borrowed from the job.
pub fn row(job: &Job) -> JobRowRef<'_> {
    let m = &job.m;
    let (uptime_secs, cpu_secs, rss_bytes) = running(job);
    JobRowRef {
        name: &job.spec.name,
        goal: goal(m.goal()),
        state: state(m.state()),
        health: health(job),
        pid: m.main_pid(),
        uptime_secs,
        cpu_secs,
        rss_bytes,
        monitored: m.monitored(),
        instance: job.spec.instance.as_ref().map(|i| i.number),
        base: job.spec.instance.as_ref().map(|i| i.base.as_str()),
    }
}

/// What `/metrics` says of `job`: what [`row`] says of it, the same one read of /proc.
pub fn figures(job: &Job) -> crate::http::metrics::JobFigures<'_> {
    let m = &job.m;
    let (uptime_secs, cpu_secs, rss_bytes) = running(job);
    crate::http::metrics::JobFigures {
        name: &job.spec.name,
        state: state(m.state()),
        monitored: m.monitored(),
        restarts: m.restarts(),
        uptime_secs,
        cpu_secs,
        rss_bytes,
    }
}

/// The job's uptime, and its main process's CPU time and resident memory (one read of
/// /proc): what `summary` and `/metrics` give of a running job.
fn running(job: &Job) -> (Option<f64>, Option<f64>, Option<u64>) {
    let main = job.main_usage();
    (
        job.m
            .running_since()
            .map(|t| to_ms(t.elapsed().as_secs_f64())),
        main.as_ref().map(|u| to_ms(u.cpu_secs)),
        main.map(|u| u.rss_bytes),
    )
}

/// The rows of `jobs`, written one by one as the serializer asks: no list of them is
/// made first.
pub struct Rows<I>(pub I);

impl<'a, I> serde::Serialize for Rows<I>
where
    I: Iterator<Item = &'a Job> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone().map(row))
    }
}

/// The answer to `summary`, as `Response::Summary` is written: its tag, the rows, and
/// the host checks when there are some.
pub struct SummaryReply<I> {
    pub rows: Rows<I>,
    pub host: Vec<CheckReport>,
}

impl<'a, I> serde::Serialize for SummaryReply<I>
where
    I: Iterator<Item = &'a Job> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = if self.host.is_empty() { 2 } else { 3 };
        let mut st = s.serialize_struct("Summary", fields)?;
        st.serialize_field("response", "summary")?;
        st.serialize_field("rows", &self.rows)?;
        if self.host.is_empty() {
            st.skip_field("host")?;
        } else {
            st.serialize_field("host", &self.host)?;
        }
        st.end()
    }
}

fn goal(g: Goal) -> protocol::Goal {
    match g {
        Goal::Start => protocol::Goal::Start,
        Goal::Stop => protocol::Goal::Stop,
    }
}

/// The job's health, or `done` for a task that ran to completion (its goal is then
/// stop and its state waiting, as for one that never ran).
fn health(job: &Job) -> &'static str {
    match job.m.reached(Until::Up) {
        Some(Reached::Completed) => protocol::HEALTH_DONE,
        _ => job.health().as_str(),
    }
}

/// The machine's state in the protocol's words.
pub fn state(s: State) -> JobState {
    match s {
        State::Waiting => JobState::Waiting,
        State::Starting => JobState::Starting,
        State::PreStart => JobState::PreStart,
        State::Spawned => JobState::Spawned,
        State::PostStart => JobState::PostStart,
        State::Running => JobState::Running,
        State::PreStop => JobState::PreStop,
        State::Stopping => JobState::Stopping,
        State::Killed => JobState::Killed,
        State::PostStop => JobState::PostStop,
        State::Failed => JobState::Failed,
    }
}

pub fn check(c: &super::checking::CheckRt) -> CheckReport {
    let last = c.last();
    let last = last.as_ref();
    CheckReport {
        name: c.spec.name.clone(),
        kind: c.spec.probe.kind().into(),
        target: c.spec.probe.describe(),
        action: c.spec.action.as_str().into(),
        passed: last.map(|(o, _)| o.passed),
        reason: last.map(|(o, _)| o.reason().into_owned()),
        value: last.and_then(|(o, _)| o.value),
        // Whole microseconds, in milliseconds: 6.467, not 6.4666619999999995.
        latency_ms: last.map(|(o, _)| o.latency.as_micros() as f64 / 1000.0),
        at: last.map(|(_, at)| humantime::format_rfc3339_seconds(*at).to_string()),
        failing: c.failing,
        runs: c.runs(),
        failures: c.failures(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_keeps_its_word() {
        for s in [
            State::Waiting,
            State::Starting,
            State::PreStart,
            State::Spawned,
            State::PostStart,
            State::Running,
            State::PreStop,
            State::Stopping,
            State::Killed,
            State::PostStop,
            State::Failed,
        ] {
            assert_eq!(state(s).as_str(), s.as_str());
        }
    }
}
