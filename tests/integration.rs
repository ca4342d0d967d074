//! guardian's integration tests: one binary, the real guardian against real processes.

mod checks;
mod events;
mod lifecycle;
mod util;
