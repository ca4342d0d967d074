//! guardian's integration tests: one binary, the real guardian against real processes.

mod alerts;
mod checks;
mod events;
mod fuzz_regressions;
mod hardening_config;
mod lifecycle;
mod util;
