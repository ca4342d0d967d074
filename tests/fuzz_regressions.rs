//! Every input that ever broke a fuzz target (fuzz/), and the cases that broke the
//! readers before there were targets, fed to the same functions the targets call:
//! guardian::invariants, which panics when something that must hold does not. The
//! fuzz seeds go through them too.

use std::path::Path;

fn each(dir: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    let dir = root.join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        eprintln!("{}", f.display());
        check(&bytes);
        n += 1;
    }
    n
}

#[test]
fn job_file_inputs_that_broke_the_reader() {
    assert!(
        each(
            "tests/fuzz-regressions/job_file",
            guardian::invariants::job_file
        ) > 0
    );
    assert!(each("fuzz/seeds/job_file", guardian::invariants::job_file) > 0);
}

#[test]
fn settings_inputs_that_broke_the_reader() {
    assert!(
        each(
            "tests/fuzz-regressions/settings",
            guardian::invariants::settings
        ) > 0
    );
    assert!(each("fuzz/seeds/settings", guardian::invariants::settings) > 0);
}

#[test]
fn expressions_that_broke_the_parser() {
    assert!(each("tests/fuzz-regressions/expr", guardian::invariants::expr) > 0);
    assert!(each("fuzz/seeds/expr", guardian::invariants::expr) > 0);
}

#[test]
fn protocol_inputs_that_broke_the_decoder() {
    each(
        "tests/fuzz-regressions/protocol",
        guardian::invariants::protocol,
    );
    assert!(each("fuzz/seeds/protocol", guardian::invariants::protocol) > 0);
}
