"""FRR (zebra + ospfd) for one lab node: ``python -m mipro.lab.frr DIR CONF``.

Several FRR instances on one host, one per network namespace: each gets a path
space of its own (``-N``) and every path under ``DIR`` (pid files, the zebra API
socket ``-z``, the vty sockets ``--vty_socket``, logs), no TCP vty (``-P 0``).
The daemons run as user frr, which may not traverse the lab's directories (a test's are
root's alone): DIR is a link to a directory of frr's under /tmp, removed on exit.
They stay in the foreground, children of this process; SIGTERM to the process
group (what the lab sends) stops them.  vtysh reaches them with
``vtysh --vty_socket DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FRR = Path("/usr/lib/frr")
DAEMONS = ("zebra", "ospfd")


def command(daemon: str, run: Path, name: str) -> list[str]:
    return [str(FRR / daemon), "-N", name, "-f", str(run / "frr.conf"),
            "-i", str(run / f"{daemon}.pid"), "-z", str(run / "zserv.api"),
            "--vty_socket", str(run), "-P", "0", "-u", "frr", "-g", "frr",
            "--log", f"file:{run / daemon}.log", "--log-level", "info"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dir", type=Path, help="run directory of this instance")
    p.add_argument("conf", type=Path, help="frr.conf (zebra's and ospfd's parts)")
    a = p.parse_args()
    if not (FRR / "zebra").exists():
        print("FRR is not installed (Debian package frr)", file=sys.stderr)
        return 1
    # a path space per instance: two labs may run at once
    name = "mipro-" + hashlib.sha256(str(a.dir.absolute()).encode()).hexdigest()[:10]
    real = Path(tempfile.gettempdir()) / f"{name}-frr"
    shutil.rmtree(real, ignore_errors=True)
    real.mkdir(mode=0o755)
    shutil.copy(a.conf, real / "frr.conf")
    frr = pwd.getpwnam("frr")
    for path in (real, real / "frr.conf"):
        os.chown(path, frr.pw_uid, frr.pw_gid)
    if a.dir.is_symlink() or a.dir.exists():
        a.dir.unlink()
    a.dir.parent.mkdir(parents=True, exist_ok=True)
    a.dir.symlink_to(real)
    try:
        return run(real, name)
    finally:
        a.dir.unlink(missing_ok=True)
        shutil.rmtree(real, ignore_errors=True)


def run(run_dir: Path, name: str) -> int:
    procs: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for daemon in DAEMONS:
        procs.append(subprocess.Popen(command(daemon, run_dir, name)))
        if daemon == "zebra":  # the others connect to its API socket
            deadline = time.monotonic() + 10
            while not (run_dir / "zserv.api").exists() and time.monotonic() < deadline:
                if procs[0].poll() is not None:
                    return procs[0].returncode or 1
                time.sleep(0.05)
    print(f"frr: {', '.join(DAEMONS)} up in {run_dir}", flush=True)
    while all(proc.poll() is None for proc in procs):
        time.sleep(0.2)
    stop()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
