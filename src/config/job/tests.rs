//! The schema's defaults, and what a refused value leaves in their place.

use std::path::Path;

use super::*;
use crate::config::read_job_text;

fn read(text: &str) -> (JobSpec, Vec<String>) {
    let out = read_job_text(
        "web",
        Path::new("/etc/guardian/jobs/web.toml"),
        text.as_bytes(),
    );
    let errors = out.errors.iter().map(|d| d.message.clone()).collect();
    (
        out.spec
            .unwrap_or_else(|| JobSpec::new("web", Path::new("x"))),
        errors,
    )
}

#[test]
fn a_job_that_sets_nothing_has_every_default() {
    let (job, errors) = read("script = \"true\"\n");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(job.respawn_limit, Some(RespawnLimit::RESPAWN));
    assert_eq!(job.restart_limit, Some(RespawnLimit::RESTART));
    assert_eq!(job.respawn_delay, RespawnDelay::DEFAULT);
    assert_eq!(job.kill_signal, DEFAULT_KILL_SIGNAL);
    assert_eq!(job.kill_timeout, DEFAULT_KILL_TIMEOUT);
    assert_eq!(job.handover_timeout, DEFAULT_HANDOVER_TIMEOUT);
    assert_eq!(job.normal_exit, DEFAULT_NORMAL_EXIT);
    assert_eq!(job.expect, Expect::None);
    assert_eq!(job.path_var(), DEFAULT_PATH);
    assert!(!job.respawn && !job.task && !job.manual);
}

#[test]
fn a_refused_value_leaves_the_default_in_its_place() {
    let text = "script = \"true\"\nrespawn = \"yes\"\nmanual = 1\nkill-signal = \"TREM\"\n\
                kill-timeout = \"soon\"\nhandover-timeout = -1\nnormal-exit = 0\n\
                respawn-limit = 10\nrestart-limit = \"never\"\nexpect = \"forks\"\n";
    let (job, errors) = read(text);
    assert_eq!(errors.len(), 9, "{errors:?}");
    let (defaults, _) = read("script = \"true\"\n");
    assert_eq!(job, defaults);
}

#[test]
fn a_partial_limit_keeps_the_default_of_the_key_it_leaves_out() {
    let (job, errors) = read(
        "script = \"true\"\nrespawn-limit = { count = 3 }\nrestart-limit = { interval = \"1m\" }\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        job.respawn_limit.map(|l| (l.count, l.interval)),
        Some((3, RespawnLimit::RESPAWN.interval))
    );
    assert_eq!(
        job.restart_limit.map(|l| (l.count, l.interval)),
        Some((
            RespawnLimit::RESTART.count,
            std::time::Duration::from_secs(60)
        ))
    );
}

#[test]
fn hooks_given_as_exec_are_found_in_the_jobs_path() {
    let (job, errors) = read(
        "script = \"true\"\nenv = { PATH = \"/nonexistent:/bin:/usr/bin\" }\n\
         pre-start = { exec = \"sh -c true\" }\npost-stop = \"echo done\"\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    match &job.hooks.pre_start {
        Some(Program::Exec { path, argv }) => {
            assert!(path.ends_with("sh") && path.is_absolute(), "{path:?}");
            assert_eq!(argv, &["sh", "-c", "true"]);
        }
        other => panic!("pre-start is {other:?}"),
    }
    assert_eq!(
        job.hooks.post_stop,
        Some(Program::Script("echo done".into()))
    );

    let (_, errors) = read(
        "script = \"true\"\nenv = { PATH = \"/nonexistent\" }\npre-start = { exec = \"sh\" }\n",
    );
    assert_eq!(
        errors,
        ["`pre-start`: program `sh` not found in PATH /nonexistent"]
    );
}

#[test]
fn diagnose_and_its_timeout() {
    let (job, errors) = read("script = \"true\"\ndiagnose = \"py-spy dump --pid $MAINPID\"\n");
    assert!(errors.is_empty(), "{errors:?}");
    let d = job.diagnose.expect("diagnose");
    assert_eq!(d.command, "py-spy dump --pid $MAINPID");
    assert_eq!(d.timeout, crate::diagnose::DEFAULT_DIAGNOSE_TIMEOUT);
    let (job, errors) =
        read("script = \"true\"\ndiagnose-timeout = \"1s\"\ndiagnose = \"jstack $MAINPID\"\n");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        job.diagnose.map(|d| d.timeout),
        Some(Duration::from_secs(1))
    );
    let (job, errors) = read("script = \"true\"\ndiagnose-timeout = \"1s\"\n");
    assert!(job.diagnose.is_none());
    assert_eq!(
        errors,
        ["`diagnose-timeout` is the timeout of `diagnose`, which this job does not set"]
    );
    let (_, errors) = read("script = \"true\"\ndiagnose = \"x\"\ndiagnose-timeout = \"0s\"\n");
    assert_eq!(errors, ["`diagnose-timeout` must be more than 0"]);
}

#[test]
fn groups_are_read_in_order_and_checked_like_job_names() {
    let (job, errors) = read("script = \"true\"\ngroups = [\"frontend\", \"web@2\"]\n");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(*job.groups, ["frontend", "web@2"]);
    let (job, errors) = read("script = \"true\"\n");
    assert!(errors.is_empty() && job.groups.is_empty(), "{errors:?}");
    let (job, errors) =
        read("script = \"true\"\ngroups = [\"a b\", \".x\", \"all\", \"ok\", \"ok\", 3]\n");
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(
        errors[0].contains("`a b` is not a valid group name"),
        "{errors:?}"
    );
    assert!(errors[2].contains("not `all`"), "{errors:?}");
    assert!(errors[3].contains("`ok` is listed twice"), "{errors:?}");
    assert_eq!(*job.groups, ["ok"]);
    let (_, errors) = read("script = \"true\"\ngroups = \"frontend\"\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
}
