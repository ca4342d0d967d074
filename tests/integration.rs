//! guardian's integration tests: one binary, the real guardian against real processes.

mod alertmanager;
mod alerts;
mod browser;
mod cgroup;
mod checks;
mod completion;
mod diagnose;
mod django_stack;
mod events;
mod fuzz_regressions;
mod groups;
mod handover;
mod hardening_config;
mod hardening_socket;
mod http;
mod import;
mod imported_stack;
mod instances;
mod json_output;
mod lifecycle;
mod log_fifo;
mod real_programs;
mod recovery;
mod reexec;
mod systemd;
mod util;
