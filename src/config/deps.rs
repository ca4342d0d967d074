//! What holds between jobs: the events their `start-on` / `stop-on` wait for. Checked
//! once every job is read: a job that does not exist, a dependency cycle (jobs that would
//! each wait for the other forever) and user events that nothing emits.

use std::collections::{BTreeMap, BTreeSet};

use super::diag::{Diagnostic, did_you_mean};
use super::job::{JobSpec, On};
use crate::event::{DAEMON_EVENTS, JOB_EVENTS};

/// One edge of the graph: `to` starts (or stops) on `event` of `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// A job name, or the name of a daemon or user event.
    pub from: String,
    pub from_is_job: bool,
    pub to: String,
    /// `started`, `stopping`, `deploy-done`...
    pub event: String,
    /// A `stop-on` edge (else `start-on`).
    pub stop: bool,
}

pub fn edges(jobs: &BTreeMap<String, JobSpec>) -> Vec<Edge> {
    let mut out = Vec::new();
    for (name, spec) in jobs {
        for (on, stop) in [(&spec.start_on, false), (&spec.stop_on, true)] {
            let Some(on) = on else { continue };
            for atom in on.expr.atoms() {
                let (from, from_is_job) = match atom.job() {
                    Some(j) => (j.to_string(), true),
                    None => (atom.event.clone(), false),
                };
                out.push(Edge {
                    from,
                    from_is_job,
                    to: name.clone(),
                    event: atom.event.clone(),
                    stop,
                });
            }
        }
    }
    out
}

pub fn check(
    jobs: &BTreeMap<String, JobSpec>,
    texts: &BTreeMap<String, String>,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<String>,
) {
    let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
    for (name, spec) in jobs {
        let text = texts.get(name).map_or("", String::as_str);
        for (key, on) in [("start-on", &spec.start_on), ("stop-on", &spec.stop_on)] {
            let Some(on) = on else {
                continue;
            };
            let On { expr, .. } = &**on;
            for atom in expr.atoms() {
                let Some(job) = atom.job() else { continue };
                if job.contains(['*', '?']) || !super::instances::members(job, jobs).is_empty() {
                    continue;
                }
                let hint = did_you_mean(job, &names).map(|n| format!("did you mean `{n}`?"));
                errors.push(
                    Diagnostic::at(
                        &spec.file,
                        text,
                        on.span_of(atom.at, atom.to_string().len()),
                        format!("`{key}`: there is no job `{job}`"),
                    )
                    .with_hint(hint),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(jobs) {
        let first = &jobs[&cycle[0]];
        errors.push(
            Diagnostic::file(
                &first.file,
                format!(
                    "dependency cycle: {} (each waits for the next to start, so none ever would)",
                    cycle.join(" -> ")
                ),
            )
            .with_hint(Some(
                "break the cycle: one of these `start-on` must not wait for the others".into(),
            )),
        );
    }
    let mut user_events = BTreeSet::new();
    for e in edges(jobs) {
        if !e.from_is_job
            && !JOB_EVENTS.contains(&e.event.as_str())
            && !DAEMON_EVENTS.contains(&e.event.as_str())
        {
            user_events.insert((e.event, e.to));
        }
    }
    for (event, job) in user_events {
        let emitted = texts.values().any(|t| t.contains(&format!("emit {event}")));
        if !emitted {
            warnings.push(format!(
                "job `{job}` waits for the event `{event}`, which no job emits: only `guardian emit {event}` will"
            ));
        }
    }
}

/// A cycle of `start-on` waits on `started` / `starting` of other jobs, if any.
fn find_cycle(jobs: &BTreeMap<String, JobSpec>) -> Option<Vec<String>> {
    let mut waits: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in edges(jobs) {
        if !e.stop && e.from_is_job && (e.event == "started" || e.event == "starting") {
            waits
                .entry(jobs.get_key_value(&e.to)?.0.as_str())
                .or_default()
                .push(e.from);
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = jobs.keys().map(|k| (k.as_str(), Mark::New)).collect();
    fn visit<'a>(
        n: &'a str,
        waits: &BTreeMap<&'a str, Vec<String>>,
        mark: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        jobs: &'a BTreeMap<String, JobSpec>,
    ) -> Option<Vec<String>> {
        mark.insert(n, Mark::Open);
        path.push(n);
        // A set of instances is waited for through each of its jobs.
        let nexts = waits
            .get(n)
            .into_iter()
            .flatten()
            .flat_map(|w| super::instances::members(w, jobs));
        for next in nexts {
            let Some((next, _)) = jobs.get_key_value(&next) else {
                continue;
            };
            let next = next.as_str();
            match mark.get(next).copied() {
                Some(Mark::Open) => {
                    let start = path.iter().position(|p| *p == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.to_string());
                    return Some(cycle);
                }
                Some(Mark::New) => {
                    if let Some(c) = visit(next, waits, mark, path, jobs) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        mark.insert(n, Mark::Done);
        None
    }
    let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
    for n in names {
        if mark.get(n) == Some(&Mark::New) {
            let mut path = Vec::new();
            if let Some(c) = visit(n, &waits, &mut mark, &mut path, jobs) {
                return Some(c);
            }
        }
    }
    None
}
