//! guardian's integration tests: one binary, the real guardian against real processes.

mod alerts;
mod checks;
mod django_stack;
mod events;
mod fuzz_regressions;
mod handover;
mod hardening_config;
mod hardening_socket;
mod lifecycle;
mod real_programs;
mod systemd;
mod util;
