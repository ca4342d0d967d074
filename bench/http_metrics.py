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
every row's buttons. Also prints the daemon's PSS (from /proc/PID/smaps_rollup).

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
import urllib.parse

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
                                  ("/", session), ("/?part=live", session)]:
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
                print(f"{path:14} median {statistics.median(times):6.2f} ms  p90 {p90:6.2f} ms  "
                      f"daemon CPU {cpu:5.2f} ms a request  ({size} bytes)")
            print(f"daemon PSS after the requests {pss_kb(daemon.pid) / 1024:.1f} MB")
        finally:
            daemon.terminate()
            daemon.wait(timeout=120)


if __name__ == "__main__":
    main()
