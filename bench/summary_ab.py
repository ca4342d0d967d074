#!/usr/bin/env python3
"""`guardian summary` at N jobs (default 2,000), two builds back to back.

    python3 bench/summary_ab.py BEFORE AFTER [--jobs N] [--runs R] [--rounds K]

For each round, each binary in turn: a daemon of that binary with N sleeping jobs
(bench/run.py's scale jobs), started and waited for until every job runs, then
R x `guardian summary` of the same binary, timed as the user sees it (wall, from
spawn to exit), with the CPU time each took in the client and in the daemon (which a
loaded machine changes far less than the wall time). Also, once per daemon: the bytes of the answers to `summary` and to
`status` (as read off the control socket), and the table that the *other* binary's
client prints against this daemon, which must be the same rows (an older client
against a newer daemon, and a newer client falling back to `status` against an
older daemon). Prints the medians per binary and the load at start and end.
"""

import argparse
import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  bench/run.py: its Daemon and job files


def frame(sock, obj):
    body = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise RuntimeError("closed")
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = bytearray()
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            raise RuntimeError("closed in a frame")
        body += chunk
    return bytes(body)


def answer_bytes(d, request):
    """The size of the daemon's answer to `request` (a fresh connection each)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(os.path.join(d.dir, "guardian.sock"))
        frame(s, {"request": "hello", "version": 1})
        return len(frame(s, request))


def rows(text):
    """The table's rows, without the columns that change between two calls."""
    out = []
    for line in text.splitlines()[1:]:
        cells = line.split()
        out.append(cells[:5] + cells[8:])
    return out


def cli(binary, d, *args):
    return subprocess.run([binary, "-c", d.dir, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=run.clean_env(),
                          timeout=run.CLI_TIMEOUT)


def one(binary, other, njobs, runs):
    d = run.Daemon(binary, njobs)
    with d:
        d.start()
        d.wait_running(njobs, run.scale_timeout(njobs))
        time.sleep(run.SETTLE_SECS)
        mine = cli(binary, d, "summary")
        theirs = cli(other, d, "summary")
        for r in (mine, theirs):
            if r.returncode != 0:
                raise RuntimeError(f"summary exited {r.returncode}: {r.stderr.strip()}")
        if rows(mine.stdout) != rows(theirs.stdout) or len(rows(mine.stdout)) != njobs:
            raise RuntimeError("the two clients' tables differ")
        sizes = {"status": answer_bytes(d, {"request": "status", "job": None}),
                 "summary": answer_bytes(d, {"request": "summary"})}
        times = []
        ticks0 = daemon_ticks(d.pid)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(runs):
            t = time.perf_counter()
            r = cli(binary, d, "summary")
            times.append((time.perf_counter() - t) * 1000)
            if r.returncode != 0:
                raise RuntimeError(f"summary exited {r.returncode}")
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks = daemon_ticks(d.pid) - ticks0
        cpu = {"client": (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)
               * 1000 / runs,
               "daemon": ticks * 1000 / os.sysconf("SC_CLK_TCK") / runs}
        return times, sizes, cpu


def daemon_ticks(pid):
    """The daemon's CPU time (user + system, every thread), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--jobs", type=int, default=run.SCALE_JOBS)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"load at start: {os.getloadavg()}")
    times = {"before": [], "after": []}
    cpus = {"before": [], "after": []}
    for k in range(args.rounds):
        for name, binary, other in (("before", args.before, args.after),
                                    ("after", args.after, args.before)):
            t, sizes, cpu = one(binary, other, args.jobs, args.runs)
            times[name] += t
            cpus[name].append(cpu)
            print(f"round {k + 1} {name}: median {statistics.median(t):.1f} ms, "
                  f"min {min(t):.1f}, max {max(t):.1f}; CPU per summary: client "
                  f"{cpu['client']:.1f} ms, daemon {cpu['daemon']:.1f} ms; answer bytes "
                  f"{sizes}; load {os.getloadavg()[0]:.2f}", flush=True)
    for name, t in times.items():
        c = cpus[name]
        client = statistics.mean(x["client"] for x in c)
        daemon = statistics.mean(x["daemon"] for x in c)
        print(f"{name}: median of {len(t)} x summary at {args.jobs} jobs: "
              f"{statistics.median(t):.1f} ms wall (min {min(t):.1f}, max {max(t):.1f}); "
              f"CPU per summary: client {client:.1f} ms, daemon {daemon:.1f} ms")
    print(f"load at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
