//! guardian's integration tests: one binary, the real guardian against real processes.

mod alerts;
mod checks;
mod events;
mod lifecycle;
mod real_programs;
mod util;
