//! The registry against docs/checks.md, and every type against its documented examples.

use std::collections::BTreeSet;
use std::path::Path;

use super::super::check::{self, CheckSpec};
use super::super::diag::Diagnostic;
use super::super::reader::Reader;
use super::{REGISTRY, find};

const DOCS: &str = include_str!("../../../docs/checks.md");

/// The lines of the part of the docs that starts with the line `heading`, up to the next
/// heading of the same level or above.
fn section<'d>(heading: &str) -> Vec<&'d str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = DOCS.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "docs/checks.md has no `{heading}`");
    let mut in_code = false;
    lines
        .take_while(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            let hashes = l.chars().take_while(|c| *c == '#').count();
            in_code || !(hashes > 0 && hashes <= level && l.chars().nth(hashes) == Some(' '))
        })
        .collect()
}

/// The words written `like this` in `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The first cell of each row of the tables in `lines`, header rows left out.
fn first_cells<'d>(lines: &[&'d str]) -> Vec<&'d str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .filter(|c| c.starts_with('`') || c.starts_with("[`"))
        .collect()
}

/// The `toml` code blocks in `lines`.
fn toml_blocks(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for l in lines {
        match current.as_mut() {
            None if *l == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if *l == "```" => out.extend(current.take()),
            Some(text) => {
                text.push_str(l);
                text.push('\n');
            }
        }
    }
    out
}

/// Reads `text` as a file whose `[[check]]` tables are a job's (or, with `host`,
/// guardian.toml's).
fn read_checks(text: &str, host: bool) -> (Vec<CheckSpec>, Vec<Diagnostic>) {
    let mut r = Reader::new(Path::new("test.toml"), text);
    let mut checks = Vec::new();
    if let Some(table) = r.parse()
        && let Some(v) = table.get_ref().get("check")
    {
        checks = check::read_all(&mut r, v, host);
    }
    (checks, r.errors)
}

#[test]
fn the_registry_names_each_type_once() {
    let names: BTreeSet<&str> = REGISTRY.iter().map(|p| p.name).collect();
    assert_eq!(names.len(), REGISTRY.len());
    for p in REGISTRY {
        assert!(find(p.name).is_some_and(|f| f.name == p.name));
        let keys: BTreeSet<&str> = p.key_names().collect();
        assert_eq!(keys.len(), p.keys.len() + 1, "{}: a key twice", p.name);
        assert!(p.keys.iter().all(|k| !k.about.is_empty()), "{}", p.name);
    }
    assert!(find("nope").is_none());
}

#[test]
fn docs_list_every_registered_type_and_no_other() {
    // The table of probe types: name, what it looks at, where it may be used.
    let rows: BTreeSet<(String, String, bool)> = section("## Probe types")
        .iter()
        .filter_map(|l| l.strip_prefix("| [`"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let name = cells[0].split('`').next().unwrap_or_default().to_string();
            let host = cells[2].trim_end_matches(" |") == "jobs and guardian.toml";
            (name, cells[1].to_string(), host)
        })
        .collect();
    let registered: BTreeSet<(String, String, bool)> = REGISTRY
        .iter()
        .map(|p| (p.name.to_string(), p.about.to_string(), p.host))
        .collect();
    assert_eq!(rows, registered);

    // The `type` row of the policy keys.
    let policy = section("## Policy keys");
    let type_row = policy
        .iter()
        .find(|l| l.starts_with("| `type` |"))
        .expect("a `type` row");
    let listed: BTreeSet<&str> = quoted(type_row).into_iter().skip(1).collect();
    let names: BTreeSet<&str> = REGISTRY.iter().map(|p| p.name).collect();
    assert_eq!(listed, names);

    // Host checks: which types guardian.toml may use, which not.
    let host = section("## Host checks").join("\n");
    let bullet = host
        .split("\n- ")
        .find(|b| b.starts_with("The types are"))
        .expect("the bullet about types");
    let (may, may_not) = bullet.split_once(". ").expect("two sentences");
    let may: BTreeSet<&str> = quoted(may).into_iter().collect();
    let may_not: BTreeSet<&str> = quoted(may_not).into_iter().collect();
    let host_types: BTreeSet<&str> = REGISTRY.iter().filter(|p| p.host).map(|p| p.name).collect();
    let job_types: BTreeSet<&str> = REGISTRY
        .iter()
        .filter(|p| !p.host)
        .map(|p| p.name)
        .collect();
    assert_eq!(may, host_types);
    assert_eq!(may_not, job_types);
}

#[test]
fn docs_describe_every_key_of_every_type() {
    for p in REGISTRY {
        let lines = section(&format!("### {}", p.name));
        let documented: BTreeSet<&str> = first_cells(&lines)
            .into_iter()
            .map(|c| c.trim_matches('`'))
            .collect();
        let keys: BTreeSet<&str> = p.keys.iter().map(|k| k.name).collect();
        assert_eq!(documented, keys, "the key table of `### {}`", p.name);
    }
}

#[test]
fn every_type_reads_its_documented_examples() {
    for p in REGISTRY {
        let blocks = toml_blocks(&section(&format!("### {}", p.name)));
        assert!(!blocks.is_empty(), "`### {}` has no example", p.name);
        for text in blocks {
            let (checks, errors) = read_checks(&text, false);
            assert!(errors.is_empty(), "{}: {errors:?} in\n{text}", p.name);
            assert_eq!(checks.len(), 1, "{text}");
            assert_eq!(checks[0].probe.kind(), p.name, "{text}");

            // guardian.toml takes the example too, or refuses it for its type.
            let (host_checks, errors) = read_checks(&text, true);
            if p.host {
                assert!(errors.is_empty(), "{}: {errors:?} in\n{text}", p.name);
                assert_eq!(host_checks.len(), 1);
            } else {
                assert_eq!(errors.len(), 1, "{errors:?}");
                let want = format!("a `{}` check belongs in a job file", p.name);
                assert!(errors[0].message.starts_with(&want), "{errors:?}");
            }
        }
    }
}

#[test]
fn a_key_of_another_type_is_refused_with_the_keys_this_type_takes() {
    for p in REGISTRY {
        for other in REGISTRY {
            for key in other.keys {
                if p.keys.iter().any(|k| k.name == key.name) {
                    continue;
                }
                let text = format!("[[check]]\ntype = \"{}\"\n{} = 1\n", p.name, key.name);
                let (_, errors) = read_checks(&text, false);
                let refusal = errors
                    .iter()
                    .find(|d| d.message == format!("unknown key `{}`", key.name))
                    .unwrap_or_else(|| panic!("`{}` taken in:\n{text}\n{errors:?}", key.name));
                assert_eq!((refusal.line, refusal.col), (3, 1));
                let hint = refusal.hint.as_deref().unwrap_or_default();
                if let Some(near) = hint
                    .strip_prefix("did you mean `")
                    .and_then(|h| h.strip_suffix("`?"))
                {
                    assert!(p.key_names().any(|k| k == near), "{hint}");
                    continue;
                }
                let mut takes: Vec<&str> = p.key_names().collect();
                takes.extend_from_slice(&[
                    "name", "every", "timeout", "failures", "within", "grace", "deadline", "action",
                ]);
                let list = format!("`{}` takes: {}", p.name, takes.join(", "));
                assert!(hint.ends_with(&list), "{hint}\n  wanted {list}");
                assert!(hint.contains(&format!("`{}`", other.name)), "{hint}");
            }
        }
    }
}

#[test]
fn an_unknown_type_is_refused_with_the_registered_ones() {
    let (_, errors) = read_checks("[[check]]\ntype = \"zzzz\"\n", false);
    let names: Vec<&str> = REGISTRY.iter().map(|p| p.name).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, "no probe type `zzzz`");
    assert_eq!(
        errors[0].hint.as_deref(),
        Some(format!("one of: {}", names.join(", ")).as_str())
    );
    let (_, errors) = read_checks("[[check]]\nport = 80\n", false);
    assert_eq!(errors[0].message, "a probe needs a `type`");
}
