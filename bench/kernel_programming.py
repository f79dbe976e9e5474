#!/usr/bin/env python3
"""Kernel programming cost per binding at the HA (issue 7 benchmark), kernel backend.

In a namespace, HaDataplane(backend="kernel") installs bindings with distinct
care-of addresses.  `--tunnels per-care-of`: an ipip link each (brought up,
rp_filter off), a route in mipro's table and a proxy ARP entry.  `--tunnels
shared`: one collect-metadata ipip link for all, a lightweight-tunnel route
(`encap ip dst <care-of>`) and a proxy ARP entry per binding, plus the
care-of address in the admission ipset.  `--proxy-arp interface`: no proxy
entries (the home link's sysctl answers).  Measured per binding for a batch
of 100 when N bindings are present, against `ip -batch` of the same objects
for 100 more bindings at the same N, in the same run.  Needs a kernel with
ipip (`tests/kernel/runner.py --exec`).

`--restart N`: the home agent's start-up with N bindings to reinstall
(userspace backend, proxy ARP per interface: routes only, as
`bench/registration.py --restart` with `userspace:interface`), timed by
step: start() (which clears what an earlier run left), the bindings in
slices of 2,048 as the daemon's reinstall sends them, stop().  After a clean
stop the table is empty; `--killed` leaves the N routes in the kernel, as a
kill -9 would, for the next start to clean up.  `--trees before=DIR,...`
runs other source trees in the same run, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

# --trees: the tree under test first on the path (PYTHONPATH would come after this file's)
sys.path.insert(0, os.environ.get("KPROG_TREE") or str(Path(__file__).resolve().parents[1]))

NS = os.environ.get("KPROG_NS", "mbench-kprog")
BATCH = 100


def sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, input=stdin, text=True, check=True, capture_output=True)


def binding(i: int):
    from mipro.core.bindings import Binding

    home = IPv4Address(int(IPv4Address("10.128.0.0")) + i)
    coa = IPv4Address(int(IPv4Address("100.64.0.0")) + i)
    return Binding(home, coa, IPv4Address("10.128.0.1"), 600, time.time() + 600, time.time(),
                   1, "ipip", True)


def inner(sizes: list[int], tunnels: str, proxy_arp: str) -> None:
    from mipro.dataplane.ha import HaDataplane

    async def run() -> None:
        dp = HaDataplane(backend="kernel", address=IPv4Address("172.31.9.1"),
                         home_interface="home0", home_network=IPv4Network("10.128.0.0/10"),
                         table=434, rule_priority=1000, tunnel_interface="mip0",
                         log=lambda *a, **k: None, kernel_tunnels=tunnels, proxy_arp=proxy_arp)
        await dp.start(None)
        assert bool(dp.shared) == (tunnels == "shared"), "shared links unavailable"
        present = 0
        print(f"tunnels {tunnels}, proxy ARP {proxy_arp}")
        print(f"{'bindings':>9} {'mipro ms/binding':>17} {'ip -batch ms/binding':>21} "
              f"{'ratio':>6}", flush=True)
        base_n = 5_000_000
        for n in sizes:
            while present < n:
                await dp.apply([("install", binding(present + k))
                                for k in range(min(BATCH, n - present))])
                present = min(n, present + BATCH)
            t = time.perf_counter()
            await dp.apply([("install", binding(present + k)) for k in range(BATCH)])
            ours = (time.perf_counter() - t) * 1000 / BATCH
            present += BATCH
            lines = []
            undo = []
            coas = []
            for k in range(BATCH):
                b = binding(base_n + k)
                name = f"bb{k}"
                if tunnels == "shared":
                    metric = (int(b.home_address) & 0xFFFF) + 1  # as mipro spreads them
                    lines.append(f"route replace {b.home_address}/32 encap ip dst "
                                 f"{b.care_of_address} src 172.31.9.1 ttl 64 dev miph-ipip "
                                 f"table 435 proto static metric {metric}")
                    coas.append(f"add base-coa {b.care_of_address}\n")
                    undo.append(f"route del {b.home_address}/32 table 435")
                else:
                    lines += [f"link add {name} type ipip local 172.31.9.1 remote "
                              f"{b.care_of_address} ttl 64", f"link set {name} up",
                              f"route replace {b.home_address}/32 dev {name} table 435"]
                    undo.append(f"link del {name}")
                if proxy_arp == "per-binding":
                    lines.append(f"neigh add proxy {b.home_address} dev home0")
                    undo.append(f"neigh del proxy {b.home_address} dev home0")
            t = time.perf_counter()
            sh("ip", "-batch", "-", stdin="\n".join(lines) + "\n")
            if coas:
                sh("ipset", "-exist", "restore", stdin="".join(coas))
            theirs = (time.perf_counter() - t) * 1000 / BATCH
            # the baseline's objects go again (not counted), so N stays mipro's
            sh("ip", "-batch", "-", stdin="\n".join(undo) + "\n")
            if coas:
                sh("ipset", "flush", "base-coa")
            base_n += BATCH
            print(f"{present:>9} {ours:>17.3f} {theirs:>21.3f} {ours / theirs:>6.2f}",
                  flush=True)
        await dp.stop()

    sh("ipset", "-exist", "create", "base-coa", "hash:ip", "maxelem", "1048576")
    try:
        asyncio.run(run())
    finally:
        sh("ipset", "destroy", "base-coa")


def restart(n: int, killed: bool, pyspy: str | None, announce: bool) -> dict[str, float]:
    """One start of the dataplane with n restored bindings (see --restart)."""
    from mipro.dataplane.ha import HaDataplane

    def make() -> HaDataplane:
        return HaDataplane(backend="userspace", address=IPv4Address("172.31.9.1"),
                           home_interface="home0", home_network=IPv4Network("10.128.0.0/10"),
                           table=434, rule_priority=1000, tunnel_interface="mip0",
                           log=lambda *a, **k: None, proxy_arp="interface")

    bindings = [binding(i) for i in range(n)]
    slices = [[("install", b) for b in bindings[i:i + 2048]] for i in range(0, n, 2048)]
    out: dict[str, float] = {}

    async def run() -> None:
        dp = make()
        await dp.start(None)
        for ops in slices:  # the first run, not timed
            await dp.apply(ops)
        if not killed:
            await dp.stop()
        else:  # as the kernel closes a killed daemon's files: its routes stay
            if dp.relay is not None:
                dp.relay.close()
            dp.batch.close()
            dp.nl.close()
        dp = make()
        spy = None
        if pyspy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                    "--nonblocking", "--rate", "200", "--format", "raw", "-o",
                                    pyspy, "--pid", str(os.getpid())],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        t = time.perf_counter()
        await dp.start(None)
        out["start_s"] = time.perf_counter() - t
        if not announce and dp.arp is not None:  # the gratuitous ARPs' share
            dp.arp.announce = lambda address, count=2: None  # type: ignore[method-assign]
        t1 = time.perf_counter()
        for ops in slices:
            failed = await dp.apply(ops)
            assert not failed, failed
        out["reinstall_s"] = time.perf_counter() - t1
        out["kernel_complete_s"] = time.perf_counter() - t
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        t = time.perf_counter()
        await dp.stop()
        out["stop_s"] = time.perf_counter() - t

    asyncio.run(run())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--tunnels", choices=("per-care-of", "shared"), default="per-care-of")
    p.add_argument("--proxy-arp", choices=("per-binding", "interface"), default="per-binding")
    p.add_argument("--restart", type=int, metavar="N",
                   help="time a restart with N bindings to reinstall (see above)")
    p.add_argument("--killed", action="store_true",
                   help="--restart: the previous run left its routes (kill -9)")
    p.add_argument("--trees", default=f"this={Path(__file__).resolve().parents[1]}",
                   help="--restart: LABEL=DIR,... source trees, same run")
    p.add_argument("--rounds", type=int, default=1, help="--restart: alternating rounds")
    p.add_argument("--no-announce", action="store_true",
                   help="--restart: without the two gratuitous ARPs per reinstalled binding")
    p.add_argument("--pyspy", metavar="FILE", help="--restart: py-spy the timed start")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    if a.inner:
        if a.restart:
            print(json.dumps(restart(a.restart, a.killed, a.pyspy, not a.no_announce)))
        else:
            inner(sizes, a.tunnels, a.proxy_arp)
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    sh("ip", "netns", "add", NS)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "home0", "type", "veth", "peer", "name", "homepeer"],
                    ["ip", "addr", "add", "172.31.9.1/24", "dev", "home0"],
                    ["ip", "link", "set", "home0", "up"], ["ip", "link", "set", "homepeer", "up"]):
            sh("ip", "netns", "exec", NS, *cmd)
        if a.restart:
            trees = [t.partition("=")[::2] for t in a.trees.split(",")]
            print(f"{'tree':<8} {'bindings':>9} {'start s':>8} {'reinstall s':>12} "
                  f"{'complete s':>11} {'stop s':>7}  load", flush=True)
            for _ in range(a.rounds):
                for label, tree in trees:
                    cmd = ["ip", "netns", "exec", NS, sys.executable, __file__, "--inner",
                           "--restart", str(a.restart)] + (["--killed"] * a.killed) + \
                        (["--no-announce"] * a.no_announce) + \
                        (["--pyspy", f"{a.pyspy}.{label}"] if a.pyspy else [])
                    env = dict(os.environ, KPROG_TREE=str(Path(tree).resolve()))
                    got = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                                    text=True, env=env).stdout)
                    print(f"{label:<8} {a.restart:>9} {got['start_s']:>8.2f} "
                          f"{got['reinstall_s']:>12.2f} {got['kernel_complete_s']:>11.2f} "
                          f"{got['stop_s']:>7.2f}  {os.getloadavg()[0]:.2f}", flush=True)
            return
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__, "--inner",
                        "--sizes", a.sizes, "--tunnels", a.tunnels, "--proxy-arp",
                        a.proxy_arp], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


if __name__ == "__main__":
    main()
