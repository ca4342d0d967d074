#!/usr/bin/env python3
"""Lay out conf/django under one directory, to run the stack on this machine.

    python3 conf/django/local.py ROOT [--port NAME=PORT ...]
    guardian -c ROOT

conf/django is written for a host: the project in /srv/proj, sockets and pid
files under /run, logs and data under /var, the standard ports. This script
copies its guardian.toml and job files into ROOT with two rewrites and nothing
else:

- every path under /srv/, /run/ or /var/ is moved under ROOT (/srv/proj becomes
  ROOT/srv/proj, /var/lib/redis becomes ROOT/var/lib/redis);
- each of the stack's ports (Redis 6379, uWSGI 8000, the async server 8001,
  Flower 5555, nginx 80) becomes a free port of this machine, or the one given
  with --port.

Programs and read-only files (/usr/bin/redis-server, /etc/redis/redis.conf,
/etc/nginx/mime.types, ...) are left as they are. The project, conf/django/app,
is copied to ROOT/srv/proj (its deploy/nginx.conf with the same rewrites), and
ROOT/srv/proj/venv, the project's virtualenv on the host, is made a virtualenv of
Debian's /usr/bin/python3 that sees the packages installed for it
(python3 -m venv --system-site-packages --without-pip).

The script refuses a ROOT that is not empty, and checks that every port is still
used by the files, so that a changed job file fails here rather than running on
the host's port.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The stack's ports on the host, by name.
PORTS = {"redis": 6379, "django": 8000, "asyncserver": 8001, "flower": 5555, "nginx": 80}

# Paths the stack writes or creates on a host; moved under ROOT.
HOST_PATH = re.compile(r"(?<![\w./-])/(?=(?:srv|run|var)/)")

# The interpreter of the virtualenv. uWSGI's python3 plugin embeds the distribution's
# libpython, and loads the virtualenv's standard library and packages into it: they
# must be that Python's, so the virtualenv is made from it, as on a Debian host.
PYTHON = "/usr/bin/python3"

# The Python packages the stack's jobs import.
MODULES = ["django", "celery", "redis", "flower"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_pattern(port):
    # The number alone, not part of a longer number, a version or a size.
    return re.compile(r"(?<![\w.])%d(?![\w.%%])" % port)


def rewrite(text, root, ports):
    text = HOST_PATH.sub(root.rstrip("/") + "/", text)
    for name, port in PORTS.items():
        text = port_pattern(port).sub(str(ports[name]), text)
    return text


def uncommented(text):
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def fail(msg):
    sys.exit(f"local.py: {msg}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="an empty or new directory for the whole stack")
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="a port for %s (default: a free one)" % ", ".join(PORTS),
    )
    p.add_argument(
        "--python",
        default=PYTHON,
        help="the Python of the virtualenv (default %(default)s, the one that Debian's "
        "uwsgi-plugin-python3 embeds)",
    )
    p.add_argument("--json", action="store_true", help="print the layout as JSON")
    return p.parse_args()


def main():
    args = parse_args()
    root = os.path.abspath(args.root)
    ports = {}
    for given in args.port:
        name, _, value = given.partition("=")
        if name not in PORTS or not value.isdigit() or not 0 < int(value) < 65536:
            fail(f"--port {given!r}: expected NAME=PORT with NAME one of {', '.join(PORTS)}")
        ports[name] = int(value)
    for name in PORTS:
        ports.setdefault(name, free_port())
    if len(set(ports.values())) != len(ports):
        fail(f"two services on one port: {ports}")

    if not os.access(args.python, os.X_OK):
        fail(f"{args.python}: no such Python (--python names another)")

    os.makedirs(root, exist_ok=True)
    if os.listdir(root):
        fail(f"{root} is not empty")
    # Linux limits a socket's path to 107 bytes.
    if len(os.path.join(root, "run/guardian.sock")) > 107:
        fail(f"{root} is too long a path for the control socket")

    # guardian.toml and the job files, each checked for what it should contain.
    found = {name: False for name in PORTS}
    os.makedirs(os.path.join(root, "jobs"))
    sources = [("guardian.toml", "guardian.toml")]
    for f in sorted(os.listdir(os.path.join(HERE, "jobs"))):
        if f.endswith(".toml"):
            sources.append((os.path.join("jobs", f), os.path.join("jobs", f)))
    sources.append(
        (os.path.join("app", "deploy", "nginx.conf"), os.path.join("srv", "proj", "deploy", "nginx.conf"))
    )
    shutil.copytree(os.path.join(HERE, "app"), os.path.join(root, "srv", "proj"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "venv"))
    for src, dst in sources:
        with open(os.path.join(HERE, src), encoding="utf-8") as f:
            text = f.read()
        for name, port in PORTS.items():
            if port_pattern(port).search(uncommented(text)):
                found[name] = True
        with open(os.path.join(root, dst), "w", encoding="utf-8") as f:
            f.write(rewrite(text, root, ports))
    lost = [f"{n} ({PORTS[n]})" for n, ok in found.items() if not ok]
    if lost:
        fail(f"no job file uses the port of {', '.join(lost)}: update PORTS in {__file__}")

    # What the jobs expect to exist, as on a host: the directories the
    # distribution's packages create, and the project's virtualenv.
    for d in ["run", "var/log", "var/lib"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    venv = os.path.join(root, "srv", "proj", "venv")
    made = subprocess.run(
        [args.python, "-m", "venv", "--system-site-packages", "--without-pip", venv],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        fail(f"cannot make the virtualenv {venv}:\n{made.stderr}")
    py = os.path.join(venv, "bin", "python")
    check = subprocess.run([py, "-c", "import " + ", ".join(MODULES)], capture_output=True, text=True)
    if check.returncode != 0:
        fail(
            f"{args.python} lacks a module of the stack ({', '.join(MODULES)}); install them "
            f"as .ci/run does:\n  {args.python} -m pip install --break-system-packages "
            f"django celery[redis] flower\n{check.stderr.strip()}"
        )

    layout = {
        "root": root,
        "config": root,
        "socket": os.path.join(root, "run", "guardian.sock"),
        "ports": ports,
        "python": py,
    }
    if args.json:
        print(json.dumps(layout))
    else:
        print(f"The Django stack is laid out in {root}. Run it with\n")
        print(f"  guardian -c {root}\n")
        print(f"Then, through nginx on 127.0.0.1:{ports['nginx']}:\n")
        base = f"http://127.0.0.1:{ports['nginx']}"
        print(f"  curl -H 'Host: www.example.com' -d x=2 -d y=3 {base}/tasks/")
        print(f"  curl -H 'Host: www.example.com' {base}/tasks/ID/")
        print(f"  curl -N {base}/events")
        print(f"\nFlower: http://127.0.0.1:{ports['flower']}/")


if __name__ == "__main__":
    main()
