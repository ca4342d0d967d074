//! What `summary` and `status` report of a job.

use crate::control::protocol::{self, CheckReport, FailureReport, JobState, JobStatus};
use crate::job::{Goal, State};
use crate::process::stat;

use super::Job;

pub fn of(job: &Job) -> JobStatus {
    let m = &job.m;
    let usage = m.main_pid().and_then(stat::usage);
    JobStatus {
        name: job.spec.name.clone(),
        description: job.spec.description.clone(),
        goal: match m.goal() {
            Goal::Start => protocol::Goal::Start,
            Goal::Stop => protocol::Goal::Stop,
        },
        state: state(m.state()),
        pid: m.main_pid(),
        monitored: m.monitored(),
        health: job.health().as_str().into(),
        restarts: m.restarts(),
        respawn_in_secs: m.respawn_due().map(|t| {
            t.saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
        }),
        uptime_secs: m.running_since().map(|t| t.elapsed().as_secs_f64()),
        cpu_secs: usage.map(|u| u.cpu_secs),
        rss_bytes: usage.map(|u| u.rss_bytes),
        manual_stop: m.manual_stop(),
        last_failure: m.last_failure().map(|f| FailureReport {
            process: f.process.as_str().into(),
            status: f.status.clone(),
            at: humantime::format_rfc3339_seconds(f.at).to_string(),
        }),
        checks: job.checks.iter().map(check).collect(),
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
        latency_ms: last.map(|(o, _)| o.latency.as_secs_f64() * 1000.0),
        at: last.map(|(_, at)| humantime::format_rfc3339_seconds(*at).to_string()),
        failing: c.failing,
        runs: c.runs(),
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
