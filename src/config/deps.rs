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

/// The jobs `start-on` of `spec` names (`started redis`, `stopped migrate`), without
/// patterns.
pub fn named_in_start_on(spec: &JobSpec) -> impl Iterator<Item = &str> {
    spec.start_on
        .iter()
        .flat_map(|on| on.expr.atoms())
        .filter_map(|atom| atom.job())
        .filter(|job| !job.contains(['*', '?']))
}

/// `members` in dependency order: each after every job its `start-on` names, directly or
/// through jobs that are not members; else in the order given. Stopping goes the other
/// way. A cycle (of events other than `started` / `starting`, which `check` refuses)
/// is cut where it closes. `spec_of` finds a job by name.
pub fn dependency_order<'a, S>(
    members: &[S],
    spec_of: impl Fn(&str) -> Option<&'a JobSpec>,
) -> Vec<String>
where
    S: AsRef<str>,
{
    let wanted: BTreeSet<&str> = members.iter().map(AsRef::as_ref).collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        // Depth first, without recursion: a job is written once all it names are.
        let mut stack: Vec<(String, bool)> = vec![(m.as_ref().to_string(), false)];
        while let Some((name, expanded)) = stack.pop() {
            if expanded {
                if wanted.contains(name.as_str()) {
                    out.push(name);
                }
                continue;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(spec) = spec_of(&name) else {
                continue;
            };
            stack.push((name, true));
            let mut deps: Vec<&str> = named_in_start_on(spec).collect();
            deps.sort_unstable();
            deps.dedup();
            // Pushed last to first, so that they are written in name order.
            for d in deps.into_iter().rev() {
                if !seen.contains(d) {
                    stack.push((d.to_string(), false));
                }
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn jobs(files: &[(&str, &str)]) -> BTreeMap<String, JobSpec> {
        files
            .iter()
            .filter_map(|(name, text)| {
                let file = Path::new("/etc/guardian/jobs").join(format!("{name}.toml"));
                let read = crate::config::read_job_text(name, &file, text.as_bytes());
                assert!(read.errors.is_empty(), "{name}: {:?}", read.errors);
                Some((name.to_string(), read.spec?))
            })
            .collect()
    }

    #[test]
    fn a_group_is_ordered_by_what_its_jobs_start_on_even_through_other_jobs() {
        let all = jobs(&[
            (
                "web",
                "exec = \"/bin/true\"\nstart-on = \"started mid and started api\"\n",
            ),
            ("mid", "exec = \"/bin/true\"\nstart-on = \"started zdb\"\n"),
            (
                "api",
                "exec = \"/bin/true\"\nstart-on = \"started zdb or started *\"\n",
            ),
            ("zdb", "exec = \"/bin/true\"\n"),
            ("cache", "exec = \"/bin/true\"\n"),
        ]);
        let spec_of = |n: &str| all.get(n);
        // mid is not a member, but web waits for it and it waits for zdb.
        assert_eq!(
            dependency_order(&["api", "cache", "web", "zdb"], spec_of),
            ["zdb", "api", "cache", "web"]
        );
        assert_eq!(dependency_order(&["web", "zdb"], spec_of), ["zdb", "web"]);
        assert_eq!(dependency_order(&["cache"], spec_of), ["cache"]);
        // A job that does not exist any more is left out, not an error.
        assert_eq!(dependency_order(&["gone", "zdb"], spec_of), ["zdb"]);
    }

    #[test]
    fn a_cycle_of_other_events_is_cut_not_followed_forever() {
        let all = jobs(&[
            ("a", "exec = \"/bin/true\"\nstart-on = \"stopped b\"\n"),
            ("b", "exec = \"/bin/true\"\nstart-on = \"stopped a\"\n"),
        ]);
        let order = dependency_order(&["a", "b"], |n| all.get(n));
        assert_eq!(order.len(), 2, "{order:?}");
    }
}
