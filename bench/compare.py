#!/usr/bin/env python3
"""Side-by-side benchmark: guardian against supervisord, monit and runit.

Installs the peers where missing (monit and runit from Debian's packages,
supervisor from PyPI into a virtual environment), writes an equivalent
configuration for each in a temporary directory, runs the same workloads on
all of them, and prints one table (also written to bench/results.md):

  crash    kill -9 of a supervised process -> its replacement running
  idle     PSS, RSS and CPU time of the supervisor's own processes over an
           idle window, with N = 10, 100 and 500 supervised processes
  startup  daemon launch -> all 100 processes running
  hang     SIGSTOP of an HTTP server -> a new one answering (guardian, monit)
  checks   the CPU a check costs: N HTTP, TCP-connect and program checks a
           second, guardian beside monit (HTTP also guardian alone at 1,000
           and 5,000 a second), every check counted where it arrives
  chain    guardian only: a start-on chain of 100 jobs

Everything is measured from outside, through /proc. Standard library only;
it reuses bench/run.py's helpers and, for hang (guardian) and chain, its
scenarios. See bench/README.md.
"""

import argparse
import ctypes
import datetime
import json
import math
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import struct
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.dont_write_bytecode = True  # no bench/__pycache__
import run as R  # noqa: E402  (bench/run.py)

TOOLS = ("guardian", "supervisord", "monit", "runit")
PEERS = TOOLS[1:]
SCENARIOS = ("crash", "idle", "startup", "hang", "checks", "chain")

# Repetitions: (full, --quick).
CRASH_ROUNDS = (20, 5)
IDLE_SECS = (30.0, 5.0)
STARTUP_RUNS = (3, 1)
HANG_ROUNDS = (10, 3)

CRASH_PAUSE = 1.1        # the replacement runs at least this long before the next kill
CRASH_PHASE = 0.1        # ... plus (round % 10) x this, to spread the kills over 1 s
RESTART_TIMEOUT = 10.0   # one replacement appears
IDLE_SIZES = (10, 100, 500)
IDLE_SETTLE = 2.0        # after all N run, before the idle window
STARTUP_JOBS = 100
POLL = 0.0005            # the 0.5 ms observer
STOP_TIMEOUT = 30.0      # a daemon exits after its stop signal
GONE_TIMEOUT = 10.0      # its processes are gone after it exited
PIPE_TIMEOUT = 10.0      # the subreaper answers on its pipe
MAX_WALK = 5000          # processes visited in one walk of a process tree
INSTALL_TIMEOUT = 900.0  # one apt-get or pip command

# The hang test of monit.
MONIT_HANG_PHASE = 0.1   # round i waits i x this: spreads the SIGSTOP over the 1 s cycle
MONIT_START_TIMEOUT = 5  # s; monit tests no port of a process younger than this
MONIT_HANG_SETTLE = 1.5  # s past that age: monit has tested the new server at least once
MONIT_READY_TIMEOUT = 15.0
HANG_TIMEOUT = 15.0      # one round: a new server answers

# Targets from the issue (guardian's), and run.py's for the guardian-only rows.
T_CRASH_MS = 2.0
T_PSS_MB = 8.0
T_IDLE_CPU_PCT = 0.01
T_STARTUP_MS = 100.0
T_HANG_MS = 1200.0
T_CHECK_VS_MONIT = 0.5   # guardian's CPU per check: at most this times monit's
T_CHECKS_CPU_PCT = {1000: 3.0, 5000: 15.0}   # guardian alone, by checks per second
T_CHAIN_MS = 200.0

# The checks scenario: (key, probe, checks, every in ms, tools). Each key is
# one run of each of its tools; --checks selects keys.
CHECK_RUNS = (
    ("http-100", "http", 100, 1000, ("guardian", "monit")),
    ("http-500", "http", 500, 1000, ("guardian", "monit")),
    ("http-1000", "http", 100, 100, ("guardian",)),
    ("http-5000", "http", 500, 100, ("guardian",)),
    # The same against a server that keeps connections alive (HTTP/1.1 persistent):
    # not like-for-like with the rows above, whose server closes every connection.
    ("http-1000-keep", "http-keep", 100, 100, ("guardian",)),
    ("http-5000-keep", "http-keep", 500, 100, ("guardian",)),
    ("tcp-100", "tcp", 100, 1000, ("guardian", "monit")),
    ("program-100", "program", 100, 1000, ("guardian", "monit")),
)
CHECK_WINDOW = (20.0, 10.0)  # s: the CPU window (full, --quick)
CHECK_WARMUP = 3.0           # s from the first check seen to the window
CHECK_FIRST_TIMEOUT = 30.0   # the first check arrives
CHECK_TIMEOUT_S = 1          # each check's timeout, both tools
SNAP_TIMEOUT = 5.0           # the check server answers a snapshot request
CHECK_SERVER_SCRIPT = "check_server.py"
PROBE_PROGRAM = "/bin/true"

# Measured by hand on this machine before guardian existed (the issue).
ISSUE_FIGURES = (
    "crash -> restart median: supervisord 1029 ms, monit 485 ms (1 s cycle), runit 6.1 ms, "
    "daemontools 3.5 ms, a bare bash respawn loop 2.8 ms",
    "PSS at N = 500: supervisord 24.5 MB, monit 7.6 MB, runit 47 MB (runsvdir + 500 runsv)",
    "idle CPU at N = 500: monit 4.7%, supervisord 0.3%, runit 0.003% of one core",
    "start-up of 100: supervisord 3.1 s, monit 21.6 s, runit 0.23 s",
    "HTTP hang -> action: monit median 1.5 s at its 1 s minimum cycle",
)

JOB_CMD = "sleep 100000"
JOB_COMM = "sleep"
DEFAULT_VENV = "/tmp/guardian-compare-venv"

# monit's start program puts the job in the background and exits, so the job
# is orphaned. compare.py runs monit under this small subreaper, which reaps
# every orphan at once, as systemd does (this machine's pid 1 reaps orphans
# only every few seconds, and a zombie still has a pid). It waits for one line
# on stdin before it spawns monit, so that its own start-up is not timed.
REAPER = r'''"""compare.py: a subreaper that starts one program and reaps every orphan."""
import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
log, argv = sys.argv[1], sys.argv[2:]
os.write(1, b"ready\n")
if not sys.stdin.readline():
    sys.exit(0)
actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
           (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
           (os.POSIX_SPAWN_DUP2, 1, 2)]
pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
os.write(1, b"%d\n" % pid)
os.close(1)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
    except InterruptedError:
        pass
'''


def log(msg):
    R.log(msg)


# ---------------------------------------------------------------- /proc

def alive(pid, st):
    """True if pid is still the process that had start time st, and not a zombie."""
    return R.start_time(pid) == st and not R.is_zombie(pid)


def descendants(root):
    """Every process below root (children of each process's main thread)."""
    out, stack = [], [root]
    while stack and len(out) < MAX_WALK:
        for c in R.children(stack.pop()):
            out.append(c)
            stack.append(c)
    return out


def process_age(pid):
    """Seconds since the process started (from /proc/PID/stat and /proc/uptime)."""
    st = R.start_time(pid)
    if st is None:
        raise RuntimeError(f"process {pid} is gone")
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return up - st / os.sysconf("SC_CLK_TCK")


def cpu_ns(pids):
    """CPU time (ns) of every thread of these processes, from
    /proc/PID/task/TID/schedstat (sum_exec_runtime, exact to the ns), and
    utime + stime (clock ticks) from /proc/PID/stat, for a cross-check."""
    ns = ticks = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            raise RuntimeError(f"process {p} is gone")
        for t in tasks:
            s = R.read_proc(f"/proc/{p}/task/{t}/schedstat")
            if s:
                ns += int(s.split()[0])
        ticks += R.cpu_ticks(p)
    return ns, ticks


def memory(pids):
    """Sum of Pss and Rss (kB) of smaps_rollup over these processes."""
    pss = rss = 0
    for p in pids:
        r = R.smaps_rollup(p)
        pss += r["Pss"]
        rss += r["Rss"]
    return pss, rss


class JobScanner:
    """Finds the job processes (comm `sleep`) below a tool's root process.

    `holder` names a process that stands between the daemon and one job and
    never becomes a job itself (runit's `runsv`): it is recognised once and
    not read again. In counting mode (count()), a pid once seen as `sleep` is
    remembered, and a holder whose job is known is not read again, so that the
    0.5 ms observer of the start-up does not read 500 files per poll."""

    def __init__(self, root, holder=None):
        self.root, self.holder = root, holder
        self.known = set()
        self.holders = set()
        self.done = set()

    def _walk(self, exclude, counting):
        found, stack, visited = [], [self.root], 0
        while stack and visited < MAX_WALK:
            p = stack.pop()
            visited += 1
            has_job = False
            for c in R.children(p):
                if c in exclude:
                    continue
                if c in self.known:
                    found.append(c)
                    has_job = True
                    continue
                if counting and c in self.done:
                    continue
                if c in self.holders:
                    stack.append(c)
                    continue
                name = R.comm(c)
                if name == JOB_COMM:
                    self.known.add(c)
                    found.append(c)
                    has_job = True
                elif name is not None:
                    # A child of the daemon that is a holder. (A holder's own
                    # child has the holder's name too until it calls exec.)
                    if name == self.holder and p == self.root:
                        self.holders.add(c)
                    stack.append(c)
            if counting and has_job and p in self.holders:
                self.done.add(p)
        return found

    def count(self):
        """How many job processes have been seen so far (they do not die here)."""
        self._walk((), True)
        return len(self.known)

    def current(self, exclude=()):
        """The job processes running now, except those in exclude."""
        return self._walk(exclude, False)


def read_line(fd, timeout):
    """One line from a pipe, bounded in time."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("no answer on the subreaper's pipe")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            b = os.read(fd, 1)
            if not b:
                raise RuntimeError("the subreaper closed its pipe")
            buf += b
    return buf.decode().strip()


# ---------------------------------------------------------------- the tools

class Tool:
    """One supervisor with N jobs `sleep 100000` that are restarted when they
    die, in a temporary directory of its own."""

    name = ""
    holder = None          # see JobScanner
    stops_jobs = True      # its jobs end when it is stopped

    def __init__(self, ctx, n, keep=False):
        self.ctx, self.n, self.keep = ctx, n, keep
        self.dir = tempfile.mkdtemp(prefix=f"compare-{self.name}-", dir="/tmp")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.proc = None
        self.tracked = {}   # pid -> start time of every process of ours seen
        self.leftovers = 0
        self.names = [f"job{i:03d}" for i in range(n)]
        self.write_config()
        self.written = time.time()

    # -- to be provided by each tool
    def write_config(self):
        raise NotImplementedError

    def argv(self):
        raise NotImplementedError

    def own_pids(self):
        """The supervisor's own processes: what a user pays for."""
        return [self.daemon_pid]

    def expected_procs(self):
        return 1

    def stop_daemon(self):
        os.kill(self.daemon_pid, signal.SIGTERM)

    # -- common
    @property
    def root(self):
        """The process below which the jobs are found."""
        return self.daemon_pid

    @property
    def daemon_pid(self):
        return self.proc.pid

    def env(self):
        return R.clean_env()

    def config_age(self):
        """Waits until the configuration is older than the current second.
        runsvdir sleeps 1 s before reading a service directory modified in the
        current second; a user's configuration is older than that. The same
        wait, outside the timing, for every tool."""
        while int(time.time()) <= int(self.written):
            time.sleep(0.05)

    def start(self):
        """Starts the daemon; returns time.perf_counter() taken just before."""
        self.config_age()
        logf = open(self.log_path, "ab")
        try:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=self.env(),
                                         cwd=self.dir, start_new_session=True)
        finally:
            logf.close()
        self.track([self.daemon_pid])
        return t0

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}")
        if self.daemon_pid != self.proc.pid and R.is_zombie(self.daemon_pid):
            raise RuntimeError(f"{self.name} exited")

    def scanner(self):
        return JobScanner(self.root, self.holder)

    def track(self, pids):
        for p in pids:
            if p not in self.tracked:
                st = R.start_time(p)
                if st is not None:
                    self.tracked[p] = st

    def wait_all(self, n, timeout, poll=0.01, t0=None):
        """Waits (bounded) until n job processes run; returns the seconds
        from t0 (or from the call)."""
        sc = self.scanner()
        t0 = time.perf_counter() if t0 is None else t0
        deadline = time.monotonic() + timeout
        while True:
            c = sc.count()
            if c >= n:
                t = time.perf_counter() - t0
                break
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: only {c} of {n} jobs running after "
                                   f"{timeout:.0f} s")
            time.sleep(poll)
        self.track(sc.known)
        return t

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """Stops the daemon the way its user would, waits (bounded), then kills
        by pid every process of ours still running, and removes the directory."""
        if self.proc is not None:
            if self.proc.poll() is None and self.daemon_pid is not None:
                self.track(descendants(self.root))
                self.track([self.daemon_pid])
                try:
                    self.stop_daemon()
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + STOP_TIMEOUT
                while time.monotonic() < deadline and alive(self.daemon_pid,
                                                             self.tracked[self.daemon_pid]):
                    time.sleep(0.02)
                    self.proc.poll()
            # Every process we saw: give them GONE_TIMEOUT to end by themselves
            # (when stopping the daemon stops them), then SIGKILL by pid.
            deadline = time.monotonic() + (GONE_TIMEOUT if self.stops_jobs else 0.5)
            while time.monotonic() < deadline and any(
                    alive(p, st) for p, st in self.tracked.items() if p != self.proc.pid):
                time.sleep(0.02)
                self.proc.poll()
            for p, st in self.tracked.items():
                if p != self.proc.pid and alive(p, st):
                    if self.stops_jobs:
                        self.leftovers += 1
                    try:
                        os.kill(p, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            try:
                self.proc.wait(timeout=GONE_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"warning: {self.name}: process {self.proc.pid} still running; killed")
                self.proc.kill()
                self.proc.wait(timeout=GONE_TIMEOUT)
            if self.leftovers:
                log(f"warning: {self.name}: {self.leftovers} process(es) outlived the "
                    f"daemon; killed")
                self.ctx["leftovers"][self.name] = (
                    self.ctx["leftovers"].get(self.name, 0) + self.leftovers)
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
                log(f"--- {self.name} log ({self.log_path}) ---\n{tail}---")
        self.stop()
        return False


class Guardian(Tool):
    """jobs/jobNNN.toml: exec = "sleep 100000", respawn = true,
    respawn-limit = "unlimited"."""

    name = "guardian"

    def write_config(self):
        body = (f'exec = "{JOB_CMD}"\n'
                "respawn = true\n"
                'respawn-limit = "unlimited"\n')
        shutil.rmtree(self.dir)
        self.dir = R.make_config({j: body for j in self.names})
        self.log_path = os.path.join(self.dir, "daemon.log")

    def argv(self):
        return [self.ctx["guardian"], "-c", self.dir]


class Supervisord(Tool):
    """supervisord.conf as its documentation's sample has it (unix socket,
    rpcinterface, supervisorctl), one [program:jobNNN] per job with
    command = sleep 100000 and autorestart = true; every other setting is
    supervisor's default (startsecs = 1, startretries = 3, stdout/stderr
    logged to files in childlogdir, ...)."""

    name = "supervisord"

    def write_config(self):
        d = self.dir
        os.mkdir(os.path.join(d, "log"))
        lines = [
            "[unix_http_server]",
            f"file = {d}/supervisor.sock",
            "",
            "[supervisord]",
            f"logfile = {d}/supervisord.log",
            f"pidfile = {d}/supervisord.pid",
            f"childlogdir = {d}/log",
            "nodaemon = true",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl = unix://{d}/supervisor.sock",
            "",
        ]
        for j in self.names:
            lines += [f"[program:{j}]", f"command = {JOB_CMD}", "autorestart = true", ""]
        self.conf = os.path.join(d, "supervisord.conf")
        Path(self.conf).write_text("\n".join(lines))

    def argv(self):
        return [self.ctx["supervisord"], "-c", self.conf]


def monit_header(d):
    return [
        "set daemon 1",
        f"set logfile {d}/monit.log",
        f"set pidfile {d}/monit.pid",
        f"set idfile {d}/monit.id",
        f"set statefile {d}/monit.state",
        "",
    ]


class Monit(Tool):
    """monitrc: `set daemon 1` (its shortest cycle), and per job
        check process jobNNN with pidfile DIR/pids/jobNNN.pid
          start program = "/bin/sh -c 'sleep 100000 >/dev/null 2>&1 & echo $! > DIR/pids/jobNNN.pid'"
          stop program  = "/bin/sh -c 'kill $(cat DIR/pids/jobNNN.pid)'"
    monit restarts a process that is not running at its next cycle; the
    start program must return (monit kills one that runs longer than its
    30 s start timeout), hence the `&`. Run as `monit -I -c monitrc` under
    compare.py's subreaper (see REAPER)."""

    name = "monit"
    _monit = None
    stops_jobs = False     # monit leaves its processes running when it exits

    def write_config(self):
        d = self.dir
        os.mkdir(os.path.join(d, "pids"))
        lines = monit_header(d) + self.checks()
        self.rc = os.path.join(d, "monitrc")
        Path(self.rc).write_text("\n".join(lines) + "\n")
        os.chmod(self.rc, 0o600)   # monit refuses a control file others can read
        Path(os.path.join(d, "reaper.py")).write_text(REAPER)

    def checks(self):
        d = self.dir
        out = []
        for j in self.names:
            pidf = f"{d}/pids/{j}.pid"
            out += [f"check process {j} with pidfile {pidf}",
                    f"  start program = \"/bin/sh -c '{JOB_CMD} >/dev/null 2>&1 & "
                    f"echo $! > {pidf}'\"",
                    f"  stop program = \"/bin/sh -c 'kill $(cat {pidf})'\"",
                    ""]
        return out

    def argv(self):
        return [sys.executable, os.path.join(self.dir, "reaper.py"), self.log_path,
                self.ctx["monit"], "-I", "-c", self.rc]

    def start(self):
        self.config_age()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.log_path, "ab"), env=self.env(),
                                     cwd=self.dir, start_new_session=True)
        self.track([self.proc.pid])
        self._monit = None
        if read_line(self.proc.stdout.fileno(), PIPE_TIMEOUT) != "ready":
            raise RuntimeError("the subreaper did not start")
        t0 = time.perf_counter()
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        self._monit = int(read_line(self.proc.stdout.fileno(), PIPE_TIMEOUT))
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.track([self._monit])
        return t0

    @property
    def root(self):
        return self.proc.pid   # the subreaper: monit and the orphaned jobs

    @property
    def daemon_pid(self):
        return self._monit


class Runit(Tool):
    """A service directory per job, SVDIR/jobNNN/run:
        #!/bin/sh
        exec sleep 100000
    and `runsvdir -P SVDIR` (as Debian's runsvdir-start runs it). runsvdir
    starts one `runsv` per service, which runs ./run and restarts it when it
    exits. Stopped with SIGHUP (runsvdir then sends TERM to every runsv,
    which stops its service and exits)."""

    name = "runit"
    holder = "runsv"

    def write_config(self):
        self.svdir = os.path.join(self.dir, "service")
        os.mkdir(self.svdir)
        for j in self.names:
            sd = os.path.join(self.svdir, j)
            os.mkdir(sd)
            run = os.path.join(sd, "run")
            Path(run).write_text(f"#!/bin/sh\nexec {JOB_CMD}\n")
            os.chmod(run, 0o755)

    def argv(self):
        return [self.ctx["runsvdir"], "-P", self.svdir]

    def own_pids(self):
        return [self.daemon_pid] + [p for p in R.children(self.daemon_pid)
                                    if R.comm(p) == "runsv"]

    def expected_procs(self):
        return self.n + 1

    def stop_daemon(self):
        os.kill(self.daemon_pid, signal.SIGHUP)


TOOL_CLASSES = {"guardian": Guardian, "supervisord": Supervisord, "monit": Monit,
                "runit": Runit}


# ---------------------------------------------------------------- scenarios

def crash(ctx, cls, rounds):
    """kill -9 of the one job process; busy-poll the tool's process tree until
    a job process other than the killed one has exec'd sleep."""
    samples = []
    with cls(ctx, 1, ctx["keep"]) as t:
        t.start()
        t.wait_all(1, 30.0)
        sc = t.scanner()
        time.sleep(CRASH_PAUSE)
        for i in range(rounds):
            t.check_alive()
            cur = sc.current()
            if len(cur) != 1:
                raise RuntimeError(f"{t.name}: round {i}: expected 1 job process, "
                                   f"found {len(cur)}")
            old = cur[0]
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + RESTART_TIMEOUT
            new = []
            while not new:
                new = sc.current(exclude=(old,))
                t1 = time.perf_counter()
                if not new and t1 > deadline:
                    t.check_alive()
                    raise RuntimeError(f"{t.name}: round {i}: no replacement within "
                                       f"{RESTART_TIMEOUT:.0f} s")
            samples.append(t1 - t0)
            t.track(new)
            # Spread the kills over a 1 s period: monit checks once a second,
            # and a fixed pause would hit the same point of its cycle each time.
            time.sleep(CRASH_PAUSE + (i % 10) * CRASH_PHASE)
    return samples


def idle(ctx, cls, n, secs):
    """N jobs; once all run and IDLE_SETTLE has passed, CPU time of the
    supervisor's own processes over `secs`, then their PSS and RSS."""
    with cls(ctx, n, ctx["keep"]) as t:
        t0 = t.start()
        t_all = t.wait_all(n, 30.0 + 0.4 * n, poll=0.005, t0=t0)
        time.sleep(IDLE_SETTLE)
        t.check_alive()
        own = t.own_pids()
        if len(own) != t.expected_procs():
            raise RuntimeError(f"{t.name}: {len(own)} supervisor processes, "
                               f"{t.expected_procs()} expected")
        t.track(own)
        m0 = R.cpu_totals()
        c0, k0 = cpu_ns(own)
        w0 = time.monotonic()
        time.sleep(secs)
        c1, k1 = cpu_ns(own)
        w1 = time.monotonic()
        m1 = R.cpu_totals()
        t.check_alive()
        own_after = t.own_pids()
        if sorted(own_after) != sorted(own):
            raise RuntimeError(f"{t.name}: its processes changed during the window "
                               f"({len(own)} -> {len(own_after)})")
        running = len(t.scanner().current())
        if running != n:
            raise RuntimeError(f"{t.name}: {running} of {n} jobs running after the window")
        pss, rss = memory(own)
        hz = os.sysconf("SC_CLK_TCK")
        return {"cpu": (c1 - c0) / 1e9 / (w1 - w0), "cpu_ticks": (k1 - k0) / hz / (w1 - w0),
                "pss": pss, "rss": rss, "procs": len(own), "t_all": t_all,
                "secs": w1 - w0, "idle": (m1[1] - m0[1]) / max(1, m1[0] - m0[0])}


def startup_once(ctx, cls):
    with cls(ctx, STARTUP_JOBS, ctx["keep"]) as t:
        t0 = t.start()
        return t.wait_all(STARTUP_JOBS, 30.0 + 0.4 * STARTUP_JOBS, poll=POLL, t0=t0)


def monit_hang(ctx, rounds):
    """monit's side of the hang test: the same server as run.py's scenario 7
    (GET /health -> 200 "ok PID"), checked by monit at its shortest cycle."""
    port = R.free_port()
    t = Monit(ctx, 0, ctx["keep"])
    with t:
        d = t.dir
        script = os.path.join(d, R.HANG_SCRIPT)
        Path(script).write_text(R.HANG_SERVER)
        pidf = f"{d}/web.pid"
        lines = monit_header(d) + [
            f"check process web with pidfile {pidf}",
            f"  start program = \"/bin/sh -c '{sys.executable} {script} {port} "
            f">/dev/null 2>&1 & echo $! > {pidf}'\" with timeout {MONIT_START_TIMEOUT} seconds",
            f"  stop program = \"/bin/sh -c 'p=$(cat {pidf}); kill -TERM $p; kill -CONT $p'\"",
            f"  if failed host 127.0.0.1 port {port} protocol http request \"/health\" "
            f"with timeout 1 seconds then restart",
            ""]
        Path(t.rc).write_text("\n".join(lines))
        os.chmod(t.rc, 0o600)

        def servers(exclude=()):
            return [p for p in descendants(t.root)
                    if p not in exclude and script in (R.cmdline(p) or [])]

        def answer(pid):
            r = R.http_get(port)
            return r is not None and r[0] == 200 and r[1].split() == ["ok", str(pid)]

        t.start()
        deadline = time.monotonic() + MONIT_READY_TIMEOUT
        while True:
            s = servers()
            if len(s) == 1 and answer(s[0]):
                break
            t.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("monit: the server did not come up")
            time.sleep(0.05)
        out = []
        for i in range(rounds):
            t.check_alive()
            s = servers()
            if len(s) != 1:
                raise RuntimeError(f"monit: round {i}: expected 1 server, found {len(s)}")
            old = s[0]
            # monit pauses the port test of a process younger than its start
            # timeout; let it test this one at least once, then spread the
            # SIGSTOP over monit's 1 s cycle.
            wait = MONIT_START_TIMEOUT + MONIT_HANG_SETTLE - process_age(old)
            time.sleep(max(0.0, wait) + (i % 10) * MONIT_HANG_PHASE)
            old_st = R.start_time(old)
            t.track([old])
            if not answer(old):
                raise RuntimeError(f"monit: round {i}: server {old} does not answer")
            t0 = time.perf_counter()
            os.kill(old, signal.SIGSTOP)
            deadline = t0 + HANG_TIMEOUT
            new = t_new = t_dead = t1 = None
            while t1 is None:
                now = time.perf_counter()
                if t_dead is None and not alive(old, old_st):
                    t_dead = now
                if new is None:
                    s = servers(exclude=(old,))
                    if s:
                        new, t_new = s[0], now
                        t.track([new])
                if new is not None:
                    r = R.http_get(port)
                    if r is not None and r[0] == 200:
                        w = r[1].split()
                        if len(w) == 2 and w[1].isdigit() and int(w[1]) != old:
                            t1 = time.perf_counter()
                            break
                if now > deadline:
                    t.check_alive()
                    raise RuntimeError(f"monit: round {i}: no new server answering within "
                                       f"{HANG_TIMEOUT:.0f} s")
                time.sleep(POLL)
            gone = time.perf_counter() + 5.0
            while t_dead is None:
                if not alive(old, old_st):
                    t_dead = time.perf_counter()
                elif time.perf_counter() > gone:
                    raise RuntimeError(f"monit: round {i}: the stopped server still runs")
                else:
                    time.sleep(POLL)
            out.append({"total": t1 - t0, "new": t_new - t0, "dead": t_dead - t0})
        return out


# ---------------------------------------------------------------- checks: the cost of a check

# The server the HTTP and TCP checks of both tools hit, started by compare.py
# outside either tool. `http`: one listener; it reads a request up to the blank
# line, answers `200 ok` with `Connection: close` and closes the connection, so
# every check opens a new one; it counts requests by path (each check has its
# own). `tcp`: N listeners, each closing every connection it accepts; it counts
# connections by port (each check has its own). On SIGUSR1 it writes a snapshot
# of its counts (JSON, with its time.monotonic(), the clock of compare.py) to
# the stats file; it writes one before it serves, with its ports. It exits by
# itself after `lifetime` seconds.
CHECK_SERVER = r'''"""compare.py, checks: answers checks and counts them, per check."""
import asyncio
import json
import os
import signal
import socket
import sys
import time

MODE, STATS, LIFETIME, LISTENERS = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nok")
# http-keep: the same answer on a connection kept open.
RESPONSE_KEEP = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
counts = {}
state = {"total": 0, "conns": 0, "seq": 0}
ports = []


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        state["conns"] += 1
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                self.transport.close()
            return
        words = self.buf.split(b"\r\n", 1)[0].split()
        key = words[1].decode("ascii", "replace") if len(words) >= 2 else "?"
        counts[key] = counts.get(key, 0) + 1
        state["total"] += 1
        if MODE == "http-keep":
            self.buf = self.buf.split(b"\r\n\r\n", 1)[1]
            self.transport.write(RESPONSE_KEEP)
            if b"\r\n\r\n" in self.buf:
                self.data_received(b"")
            return
        self.transport.write(RESPONSE)
        self.transport.close()


class Tcp(asyncio.Protocol):
    def __init__(self, key):
        self.key = key

    def connection_made(self, transport):
        state["conns"] += 1
        state["total"] += 1
        counts[self.key] = counts.get(self.key, 0) + 1
        transport.close()


def snapshot():
    tmp = STATS + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"seq": state["seq"], "t": time.monotonic(), "total": state["total"],
                   "conns": state["conns"], "ports": ports, "counts": counts}, f)
    os.replace(tmp, STATS)


def on_usr1():
    state["seq"] += 1
    snapshot()


async def main():
    loop = asyncio.get_running_loop()
    servers = []
    for _ in range(LISTENERS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        factory = Http if MODE.startswith("http") else (lambda k=str(port): Tcp(k))
        servers.append(await loop.create_server(factory, sock=sock, backlog=4096))
        ports.append(port)
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    snapshot()
    await asyncio.sleep(LIFETIME)


asyncio.run(main())
'''


class CheckServer:
    """CHECK_SERVER in a process of its own; snap() returns its counts."""

    def __init__(self, d, mode, listeners, lifetime):
        self.path = os.path.join(d, CHECK_SERVER_SCRIPT)
        self.stats = os.path.join(d, "server-stats.json")
        Path(self.path).write_text(CHECK_SERVER)
        self.errlog = os.path.join(d, "server.log")
        with open(self.errlog, "wb") as errf:
            self.proc = subprocess.Popen(
                [sys.executable, self.path, mode, self.stats, str(lifetime), str(listeners)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                start_new_session=True)
        self.seq = 0
        first = self._wait(0)
        self.ports = first["ports"]
        if len(self.ports) != listeners:
            raise RuntimeError(f"the check server listens on {len(self.ports)} ports, "
                               f"{listeners} expected")

    def _wait(self, seq):
        deadline = time.monotonic() + SNAP_TIMEOUT
        while True:
            try:
                with open(self.stats) as f:
                    s = json.load(f)
                if s["seq"] >= seq:
                    return s
            except (OSError, ValueError, KeyError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"the check server exited with status {self.proc.returncode}:"
                                   f" {Path(self.errlog).read_text(errors='replace')[-300:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the check server did not answer a snapshot request")
            time.sleep(0.002)

    def snap(self):
        """(its monotonic time, total checks, {key: count}, connections)."""
        self.seq += 1
        os.kill(self.proc.pid, signal.SIGUSR1)
        s = self._wait(self.seq)
        return s["t"], s["total"], s["counts"], s["conns"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=R.KILL_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=R.KILL_TIMEOUT)


IN_OPEN = 0x20
IN_Q_OVERFLOW = 0x4000


class ExecCounter:
    """Counts the runs of each program of a directory with inotify: the kernel
    reports IN_OPEN on a file that is opened to be executed, as on any open. A
    thread reads the events as they come. (inotify merges an event into the one
    before it only when that one is the same file's and is still unread; with
    one file per check, a file's next run comes a whole period later, after the
    other checks' runs.)"""

    def __init__(self, d):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise RuntimeError(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        if libc.inotify_add_watch(self.fd, os.fsencode(d), IN_OPEN) < 0:
            os.close(self.fd)
            raise RuntimeError(f"inotify_add_watch: {os.strerror(ctypes.get_errno())}")
        self.counts, self.total, self.overflow = {}, 0, False
        self.lock = threading.Lock()
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            r, _, _ = select.select([self.fd, self.stop_r], [], [])
            if self.stop_r in r:
                return
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            off = 0
            with self.lock:
                while off + 16 <= len(buf):
                    _, mask, _, n = struct.unpack_from("iIII", buf, off)
                    name = buf[off + 16:off + 16 + n].rstrip(b"\0").decode(errors="replace")
                    off += 16 + n
                    if mask & IN_Q_OVERFLOW:
                        self.overflow = True
                    elif name:
                        self.counts[name] = self.counts.get(name, 0) + 1
                        self.total += 1

    def snap(self):
        with self.lock:
            if self.overflow:
                raise RuntimeError("inotify's queue overflowed: program runs were not counted")
            return time.monotonic(), self.total, dict(self.counts), None

    def close(self):
        os.write(self.stop_w, b"x")
        self.thread.join(timeout=5)
        for fd in (self.fd, self.stop_r, self.stop_w):
            os.close(fd)


def proc_cpu(pid):
    """(utime, stime, cutime + cstime) of a process in clock ticks: every
    thread of it, and the children it has reaped."""
    s = R.read_proc(f"/proc/{pid}/stat")
    if s is None:
        raise RuntimeError(f"process {pid} is gone")
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]), int(f[12]), int(f[13]) + int(f[14])


def machine_procs():
    return sum(1 for x in os.listdir("/proc") if x.isdigit())


def loadavg():
    s = R.read_proc("/proc/loadavg")
    return " ".join(s.split()[:3]) if s else "?"


def measure_checks(pid, counter, keys, secs, alive, server_pid=None):
    """Waits for the first check, CHECK_WARMUP more, then reads the supervisor's
    CPU and the counter at both ends of a `secs` window. Every check (each key)
    must have run in the window."""
    deadline = time.monotonic() + CHECK_FIRST_TIMEOUT
    while counter.snap()[1] == 0:
        alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no check arrived within {CHECK_FIRST_TIMEOUT:.0f} s")
        time.sleep(0.05)
    time.sleep(CHECK_WARMUP)
    alive()
    load = loadavg()
    procs = machine_procs()
    m0 = R.cpu_totals()
    sv0 = R.cpu_ticks(server_pid) if server_pid else 0
    c0, ns0 = proc_cpu(pid), cpu_ns([pid])[0]
    t0, n0, k0, conn0 = counter.snap()
    time.sleep(secs)
    t1, n1, k1, conn1 = counter.snap()
    c1, ns1 = proc_cpu(pid), cpu_ns([pid])[0]
    sv1 = R.cpu_ticks(server_pid) if server_pid else 0
    m1 = R.cpu_totals()
    alive()
    span = t1 - t0
    if span <= 0:
        raise RuntimeError("the counter's clock did not advance")
    per = {k: k1.get(k, 0) - k0.get(k, 0) for k in keys}
    missing = sorted(k for k, v in per.items() if v <= 0)
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(keys)} checks did not run in the "
                           f"{span:.0f} s window (first: {missing[0]})")
    other = (n1 - n0) - sum(per.values())
    hz = os.sysconf("SC_CLK_TCK")
    user, system, kids = ((c1[i] - c0[i]) / hz for i in range(3))
    own = user + system
    return {"secs": span, "checks": n1 - n0, "rate": (n1 - n0) / span,
            "per_min": min(per.values()), "per_max": max(per.values()), "other": other,
            "conns": None if conn0 is None else conn1 - conn0,
            "own": own, "user": user, "system": system, "children": kids,
            "sched": (ns1 - ns0) / 1e9,
            "server": (sv1 - sv0) / hz / span if server_pid else None,
            "idle": (m1[1] - m0[1]) / max(1, m1[0] - m0[0]), "load": load,
            "procs": procs}


def guardian_checks_job(probe, n, every_ms, target, timeout_s=CHECK_TIMEOUT_S):
    """One job, `sleep 100000`, with n [[check]]s of one probe; `target` is the
    server's port (http), its ports (tcp) or the programs' directory."""
    lines = ['exec = "sleep 100000"', ""]
    for i in range(n):
        lines += ["[[check]]", f'type = "{"http" if probe.startswith("http") else probe}"']
        if probe.startswith("http"):
            lines.append(f'url = "http://127.0.0.1:{target}/c{i:03d}"')
        elif probe == "tcp":
            lines.append(f"port = {target[i]}")
        else:
            lines.append(f"exec = {R.toml_str(os.path.join(target, f'p{i:03d}'))}")
        lines += [f'every = "{every_ms}ms"', f'timeout = "{timeout_s}s"',
                  'action = "alert"', ""]
    return "\n".join(lines)


def monit_checks(probe, n, target):
    """The same checks for monit (its cycle is `set daemon 1`): one `check
    host` with a port test per check, or one `check program` per program."""
    if probe == "program":
        out = []
        for i in range(n):
            out += [f'check program p{i:03d} with path "{os.path.join(target, f"p{i:03d}")}"',
                    "  if status != 0 then alert", ""]
        return out
    out = ["check host checks with address 127.0.0.1"]
    for i in range(n):
        if probe == "http":
            out.append(f'  if failed port {target} protocol http request "/c{i:03d}" '
                       f"with timeout {CHECK_TIMEOUT_S} seconds then alert")
        else:
            out.append(f"  if failed port {target[i]} type tcp "
                       f"with timeout {CHECK_TIMEOUT_S} seconds then alert")
    return out + [""]


def monit_base(ctx, secs):
    """monit's CPU with no port test and no program: one `check file` (a stat
    per cycle). Each cycle monit also reads /proc for every process of the
    machine, whatever it checks; this is that fixed cost."""
    t = Monit(ctx, 0, ctx["keep"])
    with t:
        Path(t.rc).write_text("\n".join(monit_header(t.dir) + [
            "check file base with path /etc/hostname", ""]) + "\n")
        os.chmod(t.rc, 0o600)
        t.start()
        time.sleep(CHECK_WARMUP)
        t.check_alive()
        c0, w0 = proc_cpu(t.daemon_pid), time.monotonic()
        time.sleep(secs)
        c1, w1 = proc_cpu(t.daemon_pid), time.monotonic()
        t.check_alive()
        procs = machine_procs()
    hz = os.sysconf("SC_CLK_TCK")
    return {"cpu": (c1[0] + c1[1] - c0[0] - c0[1]) / hz / (w1 - w0), "procs": procs,
            "secs": w1 - w0}


def check_cost(ctx, tool, probe, n, every_ms, secs):
    """One tool running n checks of one probe every every_ms against the same
    target; its CPU over a window, and the checks counted where they arrive."""
    base = tempfile.mkdtemp(prefix="compare-checks-", dir="/tmp")
    counter = server = None
    try:
        if probe == "program":
            bindir = os.path.join(base, "bin")
            os.mkdir(bindir)
            for i in range(n):
                shutil.copy2(PROBE_PROGRAM, os.path.join(bindir, f"p{i:03d}"))
            keys = [f"p{i:03d}" for i in range(n)]
            counter = ExecCounter(bindir)
            target = bindir
        else:
            lifetime = CHECK_FIRST_TIMEOUT + CHECK_WARMUP + secs + 120
            server = counter = CheckServer(base, probe, 1 if probe.startswith("http") else n,
                                           lifetime)
            if probe.startswith("http"):
                target = server.ports[0]
                keys = [f"/c{i:03d}" for i in range(n)]
            else:
                target = server.ports
                keys = [str(p) for p in server.ports]
        spid = server.proc.pid if server else None
        if tool == "guardian":
            with R.Daemon(ctx["guardian"], 0, keep=ctx["keep"],
                          jobs={"checks": guardian_checks_job(probe, n, every_ms, target)}) as d:
                d.start()
                d.wait_running(1, R.STARTUP_TIMEOUT)
                r = measure_checks(d.pid, counter, keys, secs, d.check_alive, spid)
                r["threads"] = len(os.listdir(f"/proc/{d.pid}/task"))
                st = d.cli("status", "checks", "--json")
                try:
                    info = json.loads(st.stdout)
                except ValueError:
                    raise RuntimeError(f"status checks --json exited {st.returncode}: "
                                       f"{st.stderr.strip()[:200]}")
                cs = info.get("checks", [])
                r["passed"] = sum(1 for c in cs if c.get("passed") is True)
                r["reported"] = len(cs)
                r["log_lines"] = len(d.log_tail(100000).splitlines())
        else:
            # monit's fixed cost, just before, under the same conditions.
            fixed = monit_base(ctx, secs)
            t = Monit(ctx, 0, ctx["keep"])
            with t:
                Path(t.rc).write_text("\n".join(monit_header(t.dir)
                                                + monit_checks(probe, n, target)) + "\n")
                os.chmod(t.rc, 0o600)
                t.start()
                r = measure_checks(t.daemon_pid, counter, keys, secs, t.check_alive, spid)
                r["threads"] = len(os.listdir(f"/proc/{t.daemon_pid}/task"))
                try:
                    mlog = Path(t.dir, "monit.log").read_text(errors="replace").splitlines()
                except OSError:
                    mlog = []
                r["failed_lines"] = sum(1 for ln in mlog if "failed" in ln.lower())
                r["log_lines"] = len(mlog)
                r["base"] = fixed
        r["cpu"] = (r["own"] + (r["children"] if probe == "program" else 0)) / r["secs"]
        r["us"] = (r["own"] + (r["children"] if probe == "program" else 0)) / r["checks"] * 1e6
        r["nominal"] = n * 1000 / every_ms
        return r
    finally:
        if counter is not None:
            counter.close()
        if ctx["keep"]:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- report

def ms(x):
    return x * 1000.0


def fmt_num(v, unit):
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:.0f} ms" if v >= 100 else f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms"
    if unit == "MB":
        return f"{v:.1f} MB" if v >= 10 else f"{v:.2f} MB"
    if unit == "%":
        if v <= 0:
            return "0%"
        if v < 0.1:
            return f"{v:.{min(6, 1 - math.floor(math.log10(v)))}f}%"
        return f"{v:.2f}%" if v < 10 else f"{v:.1f}%"
    if unit == "/s":
        return f"{v:.0f}/s"
    if unit == "us":
        return f"{v:.0f} µs" if v >= 100 else f"{v:.1f} µs"
    return f"{v:g} {unit}"


def verdict(value, target, text):
    if value is None:
        return text
    if value <= target:
        return f"{text}: met"
    return f"{text}: MISSED ({value / target:.1f}x)"


def ratio(g, peers):
    """guardian / the best (lowest) peer value."""
    vals = {k: v for k, v in peers.items() if v is not None}
    if g is None or not vals:
        return "-"
    best = min(vals, key=vals.get)
    if vals[best] <= 0:
        return f"- (best: {best}, 0)"
    r = g / vals[best]
    if r == 0:
        return f"0 ({best})"
    return f"{r:.3g}x ({best}{', guardian worse' if r > 1 else ''})"


def check_label(probe, n, every_ms, run_tools):
    what = {"http": "HTTP (server closes each connection)",
            "http-keep": "HTTP (server keeps connections alive)",
            "tcp": "TCP-connect", "program": f"program ({PROBE_PROGRAM})"}[probe]
    alone = "guardian only: " if run_tools == ("guardian",) else ""
    return f"{alone}{n * 1000 // every_ms:,} {what} checks a second"


def build_rows(res, tools):
    """(figure, {tool: cell}, target cell, ratio cell)."""
    rows = []
    shortfalls = []

    def cell(k, values, na, fmt):
        if k in values:
            return fmt(values[k])
        if k in na:
            return "n/a"
        return "not run" if k not in tools else "error"

    def row(label, values, unit, target=None, target_text="", na=()):
        cells = {k: cell(k, values, na, lambda v: fmt_num(v, unit)) for k in TOOLS}
        g = values.get("guardian")
        tcell = verdict(g, target, target_text) if target is not None else target_text
        if target is not None and g is not None and g > target:
            shortfalls.append(f"{label}: guardian {fmt_num(g, unit)}, target {target_text}")
        rc = ratio(g, {k: values.get(k) for k in PEERS if k in values})
        if "guardian worse" in rc:
            shortfalls.append(f"{label}: guardian {fmt_num(g, unit)} is behind the best "
                              f"peer ({rc})")
        rows.append((label, cells, tcell, rc))

    def text_row(label, values, na=()):
        rows.append((label, {k: cell(k, values, na, str) for k in TOOLS}, "", ""))

    if "crash" in res:
        c = res["crash"]
        n = max((len(v) for v in c.values() if isinstance(v, list)), default=0)
        med = {k: ms(statistics.median(v)) for k, v in c.items() if isinstance(v, list)}
        row(f"kill -9 -> replacement running, median of {n}", med, "ms", T_CRASH_MS,
            f"<= {T_CRASH_MS:g} ms")
        text_row("kill -9 -> replacement running, min / max",
                 {k: f"{ms(min(v)):.2f} / {ms(max(v)):.2f} ms" if max(v) < 0.1 else
                  f"{ms(min(v)):.0f} / {ms(max(v)):.0f} ms"
                  for k, v in c.items() if isinstance(v, list)})
    if "idle" in res:
        for n in sorted({n for per in res["idle"].values() for n in per}):
            vals = {k: per[n] for k, per in res["idle"].items() if n in per}
            ok = {k: v for k, v in vals.items() if isinstance(v, dict)}
            text_row(f"N = {n}: supervisor processes counted",
                     {k: str(v["procs"]) for k, v in ok.items()})
            row(f"N = {n}: PSS of the supervisor's processes",
                {k: v["pss"] * 1024 / 1e6 for k, v in ok.items()}, "MB",
                T_PSS_MB if n == 500 else None, f"<= {T_PSS_MB:g} MB" if n == 500 else "")
            row(f"N = {n}: RSS of the supervisor's processes (sum)",
                {k: v["rss"] * 1024 / 1e6 for k, v in ok.items()}, "MB")
            row(f"N = {n}: CPU over {next(iter(ok.values()))['secs']:.0f} s idle, "
                f"% of one core" if ok else f"N = {n}: CPU idle",
                {k: v["cpu"] * 100 for k, v in ok.items()}, "%", T_IDLE_CPU_PCT,
                f"<= {T_IDLE_CPU_PCT:g}%")
    if "startup" in res:
        s = {k: v for k, v in res["startup"].items() if isinstance(v, list)}
        n = max((len(v) for v in s.values()), default=0)
        row(f"start-up: launch -> {STARTUP_JOBS} running, median of {n}",
            {k: ms(statistics.median(v)) for k, v in s.items()}, "ms", T_STARTUP_MS,
            f"<= {T_STARTUP_MS:g} ms")
        text_row(f"start-up of {STARTUP_JOBS}, min / max",
                 {k: f"{fmt_num(ms(min(v)), 'ms')} / {fmt_num(ms(max(v)), 'ms')}"
                  for k, v in s.items()})
    if "hang" in res:
        h = {k: [r["total"] for r in v] for k, v in res["hang"].items() if isinstance(v, list)}
        n = max((len(v) for v in h.values()), default=0)
        vals = {k: ms(statistics.median(v)) for k, v in h.items()}
        nochecks = ("supervisord", "runit")
        row(f"HTTP server SIGSTOP -> new one answering, median of {n}", vals, "ms",
            T_HANG_MS, f"<= {T_HANG_MS / 1000:g} s", na=nochecks)
        text_row("HTTP hang, min / max",
                 {k: f"{ms(min(v)):.0f} / {ms(max(v)):.0f} ms" for k, v in h.items()},
                 na=nochecks)
    if "checks" in res:
        for key, probe, n, every_ms, run_tools in CHECK_RUNS:
            if key not in res["checks"]:
                continue
            per = res["checks"][key]
            ok = {k: v for k, v in per.items() if isinstance(v, dict)}
            na = tuple(t for t in TOOLS if t not in run_tools)
            label = check_label(probe, n, every_ms, run_tools)
            text_row(f"{label}: achieved (counted where they arrive)",
                     {k: f"{v['rate']:.0f}/s" for k, v in ok.items()}, na=na)
            rate = n * 1000 // every_ms
            t_cpu = T_CHECKS_CPU_PCT.get(rate) if run_tools == ("guardian",) else None
            row(f"{label}: supervisor CPU, % of a core",
                {k: v["cpu"] * 100 for k, v in ok.items()}, "%", t_cpu,
                f"< {t_cpu:g}%" if t_cpu else "", na=na)
            m = ok.get("monit")
            t_us = T_CHECK_VS_MONIT * m["us"] if m else None
            row(f"{label}: CPU per check", {k: v["us"] for k, v in ok.items()}, "us",
                t_us, f"<= half of monit's ({fmt_num(t_us, 'us')})" if m else "", na=na)
    if "chain" in res:
        c = res["chain"]
        if isinstance(c, dict):
            v = [ms(x) for x in c["light"]]
            row(f"guardian only: start-on chain of {R.CHAIN_JOBS}, launch -> all running, "
                f"median of {len(v)}", {"guardian": statistics.median(v)}, "ms",
                T_CHAIN_MS, f"<= {T_CHAIN_MS:g} ms (run.py)", na=PEERS)
            text_row(f"guardian only: chain of {R.CHAIN_JOBS}, min / max",
                     {"guardian": f"{min(v):.1f} / {max(v):.1f} ms"}, na=PEERS)
        else:
            text_row("guardian only: chain", {}, na=PEERS)
    return rows, shortfalls


HEAD = ("Figure", "guardian", "supervisord", "monit", "runit", "Target (guardian)",
        "guardian / best peer")


def as_cells(r):
    return (r[0],) + tuple(r[1][k] for k in TOOLS) + (r[2], r[3])


def format_text(rows):
    data = [HEAD] + [as_cells(r) for r in rows]
    w = [max(len(x[i]) for x in data) for i in range(len(HEAD))]
    fmt = "  ".join(f"{{:<{x}}}" for x in w)
    out = [fmt.format(*HEAD).rstrip(), fmt.format(*("-" * x for x in w))]
    out += [fmt.format(*as_cells(r)).rstrip() for r in rows]
    return "\n".join(out)


def format_markdown(rows):
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(as_cells(r)) + " |" for r in rows]
    return "\n".join(out)


def spread_ms(values):
    v = [ms(x) for x in values]
    return f"{statistics.median(v):.0f} ({min(v):.0f} to {max(v):.0f})"


def notes(res, ctx):
    out = []
    idle = res.get("machine_idle", {})
    if idle:
        low = {k: v for k, v in idle.items() if v < R.IDLE_WARN}
        out.append("machine idle in the 0.5 s before each run: lowest "
                   f"{min(idle.values()) * 100:.0f}%" +
                   (f"; below {R.IDLE_WARN * 100:.0f}% before: "
                    + ", ".join(f"{k} ({v * 100:.0f}%)" for k, v in low.items())
                    + " (other load may have inflated these figures)" if low else ""))
    if "crash" in res:
        out.append(f"crash: one job; round i kills its process with SIGKILL once the "
                   f"replacement has run {CRASH_PAUSE:g} s + (i mod 10) x "
                   f"{CRASH_PHASE * 1000:g} ms (at least 1 s, so that neither supervisord's "
                   f"startsecs = 1 nor runsv's 1 s restart delay applies; the spread "
                   f"spreads the kills over monit's 1 s cycle) and busy-polls /proc until "
                   f"a new `sleep` runs.")
    if "idle" in res:
        for k, per in res["idle"].items():
            ok = {n: v for n, v in per.items() if isinstance(v, dict)}
            if ok:
                out.append(f"idle, {k}: all N running after " + ", ".join(
                    f"{ms(v['t_all']) / 1000:.2f} s (N = {n})" for n, v in sorted(ok.items()))
                    + "; CPU time used in the window: " + ", ".join(
                    f"{v['cpu'] * v['secs'] * 1000:.3f} ms (N = {n})" for n, v in sorted(ok.items()))
                    + "; CPU from utime + stime (10 ms ticks), for comparison: " + ", ".join(
                    f"{v['cpu_ticks'] * 100:.3f}% (N = {n})" for n, v in sorted(ok.items()))
                    + "; machine idle over the window: " + ", ".join(
                    f"{v['idle'] * 100:.0f}%" for n, v in sorted(ok.items())) + ".")
        out.append("idle: the supervisor's processes are guardian, supervisord (its Python "
                   "process) and monit (one process each), and for runit runsvdir plus one "
                   "runsv per service. The supervised `sleep` processes, and the subreaper "
                   "that compare.py runs monit under, are not counted. PSS shares each "
                   "page among the processes that map it; RSS counts it in every process "
                   "(for runit's N + 1 processes the RSS sum counts the shared libc pages "
                   "N + 1 times). CPU is sum_exec_runtime from /proc/PID/task/*/schedstat.")
    if "hang" in res:
        h = res["hang"]
        if isinstance(h.get("guardian"), list):
            r = h["guardian"]
            out.append("hang, guardian (every = 500ms, timeout = 500ms, failures = 2): "
                       f"ms after the SIGSTOP, median (min to max): check failure logged "
                       f"{spread_ms(x['fail_log'] for x in r if x['fail_log'] is not None)}, "
                       f"new process exec'd {spread_ms(x['new'] for x in r)}, answering "
                       f"{spread_ms(x['total'] for x in r)}.")
        if isinstance(h.get("monit"), list):
            r = h["monit"]
            out.append("hang, monit (`set daemon 1`, `if failed port ... protocol http "
                       "with timeout 1 seconds then restart`, i.e. on the first failed "
                       f"cycle; start program `with timeout {MONIT_START_TIMEOUT} seconds`; "
                       "stop program sends TERM then CONT): ms after the SIGSTOP, median "
                       "(min to max): stopped process "
                       f"gone {spread_ms(x['dead'] for x in r)}, new process exec'd "
                       f"{spread_ms(x['new'] for x in r)}, answering "
                       f"{spread_ms(x['total'] for x in r)}. monit acts on one failed "
                       "probe, guardian here on two in a row.")
    if isinstance(res.get("checks"), dict):
        out.append(
            "checks: guardian runs one job (`sleep 100000`) with N `[[check]]`s, each with "
            f"its own `every`, `timeout = \"{CHECK_TIMEOUT_S}s\"` and `action = \"alert\"`; "
            "monit (`set daemon 1`) one `check host` with a port test per check (`if failed "
            "port P protocol http request \"/cNNN\"` or `type tcp`, "
            f"`with timeout {CHECK_TIMEOUT_S} seconds then alert`), or one `check program` "
            "per program (`if status != 0 then alert`). HTTP checks hit one local server "
            "(Python asyncio, outside both tools) that answers `200 ok` with `Connection: "
            "close` and closes, so every check opens a new connection; each check has its "
            "own path and is counted by the server. TCP checks connect to the server's N "
            "ports (one per check, counted per port; it closes what it accepts). Program "
            f"checks run one copy of {PROBE_PROGRAM} per check, counted by inotify; each "
            "check's `exec` is the copy's absolute path, text with no shell syntax, so "
            "guardian runs it directly, without `sh` (it keeps `sh -e -c` for text a shell "
            "must read), and so does monit. A row "
            "fails if any check did not run in the window. CPU: utime + stime of the "
            "supervisor's process (all threads) from /proc/PID/stat over the window, and for "
            "program checks also cutime + cstime (the children it reaped: the programs), "
            "the same for both tools; the server's CPU and compare.py's "
            "are not counted. CPU per check: that CPU time over the checks counted. monit "
            "runs its checks one after another and then sleeps 1 s, so its rate is below N "
            "a second. The -keep rows (guardian only): the same HTTP checks against a "
            "server that keeps each connection open (HTTP/1.1 persistent); the server of "
            "the other HTTP rows closes every connection, as in monit's rows.")
        for key, probe, n, every_ms, _ in CHECK_RUNS:
            for tool, r in res["checks"].get(key, {}).items():
                if not isinstance(r, dict):
                    continue
                extra = []
                if r["conns"] is not None and probe.startswith("http"):
                    extra.append(f"{r['conns']} connections")
                if r["server"] is not None:
                    extra.append(f"server CPU {r['server'] * 100:.1f}%")
                if tool == "guardian":
                    extra.append(f"last outcome passed for {r['passed']} of {r['reported']} "
                                 "checks")
                else:
                    extra.append(f"{r['failed_lines']} `failed` lines in monit's log")
                    b = r["base"]
                    fixed = (f"just before, with one `check file` and nothing else, monit "
                             f"used {b['cpu'] * 100:.2f}% of a core, {b['procs']} processes "
                             "on the machine")
                    if abs(b["procs"] - r["procs"]) > 0.25 * r["procs"]:
                        # The fixed cost follows the process count: no subtraction.
                        fixed += (f" (not {r['procs']} as in the run: no marginal cost "
                                  "per check)")
                    elif probe != "program":
                        # One cycle per run of each check; the fixed cost is per cycle.
                        marginal = (r["own"] - b["cpu"] * r["per_min"]) / r["checks"] * 1e6
                        fixed += f"; less that, {marginal:.0f} µs per check"
                    extra.append(fixed)
                if r["other"]:
                    extra.append(f"{r['other']} arrivals not from a check")
                out.append(
                    f"checks {key}, {tool} (N = {n}, every {every_ms} ms): load "
                    f"{r['load']} at the window's start, machine {r['idle'] * 100:.0f}% idle "
                    f"over it; {r['checks']} checks in {r['secs']:.1f} s "
                    f"({r['rate']:.0f}/s of {r['nominal']:.0f}/s nominal), each check "
                    f"{r['per_min']} to {r['per_max']} times; CPU {r['own'] * 1000:.0f} ms "
                    f"own ({r['user'] * 1000:.0f} user + {r['system'] * 1000:.0f} system; "
                    f"schedstat {r['sched'] * 1000:.0f} ms)"
                    + (f" + {r['children'] * 1000:.0f} ms children" if probe == "program"
                       else "")
                    + f"; threads: {r['threads']}; {r['procs']} processes on the machine; "
                    + ", ".join(extra) + ".")
    if isinstance(res.get("chain"), dict):
        c = res["chain"]
        out.append(f"chain (guardian only, run.py's scenario 5): j000 starts with the "
                   f"daemon, each next job on `started` of the one before; 0.5 ms poll. "
                   f"With a busy-polling observer instead: median "
                   f"{ms(statistics.median(c['busy'])):.1f} ms.")
    for k, v in res.get("errors", {}).items():
        out.append(f"ERROR {k}: {v}")
    for k, v in ctx["leftovers"].items():
        out.append(f"WARNING: {v} process(es) of {k} outlived its daemon and were killed.")
    out.append("measured on this machine before guardian existed (the issue; not by this "
               "script): " + "; ".join(ISSUE_FIGURES) + ".")
    return out


# ---------------------------------------------------------------- set-up

def sh(argv, timeout=INSTALL_TIMEOUT, env=None):
    log("+ " + " ".join(argv))
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=timeout, env=env)
    if r.returncode != 0:
        sys.exit(f"compare.py: {' '.join(argv)} exited with status {r.returncode}")


def ensure_peers(tools, venv, install):
    """The peers' executables; installs those that are missing."""
    paths = {}
    missing = [pkg for pkg, exe in (("monit", "monit"), ("runit", "runsvdir"))
               if pkg in tools and not shutil.which(exe)]
    if missing:
        if not install:
            sys.exit(f"compare.py: {', '.join(missing)} not installed (--no-install given)")
        if os.geteuid() != 0:
            sys.exit(f"compare.py: {', '.join(missing)} missing; installing them with "
                     "apt-get needs root")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update"], env=env)
        sh(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    if "monit" in tools:
        paths["monit"] = shutil.which("monit")
    if "runit" in tools:
        paths["runsvdir"] = shutil.which("runsvdir")
    for k in ("monit", "runsvdir"):
        if k in paths and not paths[k]:
            sys.exit(f"compare.py: {k} not found after installing")
    if "supervisord" in tools:
        exe = os.path.join(venv, "bin", "supervisord")
        if not os.path.isfile(exe):
            if not install:
                sys.exit(f"compare.py: {exe} missing (--no-install given)")
            if not os.path.isfile(os.path.join(venv, "bin", "python")):
                sh([sys.executable, "-m", "venv", venv])
            sh([os.path.join(venv, "bin", "pip"), "install", "--disable-pip-version-check",
                "-q", "supervisor"])
        paths["supervisord"] = exe
        paths["venv"] = venv
    return paths


def first_line(argv):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=R.CLI_TIMEOUT)
        text = (r.stdout.strip() or r.stderr.strip()).splitlines()
        return text[0] if text else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_state():
    """The commit of the working tree, and whether src/ differs from it."""
    try:
        head = subprocess.run(["git", "-C", str(R.REPO_DIR), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=R.CLI_TIMEOUT)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(R.REPO_DIR), "status", "--porcelain", "--",
                                "src", "Cargo.toml", "Cargo.lock"],
                               capture_output=True, text=True, timeout=R.CLI_TIMEOUT)
        return (f"commit {head.stdout.strip()}"
                + (", with uncommitted changes to its sources" if dirty.stdout.strip() else ""))
    except (OSError, subprocess.SubprocessError):
        return ""


def versions(ctx, tools):
    g = git_state()
    v = {"guardian": R.guardian_version(ctx["guardian"]) + (f" ({ctx['guardian']}, "
                                                           f"work tree at {g})" if g else "")}
    if "supervisord" in tools:
        py = first_line([os.path.join(ctx["venv"], "bin", "python"), "--version"])
        v["supervisord"] = (f"supervisord {first_line([ctx['supervisord'], '--version'])} "
                            f"(PyPI, {py}, venv {ctx['venv']})")
    if "monit" in tools:
        dpkg = first_line(["dpkg-query", "-W", "-f=${Version}", "monit"])
        v["monit"] = f"{first_line([ctx['monit'], '-V'])} (Debian package {dpkg})"
    if "runit" in tools:
        dpkg = first_line(["dpkg-query", "-W", "-f=${Version}", "runit"])
        v["runit"] = f"runit {dpkg} (Debian package)"
    return v


# ---------------------------------------------------------------- main

def on_sigterm(signum, frame):
    raise KeyboardInterrupt


ERRORS = (RuntimeError, OSError, subprocess.SubprocessError, ValueError)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", help="guardian binary (default: target/release/guardian, "
                                     "built with cargo build --release if missing)")
    ap.add_argument("--only", metavar="LIST",
                    help=f"comma-separated scenarios: {','.join(SCENARIOS)} (default: all)")
    ap.add_argument("--tools", metavar="LIST", default=",".join(TOOLS),
                    help=f"comma-separated tools (default: {','.join(TOOLS)})")
    ap.add_argument("--sizes", metavar="LIST", default=",".join(map(str, IDLE_SIZES)),
                    help="N of the idle scenario (default: 10,100,500)")
    ap.add_argument("--checks", metavar="LIST", default=",".join(k[0] for k in CHECK_RUNS),
                    help="runs of the checks scenario, comma-separated (default: all: "
                         f"{','.join(k[0] for k in CHECK_RUNS)})")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions: 5 crash rounds, 5 s idle windows, 1 start-up "
                         "run, 3 hang rounds, 10 s check windows")
    ap.add_argument("--output", default=str(BENCH_DIR / "results.md"),
                    help="markdown results file (default: bench/results.md)")
    ap.add_argument("--venv", default=DEFAULT_VENV,
                    help=f"virtual environment for supervisor (default: {DEFAULT_VENV})")
    ap.add_argument("--no-install", action="store_true",
                    help="do not install missing peers; fail instead")
    ap.add_argument("--wait-idle", type=float, default=10.0, metavar="SECS",
                    help="before each run, wait up to SECS for the machine to be 90%% idle "
                         "(default 10; 0: do not wait)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args()

    only = [x.strip() for x in (args.only or ",".join(SCENARIOS)).split(",") if x.strip()]
    bad = set(only) - set(SCENARIOS)
    if bad or not only:
        ap.error(f"--only: choose from {','.join(SCENARIOS)}")
    tools = [x.strip() for x in args.tools.split(",") if x.strip()]
    if set(tools) - set(TOOLS) or "guardian" not in tools:
        ap.error(f"--tools: choose from {','.join(TOOLS)}; guardian is always included")
    tools = [t for t in TOOLS if t in tools]
    try:
        sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    except ValueError:
        ap.error("--sizes: comma-separated integers")
    if not sizes or min(sizes) < 1 or max(sizes) > 2000:
        ap.error("--sizes: between 1 and 2000")
    check_keys = [x.strip() for x in args.checks.split(",") if x.strip()]
    if not check_keys or set(check_keys) - {k[0] for k in CHECK_RUNS}:
        ap.error(f"--checks: choose from {','.join(k[0] for k in CHECK_RUNS)}")
    q = 1 if args.quick else 0

    ctx = {"keep": args.keep, "leftovers": {}}
    ctx["guardian"] = R.find_binary(args.binary)
    ctx.update(ensure_peers(tools, args.venv, not args.no_install))
    ver = versions(ctx, tools)
    m = R.machine()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    mach = f"{m['nproc']} CPU(s), {m['model']}, Linux {m['kernel']}"
    print(f"date:     {date}")
    print(f"machine:  {mach}")
    print(f"load:     {m['load']} (1/5/15 min, at start)")
    for k in tools:
        print(f"{k + ':':<13}{ver[k]}")
    print(flush=True)

    signal.signal(signal.SIGTERM, on_sigterm)
    res = {"machine_idle": {}, "errors": {}}
    started = time.monotonic()

    def step(label, fn):
        res["machine_idle"][label] = R.wait_idle(args.wait_idle)
        log(f"[{time.monotonic() - started:6.1f} s] {label}")
        try:
            return fn()
        except ERRORS as e:
            res["errors"][label] = str(e)
            log(f"error: {label}: {e}")
            return "error"

    for sc in SCENARIOS:
        if sc not in only:
            continue
        if sc == "crash":
            res["crash"] = {t: step(f"crash, {t}", lambda t=t: crash(
                ctx, TOOL_CLASSES[t], CRASH_ROUNDS[q])) for t in tools}
        elif sc == "idle":
            res["idle"] = {t: {} for t in tools}
            for n in sizes:
                for t in tools:
                    res["idle"][t][n] = step(f"idle N = {n}, {t}", lambda t=t, n=n: idle(
                        ctx, TOOL_CLASSES[t], n, IDLE_SECS[q]))
        elif sc == "startup":
            runs = {t: [] for t in tools}
            for i in range(STARTUP_RUNS[q]):
                for t in tools:
                    if runs[t] == "error":
                        continue
                    v = step(f"start-up of {STARTUP_JOBS}, {t}, run {i + 1}",
                             lambda t=t: startup_once(ctx, TOOL_CLASSES[t]))
                    runs[t] = v if v == "error" else runs[t] + [v]
            res["startup"] = runs
        elif sc == "hang":
            R.HANG_ROUNDS = HANG_ROUNDS[q]
            res["hang"] = {}
            res["hang"]["guardian"] = step("hang, guardian", lambda: R.hang(
                ctx["guardian"], args.keep)["rounds"])
            if "monit" in tools:
                res["hang"]["monit"] = step("hang, monit",
                                            lambda: monit_hang(ctx, HANG_ROUNDS[q]))
        elif sc == "checks":
            res["checks"] = {}
            for key, probe, n, every_ms, run_tools in CHECK_RUNS:
                if key not in check_keys:
                    continue
                res["checks"][key] = {
                    t: step(f"checks {key}, {t}", lambda t=t, p=probe, n=n, e=every_ms:
                            check_cost(ctx, t, p, n, e, CHECK_WINDOW[q]))
                    for t in run_tools if t in tools}
        elif sc == "chain":
            res["chain"] = step("chain, guardian", lambda: R.chain(ctx["guardian"], args.keep))
    elapsed = time.monotonic() - started

    rows, shortfalls = build_rows(res, tools)
    ns = notes(res, ctx)
    if R.LEFTOVERS:
        ns.append(f"WARNING: {sum(R.LEFTOVERS)} job process(es) of guardian outlived a "
                  f"run.py daemon and were killed.")
    print(format_text(rows))
    print()
    if shortfalls:
        print("Where guardian falls short:")
        for s in shortfalls:
            print(f"- {s}")
        print()
    for n in ns:
        print(f"- {n}")

    cmd = "python3 bench/compare.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    md = [
        "# guardian against supervisord, monit and runit",
        "",
        f"- Date: {date}",
        f"- Machine: {mach}",
        f"- Load average at start: {m['load']}",
    ]
    md += [f"- {k}: {ver[k]}" for k in tools]
    md += [
        f"- Command: `{cmd}` ({elapsed / 60:.1f} min)",
        "",
        "Lower is better in every row. `guardian / best peer` divides guardian's figure "
        "by the lowest peer's: below 1, guardian is ahead. How each figure is measured, "
        "and each peer's configuration: bench/README.md.",
        "",
        format_markdown(rows),
        "",
    ]
    if shortfalls:
        md += ["Where guardian falls short:", ""] + [f"- {s}" for s in shortfalls] + [""]
    md += ["Notes:", ""] + [f"- {n}" for n in ns]
    Path(args.output).write_text("\n".join(md) + "\n")
    print(f"\nwritten to {args.output} ({elapsed / 60:.1f} min)")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("compare.py: interrupted; daemons stopped, temporary directories removed")
        sys.exit(130)
