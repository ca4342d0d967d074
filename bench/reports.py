#!/usr/bin/env python3
"""How long a report takes, and the delay it adds to a check's restart.

Runs one guardian daemon (the binary given, default target/debug/guardian) on a
temporary configuration with two jobs:

- `web`: tests/fixtures/locked_server.py, its main thread blocked on a lock by
  one request and its accept queue filled, optionally with
  `diagnose = "py-spy dump --pid $MAINPID"` (--py-spy). `guardian diagnose web
  --json` is asked --count times; the report's own `took_ms` is collected.
- `flap`: `sleep`, with a tcp check on a port nothing listens on (every
  300ms, action restart): every run fails, so the job is restarted again and
  again. For each restart the daemon's log gives the moment the check acted
  ("...; restart") and the moment the report was taken, after which the
  restart goes on in the same turn of the loop: the difference is the delay the
  report added to the restart.

Python 3 standard library only. Prints a markdown table; --output writes it.

  python3 bench/reports.py --count 20 --restarts 10 [--py-spy] [--bin PATH]
"""

import argparse
import datetime
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, cond, deadline=30.0):
    start = time.time()
    while not cond():
        if time.time() - start > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


def stamp(line):
    t = line.split(" ", 1)[0]
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def stats(xs):
    xs = sorted(xs)
    if not xs:
        return "-", "-", "-"
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    return f"{statistics.median(xs):.0f}", f"{p95:.0f}", f"{xs[-1]:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/guardian"))
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--py-spy", action="store_true")
    ap.add_argument("--output")
    a = ap.parse_args()

    d = tempfile.mkdtemp(prefix="grep")
    os.chmod(d, 0o700)
    os.makedirs(f"{d}/jobs")
    with open(f"{d}/guardian.toml", "w") as f:
        f.write('socket = "run/g.sock"\nlog-dir = "log"\nstate-dir = "state"\nreport-keep = 1000\n')
    port, closed = free_port(), free_port()
    spy = ""
    if a.py_spy:
        scripts = subprocess.run(
            [sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('scripts'))"],
            capture_output=True, text=True).stdout.strip()
        spy = f'diagnose = "{scripts}/py-spy dump --pid $MAINPID"\n'
    with open(f"{d}/jobs/web.toml", "w") as f:
        f.write(f'exec = "{sys.executable} -u {ROOT}/tests/fixtures/locked_server.py {port}"\n{spy}'
                f'[ready]\ntype = "tcp"\nport = {port}\n')
    with open(f"{d}/jobs/flap.toml", "w") as f:
        f.write(f'exec = "sleep 1000"\nrestart-limit = "unlimited"\n'
                f'[[check]]\ntype = "tcp"\nport = {closed}\nevery = "300ms"\n')
    for root, dirs, files in os.walk(d):
        for n in files:
            os.chmod(os.path.join(root, n), 0o644)
    log = open(f"{d}/daemon.log", "w")
    daemon = subprocess.Popen([a.bin, "-c", d], stdout=log, stderr=log,
                              env=dict(os.environ, GUARDIAN_LOG="info"))
    cli = lambda *args: subprocess.run([a.bin, "-c", d, *args], capture_output=True, text=True)
    try:
        wait("the daemon", lambda: cli("status", "web", "--json").returncode == 0
             and json.loads(cli("status", "web", "--json").stdout)["state"] == "running")
        held = socket.create_connection(("127.0.0.1", port))
        held.sendall(b"GET /slow HTTP/1.0\r\n\r\n")
        queued = []
        for _ in range(8):
            try:
                queued.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
            except OSError:
                pass
        took = []
        for _ in range(a.count):
            r = json.loads(cli("diagnose", "web", "--json").stdout)
            took.append(r["took_ms"])
        text = lambda: open(f"{d}/daemon.log").read()
        wait("the restarts", lambda: text().count("flap: report taken") >= a.restarts,
             deadline=30 + a.restarts * 5)
        lines = text().splitlines()
        acted = [stamp(l) for l in lines if "flap: check tcp failed" in l and l.endswith("; restart")]
        taken = [stamp(l) for l in lines if "flap: report taken" in l]
        report_ms = [float(re.search(r"report taken in (\d+) ms", l).group(1))
                     for l in lines if "flap: report taken" in l]
        delays = [(t - s) * 1000 for s, t in zip(acted, taken)]
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    rows = [
        ("`diagnose` on a locked server" + (" with py-spy" if a.py_spy else ""), *stats(took), len(took)),
        ("report before a check's restart", *stats(report_ms), len(report_ms)),
        ("delay it added to the restart", *stats(delays), len(delays)),
    ]
    out = [f"guardian reports: {a.bin}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
           f"{os.uname().release}, {os.cpu_count()} cores", "",
           "| What | median ms | p95 ms | max ms | n |", "|---|---|---|---|---|"]
    out += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |" for r in rows]
    print("\n".join(out))
    if a.output:
        with open(a.output, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
