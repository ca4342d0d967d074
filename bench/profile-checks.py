#!/usr/bin/env python3
"""Where a check's CPU goes: guardian under valgrind's callgrind at a fixed check load.

Runs one guardian daemon under `valgrind --tool=callgrind` with one job of N
checks of one probe (the configuration, server and counting of compare.py's
checks scenario), lets the checks warm up, zeroes callgrind's counters, waits
until exactly --count more checks have arrived where they are counted (the
server, or inotify for programs), dumps the counters and stops. The dump holds
the instructions guardian executed for those checks and nothing else it did
(start-up, shutdown); callgrind counts instructions, not time, so the figures
do not depend on the machine's load. Prints instructions per check and the top
entries (inclusive and self) of callgrind_annotate, and writes a markdown
summary with --output. See bench/README.md.

Needs valgrind (callgrind_control, callgrind_annotate) and a guardian binary
with symbols: a release build with line tables, not stripped:

  CARGO_TARGET_DIR=target/prof CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \\
      CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --bin guardian
"""

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.dont_write_bytecode = True
import compare as C  # noqa: E402  (bench/compare.py)
import run as R  # noqa: E402  (bench/run.py)

DEFAULT_BINARY = R.REPO_DIR / "target" / "prof" / "release" / "guardian"
START_TIMEOUT = 120.0    # under valgrind, the first check arrives
COUNT_TIMEOUT = 600.0    # --count checks arrive
CONTROL_TIMEOUT = 60.0   # one callgrind_control command
WARMUP = 5.0             # s after the first check, before the counters are zeroed
QUIET = 0.15             # s without a check: between two rounds
ATTEMPTS = 5             # of a count that no round overlaps
PROBE_TIMEOUT_S = 60     # each check's timeout
TOP = 15


def control(args, pid):
    r = subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True,
                       text=True, timeout=CONTROL_TIMEOUT, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)} exited {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[:300]}")


def annotate(path, inclusive):
    """[(Ir, share of the total, function)] of callgrind_annotate, and the total."""
    r = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                        "--threshold=100", path], capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"callgrind_annotate exited {r.returncode}: {r.stderr[:300]}")
    total, rows = None, []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"^\s*([\d,]+)\s+(?:\(\s*([\d.]+)%\)\s+)?(\S.*?)\s*$", line)
        if m and total is not None and ":" in m.group(3):
            ir = int(m.group(1).replace(",", ""))
            # The frames below the event loop (main, libc's start, the runtime's
            # block_on) hold everything: they say nothing, and callgrind also
            # lists them as their own cost because they were on the stack when
            # the counters were zeroed.
            if ir < total * 0.999:
                rows.append((ir, m.group(3)))
    if total is None:
        raise RuntimeError("callgrind_annotate printed no total")
    return total, rows


def calls_to(path, names):
    """How many calls the dump records to each function of `names` (by its
    symbol, e.g. malloc), from its `cfn=` / `calls=` lines."""
    ids, counts, current = {}, dict.fromkeys(names, 0), None
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                if m.group(2) is not None:
                    ids[m.group(1)] = m.group(2).strip()
                current = ids.get(m.group(1)) if line.startswith("cfn=") else None
                continue
            if line.startswith("calls=") and current in counts:
                counts[current] += int(line[6:].split()[0])
    return counts


def short(fn, width=110):
    """`file:function [object]` of callgrind_annotate, shortened for a table."""
    fn = re.sub(r" \[[^\]]*\]$", "", fn)
    fn = re.sub(r"^/rustc/[0-9a-f]+/library/", "std:", fn)
    fn = re.sub(r"^/root/\.cargo/registry/src/[^/]+/", "", fn)
    fn = re.sub(r"^" + re.escape(str(R.REPO_DIR)) + "/", "", fn)
    fn = fn.replace("|", "\\|")
    return fn if len(fn) <= width else fn[:width - 3] + "..."


class Load:
    """The target of n checks of one probe (compare.py's server, or copies of
    PROBE_PROGRAM counted by inotify) and a configuration with one job of them."""

    def __init__(self, probe, n, every_ms, keep):
        self.keep, self.base, self.dir, self.counter = keep, None, None, None
        self.base = tempfile.mkdtemp(prefix="profile-checks-", dir="/tmp")
        try:
            if probe == "program":
                bindir = os.path.join(self.base, "bin")
                os.mkdir(bindir)
                for i in range(n):
                    shutil.copy2(C.PROBE_PROGRAM, os.path.join(bindir, f"p{i:03d}"))
                self.counter, target = C.ExecCounter(bindir), bindir
            else:
                self.counter = C.CheckServer(self.base, probe, 1 if probe == "http" else n,
                                             START_TIMEOUT + COUNT_TIMEOUT + 120)
                ports = self.counter.ports
                target = ports[0] if probe == "http" else ports
            # Under valgrind a round of checks takes far longer than natively:
            # a generous timeout keeps every check on its success path.
            self.dir = R.make_config({"checks": C.guardian_checks_job(
                probe, n, every_ms, target, timeout_s=PROBE_TIMEOUT_S)})
        except BaseException:
            self.close()
            raise

    def start(self, argv):
        with open(os.path.join(self.dir, "daemon.log"), "wb") as logf:
            return subprocess.Popen(argv + ["-c", self.dir], stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=subprocess.STDOUT,
                                    env=R.clean_env(), start_new_session=True)

    def checks(self):
        return self.counter.snap()[1]

    def wait_first(self, proc, timeout):
        deadline = time.monotonic() + timeout
        while self.checks() == 0:
            if proc.poll() is not None:
                raise RuntimeError(f"guardian exited {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("no check arrived")
            time.sleep(0.1)

    def quiet(self, proc):
        """The count at a moment between two rounds of checks: unchanged over
        QUIET s (all checks of a job fire together, once per `every`)."""
        deadline = time.monotonic() + COUNT_TIMEOUT
        a = self.checks()
        while True:
            time.sleep(QUIET)
            b = self.checks()
            if a == b:
                return b
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the checks never paused")
            a = b

    def wait_more(self, proc, n0, count):
        """Waits until `count` more checks than n0 arrived, then for a pause."""
        deadline = time.monotonic() + COUNT_TIMEOUT
        while self.checks() - n0 < count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"only {self.checks() - n0} of {count} checks arrived")
            time.sleep(0.01)
        return self.quiet(proc)

    def after_round(self, proc):
        """The count just after a round of checks ended: waits for a check to
        arrive, then for a pause, so that the next round is most of one
        `every` away."""
        deadline = time.monotonic() + COUNT_TIMEOUT
        n = self.checks()
        while self.checks() == n:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("no round of checks arrived")
            time.sleep(0.005)
        return self.quiet(proc)

    def failures(self):
        """Lines of the daemon's log that report a failed check: none expected."""
        try:
            text = Path(self.dir, "daemon.log").read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for ln in text.splitlines() if " failed" in ln)

    def close(self):
        if self.counter is not None:
            self.counter.close()
        if not self.keep:
            for d in (self.base, self.dir):
                if d is not None:
                    shutil.rmtree(d, ignore_errors=True)


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def profile(binary, probe, n, every_ms, count, out_dir, keep):
    """callgrind's instructions for `count` checks."""
    load = Load(probe, n, every_ms, keep)
    proc = None
    try:
        outfile = os.path.join(out_dir, f"callgrind.out.{probe}")
        for f in Path(out_dir).glob(f"callgrind.out.{probe}*"):
            f.unlink()
        proc = load.start(["valgrind", "--tool=callgrind", f"--callgrind-out-file={outfile}",
                           "--trace-children=no", "--vgdb=yes", binary])
        load.wait_first(proc, START_TIMEOUT)
        time.sleep(WARMUP)
        # Zeroing and dumping happen between two rounds of checks. A dump
        # also zeroes: one that a round overlapped is thrown away and the
        # count starts again.
        for _ in range(ATTEMPTS):
            n0 = load.after_round(proc)
            control(["-z"], proc.pid)
            if load.checks() != n0:
                continue
            load.wait_more(proc, n0, count)
            n1 = load.after_round(proc)
            for f in Path(out_dir).glob(f"callgrind.out.{probe}.*"):
                f.unlink()
            control(["-d"], proc.pid)
            if load.checks() == n1:
                break
        else:
            raise RuntimeError(f"a round of checks overlapped the counters {ATTEMPTS} times")
        done = n1 - n0
        stop(proc)
        if load.failures():
            raise RuntimeError(f"{load.failures()} checks failed under valgrind: the profile "
                               "would not be of the success path")
        dumps = sorted(Path(out_dir).glob(f"callgrind.out.{probe}.*"),
                       key=lambda f: int(f.name.rsplit(".", 1)[1]))
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        dump = str(dumps[-1])
        total, incl = annotate(dump, True)
        _, self_ = annotate(dump, False)
        allocs = calls_to(dump, ("malloc", "realloc", "calloc", "posix_memalign", "free"))
        return {"probe": probe, "n": n, "every_ms": every_ms, "checks": done,
                "total": total, "incl": incl[:TOP], "self": self_[:TOP], "dump": dump,
                "allocs": allocs}
    finally:
        stop(proc)
        load.close()


def syscalls(binary, probe, n, every_ms, count, keep):
    """System calls of the daemon (each of its threads, not its children) for
    about `count` checks, natively, counted by `strace -c`."""
    load = Load(probe, n, every_ms, keep)
    proc = tracer = None
    out = os.path.join(load.base, "strace.txt")
    try:
        proc = load.start([binary])
        load.wait_first(proc, START_TIMEOUT)
        time.sleep(3.0)
        argv = ["strace", "-c", "-o", out]
        tids = os.listdir(f"/proc/{proc.pid}/task")
        for t in tids:
            argv += ["-p", t]
        # Attached just after a round (strace says "Process N attached" for
        # each thread), detached just after another.
        n0 = load.after_round(proc)
        tracer = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        attached = 0
        while attached < len(tids):
            line = tracer.stderr.readline()
            if not line:
                raise RuntimeError("strace ended before it attached")
            attached += " attached" in line
        if load.checks() != n0:
            raise RuntimeError("a round of checks began before strace had attached")
        load.wait_more(proc, n0, count)
        n1 = load.after_round(proc)
        tracer.send_signal(signal.SIGINT)
        tracer.communicate(timeout=60)
        if load.failures():
            raise RuntimeError(f"{load.failures()} checks failed while traced")
        calls = {}
        for line in Path(out).read_text().splitlines():
            w = line.split()
            if len(w) >= 5 and w[-1] != "total" and w[0][0].isdigit():
                # % time, seconds, usecs/call, calls, [errors,] syscall
                calls[w[-1]] = int(w[3])
        return {"checks": n1 - n0, "calls": calls}
    finally:
        if tracer is not None and tracer.poll() is None:
            tracer.kill()
            tracer.wait()
        stop(proc)
        load.close()


def floor(probe, count, keep):
    """The kernel's share of one check, whoever makes it: a minimal blocking
    client in this process (socket, connect, for http one request and reading
    to the end, close) against the same server, `count` times; the system CPU
    of this process per check (its user CPU is Python's, not a check's)."""
    load = Load(probe, 1, 1000, keep)
    try:
        port = load.counter.ports[0]
        req = b"GET /c000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        _, n0, _, _ = load.counter.snap()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(count):
            # Blocking, without a timeout: Python adds a poll() before each
            # call of a socket that has one.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.connect(("127.0.0.1", port))
                if probe == "http":
                    s.sendall(req)
                    while s.recv(4096):
                        pass
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        # A connection is complete before the server has accepted it.
        deadline = time.monotonic() + 5.0
        while (n1 := load.counter.snap()[1]) - n0 < count and time.monotonic() < deadline:
            time.sleep(0.01)
        if n1 - n0 != count:
            raise RuntimeError(f"the server counted {n1 - n0} of {count} checks")
        return (r1.ru_stime - r0.ru_stime) / count * 1e6
    finally:
        load.close()


def syscalls_markdown(probe, r):
    total = sum(r["calls"].values())
    rows = sorted(r["calls"].items(), key=lambda kv: -kv[1])
    return "\n".join([
        f"System calls of the daemon ({r['checks']} {probe} checks, `strace -c`): "
        f"**{total / r['checks']:.1f} per check**: " + ", ".join(
            f"{name} {c / r['checks']:.2f}" for name, c in rows if c / r["checks"] >= 0.05),
        ""])


def markdown(r):
    per = r["total"] / r["checks"]
    out = [f"### {r['probe']}: {r['n']} checks, every {r['every_ms']} ms",
           "",
           f"{r['checks']} checks counted where they arrived while callgrind counted "
           f"{r['total']:,} instructions: **{per:,.0f} instructions per check**; "
           "calls per check to the allocator: " + ", ".join(
               f"{k} {v / r['checks']:.1f}" for k, v in r["allocs"].items() if v) + ".",
           ""]
    for title, rows in (("inclusive", r["incl"]), ("self", r["self"])):
        out += [f"Top {TOP}, {title} (instructions per check, share of the total):", "",
                "| Ir per check | % | function |", "|---:|---:|---|"]
        out += [f"| {ir / r['checks']:,.0f} | {100 * ir / r['total']:.1f} | {short(fn)} |"
                for ir, fn in rows]
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(DEFAULT_BINARY),
                    help="guardian built with symbols (default: target/prof/release/guardian)")
    ap.add_argument("--probes", default="http,tcp,program",
                    help="comma-separated: http, tcp, program (default: all three)")
    ap.add_argument("--checks", type=int, default=100, help="checks in the job (default 100)")
    ap.add_argument("--every-ms", type=int, default=1000, help="their every (default 1000)")
    ap.add_argument("--count", type=int, default=2000,
                    help="checks counted with the counters on (default 2000)")
    ap.add_argument("--out-dir", default="/tmp/guardian-profile",
                    help="where the callgrind dumps go (default /tmp/guardian-profile)")
    ap.add_argument("--no-strace", action="store_true",
                    help="skip the count of system calls per check (strace -c)")
    ap.add_argument("--output", help="also write the markdown summary here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args()
    probes = [p.strip() for p in args.probes.split(",") if p.strip()]
    if not probes or set(probes) - {"http", "tcp", "program"}:
        ap.error("--probes: choose from http,tcp,program")
    if not 1 <= args.checks <= 999 or args.every_ms < 1 or args.count < 1:
        ap.error("--checks: 1 to 999; --every-ms and --count: positive")
    if not os.path.isfile(args.binary):
        sys.exit(f"profile-checks.py: {args.binary}: no such file (see --help to build it)")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            sys.exit(f"profile-checks.py: {tool} not found (Debian: apt-get install valgrind)")
    os.makedirs(args.out_dir, exist_ok=True)
    md = []
    for p in probes:
        R.log(f"profiling {p}: {args.checks} checks every {args.every_ms} ms, "
              f"{args.count} checks counted")
        r = profile(args.binary, p, args.checks, args.every_ms, args.count, args.out_dir,
                    args.keep)
        text = markdown(r)
        if not args.no_strace and shutil.which("strace"):
            text += "\n" + syscalls_markdown(p, syscalls(args.binary, p, args.checks,
                                                          args.every_ms, args.count,
                                                          args.keep))
        if p != "program":
            text += ("\nThe kernel's share, whoever checks: a minimal blocking client "
                     f"(socket, connect, {'one request, read to the end, ' if p == 'http' else ''}"
                     f"close) on the same server used **{floor(p, args.count, args.keep):.0f} µs "
                     f"of system CPU per check** (this machine, load {C.loadavg()}).\n")
        print(text, flush=True)
        R.log(f"dump: {r['dump']}")
        md.append(text)
    if args.output:
        Path(args.output).write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
