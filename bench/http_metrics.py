#!/usr/bin/env python3
"""/metrics and /api/v1/jobs with N jobs: the median time of an answer.

Starts the guardian binary given (a release build for figures worth quoting) on a
temporary configuration of N `sleep` jobs with [http] on 127.0.0.1, waits until every
job runs, then asks each endpoint R times over one kept-alive connection and prints
the median and the 90th percentile. Loopback adds only some microseconds, so the
times are those of the daemon's answer: one request through its loop, the text made,
written. Also prints the daemon's PSS (from /proc/PID/smaps_rollup).

    python3 bench/http_metrics.py target/release/guardian [--jobs 500] [--rounds 200]
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

TOKEN = "bench-0123456789abcdef0123"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pss_kb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(f"{d}/jobs")
        with open(f"{d}/guardian.toml", "w") as f:
            f.write(f'socket = "{d}/g.sock"\nlog-dir = "{d}/log"\nstate-dir = "{d}/state"\n'
                    f'[http]\nlisten = "127.0.0.1:{port}"\ntokens-file = "tokens"\n')
        with open(f"{d}/tokens", "w") as f:
            f.write(f"read-only {TOKEN}\n")
        for i in range(a.jobs):
            with open(f"{d}/jobs/j{i:04}.toml", "w") as f:
                f.write('exec = "sleep 100000"\n')
        log = open(f"{d}/daemon.log", "w")
        daemon = subprocess.Popen([a.binary, "-c", d], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            conn = None
            deadline = time.time() + 120
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
            print(f"{a.jobs} jobs, {a.rounds} rounds each, daemon PSS {pss_kb(daemon.pid) / 1024:.1f} MB")
            for path in ["/metrics", "/api/v1/jobs"]:
                times = []
                size = 0
                for _ in range(a.rounds):
                    t = time.perf_counter()
                    conn.request("GET", path, headers={"authorization": f"Bearer {TOKEN}"})
                    r = conn.getresponse()
                    size = len(r.read())
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status == 200, r.status
                times.sort()
                p90 = times[int(len(times) * 0.9)]
                print(f"{path:14} median {statistics.median(times):6.2f} ms  p90 {p90:6.2f} ms  ({size} bytes)")
            print(f"daemon PSS after the requests {pss_kb(daemon.pid) / 1024:.1f} MB")
        finally:
            daemon.terminate()
            daemon.wait(timeout=120)


if __name__ == "__main__":
    main()
