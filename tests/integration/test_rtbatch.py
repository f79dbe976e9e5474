"""rtbatch against a real kernel, in a namespace of its own: requests go without
acknowledgements and the kernel answers only failures, so a failed request in a batch
must still be reported, by its tag, while the rest go in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sh(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise AssertionError(f"{' '.join(args)}: {r.stderr or r.stdout}")
    return r.stdout


def py(ns: str, code: str):
    """Run Python in the namespace (an RtBatch talks to the namespace it is opened in);
    its last line of output, as JSON."""
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if r.returncode:
        raise AssertionError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def ns():
    """A namespace with home0 (a veth, up, 10.77.0.1/24)."""
    name = f"mrtb-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "add", "home0", "type", "veth", "peer", "name", "peer0")
        sh("ip", "-n", name, "addr", "add", "10.77.0.1/24", "dev", "home0")
        for dev in ("lo", "home0", "peer0"):
            sh("ip", "-n", name, "link", "set", dev, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def routes(ns: str, table: int = 434) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "route", "show", "table", str(table)],
                         capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line]


def test_failed_routes_in_a_batch_are_reported_and_the_rest_go_in(ns):
    """5,000 routes over three windows; two point at an interface that does not exist
    (one in the first window, one in the last), and a delete of a route that is not there
    is tolerated: exactly the two are reported, with their tags, and 4,998 are in."""
    got = py(ns, """
        import asyncio, json, socket
        from ipaddress import IPv4Address
        from mipro.dataplane.kernel import rtbatch

        async def main():
            batch = rtbatch.RtBatch()
            home = socket.if_nametoindex("home0")
            reqs = []
            for i in range(5000):
                r = rtbatch.route(True, IPv4Address(0x0A800000 + i), 434,
                                  999 if i in (7, 4321) else home)
                r.tag = i
                reqs.append(r)
            reqs.append(rtbatch.route(False, IPv4Address("10.200.0.1"), 434))
            try:
                await batch.run(reqs)
            except rtbatch.BatchError as exc:
                return [[f.tag, f.code, f.reason] for f in exc.failures]
            return []

        print(json.dumps(asyncio.run(main())))
    """)
    assert [(tag, code) for tag, code, _ in got] == [(7, 19), (4321, 19)], got  # ENODEV
    assert got[0][2] == "route 10.128.0.7: No such device"
    have = routes(ns)
    assert len(have) == 4998
    assert "10.128.0.7" not in have and "10.128.16.225" not in have  # 4321
    assert "10.128.0.8" in have and "10.128.19.135" in have  # 4999


def test_every_request_failing_is_reported(ns):
    """A whole window of failures (its answers fill the receive buffer) is reported, one
    failure each."""
    got = py(ns, """
        import asyncio, json
        from ipaddress import IPv4Address
        from mipro.dataplane.kernel import rtbatch

        async def main():
            batch = rtbatch.RtBatch()
            reqs = [rtbatch.route(True, IPv4Address(0x0A800000 + i), 434, 999)
                    for i in range(3000)]
            try:
                await batch.run(reqs)
            except rtbatch.BatchError as exc:
                return sorted({f.code for f in exc.failures}) + [len(exc.failures)]
            return []

        print(json.dumps(asyncio.run(main())))
    """)
    assert got == [19, 3000]
    assert routes(ns) == []


def test_leftovers_of_a_killed_home_agent_are_removed_exactly(ns):
    """What a killed HA leaves (3,000 routes in its table, one with a metric, one not a
    /32; proxy entries in its home network; its rule) is dumped and removed in batches;
    another table's route and a proxy entry outside the home network stay."""
    lines = [f"route add 10.128.{i >> 8}.{i & 255}/32 dev home0 table 434" for i in range(3000)]
    lines += ["route add 10.129.0.0/16 dev home0 table 434",
              "route add 10.130.0.1/32 dev home0 table 434 metric 7",
              "route add 10.131.0.1/32 dev home0 table 435",
              "neigh add proxy 10.128.0.5 dev home0", "neigh add proxy 10.128.0.6 dev home0",
              "neigh add proxy 192.0.2.9 dev home0", "rule add table 434 priority 1000"]
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n", text=True,
                   check=True, capture_output=True)
    assert len(routes(ns)) == 3002
    got = py(ns, """
        import asyncio, json
        from ipaddress import IPv4Address, IPv4Network
        from mipro.dataplane.ha import HaDataplane

        logged = []
        dp = HaDataplane(backend="userspace", address=IPv4Address("10.77.0.1"),
                         home_interface="home0", home_network=IPv4Network("10.128.0.0/12"),
                         table=434, rule_priority=1000, tunnel_interface="mip0",
                         log=lambda event, *a, **k: logged.append([event, k]))
        asyncio.run(dp.cleanup_leftovers())
        print(json.dumps(logged))
    """)
    assert got == [["reconciled-leftovers", {"routes": 3002, "links": 0, "proxies": 2}]]
    assert routes(ns) == []
    assert routes(ns, 435) == ["10.131.0.1"]
    proxies = sh("ip", "-n", ns, "neigh", "show", "proxy")
    assert "192.0.2.9" in proxies and "10.128.0.5" not in proxies and "10.128.0.6" not in proxies
    assert "lookup 434" not in sh("ip", "-n", ns, "rule")


def test_ipset_members_in_a_batch_failure_reported(ns):
    """The same over nfnetlink: members into an ipset, one into a set that does not exist
    (reported), one already there (tolerated)."""
    sh("ip", "netns", "exec", ns, "ipset", "create", "mrtb-set", "hash:ip")
    got = py(ns, """
        import asyncio, json
        from ipaddress import IPv4Address
        from mipro.dataplane.kernel import rtbatch
        from mipro.dataplane.kernel.ipset import member_request

        async def main():
            batch = rtbatch.RtBatch(rtbatch.NETLINK_NETFILTER)
            reqs = [member_request(True, "mrtb-set", IPv4Address(f"192.0.2.{i}"))
                    for i in range(1, 4)]
            reqs.insert(1, member_request(True, "mrtb-none", IPv4Address("192.0.2.9")))
            reqs.append(member_request(True, "mrtb-set", IPv4Address("192.0.2.1")))
            for i, r in enumerate(reqs):
                r.tag = i
            try:
                await batch.run(reqs)
            except rtbatch.BatchError as exc:
                return [[f.tag, f.what] for f in exc.failures]
            return []

        print(json.dumps(asyncio.run(main())))
    """)
    assert got == [[1, "mrtb-none add 192.0.2.9"]]
    members = sh("ip", "netns", "exec", ns, "ipset", "list", "mrtb-set")
    assert all(f"192.0.2.{i}" in members for i in range(1, 4))
