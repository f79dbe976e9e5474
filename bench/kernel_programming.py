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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NS = "mbench-kprog"
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--tunnels", choices=("per-care-of", "shared"), default="per-care-of")
    p.add_argument("--proxy-arp", choices=("per-binding", "interface"), default="per-binding")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    if a.inner:
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
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__, "--inner",
                        "--sizes", a.sizes, "--tunnels", a.tunnels, "--proxy-arp",
                        a.proxy_arp], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


if __name__ == "__main__":
    main()
