//! guardian: a health-checking process supervisor. The binary in `main.rs` is a thin
//! shell over this library, so that fuzz targets and tests can reach the readers and the
//! protocol directly.

pub mod alert;
pub mod build;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod diagnose;
pub mod event;
pub mod files;
pub mod http;
pub mod import;
pub mod invariants;
pub mod job;
pub mod logtext;
pub mod process;
