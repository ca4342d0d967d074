//! Which build of guardian this is: its version and a mark set at build time
//! (`GUARDIAN_BUILD_MARK`), shown by `guardian --version` and by the daemon, so that
//! after `guardian reexec` one can tell which binary the daemon runs now.

use std::sync::LazyLock;

/// The mark of a build made without `GUARDIAN_BUILD_MARK`. Its bytes are in the binary
/// as they are here, so a copy of the binary can be told apart by patching them.
pub const UNMARKED: &str = "unmarked-guardian-build-00000000";

const MARK: &str = match option_env!("GUARDIAN_BUILD_MARK") {
    Some(m) => m,
    None => UNMARKED,
};

/// The build mark, read from the binary's bytes at run time.
pub fn mark() -> &'static str {
    std::hint::black_box(MARK)
}

/// `0.1.0 (build MARK)`.
pub fn version() -> &'static str {
    static V: LazyLock<String> =
        LazyLock::new(|| format!("{} (build {})", env!("CARGO_PKG_VERSION"), mark()));
    V.as_str()
}
