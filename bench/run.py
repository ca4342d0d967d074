#!/usr/bin/env python3
"""Benchmark guardian from outside the daemon, through /proc.

Scenarios (see bench/README.md):
  1. crash -> restart latency of a respawning job
  2. memory (PSS, RSS) of the daemon supervising 500 jobs
  3. start-up time of a daemon with 100 jobs
  4. wall time of `guardian summary` against the 500-job daemon of (2)
  5. start-up of a chain of 100 jobs, each `start-on = "started <previous>"`
  6. start-up of a fan-out: 200 jobs with `start-on = "started root"`
  7. hang: an HTTP server stopped with SIGSTOP, until its health check has
     had it replaced and the new process answers
  8. checks: guardian's CPU and memory while 100 jobs run 1,000 HTTP checks/s
  9. scale: 2,000 jobs (--scale-jobs N): launch until all run, `guardian
     summary`, the daemon's PSS and its CPU over a quiet window

Standard library only. Prints a table and writes bench/results-guardian.md
(bench/results.md is the comparison with the peers, written by bench/compare.py).
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

# Every wait below is bounded by one of these (seconds) or by a count.
READY_TIMEOUT = 10.0        # a 1-job daemon has its job running
RESTART_TIMEOUT = 5.0       # one replacement process appears
MEMORY_READY_TIMEOUT = 60.0 # 500 jobs running
STARTUP_TIMEOUT = 30.0      # 100 jobs running (also the chain and the fan-out)
SETTLE_SECS = 2.0           # pause before reading memory
STOP_TIMEOUT = 30.0         # daemon exits after SIGTERM
KILL_TIMEOUT = 5.0          # daemon exits after SIGKILL of its group
CLI_TIMEOUT = 10.0          # one `guardian summary`

CRASH_ROUNDS = 20
CRASH_PAUSE = 1.1       # the replacement runs this long before the next kill
MEMORY_JOBS = 500
STARTUP_JOBS = 100
STARTUP_RUNS = 5
CHAIN_JOBS = 100        # scenario 5: j000 <- j001 <- ... <- j099
FANOUT_LEAVES = 200     # scenario 6: root <- leaf000 .. leaf199
EVENT_TARGET_MS = 200.0 # target of scenarios 5 and 6
STATUS_TIMEOUT = 2.0    # after a run, every job `running` in `status --json`
SUMMARY_RUNS = 20
LIGHT_POLL = 0.0005     # pause of the light observer in scenario 3
IDLE_WARN = 0.9         # warn when the machine is less idle than this

# Scenario 7 (hang): check every 500 ms, timeout 500 ms, restart after 2 failures.
HANG_ROUNDS = 10
HANG_TARGET_MS = 1200.0
HANG_EVERY = "500ms"
HANG_CHECK_TIMEOUT = "500ms"
HANG_FAILURES = 2
HANG_KILL_TIMEOUT = "1s"
HANG_PHASE_STEP = 0.05  # round i waits (i % 10) x this after `healthy`
HANG_TIMEOUT = 10.0     # one round: a new server answers
HANG_GONE_TIMEOUT = 5.0 # the stopped server is gone after its replacement answers
HEALTHY_TIMEOUT = 10.0  # the job is `healthy` again in `status --json`
HTTP_TIMEOUT = 0.5      # one GET of the benchmark
HANG_SCRIPT = "health_server.py"
MONIT_HANG = "monit at its 1 s minimum cycle: 1.1 to 1.9 s, median 1.5 s"

# Scenario 8 (checks): CHECK_JOBS jobs, one HTTP check each every CHECK_EVERY_MS.
CHECK_JOBS = 100
CHECK_EVERY_MS = 100
CHECKS_WARMUP = 3.0     # after every job is running
CHECKS_WINDOW = 10.0    # CPU sampled over this
CHECKS_TARGET_PCT = 10.0
LOAD_SCRIPT = "load_server.py"

# Scenario 9 (scale): SCALE_JOBS sleeping jobs (--scale-jobs N changes the count).
SCALE_JOBS = 2000
SCALE_LAUNCHES = 3          # daemons launched and timed; the last is measured further
SCALE_POLL = 0.005          # the launch observer's pause between polls
SCALE_TARGET_MS = 1000.0    # launch -> all running
SCALE_SUMMARY_RUNS = 10
SCALE_SUMMARY_TARGET_MS = 30.0
SCALE_PSS_TARGET_MB = 12.0
SCALE_QUIET_SECS = 10.0     # the idle CPU window
SCALE_IDLE_TARGET_PCT = 0.01  # "0": at most 1 ms of CPU in 10 s


def scale_timeout(n):
    """Bound (seconds) on a launch of n jobs: generous, growing with n."""
    return 30.0 + 0.02 * n


LEFTOVERS = []  # per daemon: job processes still running after it exited

JOB_EXEC = "sleep 100000"
JOB_COMM = "sleep"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc access

def read_proc(path):
    """The content of a /proc file, or None if the process is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    except OSError:
        return None
    finally:
        os.close(fd)


def comm(pid):
    s = read_proc(f"/proc/{pid}/comm")
    return s.rstrip("\n") if s is not None else None


def start_time(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None."""
    s = read_proc(f"/proc/{pid}/stat")
    if s is None:
        return None
    try:
        return int(s[s.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def is_zombie(pid):
    s = read_proc(f"/proc/{pid}/stat")
    return s is None or s[s.rindex(")") + 2:s.rindex(")") + 3] in ("Z", "X")


def children(gpid):
    """Child pids of the daemon's main thread, as listed by the kernel."""
    s = read_proc(f"/proc/{gpid}/task/{gpid}/children")
    return [int(t) for t in s.split()] if s else []


def children_all_tasks(gpid):
    """Child pids of every thread of the daemon (used for a consistency check)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{gpid}/task")
    except OSError:
        return out
    for t in tasks:
        s = read_proc(f"/proc/{gpid}/task/{t}/children")
        if s:
            out.extend(int(x) for x in s.split())
    return out


class SleepCounter:
    """Counts the daemon's children that have exec'd `sleep`.

    A pid once seen as `sleep` is remembered, so each poll only reads the comm
    of children not yet known; a forked child that has not exec'd yet still has
    the daemon's comm and is looked at again on the next poll.
    """

    def __init__(self, gpid):
        self.gpid = gpid
        self.known = set()

    def count(self):
        n = 0
        for p in children(self.gpid):
            if p in self.known:
                n += 1
            elif comm(p) == JOB_COMM:
                self.known.add(p)
                n += 1
        return n


def cpu_idle(interval=0.5):
    """Fraction of CPU time the whole machine spent idle during `interval`."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest is in user)
        return sum(v[:8]), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return (i1 - i0) / (t1 - t0) if t1 > t0 else 1.0


def wait_idle(limit):
    """Waits, at most `limit` seconds, until the machine is at least IDLE_WARN
    idle; returns the last idle fraction measured (over 0.5 s)."""
    deadline = time.monotonic() + limit
    idle = cpu_idle()
    while idle < IDLE_WARN and time.monotonic() < deadline:
        idle = cpu_idle()
    return idle


def sched_ns(pid):
    """(CPU time in ns, times scheduled) summed over every thread of a process,
    from /proc/PID/task/TID/schedstat (sum_exec_runtime is exact to the ns;
    utime + stime count in 10 ms ticks)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        raise RuntimeError(f"process {pid} is gone")
    ns = runs = 0
    for t in tasks:
        s = read_proc(f"/proc/{pid}/task/{t}/schedstat")
        if s:
            f = s.split()
            ns += int(f[0])
            runs += int(f[2])
    return ns, runs


def smaps_rollup(pid):
    """The kB fields of /proc/PID/smaps_rollup as a dict."""
    s = read_proc(f"/proc/{pid}/smaps_rollup")
    if s is None:
        raise RuntimeError(f"cannot read /proc/{pid}/smaps_rollup")
    out = {}
    for line in s.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            out[parts[0][:-1]] = int(parts[1])
    return out


# ---------------------------------------------------------------- the daemon

def clean_env():
    """The environment for guardian: no socket override, default log level."""
    env = dict(os.environ)
    for k in ("GUARDIAN_SOCKET", "GUARDIAN_LOG", "RUST_LOG"):
        env.pop(k, None)
    return env


def job_files(njobs, respawn=False):
    """{name: body} of njobs identical jobs job0..jobN."""
    body = f'exec = "{JOB_EXEC}"\n'
    if respawn:
        body += 'respawn = true\nrespawn-limit = "unlimited"\n'
    width = len(str(njobs))
    return {f"job{i:0{width}d}": body for i in range(njobs)}


def chain_files(n):
    """Scenario 5: j000 starts with the daemon, j<i> on `started j<i-1>`."""
    jobs = {"j000": f'exec = "{JOB_EXEC}"\n'}
    for i in range(1, n):
        jobs[f"j{i:03d}"] = f'exec = "{JOB_EXEC}"\nstart-on = "started j{i - 1:03d}"\n'
    return jobs


def fanout_files(n):
    """Scenario 6: root starts with the daemon, leaf000.. on `started root`."""
    jobs = {"root": f'exec = "{JOB_EXEC}"\n'}
    for i in range(n):
        jobs[f"leaf{i:03d}"] = f'exec = "{JOB_EXEC}"\nstart-on = "started root"\n'
    return jobs


def make_config(jobs, files=None):
    """A fresh configuration directory with one jobs/NAME.toml per entry of
    jobs ({name: file content}), and the files of `files` ({name: content})
    at its top. In job files, @DIR@ stands for the directory."""
    d = tempfile.mkdtemp(prefix="guardian-bench-")
    if len(os.path.join(d, "guardian.sock")) > 100:
        shutil.rmtree(d)
        d = tempfile.mkdtemp(prefix="guardian-bench-", dir="/tmp")
    with open(os.path.join(d, "guardian.toml"), "w") as f:
        f.write('socket = "guardian.sock"\nlog-dir = "log"\nstate-dir = "state"\n')
    for name, body in (files or {}).items():
        with open(os.path.join(d, name), "w") as f:
            f.write(body)
    jobdir = os.path.join(d, "jobs")
    os.mkdir(jobdir)
    for name, body in jobs.items():
        with open(os.path.join(jobdir, f"{name}.toml"), "w") as f:
            f.write(body.replace("@DIR@", d))
    return d


class Daemon:
    """One guardian daemon in its own temporary configuration directory."""

    def __init__(self, binary, njobs, respawn=False, keep=False, jobs=None, files=None):
        """njobs identical jobs, or the jobs of `jobs` ({name: body}) if given;
        `files` ({name: content}) are written into the directory too."""
        self.binary = binary
        if jobs is None:
            jobs = job_files(njobs, respawn)
        self.njobs = len(jobs)
        self.keep = keep
        self.dir = make_config(jobs, files)
        # Which processes are job processes (for the leftover check in stop()).
        self.is_job = lambda pid: comm(pid) == JOB_COMM
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.proc = None
        self.tracked = {}  # pid -> start time of every job process seen
        self.leftovers = 0
        self.stop_secs = None  # SIGTERM -> the daemon exited, if it did by itself

    def start(self):
        """Starts the daemon; returns time.perf_counter() taken just before Popen."""
        logf = open(self.log_path, "wb")
        try:
            self.t0_wall = time.time()  # to place guardian's log lines (notes only)
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                [self.binary, "-c", self.dir],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=clean_env(), start_new_session=True)
        finally:
            logf.close()
        return t0

    @property
    def pid(self):
        return self.proc.pid

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with status {self.proc.returncode}")

    def track(self, pids):
        for p in pids:
            if p not in self.tracked:
                st = start_time(p)
                if st is not None:
                    self.tracked[p] = st

    def wait_running(self, n, timeout, poll=0.01):
        """Waits (bounded) until n children have exec'd sleep."""
        counter = SleepCounter(self.pid)
        deadline = time.monotonic() + timeout
        while True:
            c = counter.count()
            if c >= n:
                break
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {c} of {n} jobs running after {timeout:.0f} s")
            time.sleep(poll)
        self.track(counter.known)
        # The measurements read the main thread's children only; make sure no
        # job process is listed under another thread.
        if len(children_all_tasks(self.pid)) != len(children(self.pid)):
            raise RuntimeError("job processes are children of more than one daemon "
                               "thread; /proc/PID/task/PID/children is incomplete")

    def cli(self, *args, timeout=CLI_TIMEOUT):
        return subprocess.run([self.binary, "-c", self.dir, *args],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=clean_env(), timeout=timeout)

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, bounded wait, SIGKILL of the group as last resort, then kill
        any job process left behind and remove the directory."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.track(children_all_tasks(self.pid))
                try:
                    t = time.perf_counter()
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout=STOP_TIMEOUT)
                    self.stop_secs = time.perf_counter() - t
                except subprocess.TimeoutExpired:
                    log(f"warning: daemon {self.pid} ignored SIGTERM for "
                        f"{STOP_TIMEOUT:.0f} s; killing its process group")
                    try:
                        os.killpg(self.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    try:
                        self.proc.wait(timeout=KILL_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        log(f"warning: daemon {self.pid} still alive after SIGKILL")
        # Job processes lead process groups of their own, so the daemon's
        # group kill does not reach them. Kill every one we saw that is still
        # the same process (same start time) and still a job process (`sleep`,
        # or the HTTP server of scenario 7).
        for p, st in self.tracked.items():
            if start_time(p) == st and self.is_job(p) and not is_zombie(p):
                self.leftovers += 1
                for kill in (os.killpg, os.kill):
                    try:
                        kill(p, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        if self.leftovers:
            LEFTOVERS.append(self.leftovers)
            log(f"warning: {self.leftovers} job process(es) outlived the daemon; killed")
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.proc is not None:
            tail = self.log_tail()
            if tail:
                log(f"--- daemon log ({self.log_path}) ---\n{tail}---")
        self.stop()
        return False


# ---------------------------------------------------------------- scenarios

def ms(seconds):
    return seconds * 1000.0


def crash_restart(binary, keep):
    """Scenario 1: SIGKILL the main process, time until the replacement has exec'd."""
    samples = []
    with Daemon(binary, 1, respawn=True, keep=keep) as d:
        d.start()
        d.wait_running(1, READY_TIMEOUT)
        gpid = d.pid
        path = f"/proc/{gpid}/task/{gpid}/children"
        time.sleep(CRASH_PAUSE)  # the first process, too, has been up a while
        for i in range(CRASH_ROUNDS):
            sleeps = [p for p in children(gpid) if comm(p) == JOB_COMM]
            if len(sleeps) != 1:
                raise RuntimeError(f"round {i}: expected 1 running job process, "
                                   f"found {len(sleeps)}")
            old = sleeps[0]
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + RESTART_TIMEOUT
            new = None
            # Busy-poll, no sleeps. The killed process may still be listed (as
            # a zombie, still named `sleep`) until the daemon reaps it, hence
            # the `p != old`. A forked child that has not exec'd yet still has
            # the daemon's comm.
            while new is None:
                fd = os.open(path, os.O_RDONLY)
                try:
                    data = os.read(fd, 65536)
                finally:
                    os.close(fd)
                for tok in data.split():
                    p = int(tok)
                    if p != old and comm(p) == JOB_COMM:
                        new = p
                        break
                t1 = time.perf_counter()
                if new is None and t1 > deadline:
                    d.check_alive()
                    raise RuntimeError(f"round {i}: no replacement within "
                                       f"{RESTART_TIMEOUT:.0f} s")
            samples.append(t1 - t0)
            d.track([new])
            # Let the replacement run for a while before the next kill, not part
            # of the measurement: a process killed within respawn-delay's
            # `stable` (1 s) of its start failed quickly and is respawned after
            # a delay (docs/configuration.md#respawn-delay); this measures the
            # crash of a process that had been up.
            time.sleep(CRASH_PAUSE)
        # Cross-check from the daemon's side.
        r = d.cli("status", "job0", "--json")
        restarts = None
        if r.returncode == 0:
            try:
                info = json.loads(r.stdout)
                restarts = info.get("restarts")
                if info.get("state") != "running":
                    log(f"warning: job state after the test is {info.get('state')!r}")
            except ValueError:
                pass
    return samples, restarts


def memory_and_summary(binary, keep):
    """Scenarios 2 and 4, on one daemon with MEMORY_JOBS jobs."""
    with Daemon(binary, MEMORY_JOBS, keep=keep) as d:
        t0 = d.start()
        d.wait_running(MEMORY_JOBS, MEMORY_READY_TIMEOUT, poll=0.005)
        t_all = time.perf_counter() - t0
        time.sleep(SETTLE_SECS)
        d.check_alive()
        n = SleepCounter(d.pid).count()
        if n != MEMORY_JOBS:
            raise RuntimeError(f"{n} of {MEMORY_JOBS} jobs running after settling")
        rollup = smaps_rollup(d.pid)
        ntasks = len(os.listdir(f"/proc/{d.pid}/task"))
        # Scenario 4. One untimed run first, to check the output.
        summary_check(d, MEMORY_JOBS)
        times = timed_summaries(d, SUMMARY_RUNS)
    return rollup, ntasks, t_all, times


def timed_start(d, n, nap, run, timeout=STARTUP_TIMEOUT):
    """Starts daemon d and observes it until n children have exec'd sleep.
    nap = 0: busy-poll; otherwise pause nap seconds between polls.
    Returns (seconds from just before Popen to the first sleep child,
    seconds to the n-th)."""
    t0 = d.start()
    deadline = t0 + timeout
    counter = SleepCounter(d.pid)
    t_first = None
    while True:
        c = counter.count()
        t1 = time.perf_counter()
        if c and t_first is None:
            t_first = t1
        if c >= n:
            break
        if t1 > deadline:
            d.check_alive()
            raise RuntimeError(f"run {run}: only {c} of {n} "
                               f"jobs running after {timeout:.0f} s")
        if d.proc.poll() is not None:
            d.check_alive()
        if nap:
            time.sleep(nap)
    d.track(counter.known)
    return t_first - t0, t1 - t0


def log_times(d):
    """From the daemon's own log (informational only): seconds after Popen at
    which guardian logged that it started, and its first and last `JOB: running`
    line. Log timestamps are the daemon's wall clock, compared with time.time()
    taken just before Popen. None where a line is missing or unreadable."""
    def stamp(line):
        try:
            ts = line.split(None, 1)[0].rstrip("Z")
            whole, _, frac = ts.partition(".")
            dt = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
            dt = dt.replace(tzinfo=datetime.timezone.utc)
            return dt.timestamp() + (float("0." + frac) if frac else 0.0) - d.t0_wall
        except (ValueError, IndexError):
            return None
    ready = first = last = None
    try:
        with open(d.log_path, errors="replace") as f:
            for line in f:
                if ready is None and " started: " in line and "guardian" in line:
                    ready = stamp(line)
                elif ": running, pid " in line:
                    t = stamp(line)
                    if t is not None:
                        first = t if first is None else first
                        last = t
    except OSError:
        pass
    return ready, first, last


def check_all_running(d):
    """Untimed: `guardian status --json` must list every job as running. Retries
    (bounded by STATUS_TIMEOUT) in case the last job's state lags its exec;
    returns the number of extra attempts needed."""
    deadline = time.monotonic() + STATUS_TIMEOUT
    attempt = 0
    while True:
        r = d.cli("status", "--json")
        if r.returncode != 0:
            raise RuntimeError(f"status --json exited {r.returncode}: {r.stderr.strip()}")
        try:
            info = json.loads(r.stdout)
            states = {j["name"]: j["state"] for j in info}
        except (ValueError, TypeError, KeyError) as e:
            raise RuntimeError(f"status --json: unexpected output ({e})")
        bad = {k: v for k, v in states.items() if v != "running"}
        if len(states) == d.njobs and not bad:
            return attempt
        if time.monotonic() > deadline or attempt >= 100:
            raise RuntimeError(f"status --json: {len(states)} jobs listed, "
                               f"{d.njobs} expected; not running: "
                               f"{dict(list(bad.items())[:5])}")
        attempt += 1
        time.sleep(0.02)


def check_one_thread_children(d):
    """The observers read the main thread's children only."""
    if len(children_all_tasks(d.pid)) != len(children(d.pid)):
        raise RuntimeError("job processes are children of more than one daemon "
                           "thread; /proc/PID/task/PID/children is incomplete")


def startup_once(binary, keep, run, nap):
    """Scenario 3, one run: from just before Popen to STARTUP_JOBS children that
    have exec'd sleep. nap = 0: busy-poll; otherwise pause nap seconds between polls."""
    with Daemon(binary, STARTUP_JOBS, keep=keep) as d:
        _, t_all = timed_start(d, STARTUP_JOBS, nap, run)
        return t_all


def startup(binary, keep):
    """Scenario 3: STARTUP_RUNS runs with a busy-polling observer and, alternating
    with them, STARTUP_RUNS runs with an observer that pauses between polls."""
    busy, light = [], []
    for run in range(STARTUP_RUNS):
        busy.append(startup_once(binary, keep, run, 0))
        light.append(startup_once(binary, keep, run, LIGHT_POLL))
    return busy, light


def event_start(binary, keep, jobs):
    """Scenarios 5 and 6: a daemon whose jobs (all `sleep`) start through
    start-on. STARTUP_RUNS runs with the busy-poll observer alternating with
    STARTUP_RUNS with the light one, as in scenario 3. After each run, untimed:
    every job `running` in `guardian status --json`, and guardian's log times."""
    out = {"busy": [], "light": [], "first_busy": [], "first_light": [],
           "log_busy": [], "log_light": [], "status_retries": 0}
    for run in range(STARTUP_RUNS):
        for kind, nap in (("busy", 0), ("light", LIGHT_POLL)):
            with Daemon(binary, 0, keep=keep, jobs=jobs) as d:
                t_first, t_all = timed_start(d, d.njobs, nap, run)
                check_one_thread_children(d)
                out["status_retries"] += check_all_running(d)
                out[kind].append(t_all)
                out["first_" + kind].append(t_first)
                out["log_" + kind].append(log_times(d))
    return out


def chain(binary, keep):
    return event_start(binary, keep, chain_files(CHAIN_JOBS))


def fanout(binary, keep):
    return event_start(binary, keep, fanout_files(FANOUT_LEAVES))


def summary_check(d, n):
    """Untimed: `guardian summary` prints a header and n `running` lines."""
    r = d.cli("summary")
    if r.returncode != 0:
        raise RuntimeError(f"summary exited {r.returncode}: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    running = sum(1 for ln in lines[1:] if ln.split()[2:3] == ["running"])
    if len(lines) != n + 1 or running != n:
        raise RuntimeError(f"summary printed {len(lines)} lines, {running} jobs running; "
                           f"{n + 1} lines, {n} running expected")


def timed_summaries(d, runs):
    """Wall time of `runs` x `guardian summary`, as the user sees it."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = d.cli("summary")
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise RuntimeError(f"summary exited {r.returncode}")
    return times


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def scale(binary, keep, njobs):
    """Scenario 9: SCALE_LAUNCHES daemons with njobs jobs each, timed from just
    before Popen to njobs children that have exec'd sleep. The last one is then
    left alone for SCALE_QUIET_SECS (its CPU time over that window), its PSS is
    read, and `guardian summary` is timed against it."""
    out = {"njobs": njobs, "launch": [], "first": [], "log": [], "status_retries": 0,
           "shutdown": []}
    daemons = []
    for run in range(SCALE_LAUNCHES):
        d = Daemon(binary, njobs, keep=keep)
        daemons.append(d)
        with d:
            t_first, t_all = timed_start(d, njobs, SCALE_POLL, run,
                                         timeout=scale_timeout(njobs))
            check_one_thread_children(d)
            out["launch"].append(t_all)
            out["first"].append(t_first)
            out["status_retries"] += check_all_running(d)
            out["log"].append(log_times(d))
            if run < SCALE_LAUNCHES - 1:
                continue
            time.sleep(SETTLE_SECS)
            d.check_alive()
            # The quiet window: nothing talks to the daemon, no job changes.
            m0 = cpu_totals()
            c0, k0 = sched_ns(d.pid), cpu_ticks(d.pid)
            w0 = time.monotonic()
            time.sleep(SCALE_QUIET_SECS)
            c1, k1 = sched_ns(d.pid), cpu_ticks(d.pid)
            w1 = time.monotonic()
            m1 = cpu_totals()
            d.check_alive()
            n = SleepCounter(d.pid).count()
            if n != njobs:
                raise RuntimeError(f"{n} of {njobs} jobs running after the quiet window")
            out["quiet"] = {"ns": c1[0] - c0[0], "runs": c1[1] - c0[1],
                            "ticks": k1 - k0, "secs": w1 - w0,
                            "idle": (m1[1] - m0[1]) / max(1, m1[0] - m0[0])}
            out["rollup"] = smaps_rollup(d.pid)
            out["threads"] = len(os.listdir(f"/proc/{d.pid}/task"))
            out["fds"] = open_fds(d.pid)
            summary_check(d, njobs)
            out["summary"] = timed_summaries(d, SCALE_SUMMARY_RUNS)
            out["rollup_after"] = smaps_rollup(d.pid)
    for d in daemons:
        if d.stop_secs is None:
            raise RuntimeError("a daemon did not exit by itself on SIGTERM")
        out["shutdown"].append(d.stop_secs)
    return out


# ---------------------------------------------------------------- HTTP checks

# Scenario 7's server, a job of guardian: GET /health answers 200 and "ok PID",
# so that the benchmark can tell the replacement from the hung process.
HANG_SERVER = r'''"""guardian benchmark, scenario 7: GET /health -> 200 "ok PID"."""
import http.server
import os
import sys


class Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        ok = self.path == "/health"
        body = ("ok %d\n" % os.getpid()).encode() if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


Server(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
'''

# Scenario 8's server, started by the benchmark (not by guardian): answers every
# request with 200 "ok" on keep-alive connections, and appends
# "MONOTONIC REQUESTS CONNECTIONS" (running totals) to a file every 0.1 s. It
# exits by itself after `lifetime` seconds.
LOAD_SERVER = r'''"""guardian benchmark, scenario 8: counts HTTP requests."""
import asyncio
import sys
import time

PORT, STATS, LIFETIME = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            b"Connection: keep-alive\r\n\r\nok")
requests = connections = 0


async def serve(reader, writer):
    global requests, connections
    connections += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            requests += 1
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
            if b"connection: close" in head.lower():
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT, backlog=1024)
    end = time.monotonic() + LIFETIME
    with open(STATS, "w", buffering=1) as f:
        while time.monotonic() < end:
            f.write("%.6f %d %d\n" % (time.monotonic(), requests, connections))
            await asyncio.sleep(0.1)
    server.close()


asyncio.run(main())
'''


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_str(s):
    """A TOML basic string (JSON's escaping is valid TOML for these paths)."""
    return json.dumps(s)


def cmdline(pid):
    """The arguments of a process, or None if it is gone."""
    s = read_proc(f"/proc/{pid}/cmdline")
    return s.split("\0")[:-1] if s else None


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    s = read_proc(f"/proc/{pid}/stat")
    if s is None:
        raise RuntimeError(f"process {pid} is gone")
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def cpu_totals():
    """(all, idle) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[3] + v[4]


def http_get(port, path="/health", timeout=HTTP_TIMEOUT):
    """(status, body) of GET http://127.0.0.1:PORT/PATH, or None if nothing
    answers within timeout."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def log_epoch(line):
    """The time (epoch seconds) at the start of one of guardian's log lines, or None."""
    try:
        ts = line.split(None, 1)[0].rstrip("Z")
        whole, _, frac = ts.partition(".")
        dt = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
        dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.timestamp() + (float("0." + frac) if frac else 0.0)
    except (ValueError, IndexError):
        return None


def job_status(d, job):
    """`guardian status JOB --json` as a dict (status exits 1 when the job is
    unhealthy; its JSON is read all the same)."""
    r = d.cli("status", job, "--json")
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(f"status {job} --json exited {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[:200]}")


def wait_healthy(d, job, pid=None, timeout=HEALTHY_TIMEOUT):
    """Polls (bounded) `status JOB --json` until "health" is "healthy" (and the
    main pid is `pid`, if given); returns the status."""
    deadline = time.monotonic() + timeout
    info, err = {}, None
    for _ in range(int(timeout / 0.05) + 1):
        d.check_alive()
        try:
            info, err = job_status(d, job), None
        except RuntimeError as e:  # e.g. the control socket is not there yet
            err = e
        if info.get("health") == "healthy" and (pid is None or info.get("pid") == pid):
            return info
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if err is not None:
        raise err
    raise RuntimeError(f"{job} not healthy after {timeout:.0f} s: health "
                       f"{info.get('health')!r}, pid {info.get('pid')}")


def hang_job(port):
    exe = f"{sys.executable} @DIR@/{HANG_SCRIPT} {port}"
    return (f"exec = {toml_str(exe)}\n"
            "respawn = true\n"
            f'kill-timeout = "{HANG_KILL_TIMEOUT}"\n'
            # The default (5 within 10m) would unmonitor the job after round 5.
            f'restart-limit = {{ count = {HANG_ROUNDS + 10}, interval = "10m" }}\n'
            "[[check]]\n"
            'type = "http"\n'
            f'url = "http://127.0.0.1:{port}/health"\n'
            f'every = "{HANG_EVERY}"\n'
            f'timeout = "{HANG_CHECK_TIMEOUT}"\n'
            f"failures = {HANG_FAILURES}\n"
            'action = "restart"\n')


def hang(binary, keep):
    """Scenario 7: SIGSTOP an HTTP server whose health check restarts it; time
    until a new server process, a child of the daemon, answers GET /health."""
    port = free_port()
    with Daemon(binary, 0, keep=keep, jobs={"web": hang_job(port)},
                files={HANG_SCRIPT: HANG_SERVER}) as d:
        script = os.path.join(d.dir, HANG_SCRIPT)

        def is_server(pid):
            a = cmdline(pid)
            return a is not None and script in a

        d.is_job = is_server
        d.start()
        gpid = d.pid
        wait_healthy(d, "web", timeout=READY_TIMEOUT)
        rounds = []
        for i in range(HANG_ROUNDS):
            # Spread the moment of the SIGSTOP over the check's 500 ms period:
            # health turns healthy just after a check passed.
            time.sleep((i % 10) * HANG_PHASE_STEP)
            d.check_alive()
            servers = [p for p in children(gpid) if is_server(p)]
            if len(servers) != 1:
                raise RuntimeError(f"round {i}: expected 1 server process, found {len(servers)}")
            old = servers[0]
            old_st = start_time(old)
            d.track([old])
            r = http_get(port)
            if r is None or r[0] != 200 or r[1].split() != ["ok", str(old)]:
                raise RuntimeError(f"round {i}: server {old} does not answer: {r}")
            t0_wall = time.time()
            t0 = time.perf_counter()
            os.kill(old, signal.SIGSTOP)
            deadline = t0 + HANG_TIMEOUT
            new = t_new = t_dead = t1 = None
            gets = 0
            while t1 is None:
                now = time.perf_counter()
                if t_dead is None and (is_zombie(old) or start_time(old) != old_st):
                    t_dead = now
                if new is None:
                    for p in children(gpid):
                        if p != old and is_server(p):
                            new, t_new = p, now
                            d.track([p])
                            break
                # Only once a new server exists: the stopped one still holds
                # the port, and a request to it would hang.
                if new is not None:
                    gets += 1
                    r = http_get(port)
                    if r is not None and r[0] == 200:
                        w = r[1].split()
                        if len(w) == 2 and w[1].isdigit() and int(w[1]) != old:
                            if int(w[1]) != new:  # a later replacement answered
                                new = int(w[1])
                                d.track([new])
                            t1 = time.perf_counter()
                            break
                if now > deadline:
                    d.check_alive()
                    raise RuntimeError(f"round {i}: no new server answering within "
                                       f"{HANG_TIMEOUT:.0f} s (new process: {new})")
                time.sleep(LIGHT_POLL)
            # The stopped process must be gone (TERM + CONT, SIGKILL after the
            # kill timeout); not timed unless it is still there.
            kill_deadline = time.perf_counter() + HANG_GONE_TIMEOUT
            while t_dead is None:
                if is_zombie(old) or start_time(old) != old_st:
                    t_dead = time.perf_counter()
                elif time.perf_counter() > kill_deadline:
                    raise RuntimeError(f"round {i}: the stopped server {old} still runs "
                                       f"{HANG_GONE_TIMEOUT:.0f} s after its replacement")
                else:
                    time.sleep(LIGHT_POLL)
            info = wait_healthy(d, "web", pid=new)
            # guardian's log: when the check failed, when the new process was spawned.
            t_fail = t_run = None
            for line in d.log_tail(200).splitlines():
                t = log_epoch(line)
                if t is None or t < t0_wall - 0.01:
                    continue
                if t_fail is None and "web: check " in line and " failed" in line:
                    t_fail = t - t0_wall
                elif t_run is None and f"web: running, pid {new}" in line:
                    t_run = t - t0_wall
            rounds.append({"total": t1 - t0, "new": t_new - t0, "dead": t_dead - t0,
                           "fail_log": t_fail, "run_log": t_run, "gets": gets,
                           "restarts": info.get("restarts")})
        # Give the last round's kill timer (1 s) time to run out before
        # counting what guardian logged about it.
        time.sleep(1.2)
        sigkill_lines = sum(1 for ln in d.log_tail(10000).splitlines()
                            if "still alive after its kill timeout" in ln)
    return {"rounds": rounds, "sigkill_lines": sigkill_lines}


def load_jobs(port):
    """Scenario 8: CHECK_JOBS sleeping jobs, each with one HTTP check."""
    body = (f'exec = "{JOB_EXEC}"\n'
            "[[check]]\n"
            'type = "http"\n'
            f'url = "http://127.0.0.1:{port}/health"\n'
            f'every = "{CHECK_EVERY_MS}ms"\n'
            'timeout = "1s"\n'
            'action = "alert"\n')
    return {f"chk{i:03d}": body for i in range(CHECK_JOBS)}


def read_stats(path):
    """[(monotonic, requests, connections)] from the load server's file."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == 3:
                    out.append((float(p[0]), int(p[1]), int(p[2])))
    except (OSError, ValueError):
        pass
    return out


def at(stats, t):
    """The last line of the load server's stats written at or before t."""
    best = None
    for s in stats:
        if s[0] <= t:
            best = s
    if best is None:
        raise RuntimeError("the load server wrote no statistics in time")
    return best


def checks_load(binary, keep):
    """Scenario 8: guardian's CPU and memory while CHECK_JOBS jobs each run an
    HTTP check every CHECK_EVERY_MS against a server outside guardian."""
    port = free_port()
    with Daemon(binary, 0, keep=keep, jobs=load_jobs(port),
                files={LOAD_SCRIPT: LOAD_SERVER}) as d:
        stats_path = os.path.join(d.dir, "requests.txt")
        lifetime = STARTUP_TIMEOUT + CHECKS_WARMUP + CHECKS_WINDOW + 60
        with open(os.path.join(d.dir, "server.log"), "wb") as errf:
            server = subprocess.Popen(
                [sys.executable, os.path.join(d.dir, LOAD_SCRIPT), str(port), stats_path,
                 str(lifetime)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                start_new_session=True)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not read_stats(stats_path):
                if server.poll() is not None:
                    raise RuntimeError(f"the load server exited with status {server.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the load server did not start")
                time.sleep(0.01)
            d.start()
            d.wait_running(CHECK_JOBS, STARTUP_TIMEOUT)
            time.sleep(CHECKS_WARMUP)
            d.check_alive()
            hz = os.sysconf("SC_CLK_TCK")
            g0, s0, m0 = cpu_ticks(d.pid), cpu_ticks(server.pid), cpu_totals()
            t0 = time.monotonic()
            time.sleep(CHECKS_WINDOW)
            g1, s1, m1 = cpu_ticks(d.pid), cpu_ticks(server.pid), cpu_totals()
            t1 = time.monotonic()
            d.check_alive()
            rollup = smaps_rollup(d.pid)
            threads = len(os.listdir(f"/proc/{d.pid}/task"))
            time.sleep(0.15)  # the server's next line
            stats = read_stats(stats_path)
            a, b = at(stats, t0), at(stats, t1)
            if b[0] <= a[0]:
                raise RuntimeError("the load server's statistics did not advance")
            rate = (b[1] - a[1]) / (b[0] - a[0])
            conn_rate = (b[2] - a[2]) / (b[0] - a[0])
            # Requests per second in each whole second of the window.
            per_sec = []
            for k in range(int(CHECKS_WINDOW)):
                x, y = at(stats, t0 + k), at(stats, t0 + k + 1)
                if y[0] > x[0]:
                    per_sec.append((y[1] - x[1]) / (y[0] - x[0]))
            if server.poll() is not None:
                raise RuntimeError(f"the load server exited with status {server.returncode}")
            # Untimed: every job running, and how its check fared.
            r = d.cli("status", "--json")
            try:
                info = json.loads(r.stdout)
            except ValueError:
                raise RuntimeError(f"status --json exited {r.returncode}: {r.stderr.strip()}")
            health = {}
            for j in info:
                health[j.get("health")] = health.get(j.get("health"), 0) + 1
            lat = [c["latency_ms"] for j in info for c in j.get("checks", [])
                   if c.get("latency_ms") is not None]
            log_lines = len(d.log_tail(100000).splitlines())
        finally:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=KILL_TIMEOUT)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(timeout=KILL_TIMEOUT)
    return {"rate": rate, "conn_rate": conn_rate, "per_sec": per_sec,
            "cpu": (g1 - g0) / hz / (t1 - t0), "server_cpu": (s1 - s0) / hz / (t1 - t0),
            "idle": (m1[1] - m0[1]) / max(1, m1[0] - m0[0]), "secs": t1 - t0,
            "rollup": rollup, "threads": threads, "health": health,
            "latency": lat, "log_lines": log_lines, "jobs": len(info)}


# ---------------------------------------------------------------- report

def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count()
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "?"
    return {"nproc": ncpu, "model": model, "kernel": platform.release(), "load": load}


def guardian_version(binary):
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True,
                           timeout=CLI_TIMEOUT)
        text = (r.stdout.strip() or r.stderr.strip()).splitlines()
        return text[0] if text else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def verdict(value, target):
    return "met" if value <= target else f"MISSED by {value / target:.1f}x"


def build_rows(res):
    """Rows: (figure, measured, target, result)."""
    rows = []
    if "crash" in res:
        s = [ms(x) for x in res["crash"]]
        med = statistics.median(s)
        rows.append((f"crash -> restart, median of {len(s)}", f"{med:.2f} ms",
                     "<= 2 ms", verdict(med, 2.0)))
        rows.append(("crash -> restart, min / max",
                     f"{min(s):.2f} / {max(s):.2f} ms", "", ""))
    elif "crash_error" in res:
        rows.append(("crash -> restart", "error", "<= 2 ms", res["crash_error"]))
    if "memory" in res:
        rollup, _, _, _ = res["memory"]
        pss_mb = rollup["Pss"] * 1024 / 1e6
        rss_mb = rollup["Rss"] * 1024 / 1e6
        rows.append((f"memory, {MEMORY_JOBS} jobs: daemon PSS", f"{pss_mb:.2f} MB",
                     "<= 8 MB", verdict(pss_mb, 8.0)))
        rows.append((f"memory, {MEMORY_JOBS} jobs: daemon RSS", f"{rss_mb:.2f} MB",
                     "", ""))
        if "Pss_Anon" in rollup:
            rows.append((f"memory, {MEMORY_JOBS} jobs: daemon PSS anonymous",
                         f"{rollup['Pss_Anon'] * 1024 / 1e6:.2f} MB", "", ""))
    elif "memory_error" in res:
        rows.append(("memory", "error", "<= 8 MB", res["memory_error"]))
    if "startup" in res:
        rows += poll_rows(f"start-up of {STARTUP_JOBS}", *res["startup"], 100.0)
    elif "startup_error" in res:
        rows.append(("start-up", "error", "<= 100 ms", res["startup_error"]))
    if "memory" in res:
        s = [ms(x) for x in res["memory"][3]]
        med, mx = statistics.median(s), max(s)
        rows.append((f"summary, {MEMORY_JOBS} jobs, median of {len(s)}",
                     f"{med:.1f} ms", "<= 20 ms", verdict(med, 20.0)))
        rows.append((f"summary, {MEMORY_JOBS} jobs, max of {len(s)}",
                     f"{mx:.1f} ms", "<= 20 ms", verdict(mx, 20.0)))
    elif "memory_error" in res:
        rows.append(("summary", "error", "<= 20 ms", res["memory_error"]))
    for key, label in EVENT_SCENARIOS:
        if key in res:
            rows += poll_rows(label, res[key]["busy"], res[key]["light"], EVENT_TARGET_MS)
        elif key + "_error" in res:
            rows.append((label, "error", f"<= {EVENT_TARGET_MS:g} ms", res[key + "_error"]))
    if "hang" in res:
        s = [ms(r["total"]) for r in res["hang"]["rounds"]]
        med = statistics.median(s)
        rows.append((f"hung HTTP server -> new one serving, median of {len(s)}",
                     f"{med:.0f} ms", f"<= {HANG_TARGET_MS:g} ms", verdict(med, HANG_TARGET_MS)))
        rows.append(("hung HTTP server -> new one serving, min / max",
                     f"{min(s):.0f} / {max(s):.0f} ms", "", ""))
    elif "hang_error" in res:
        rows.append(("hung HTTP server", "error", f"<= {HANG_TARGET_MS:g} ms", res["hang_error"]))
    if "checks" in res:
        c = res["checks"]
        nominal = CHECK_JOBS * 1000 / CHECK_EVERY_MS
        label = f"{nominal:,.0f} HTTP checks/s ({CHECK_JOBS} jobs)"
        rows.append((f"{label}: achieved, counted by the server", f"{c['rate']:.0f}/s",
                     f"{nominal:.0f}/s", f"{c['rate'] / nominal * 100:.0f}%"))
        rows.append((f"{label}: daemon CPU, % of one core", f"{c['cpu'] * 100:.1f}%",
                     f"< {CHECKS_TARGET_PCT:g}%", verdict(c["cpu"] * 100, CHECKS_TARGET_PCT)))
        rows.append((f"{label}: daemon RSS", f"{c['rollup']['Rss'] * 1024 / 1e6:.2f} MB", "", ""))
        rows.append((f"{label}: daemon PSS", f"{c['rollup']['Pss'] * 1024 / 1e6:.2f} MB", "", ""))
    elif "checks_error" in res:
        rows.append(("HTTP checks", "error", f"< {CHECKS_TARGET_PCT:g}%", res["checks_error"]))
    if "scale" in res:
        rows += scale_rows(res["scale"])
    elif "scale_error" in res:
        rows.append(("scale", "error", f"<= {SCALE_TARGET_MS:g} ms", res["scale_error"]))
    return rows


def scale_rows(sc):
    n = f"{sc['njobs']:,}"
    rows = []
    v = [ms(x) for x in sc["launch"]]
    med = statistics.median(v)
    rows.append((f"scale, {n} jobs: launch -> all running, median of {len(v)}",
                 f"{med:.0f} ms", f"<= {SCALE_TARGET_MS:g} ms", verdict(med, SCALE_TARGET_MS)))
    rows.append((f"scale, {n} jobs: launch -> all running, min / max",
                 f"{min(v):.0f} / {max(v):.0f} ms", "", ""))
    if sc.get("shutdown"):
        v = [ms(x) for x in sc["shutdown"]]
        rows.append((f"scale, {n} jobs: SIGTERM -> daemon exited, every job stopped, "
                     f"median of {len(v)}", f"{statistics.median(v):.0f} ms", "", ""))
    s = [ms(x) for x in sc["summary"]]
    med, mx = statistics.median(s), max(s)
    t = f"<= {SCALE_SUMMARY_TARGET_MS:g} ms"
    rows.append((f"scale, {n} jobs: summary, median of {len(s)}", f"{med:.1f} ms", t,
                 verdict(med, SCALE_SUMMARY_TARGET_MS)))
    rows.append((f"scale, {n} jobs: summary, max of {len(s)}", f"{mx:.1f} ms", t,
                 verdict(mx, SCALE_SUMMARY_TARGET_MS)))
    r = sc["rollup"]
    pss = r["Pss"] * 1024 / 1e6
    rows.append((f"scale, {n} jobs: daemon PSS", f"{pss:.2f} MB",
                 f"<= {SCALE_PSS_TARGET_MB:g} MB", verdict(pss, SCALE_PSS_TARGET_MB)))
    rows.append((f"scale, {n} jobs: daemon RSS", f"{r['Rss'] * 1024 / 1e6:.2f} MB", "", ""))
    if "Pss_Anon" in r:
        rows.append((f"scale, {n} jobs: daemon PSS anonymous",
                     f"{r['Pss_Anon'] * 1024 / 1e6:.2f} MB", "", ""))
    q = sc["quiet"]
    pct = q["ns"] / 1e9 / q["secs"] * 100
    rows.append((f"scale, {n} jobs: daemon CPU over {q['secs']:.0f} s quiet, % of one core",
                 f"{pct:.4f}%", f"0 (<= {SCALE_IDLE_TARGET_PCT:g}%)",
                 "met" if pct <= SCALE_IDLE_TARGET_PCT else "MISSED"))
    return rows


def scale_notes(sc):
    n = sc["njobs"]
    logs = sc["log"]
    first = [ms(x) for x in sc["first"]]
    q = sc["quiet"]
    r, ra = sc["rollup"], sc["rollup_after"]
    hz = os.sysconf("SC_CLK_TCK")
    return [
        f"scale: {n} jobs `{JOB_EXEC}` ({SCALE_LAUNCHES} daemons launched one after "
        f"another, observer polling /proc every {SCALE_POLL * 1000:g} ms): the first job "
        f"had exec'd {statistics.median(first):.1f} ms after Popen (median). guardian's log "
        f"(its wall clock, ms after Popen, medians): daemon started "
        f"{median_ms(x[0] for x in logs)}, first job running {median_ms(x[1] for x in logs)}, "
        f"last {median_ms(x[2] for x in logs)}. After each launch `guardian status --json` "
        f"listed all {n} jobs as running (untimed; {sc['status_retries']} extra attempt(s) "
        f"in all).",
        f"scale: the last daemon, {SETTLE_SECS:g} s after all ran, left alone for "
        f"{q['secs']:.1f} s: {q['ns'] / 1e6:.3f} ms of CPU (sum_exec_runtime of "
        f"/proc/PID/task/*/schedstat, {sc['threads']} thread(s)), scheduled "
        f"{q['runs']} time(s); utime + stime {q['ticks'] / hz * 1000:.0f} ms; the machine "
        f"was {q['idle'] * 100:.0f}% idle. Then smaps_rollup: Pss {r['Pss']} kB, Rss "
        f"{r['Rss']} kB, Pss_Anon {r.get('Pss_Anon', '?')} kB, Pss_File "
        f"{r.get('Pss_File', '?')} kB; {sc['fds']} open descriptors. After the "
        f"{len(sc['summary']) + 1} summaries: Pss {ra['Pss']} kB, Pss_Anon "
        f"{ra.get('Pss_Anon', '?')} kB.",
    ]


EVENT_SCENARIOS = (
    ("chain", f"chain of {CHAIN_JOBS} (start-on)"),
    ("fanout", f"fan-out 1 -> {FANOUT_LEAVES} (start-on)"),
)


def poll_rows(label, busy, light, target):
    """Median and min / max rows for the busy-poll and the light observer."""
    rows = []
    for name, v in (("busy-poll", busy), (f"{LIGHT_POLL * 1000:g} ms poll", light)):
        v = [ms(x) for x in v]
        med = statistics.median(v)
        rows.append((f"{label}, {name}, median of {len(v)}", f"{med:.1f} ms",
                     f"<= {target:g} ms", verdict(med, target)))
        rows.append((f"{label}, {name}, min / max",
                     f"{min(v):.1f} / {max(v):.1f} ms", "", ""))
    return rows


def median_ms(values):
    v = [x for x in values if x is not None]
    return f"{ms(statistics.median(v)):.1f}" if v else "?"


def event_notes(key, r):
    """Where the time of scenario 5 or 6 goes."""
    njobs = CHAIN_JOBS if key == "chain" else FANOUT_LEAVES + 1
    first, leader = ("j000", "chain") if key == "chain" else ("root", "fan-out")
    out = []
    for kind, name in (("busy", "busy-poll"), ("light", f"{LIGHT_POLL * 1000:g} ms poll")):
        f = statistics.median(r["first_" + kind])
        a = statistics.median(r[kind])
        logs = r["log_" + kind]
        out.append(
            f"{leader}, {name}: medians: {first} (no start-on) exec'd {ms(f):.1f} ms after "
            f"Popen, all {njobs} at {ms(a):.1f} ms. guardian's log (its wall clock, "
            f"ms after Popen): daemon started {median_ms(x[0] for x in logs)}, first "
            f"job running {median_ms(x[1] for x in logs)}, last "
            f"{median_ms(x[2] for x in logs)}.")
    out.append(f"{leader}: after every run `guardian status --json` listed all {njobs} "
               f"jobs as running (untimed; {r['status_retries']} extra attempt(s) needed "
               f"in all).")
    return out


def notes(res):
    out = []
    idle = res.get("idle", {})
    if idle:
        out.append("machine idle in the 0.5 s before each scenario started: " + ", ".join(
            f"{k} {v * 100:.0f}%" for k, v in idle.items()))
        if min(idle.values()) < IDLE_WARN:
            out.append(f"WARNING: the machine was less than {IDLE_WARN * 100:.0f}% idle "
                       f"before a scenario; other load may have inflated the figures.")
    if "crash" in res:
        out.append(f"crash -> restart: `guardian status --json` reported "
                   f"{res.get('crash_restarts')} restarts after {CRASH_ROUNDS} kills.")
    if "memory" in res:
        rollup, ntasks, t_all, _ = res["memory"]
        out.append(f"memory: the guardian daemon process alone ({ntasks} thread(s)); "
                   f"the {MEMORY_JOBS} supervised sleep processes are not counted. "
                   f"guardian has no helper processes. Peers, as quoted in the issue: supervisord "
                   f"24.5 MB, monit 7.6 MB, runit 47 MB (runsvdir + {MEMORY_JOBS} runsv).")
        out.append(f"memory: smaps_rollup Pss {rollup['Pss']} kB, Rss {rollup['Rss']} kB, "
                   f"Pss_Anon {rollup.get('Pss_Anon', '?')} kB, "
                   f"Pss_File {rollup.get('Pss_File', '?')} kB. MB = 10^6 bytes.")
        out.append(f"memory: all {MEMORY_JOBS} jobs were running "
                   f"{ms(t_all):.0f} ms after Popen (polled every 5 ms).")
    if LEFTOVERS:
        out.append(f"WARNING: {sum(LEFTOVERS)} job process(es) were still running "
                   f"after their daemon exited; the benchmark killed them.")
    polled = [n for k, n in (("startup", "start-up"), ("chain", "chain"),
                             ("fanout", "fan-out")) if k in res]
    if polled:
        out.append(f"{', '.join(polled)}: the busy-poll observer keeps one CPU of {res['nproc']} "
                   f"busy; the {LIGHT_POLL * 1000:g} ms poll row uses an observer that "
                   f"sleeps between polls (timing resolution about "
                   f"{LIGHT_POLL * 1000:g} ms). See bench/README.md.")
    if "crash" in res:
        out.append("crash -> restart peers, as quoted in the issue: runit 6 ms, "
                   "monit ~500 ms, supervisord ~1000 ms.")
    for key, _ in EVENT_SCENARIOS:
        if key in res:
            out += event_notes(key, res[key])
    if "hang" in res:
        out += hang_notes(res["hang"])
    if "checks" in res:
        out += checks_notes(res["checks"])
    if "scale" in res:
        out += scale_notes(res["scale"])
    return out


def spread(values, fmt="{:.0f}"):
    """"median (min to max)" of the values that are not None, in ms."""
    v = [ms(x) for x in values if x is not None]
    if not v:
        return "?"
    return (f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))} to "
            f"{fmt.format(max(v))})")


def hang_notes(h):
    r = h["rounds"]
    out = [f"hang: ms after the SIGSTOP, median (min to max) of {len(r)}: guardian logs "
           f"the check's failure at {spread(x['fail_log'] for x in r)} and the new "
           f"process running at {spread(x['run_log'] for x in r)} (its wall clock); "
           f"the stopped process is gone at {spread(x['dead'] for x in r)}, the new one "
           f"has exec'd at {spread(x['new'] for x in r)} and answers GET /health at "
           f"{spread(x['total'] for x in r)}. Polled every {LIGHT_POLL * 1000:g} ms."]
    after = [x["total"] - x["new"] for x in r]
    out.append(f"hang: the part that is guardian's policy is the failure: two probes "
               f"must time out ({HANG_CHECK_TIMEOUT} each, one every {HANG_EVERY}); the "
               f"first hung probe starts at the check's next tick, 0 to 500 ms after the "
               f"SIGSTOP, so the failure comes 1.0 to 1.5 s after it (1.25 s on average). "
               f"The new server's own start-up (Python, exec'd to answering) took "
               f"{spread(after)} ms.")
    by_term = all(x["fail_log"] is not None and x["dead"] < x["fail_log"] + 0.5 for x in r)
    out.append(f"hang: the stopped process was gone in every round "
               + ("well before its 1 s kill-timeout ran out (ended by SIGTERM + SIGCONT, "
                  "not SIGKILL)" if by_term else "(in some round only after its kill-timeout)")
               + f"; guardian logged \"still alive after its kill timeout, sending SIGKILL\" "
               f"{h['sigkill_lines']} time(s) in {len(r)} rounds. `status` counted "
               f"{r[-1]['restarts']} restart(s).")
    out.append(f"hang peers: {MONIT_HANG}.")
    return out


def checks_notes(c):
    nominal = CHECK_JOBS * 1000 / CHECK_EVERY_MS
    ps = c["per_sec"]
    lat = c["latency"]
    health = ", ".join(f"{v} {k}" for k, v in sorted(c["health"].items(), key=str))
    out = [f"checks: {CHECK_JOBS} jobs (`{JOB_EXEC}`), each with one http check every "
           f"{CHECK_EVERY_MS} ms (timeout 1s, action alert) against one asyncio server "
           f"outside guardian, which counted {c['rate']:.0f} requests/s over "
           f"{c['secs']:.1f} s (each whole second: {min(ps):.0f} to {max(ps):.0f}) on "
           f"{c['conn_rate']:.0f} new TCP connections/s ({c['conn_rate'] / max(c['rate'], 1e-9) * 100:.0f}% "
           f"of the checks did not reuse a kept-alive connection); nominal {nominal:.0f}/s."
           if ps else "checks: no per-second figures."]
    out.append(f"checks: CPU over the window (utime + stime of /proc/PID/stat, all "
               f"{c['threads']} thread(s) of the daemon): guardian {c['cpu'] * 100:.1f}%, "
               f"the load server {c['server_cpu'] * 100:.1f}% of one core; the machine was "
               f"{c['idle'] * 100:.0f}% idle. smaps_rollup at the end: Rss "
               f"{c['rollup']['Rss']} kB, Pss {c['rollup']['Pss']} kB, Pss_Anon "
               f"{c['rollup'].get('Pss_Anon', '?')} kB.")
    if lat:
        out.append(f"checks: afterwards `status --json` listed {c['jobs']} jobs: {health}; "
                   f"last latency of the checks: median {statistics.median(lat):.2f} ms, "
                   f"max {max(lat):.2f} ms. The daemon's log had {c['log_lines']} line(s).")
    return out


def format_text(rows):
    head = ("Figure", "Measured", "Target", "Result")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt = "  ".join(f"{{:<{x}}}" for x in w)
    lines = [fmt.format(*head).rstrip(), fmt.format(*("-" * x for x in w))]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join(lines)


def format_markdown(rows):
    lines = ["| Figure | Measured | Target | Result |", "|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def find_binary(arg):
    if arg:
        b = Path(arg).resolve()
        if not b.is_file():
            sys.exit(f"run.py: {b}: no such file")
        return str(b)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_DIR / "target"))
    if not target.is_absolute():
        target = REPO_DIR / target
    b = target / "release" / "guardian"
    if not b.is_file():
        log(f"{b} missing; running cargo build --release in {REPO_DIR}")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO_DIR, check=True)
        if not b.is_file():
            sys.exit(f"run.py: cargo build --release did not produce {b}")
    return str(b)


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


SCENARIO_ERRORS = (RuntimeError, OSError, subprocess.SubprocessError)
SCENARIOS = ("crash", "memory", "startup", "chain", "fanout", "hang", "checks", "scale")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", help="guardian binary (default: target/release/guardian, "
                                     "built with cargo build --release if missing)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary configuration directories")
    ap.add_argument("--wait-idle", type=float, default=60.0, metavar="SECS",
                    help="before each scenario, wait up to SECS for the machine to be "
                         f"{IDLE_WARN * 100:.0f}%% idle (default 60; 0: do not wait)")
    ap.add_argument("--output", default=str(BENCH_DIR / "results-guardian.md"),
                    help="markdown results file (default: bench/results-guardian.md)")
    ap.add_argument("--only", metavar="LIST",
                    help="comma-separated subset of the scenarios to run: "
                         f"{','.join(SCENARIOS)} (summary is an alias of memory: "
                         "the two share one daemon). Default: all")
    ap.add_argument("--scale-jobs", type=int, default=SCALE_JOBS, metavar="N",
                    help=f"number of jobs of the scale scenario (default {SCALE_JOBS})")
    args = ap.parse_args()
    if not 1 <= args.scale_jobs <= 100000:
        ap.error("--scale-jobs: between 1 and 100000")
    if args.only:
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = only - set(SCENARIOS) - {"summary"}
        if not only:
            ap.error("--only: no scenario given")
        if unknown:
            ap.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}; "
                     f"choose from {','.join(SCENARIOS)},summary")
        if "summary" in only:
            only = (only - {"summary"}) | {"memory"}
    else:
        only = set(SCENARIOS)

    binary = find_binary(args.binary)
    version = guardian_version(binary)
    m = machine()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    mach = f"{m['nproc']} CPU(s), {m['model']}, Linux {m['kernel']}"
    print(f"date:     {date}")
    print(f"machine:  {mach}")
    print(f"load:     {m['load']} (1/5/15 min, at start)")
    print(f"guardian: {version} ({binary})")
    print(flush=True)

    res = {"nproc": m["nproc"], "idle": {}}
    failed = False
    # SIGTERM to this script: turn into an exception so the cleanup runs.
    signal.signal(signal.SIGTERM, on_sigterm)

    plan = [
        ("crash", "crash", f"crash -> restart, {CRASH_ROUNDS} rounds",
         lambda: crash_restart(binary, args.keep)),
        ("memory", "memory", f"memory with {MEMORY_JOBS} jobs, then {SUMMARY_RUNS} x summary",
         lambda: memory_and_summary(binary, args.keep)),
        ("startup", "start-up", f"start-up of {STARTUP_JOBS} jobs, {STARTUP_RUNS} runs",
         lambda: startup(binary, args.keep)),
        ("chain", "chain", f"chain of {CHAIN_JOBS} jobs (start-on), "
         f"{2 * STARTUP_RUNS} runs", lambda: chain(binary, args.keep)),
        ("fanout", "fan-out", f"fan-out 1 -> {FANOUT_LEAVES} (start-on), "
         f"{2 * STARTUP_RUNS} runs", lambda: fanout(binary, args.keep)),
        ("hang", "hang", f"hung HTTP server -> replaced by its check, {HANG_ROUNDS} rounds",
         lambda: hang(binary, args.keep)),
        ("checks", "checks", f"{CHECK_JOBS} jobs x 1 HTTP check every {CHECK_EVERY_MS} ms, "
         f"{CHECKS_WINDOW:g} s", lambda: checks_load(binary, args.keep)),
        ("scale", "scale", f"scale: {args.scale_jobs} jobs, {SCALE_LAUNCHES} launches, "
         f"{SCALE_QUIET_SECS:g} s quiet, {SCALE_SUMMARY_RUNS} x summary",
         lambda: scale(binary, args.keep, args.scale_jobs)),
    ]
    plan = [x for x in plan if x[0] in only]
    for i, (key, idle_key, title, run) in enumerate(plan, 1):
        res["idle"][idle_key] = wait_idle(args.wait_idle)
        log(f"[{i}/{len(plan)}] {title}")
        try:
            value = run()
        except SCENARIO_ERRORS as e:
            res[key + "_error"], failed = str(e), True
            log(f"error: {e}")
            continue
        if key == "crash":
            res["crash"], res["crash_restarts"] = value
        else:
            res[key] = value

    rows = build_rows(res)
    ns = notes(res)
    print(format_text(rows))
    print()
    for n in ns:
        print(f"- {n}")

    md = [
        "# guardian benchmark results",
        "",
        f"- Date: {date}",
        f"- Machine: {mach}",
        f"- Load average at start: {m['load']}",
        f"- guardian: {version}",
        "",
        f"Produced by `python3 bench/run.py{' --only ' + args.only if args.only else ''}"
        f"{f' --scale-jobs {args.scale_jobs}' if args.scale_jobs != SCALE_JOBS else ''}`; "
        "see bench/README.md for what each figure "
        "means and how it is measured.",
        "",
        format_markdown(rows),
        "",
    ]
    md += [f"- {n}" for n in ns]
    Path(args.output).write_text("\n".join(md) + "\n")
    print(f"\nwritten to {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("run.py: interrupted; daemons stopped, temporary directories removed")
        sys.exit(130)
