#!/usr/bin/env python3
"""Chaos soak: guardian under jobs that die, jobs that freeze, and a daemon that is
re-executed and killed.

For --minutes (10 by default), with --jobs jobs (50):
  - every 100 ms one job's main process, chosen at random, is killed with SIGKILL or
    frozen with SIGSTOP (and thawed with SIGCONT 0.5 to 2 s later);
  - every 30 s the daemon is re-executed (`guardian reexec`, or SIGUSR2 every other
    time);
  - every 2 minutes the daemon is killed with SIGKILL and started again;
  - once a second, /proc is sampled.

One job numbers its lines (and is never killed): at the end every number it wrote
must be in its log once, in order. Printed at the end: deaths caused, restarts seen,
processes running twice at any sample, zombies (a child of the daemon left unreaped
over two samples), numbered lines lost, reexec and restart counts and times, the
daemon's descriptors and RSS at start and end. Exits 1 if any of the counts that must
be 0 is not.

Standard library only. Run as root (the daemon's cgroups), from the repository:
    cargo build --release && bench/chaos.py --minutes 10
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
NUMBERED = "numbered"


def marked_processes():
    """Every live process with a GUARDIAN_JOB mark: pid -> (job, ppid, state)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        job = None
        for kv in env.split(b"\0"):
            if kv.startswith(b"GUARDIAN_JOB="):
                job = kv[len(b"GUARDIAN_JOB="):].decode(errors="replace")
                break
        if job is None:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[pid] = (job, int(fields[1]), fields[0])
    return out


def children_zombies(parent):
    """The zombie children of `parent`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == parent:
            found.add(int(entry))
    return found


def daemon_figures(pid):
    """(descriptors, pidfds among them, RSS in kB) of the daemon. A job adopted after
    the daemon's kill -9 is watched through a pidfd until its process ends."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
        fds = len(names)
        pidfds = 0
        for n in names:
            try:
                if os.readlink(f"/proc/{pid}/fd/{n}") == "anon_inode:[pidfd]":
                    pidfds += 1
            except OSError:
                pass
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return fds, pidfds, rss
    except (OSError, StopIteration):
        return None, None, None


class Soak:
    def __init__(self, args):
        self.args = args
        self.bin = str(Path(args.bin).resolve())
        self.dir = Path(tempfile.mkdtemp(prefix="guardian-chaos-"))
        os.chmod(self.dir, 0o755)
        (self.dir / "jobs").mkdir()
        (self.dir / "guardian.toml").write_text(
            'socket = "run/g.sock"\nlog-dir = "log"\nstate-dir = "state"\n'
        )
        self.names = [f"chaos-{i:02d}" for i in range(args.jobs - 1)]
        for name in self.names:
            (self.dir / "jobs" / f"{name}.toml").write_text(
                'exec = "sleep 100000"\nrespawn = true\n'
                'respawn-limit = "unlimited"\n'
                'respawn-delay = { initial = "10ms", max = "100ms", stable = "1s" }\n'
                'kill-timeout = "1s"\n'
            )
        self.last_file = self.dir / "numbered.last"
        (self.dir / "jobs" / f"{NUMBERED}.toml").write_text(
            "exec = \"sh -c 'i=0; while true; do i=$((i+1)); echo $i; echo $i > "
            + str(self.last_file)
            + "; sleep 0.01; done'\"\nrespawn = true\n"
        )
        self.daemon = None
        self.log = open(self.dir / "daemon.log", "ab")
        self.deaths = 0
        self.freezes = 0
        self.twice = 0
        self.twice_seen = []
        self.zombies = 0
        self.reexecs = []
        self.reexec_failures = []
        self.crashes = []
        self.client_failures = 0
        self.frozen = {}
        self.last_zombies = set()
        self.samples = 0

    def cli(self, *args, timeout=60):
        return subprocess.run(
            [self.bin, "-c", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if k != "GUARDIAN_SOCKET"},
        )

    def start_daemon(self):
        env = dict(os.environ)
        env["GUARDIAN_LOG"] = "info"
        self.daemon = subprocess.Popen(
            [self.bin, "-c", str(self.dir)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            env=env,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            r = self.cli("summary", "--json")
            if r.returncode == 0:
                jobs = json.loads(r.stdout)["jobs"]
                if all(j["state"] == "running" for j in jobs):
                    return
            time.sleep(0.1)
        raise SystemExit("the daemon did not bring every job up within 60 s")

    def status(self):
        r = self.cli("summary", "--json", timeout=30)
        if r.returncode != 0:
            self.client_failures += 1
            print(f"  summary failed: {r.stderr.strip()}", file=sys.stderr)
            return None
        return {j["name"]: j for j in json.loads(r.stdout)["jobs"]}

    def strike(self, jobs):
        name = random.choice(self.names)
        j = jobs.get(name)
        if not j or j["state"] != "running" or not j["pid"]:
            return
        pid = j["pid"]
        if pid in self.frozen:
            return
        try:
            if random.random() < 0.7:
                os.kill(pid, signal.SIGKILL)
                self.deaths += 1
            else:
                os.kill(pid, signal.SIGSTOP)
                self.frozen[pid] = time.time() + random.uniform(0.5, 2.0)
                self.freezes += 1
        except ProcessLookupError:
            pass

    def thaw(self, everything=False):
        now = time.time()
        for pid, at in list(self.frozen.items()):
            if everything or at <= now:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                del self.frozen[pid]

    def sample(self):
        self.samples += 1
        procs = marked_processes()
        mains = {}
        ours = set(self.names) | {NUMBERED}
        for pid, (job, ppid, state) in procs.items():
            if state == "Z" or job not in ours:
                continue
            parent = procs.get(ppid)
            if parent and parent[0] == job:
                continue
            mains.setdefault(job, []).append(pid)
        for job, pids in mains.items():
            if len(pids) > 1:
                self.twice += 1
                self.twice_seen.append((job, pids))
        z = children_zombies(self.daemon.pid)
        lasting = z & self.last_zombies
        self.zombies += len(lasting)
        self.last_zombies = z

    def reexec(self, n):
        t = time.time()
        if n % 2 == 0:
            r = self.cli("reexec")
            ok = r.returncode == 0
            if not ok:
                self.reexec_failures.append(r.stderr.strip())
        else:
            before = self.cli("status", NUMBERED).returncode
            os.kill(self.daemon.pid, signal.SIGUSR2)
            ok = before == 0
            time.sleep(0.2)
        self.reexecs.append(time.time() - t)
        return ok

    def crash(self):
        t = time.time()
        self.daemon.kill()
        self.daemon.wait()
        self.start_daemon()
        self.crashes.append(time.time() - t)

    def restarts_total(self):
        jobs = self.status() or {}
        return sum(j["restarts"] for n, j in jobs.items() if n != NUMBERED)

    def numbered_lost(self):
        text = (self.dir / "log" / f"{NUMBERED}.log").read_text()
        got = [l.strip() for l in text.splitlines() if l.strip()]
        last = int(self.last_file.read_text().strip())
        expected = [str(i) for i in range(1, last + 1)]
        wrong = 0
        for i, (a, b) in enumerate(zip(got, expected)):
            if a != b:
                print(f"  numbered: line {i + 1} is {a!r}, not {b!r}", file=sys.stderr)
                wrong = 1
                break
        return max(0, last - len(got)) + wrong, last, len(got)

    def run(self):
        args = self.args
        self.start_daemon()
        time.sleep(2)
        fd0, pfd0, rss0 = daemon_figures(self.daemon.pid)
        start = time.time()
        end = start + args.minutes * 60
        next_reexec = start + args.reexec_every
        next_crash = start + args.crash_every
        next_sample = start
        n_reexec = 0
        jobs = self.status() or {}
        last_status = time.time()
        while time.time() < end:
            now = time.time()
            if now - last_status > 0.5:
                jobs = self.status() or jobs
                last_status = now
            self.strike(jobs)
            self.thaw()
            if now >= next_sample:
                self.sample()
                next_sample = now + 1
            if now >= next_crash:
                self.thaw(everything=True)
                self.crash()
                next_crash = time.time() + args.crash_every
                next_reexec = max(next_reexec, time.time() + 5)
            elif now >= next_reexec:
                self.reexec(n_reexec)
                n_reexec += 1
                next_reexec = time.time() + args.reexec_every
            time.sleep(args.interval)
        self.thaw(everything=True)
        # Let every job come back, then the last figures.
        deadline = time.time() + 30
        while time.time() < deadline:
            jobs = self.status() or {}
            if jobs and all(j["state"] == "running" for j in jobs.values()):
                break
            time.sleep(0.2)
        for _ in range(3):
            self.sample()
            time.sleep(1)
        fd1, pfd1, rss1 = daemon_figures(self.daemon.pid)
        restarts = self.restarts_total()
        self.daemon.terminate()
        self.daemon.wait(timeout=60)
        lost, last, logged = self.numbered_lost()
        return {
            "minutes": args.minutes,
            "jobs": args.jobs,
            "deaths caused": self.deaths,
            "freezes": self.freezes,
            "restarts seen": restarts,
            "running twice (samples)": self.twice,
            "zombies (lasting a sample)": self.zombies,
            "numbered lines lost": lost,
            "numbered lines written": last,
            "numbered lines logged": logged,
            "samples": self.samples,
            "reexecs": len(self.reexecs),
            "reexec failures": len(self.reexec_failures),
            "reexec time max (s)": round(max(self.reexecs, default=0), 3),
            "kill -9 + restarts": len(self.crashes),
            "restart time max (s)": round(max(self.crashes, default=0), 3),
            "summary calls failed": self.client_failures,
            "daemon fds start/end": f"{fd0} / {fd1}",
            "  of them pidfds (adopted jobs)": f"{pfd0} / {pfd1}",
            "daemon RSS kB start/end": f"{rss0} / {rss1}",
            "twice": self.twice_seen[:5],
            "reexec errors": self.reexec_failures[:5],
        }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--reexec-every", type=float, default=30)
    p.add_argument("--crash-every", type=float, default=120)
    p.add_argument("--bin", default=str(REPO_DIR / "target/release/guardian"))
    p.add_argument("--keep", action="store_true", help="keep the directory")
    args = p.parse_args()
    soak = Soak(args)
    try:
        figures = soak.run()
    finally:
        if soak.daemon and soak.daemon.poll() is None:
            soak.daemon.kill()
        if not args.keep:
            shutil.rmtree(soak.dir, ignore_errors=True)
        else:
            print(f"kept {soak.dir}")
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")
    bad = (
        figures["running twice (samples)"]
        or figures["zombies (lasting a sample)"]
        or figures["numbered lines lost"]
        or figures["reexec failures"]
        or figures["summary calls failed"]
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
