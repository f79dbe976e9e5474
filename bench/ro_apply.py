#!/usr/bin/env python3
"""Applying and removing one visitor's routes and filters at the FA (issue 5 benchmark).

In a namespace, FaDataplane (pyroute2 + python-iptables) holds N visitors, each
with the `ro` scenario's profile (3 routes, 3 filter rules); then one more
visitor is applied and removed, repeatedly.  Baselines in the same run, at the
same N: `ip -batch` (rule + routes) with `iptables-restore --noflush` of a chain
per visitor (the classic way: a rule, a table and a chain per visitor), and
`ip -batch` + `ipset restore` of the objects mipro programs for a visitor
whose route profile and filter policy exist (neighbour, delivery route,
three set memberships: realm, route profile, filter policy).  The conntrack flush that follows a removal is
deferred and shared by removals that coincide; it is timed on its own.
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NS = "mbench-roapply"


def sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, input=stdin, text=True, check=True, capture_output=True)


def setup() -> None:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    sh("ip", "netns", "add", NS)
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lanpeer"],
                ["ip", "link", "add", "wan0", "type", "veth", "peer", "name", "wanpeer"],
                ["ip", "addr", "add", "198.51.100.1/24", "dev", "lan0"],
                ["ip", "addr", "add", "172.31.2.1/30", "dev", "wan0"],
                ["ip", "link", "set", "lan0", "up"], ["ip", "link", "set", "wan0", "up"],
                ["ip", "link", "set", "lanpeer", "up"], ["ip", "link", "set", "wanpeer", "up"],
                ["ip", "route", "add", "default", "via", "172.31.2.2"]):
        sh("ip", "netns", "exec", NS, *cmd)


def inner(sizes: list[int], reps: int) -> None:
    """Runs inside the namespace."""
    from mipro.core.fa import Visitor
    from mipro.dataplane.fa.agent import FaDataplane
    from mipro.wire import FilterRule, StaticRoute, Verdict

    routes = (StaticRoute(IPv4Network("198.51.100.0/24"), IPv4Address(0), 5, False),
              StaticRoute(IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.1"), 10, True),
              StaticRoute(IPv4Network("0.0.0.0/0"), IPv4Address("10.1.0.1"), 100, True))
    filters = (FilterRule(destination=IPv4Network("203.0.113.10/32"), protocol=17,
                          verdict=Verdict.DENY, both_directions=True, dport=(5060, 5061)),
               FilterRule(destination=IPv4Network("203.0.113.10/32"), protocol=17,
                          verdict=Verdict.DENY, both_directions=True, dport=(10000, 20000)),
               FilterRule(destination=IPv4Network("198.51.100.20/32"), protocol=6, log=True,
                          dport=(80, 80)))

    def visitor(i: int) -> Visitor:
        home = IPv4Address(int(IPv4Address("10.64.0.0")) + i)
        mac = (0x020000000000 + i).to_bytes(6, "big")
        return Visitor(home, mac, IPv4Address("10.1.0.1"), IPv4Address("198.51.100.1"), home,
                       5000, 1, 600, True, "ipip", "accepted", 0.0, 600, routes, filters)

    async def run() -> None:
        dp = FaDataplane(backend="userspace", interface="lan0",
                         care_of=IPv4Address("198.51.100.1"), table=434, rule_priority=1000,
                         log=lambda *a, **k: None)
        await dp.start(None)
        present = 0
        print("apply+remove of one visitor (3 routes, 3 filter rules), median ms;\n"
              "  chains  = ip -batch + iptables-restore, a chain per visitor (classic)\n"
              "  ipset   = what mipro programs, by ip -batch + ipset restore: neighbour,\n"
              "            delivery route, realm, route profile and filter policy set membership\n"
              "  ct      = the conntrack flush that follows a removal (deferred, shared)\n"
              f"{'visitors':>8} {'mipro':>10} {'chains':>14} {'ratio':>7} {'ipset':>14} "
              f"{'ratio':>7} {'ct ms':>10} {'fill ms':>8}", flush=True)
        policy = visitor(999_999)
        await dp.add_visitor(policy)  # the policy the measured visitor joins exists
        sh("ipset", "create", "base-p", "hash:ip")
        sh("ipset", "create", "base-r", "hash:ip")
        sh("ipset", "create", "base-h", "hash:ip")
        for n in sizes:
            t0 = time.perf_counter()
            added = 0
            while present < n:
                await dp.add_visitor(visitor(present))
                present += 1
                added += 1
            fill = (time.perf_counter() - t0) / max(1, added)
            await dp.flows_forgotten()
            samples, flushes, base, base_set = [], [], [], []
            for r in range(reps):
                v = visitor(900_000 + r)
                t = time.perf_counter()
                await dp.add_visitor(v)
                await dp.remove_visitor(v)
                t1 = time.perf_counter()
                await dp.flows_forgotten()  # deferred and shared by removals that coincide
                samples.append((t1 - t) * 1000)
                flushes.append((time.perf_counter() - t1) * 1000)
                base.append(baseline(v.home_address, r))
                base_set.append(baseline_ipset(v.home_address, r))
            m, b = statistics.median(samples), statistics.median(base)
            bs, f = statistics.median(base_set), statistics.median(flushes)
            print(f"{n:>8} {m:>10.2f} {b:>14.2f} {m / b:>7.2f} {bs:>14.2f} {m / bs:>7.2f} "
                  f"{f:>10.2f} {fill * 1000:>8.2f}", flush=True)
        await dp.stop()
        sh("ipset", "destroy", "base-p")
        sh("ipset", "destroy", "base-r")
        sh("ipset", "destroy", "base-h")

    asyncio.run(run())


def baseline(home: IPv4Address, r: int) -> float:
    """The same objects for one visitor, added then removed, by the reference tools."""
    table = 40_000 + r
    chain = f"BASE-{home.packed.hex()}"
    add_ip = (f"rule add from {home} iif lan0 lookup {table} priority 999\n"
              f"route replace 198.51.100.0/24 dev lan0 table {table} metric 5\n"
              f"route replace 10.1.0.0/24 dev mipf-0a010001 table {table} metric 10\n"
              f"route replace default dev mipf-0a010001 table {table} metric 100\n")
    del_ip = (f"rule del from {home} iif lan0 lookup {table} priority 999\n"
              f"route flush table {table}\n")
    rules = [f"-A {chain} -d 203.0.113.10/32 -p udp -m udp --dport 5060:5061 -j DROP",
             f"-A {chain} -s 203.0.113.10/32 -p udp -m udp --dport 5060:5061 -j DROP",
             f"-A {chain} -d 203.0.113.10/32 -p udp -m udp --dport 10000:20000 -j DROP",
             f"-A {chain} -s 203.0.113.10/32 -p udp -m udp --dport 10000:20000 -j DROP",
             f"-A {chain} -d 198.51.100.20/32 -p tcp -m tcp --dport 80 -j NFLOG --nflog-group 434",
             f"-A {chain} -d 198.51.100.20/32 -p tcp -m tcp --dport 80 -j ACCEPT",
             f"-A MIPRO-FWD -s {home}/32 -i lan0 -j {chain}",
             f"-A MIPRO-FWD -d {home}/32 -o lan0 -j {chain}"]
    add_ipt = "*filter\n" + f":{chain} - [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"
    del_ipt = ("*filter\n" + f"-D MIPRO-FWD -s {home}/32 -i lan0 -j {chain}\n"
               f"-D MIPRO-FWD -d {home}/32 -o lan0 -j {chain}\n-F {chain}\n-X {chain}\n"
               "COMMIT\n")
    t = time.perf_counter()
    sh("ip", "-batch", "-", stdin=add_ip)
    sh("iptables-legacy-restore", "--noflush", stdin=add_ipt)
    sh("ip", "-batch", "-", stdin=del_ip)
    sh("iptables-legacy-restore", "--noflush", stdin=del_ipt)
    return (time.perf_counter() - t) * 1000


def baseline_ipset(home: IPv4Address, r: int) -> float:
    """The objects mipro programs for a visitor whose profile exists, by the reference tools:
    neighbour entry and delivery route, then membership of the realm's, the route
    profile's and the filter policy's sets."""
    mac = f"02:00:00:0f:{r >> 8 & 0xFF:02x}:{r & 0xFF:02x}"
    t = time.perf_counter()
    sh("ip", "-batch", "-", stdin=f"neigh replace {home} lladdr {mac} dev lan0 nud permanent\n"
                                  f"route replace {home}/32 dev lan0 table 434\n")
    sh("ipset", "-exist", "restore",
       stdin=f"add base-h {home}\nadd base-r {home}\nadd base-p {home}\n")
    sh("ip", "-batch", "-", stdin=f"neigh del {home} dev lan0\n"
                                  f"route del {home}/32 dev lan0 table 434\n")
    sh("ipset", "-exist", "restore",
       stdin=f"del base-h {home}\ndel base-r {home}\ndel base-p {home}\n")
    return (time.perf_counter() - t) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1,10,100,1000")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    if a.inner:
        inner(sizes, a.reps)
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    setup()
    try:
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__, "--inner",
                        "--sizes", a.sizes, "--reps", str(a.reps)], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


if __name__ == "__main__":
    main()
