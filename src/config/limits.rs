//! Every limit on what a configuration may hold, in one place; docs/configuration.md
//! (Limits) lists them. Each keeps what `check` accepts within what guardian can run:
//! a value that passes here never fails for its size when it is used, and no
//! arithmetic on it can overflow.

use std::time::Duration;

pub use super::source::MAX_FILE_BYTES;
pub use crate::event::expr::MAX_DEPTH as MAX_EXPR_DEPTH;

/// A job name (its file's stem), a check's `name`, a custom command's name.
pub const MAX_NAME: usize = 64;

/// An environment variable's name, an HTTP header's name.
pub const MAX_KEY: usize = 256;

/// Any string value, in bytes: an `exec` line, a script, an `env` value, an expression.
/// Well under Linux's 128 KiB limit on one argument or variable.
pub const MAX_VALUE: usize = 64 * 1024;

/// A path, in bytes (Linux's PATH_MAX is 4096 with the final NUL).
pub const MAX_PATH: usize = 4095;

/// The control socket's path, in bytes: what fits in a Unix socket address.
pub const MAX_SOCKET_PATH: usize = 107;

/// The longest duration anywhere: 365 days. Any duration up to it can be added to any
/// clock reading without overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest size anywhere: 1 PiB.
pub const MAX_SIZE: u64 = 1 << 50;

/// The largest `count` of `respawn-limit` and `restart-limit`.
pub const MAX_COUNT: u32 = 10_000;

/// The largest `failures` and `within` of a check: the outcomes remembered to judge it.
pub const MAX_WITHIN: u32 = 1_000;

/// The clock reading `d` from now. A configuration's durations are at most
/// [`MAX_DURATION`], so this never needs its fallbacks; they are there so that no
/// duration, wherever it came from, can make clock arithmetic panic.
pub fn deadline(d: Duration) -> std::time::Instant {
    deadline_from(std::time::Instant::now(), d)
}

/// The clock reading `d` after `now`, with [`deadline`]'s fallbacks.
pub fn deadline_from(now: std::time::Instant, d: Duration) -> std::time::Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(MAX_DURATION))
        .unwrap_or(now)
}

/// A name a person types and reads (a custom command's, a check's): 1 to
/// [`MAX_NAME`] characters, none of them a space or a control character.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}
