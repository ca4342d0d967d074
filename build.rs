//! Link-time settings of the `guardian` binary.
//!
//! Where the binary is built for the glibc it is built on, and that glibc is 2.36 or
//! later, its relative relocations are packed (`DT_RELR`; GNU ld 2.38 or later, which
//! ignores the option otherwise). A position-independent Rust binary has some 30,000 of
//! them: 24 bytes each, about 500 KB, that the dynamic loader reads, and keeps mapped,
//! at every start, against some 10 KB packed. That is the daemon's memory for as long
//! as it runs (bench/README.md, "The binary's own pages"). An older glibc cannot load
//! such a binary, hence the check; `GUARDIAN_PACK_RELOCS=0` turns it off, `=1` on.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GUARDIAN_PACK_RELOCS");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let pack = match var("GUARDIAN_PACK_RELOCS").as_str() {
        "0" => false,
        "1" => true,
        _ => {
            var("CARGO_CFG_TARGET_OS") == "linux"
                && var("CARGO_CFG_TARGET_ENV") == "gnu"
                && var("HOST") == var("TARGET")
                && glibc_at_least(2, 36)
        }
    };
    if pack {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") is at least
/// `major.minor`; false when that cannot be told.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
