#!/usr/bin/env python3
"""/metrics, /api/v1/jobs and the status page with N jobs: the median time of an answer.

Starts the guardian binary given (a release build for figures worth quoting) on a
temporary configuration of N `sleep` jobs with [http] on 127.0.0.1, waits until every
job runs, then asks each endpoint R times over one kept-alive connection and prints
the median and the 90th percentile. Loopback adds only some microseconds, so the
times are those of the daemon's answer: one request through its loop, the text made,
written; and the daemon's CPU time a request (from /proc/PID/stat, 10 ms ticks
over all the rounds), which the load of a shared machine disturbs less. The status page (`/`, and `/?part=live`, what its script asks for every two
seconds) is asked for by an admin logged in through the form: the heaviest page, with
every row's buttons. Then one job's configuration (`/api/v1/jobs/j0000/config`, a
read-only token) and its page (`/jobs/j0000`, which shows the configuration). Also
prints the daemon's PSS (from /proc/PID/smaps_rollup).

    python3 bench/http_metrics.py target/release/guardian [--jobs 500] [--rounds 200] [--groups 0]

With --callgrind the daemon runs under valgrind's callgrind instead, and what is
printed is the instructions the daemon executed per request (its counters zeroed once
the jobs run, dumped after the requests of each endpoint): a figure that does not
move with the machine's load, as wall time does on a shared machine.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

TOKEN = "bench-0123456789abcdef0123"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rollup(pid):
    """Pss, Pss_Anon and Pss_File of /proc/PID/smaps_rollup, in kB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Pss", "Pss_Anon", "Pss_File"):
                out[k] = int(v.split()[0])
    return out


def pss(pid):
    r = rollup(pid)
    return (f"{r.get('Pss', 0) / 1024:.1f} MB (anon {r.get('Pss_Anon', 0) / 1024:.1f}, "
            f"file {r.get('Pss_File', 0) / 1024:.1f})")


def instructions(d, pid):
    """Dumps callgrind's counters and zeroes them: the instructions since the last."""
    before = set(os.listdir(d))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        new = [f for f in set(os.listdir(d)) - before if f.startswith("cg.out")]
        for f in new:
            with open(f"{d}/{f}") as fh:
                for line in fh:
                    if line.startswith("totals:") or line.startswith("summary:"):
                        return int(line.split()[1])
        time.sleep(0.2)
    sys.exit("callgrind wrote no dump")


def callgrind(a, d, pid, conn):
    instructions(d, pid)  # what starting took: left out
    print(f"{a.jobs} jobs, {a.rounds} rounds each, under callgrind")
    for path in ["/metrics", "/api/v1/jobs"]:
        for _ in range(a.rounds):
            conn.request("GET", path, headers={"authorization": f"Bearer {TOKEN}"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
        n = instructions(d, pid)
        print(f"{path:14} {n / a.rounds / 1e6:8.2f} M instructions a request (daemon, all threads)")


def cpu_ms(pid):
    """The daemon's CPU time so far (user + system), in milliseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--groups", type=int, default=0,
                    help="put the jobs in this many groups (the overview gets a row of buttons each)")
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per request under callgrind, not times")
    a = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(f"{d}/jobs")
        with open(f"{d}/guardian.toml", "w") as f:
            f.write(f'socket = "{d}/g.sock"\nlog-dir = "{d}/log"\nstate-dir = "{d}/state"\n'
                    f'[http]\nlisten = "127.0.0.1:{port}"\ntokens-file = "tokens"\nusers-file = "users"\n')
        with open(f"{d}/tokens", "w") as f:
            f.write(f"read-only {TOKEN}\n")
        subprocess.run([a.binary, "-c", d, "passwd", "bench", "--role", "admin", "--file", f"{d}/users"],
                       input=b"bench-pw\n", check=True, capture_output=True)
        for i in range(a.jobs):
            with open(f"{d}/jobs/j{i:04}.toml", "w") as f:
                groups = f'groups = ["g{i % a.groups}"]\n' if a.groups else ""
                f.write(f'{groups}exec = "sleep 100000"\n')
        log = open(f"{d}/daemon.log", "w")
        cmd = [a.binary, "-c", d]
        if a.callgrind:
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out.%p"] + cmd
        daemon = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            conn = None
            deadline = time.time() + (600 if a.callgrind else 120)
            while time.time() < deadline:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("GET", "/api/v1/jobs", headers={"authorization": f"Bearer {TOKEN}"})
                    r = conn.getresponse()
                    jobs = json.loads(r.read())["jobs"]
                    if sum(j["state"] == "running" for j in jobs) == a.jobs:
                        break
                except (OSError, ValueError, KeyError, http.client.HTTPException):
                    conn = None
                time.sleep(0.2)
            else:
                sys.exit("the jobs did not all start")
            time.sleep(2)
            if a.callgrind:
                callgrind(a, d, daemon.pid, conn)
                return
            print(f"{a.jobs} jobs, {a.rounds} rounds each, load {os.getloadavg()[0]:.2f}, daemon PSS {pss(daemon.pid)}")
            form = urllib.parse.urlencode({"user": "bench", "password": "bench-pw"})
            conn.request("POST", "/login", body=form,
                         headers={"content-type": "application/x-www-form-urlencoded"})
            r = conn.getresponse()
            r.read()
            assert r.status == 303, r.status
            cookie = r.getheader("set-cookie").split(";")[0]
            token = {"authorization": f"Bearer {TOKEN}"}
            session = {"cookie": cookie}
            for path, headers in [("/metrics", token), ("/api/v1/jobs", token),
                                  ("/", session), ("/?part=live", session),
                                  ("/api/v1/jobs/j0000/config", token),
                                  ("/jobs/j0000", session)]:
                times = []
                size = 0
                cpu_before = cpu_ms(daemon.pid)
                for _ in range(a.rounds):
                    t = time.perf_counter()
                    conn.request("GET", path, headers=headers)
                    r = conn.getresponse()
                    size = len(r.read())
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status == 200, r.status
                times.sort()
                p90 = times[int(len(times) * 0.9)]
                cpu = (cpu_ms(daemon.pid) - cpu_before) / a.rounds
                print(f"{path:26} median {statistics.median(times):6.2f} ms  p90 {p90:6.2f} ms  "
                      f"daemon CPU {cpu:5.2f} ms a request  ({size} bytes)")
            print(f"daemon PSS after the requests {pss(daemon.pid)}")
        finally:
            daemon.terminate()
            daemon.wait(timeout=120)


if __name__ == "__main__":
    main()
