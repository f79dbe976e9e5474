"""mipro.dataplane.kernel.floodlimit in two namespaces joined by a veth pair: the limits exist
after start, a flood from one source is cut down to its bucket (counted by the rules'
counters and by what a socket still receives), an exempt peer is never limited, and
after stop nothing of it is left."""

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
FLOOD = 3000
RATE, BURST = 50, 100


def sh(*args: str, check: bool = True) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(args)}: {r.stderr or r.stdout}")
    return r.stdout


def py(ns: str, code: str, background: bool = False):
    """Run Python in a namespace (the limiter works on the namespace it runs in)."""
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    if r.returncode:
        raise AssertionError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None


@pytest.fixture
def pair():
    """(target namespace, sender namespace): target eth0 10.66.0.1, sender eth0 10.66.0.2
    and .3 (the sender's second address is the exempt peer)."""
    tag = uuid.uuid4().hex[:6]
    target, sender = f"mlim-t-{tag}", f"mlim-s-{tag}"
    for ns in (target, sender):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    try:
        sh("ip", "-n", target, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", sender)
        sh("ip", "-n", target, "addr", "add", "10.66.0.1/24", "dev", "eth0")
        sh("ip", "-n", sender, "addr", "add", "10.66.0.2/24", "dev", "eth0")
        sh("ip", "-n", sender, "addr", "add", "10.66.0.3/24", "dev", "eth0")
        for ns in (target, sender):
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        yield target, sender
    finally:
        for ns in (target, sender):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def udp_flood(ns: str, src: str, count: int = FLOOD, payload: str = '"\\x01" + bytes(45)'):
    """``count`` datagrams to 10.66.0.1:434 (by default 46 bytes, a request with its MN-HA authenticator's length)."""
    py(ns, f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("{src}", 0))
        for i in range({count}):
            s.sendto(b{payload}, ("10.66.0.1", 434))
    """)


def frame_flood(ns: str, src_mac: str, dst_mac: str, count: int = FLOOD,
                kind: str = "udp", dst: str = "10.66.0.1",
                payload: str = '"\\x01" + bytes(45)') -> None:
    py(ns, f"""
        import socket, struct
        from ipaddress import IPv4Address as A
        from mipro.dataplane.link.linklayer import checksum, udp_frame
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(("eth0", 0))
        dst = bytes.fromhex("{dst_mac}".replace(":", ""))
        src = bytes.fromhex("{src_mac}".replace(":", ""))
        if "{kind}" == "udp":
            frame = udp_frame(src, dst, A("10.128.1.9"), A("{dst}"), 4000, 434,
                              b{payload})
        else:  # an ICMP router solicitation to 224.0.0.2
            icmp = bytearray(8); icmp[0] = 10
            icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 1, 1, 0,
                                       A("10.66.0.2").packed, A("224.0.0.2").packed))
            ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
            frame = bytes.fromhex("01005e000002") + src + b"\\x08\\x00" + bytes(ip) + icmp
        for i in range({count}):
            s.send(frame)
    """)


def source_state(ns: str) -> dict:
    raw = sh("ip", "netns", "exec", ns, "iptables-legacy", "-t", "raw", "-S")
    sets = sh("ip", "netns", "exec", ns, "ipset", "list", "-n")
    return {"jumps": [x for x in raw.splitlines() if x.startswith("-A PREROUTING")
                      and "MIPRO-LIMIT" in x],
            "chain": "-N MIPRO-LIMIT" in raw, "set": "mipro-limit-ok" in sets.split()}


SOURCE = """
    import asyncio, json
    from ipaddress import IPv4Address as A
    from mipro.dataplane.kernel.floodlimit import Limits, SourceLimiter
    lim = SourceLimiter(A("10.66.0.1"), Limits(rate={rate}, burst={burst}),
                        solicit_interface="eth0")
    async def go():
        {body}
        out = lim.counters()
        if lim.ipset is not None:
            lim.ipset.close()
        return out
    print(json.dumps(asyncio.run(go())))
"""


def source(ns: str, body: str) -> dict:
    return py(ns, SOURCE.format(rate=RATE, burst=BURST, body=body))


def test_source_limiter(pair):
    target, sender = pair
    counters = source(target, 'await lim.start([A("10.66.0.3")]); '
                              'await lim.start([A("10.66.0.3")])')  # idempotent
    assert counters == {"shape_dropped": 0, "solicit_dropped": 0, "exempt": 0,
                        "source_dropped": 0, "aggregate_dropped": 0}
    state = source_state(target)
    assert state["chain"] and state["set"] and len(state["jumps"]) == 2, state
    members = sh("ip", "netns", "exec", target, "ipset", "list", "mipro-limit-ok")
    assert "10.66.0.3" in members

    sink = py(target, """
        import json, socket, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
        s.bind(("10.66.0.1", 434)); s.settimeout(0.5)
        print("ready", flush=True)
        seen = {}
        end = time.time() + 4
        while time.time() < end:
            try:
                _, (src, _) = s.recvfrom(2048)
            except TimeoutError:
                continue
            seen[src] = seen.get(src, 0) + 1
        print(json.dumps(seen))
    """, background=True)
    assert sink.stdout.readline().strip() == "ready"
    udp_flood(sender, "10.66.0.2")  # an unknown source: its bucket
    udp_flood(sender, "10.66.0.3")  # the exempt peer: everything
    # what cannot be a message for the daemon goes, whoever sends it
    udp_flood(sender, "10.66.0.3", count=100, payload='"\\x09" + bytes(45)')
    udp_flood(sender, "10.66.0.3", count=100, payload='"\\x01" + bytes(22)')
    seen = json.loads(sink.communicate(timeout=30)[0].strip().splitlines()[-1])
    counters = source(target, "pass")
    assert counters["shape_dropped"] == 200, counters
    # a burst of 100 plus 50/s for the second or so the flood took
    assert counters["source_dropped"] >= FLOOD - BURST - 2 * RATE, counters
    assert seen["10.66.0.2"] <= BURST + 2 * RATE, seen
    assert seen["10.66.0.3"] == FLOOD and counters["exempt"] == FLOOD, (seen, counters)

    # exemptions follow the daemon's view: exactly these
    source(target, 'await lim.start([A("10.66.0.3")]); '
                   'await lim.set_exempt([A("10.66.0.2")])')
    members = sh("ip", "netns", "exec", target, "ipset", "list", "mipro-limit-ok")
    assert "10.66.0.2" in members and "10.66.0.3" not in members

    source(target, "await lim.stop()")
    assert source_state(target) == {"jumps": [], "chain": False, "set": False}
    assert "mipro-limit" not in sh("ip", "netns", "exec", target, "ls",
                                   "/proc/net/ipt_hashlimit", check=False)


LINK = """
    import asyncio, json
    from mipro.dataplane.kernel.floodlimit import Limits, LinkLimiter
    lim = LinkLimiter("eth0", Limits(rate={rate}, burst={burst}, solicit_rate=10,
                                     solicit_burst=10), addresses=["10.66.0.1"])
    async def go():
        {body}
        return lim.counters()
    print(json.dumps(asyncio.run(go())))
"""


def link(ns: str, body: str) -> dict:
    return py(ns, LINK.format(rate=RATE, burst=BURST, body=body))


def nft_tables(ns: str) -> str:
    return json.dumps(py(ns, """
        import json
        from mipro.dataplane.kernel.nftables import Nft
        print(json.dumps(json.loads(Nft().run("list tables", json_output=True))))
    """))


def test_link_limiter(pair):
    target, sender = pair
    why = py(target, """
        import json
        from mipro.dataplane.kernel.nftables import nft_available
        print(json.dumps(nft_available()))
    """)
    if why is not None:
        pytest.skip(f"no nftables here: {why}")
    mac = json.loads(sh("ip", "-n", target, "-j", "link", "show", "eth0"))[0]["address"]
    exempt_mac = "02:00:00:00:01:00"
    link(target, f'await lim.start(["{exempt_mac}"]); await lim.start(["{exempt_mac}"])')
    assert nft_tables(target).count('"mipro-limit-eth0"') == 1

    # what the FA's request socket (AF_PACKET, ETH_P_IP, BPF for UDP 434) still gets
    reader = py(target, f"""
        import json, select, socket, time
        from mipro.dataplane.link.linklayer import RegistrationLink
        link = RegistrationLink("eth0", bytes.fromhex("{mac.replace(':', '')}"))
        link.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
        print("ready", flush=True)
        seen = {{}}
        end = time.time() + 4
        while time.time() < end:
            select.select([link], [], [], 0.2)
            while (d := link.receive()) is not None:
                seen[d.mac.hex(":")] = seen.get(d.mac.hex(":"), 0) + 1
        print(json.dumps(seen))
    """, background=True)
    assert reader.stdout.readline().strip() == "ready"
    flooder = "02:f1:00:00:00:07"
    frame_flood(sender, flooder, mac)
    frame_flood(sender, exempt_mac, mac)
    frame_flood(sender, flooder, mac, count=500, kind="solicit")
    passing = "02:f1:00:00:00:08"  # UDP 434 through the FA (not to it): not limited
    frame_flood(sender, passing, mac, dst="10.66.0.9")
    frame_flood(sender, exempt_mac, mac, count=100, payload='"\\x04" + bytes(45)')
    frame_flood(sender, exempt_mac, mac, count=100, payload='"\\x01" + bytes(22)')
    seen = json.loads(reader.communicate(timeout=30)[0].strip().splitlines()[-1])
    counters = link(target, "pass")
    assert seen[passing] == FLOOD, seen
    assert counters["shape_dropped"] == 200, counters
    assert counters["source_dropped"] >= FLOOD - BURST - 2 * RATE, counters
    assert seen.get(flooder, 0) <= BURST + 2 * RATE, seen
    assert seen[exempt_mac] == FLOOD and counters["exempt"] == FLOOD, (seen, counters)
    assert counters["solicit_dropped"] >= 400, counters

    # exemptions follow the daemon's view: exactly these
    link(target, f'await lim.start(["{exempt_mac}"]); await lim.set_exempt(["{flooder}"])')
    listed = py(target, """
        import json
        from mipro.dataplane.kernel.nftables import Nft
        print(json.dumps(Nft().run("list set netdev mipro-limit-eth0 exempt")))
    """)
    assert flooder in listed and exempt_mac not in listed, listed
    link(target, "await lim.stop()")
    assert "mipro-limit" not in nft_tables(target)
