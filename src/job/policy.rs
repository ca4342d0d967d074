//! The part of a job's configuration that the lifecycle rules look at.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::job::{RespawnDelay, RespawnLimit};
use crate::config::{ExitMatch, JobSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub main: bool,
    pub pre_start: bool,
    pub post_start: bool,
    pub pre_stop: bool,
    pub post_stop: bool,
    pub respawn: bool,
    pub respawn_limit: Option<RespawnLimit>,
    pub respawn_delay: RespawnDelay,
    pub normal_exit: std::borrow::Cow<'static, [ExitMatch]>,
    pub task: bool,
    pub kill_signal: Signal,
    pub kill_timeout: Duration,
    /// The main process must be found ready before post-start (`expect`, `pidfile`,
    /// `[ready]`).
    pub wait_ready: bool,
    /// `manual`: only a person's `start` starts the job.
    pub manual: bool,
    /// `restart-limit`: how often checks may restart the job before it is unmonitored.
    pub restart_limit: Option<RespawnLimit>,
}

impl Policy {
    pub fn of(spec: &JobSpec) -> Self {
        Policy {
            main: spec.main.is_some(),
            pre_start: spec.hooks.pre_start.is_some(),
            post_start: spec.hooks.post_start.is_some(),
            pre_stop: spec.hooks.pre_stop.is_some(),
            post_stop: spec.hooks.post_stop.is_some(),
            respawn: spec.respawn,
            respawn_limit: spec.respawn_limit,
            respawn_delay: spec.respawn_delay,
            normal_exit: spec.normal_exit.clone(),
            task: spec.task,
            kill_signal: spec.kill_signal,
            kill_timeout: spec.kill_timeout,
            wait_ready: spec.waits_for_ready(),
            manual: spec.manual,
            restart_limit: spec.restart_limit,
        }
    }
}
