"""The FA relay's hold buffer: what a home agent tunnels for a visitor that is still being
added (its realm device and routes not there yet) is kept, at most HOLD_BYTES in all, and
delivered once the visitor is there; nothing stays held after the add, whether it worked
or failed.

The FA dataplane (userspace backend, a real relay) runs alone in the handover lab's fa1
namespace, driven by this file run as a script (``driver`` below), because the add window
must be held open deterministically: its ``_add_visitor`` is wrapped to say "adding" and
wait for the test, which meanwhile injects IP-in-IP from the HA (and from a host that is
not the visitor's HA) with ``ipip-inject``, then lets the add go on.  The MN's namespace
has the visitor's home address and MAC; what reaches it is recorded by ``udp-sink``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

HOME = "10.1.0.100"
MAC = "02:00:00:00:01:00"  # the mn node's eth0 in topology-handover.toml
HA = "10.1.0.1"
CN_HOME = "10.1.0.10"  # on the home network, but not the visitor's home agent
FA = "198.51.100.1"  # fa1's care-of address (lan0)
FA2 = "192.0.2.1"  # where a forwarding pointer at fa1 sends the MN's datagrams
PORT = 6002
PACKET = 20 + 8 + 64  # what ipip-inject's inner datagrams are (IPv4, UDP, body)


# --- the driver: runs inside fa1's namespace ------------------------------------------

def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def driver() -> None:
    from mipro.core.fa import CacheEntry, Visitor
    from mipro.dataplane.fa.agent import HOLD_BYTES, HOLD_EARLY, FaDataplane
    from mipro.wire.vendor import StaticRoute

    loop = asyncio.get_running_loop()

    async def command() -> dict[str, Any]:
        return json.loads(await loop.run_in_executor(None, sys.stdin.readline))

    events: list[dict[str, Any]] = []
    dp = FaDataplane(backend="userspace", interface="lan0", care_of=IPv4Address(FA),
                     table=1434, rule_priority=900,
                     log=lambda event, level="info", **kw: events.append(
                         {"event": event, **{k: str(v) for k, v in kw.items()}}))
    await dp.start(loop)
    assert dp.relay is not None
    relay = dp.relay
    seen = {"offered": 0, "held": 0, "peak": 0, "last": time.monotonic()}
    hold = relay.hold  # the dataplane's (None if it holds nothing)

    def counting_hold(outer: IPv4Address, inner: IPv4Address, pkt: bytes) -> bool:
        seen["offered"] += 1
        seen["last"] = time.monotonic()
        kept = hold is not None and hold(outer, inner, pkt)
        seen["held"] += kept
        seen["peak"] = max(seen["peak"], dp.held_bytes)
        return kept
    relay.hold = counting_hold

    add = dp._add_visitor

    async def slow_add(v: Visitor, previous: Visitor | None = None) -> None:
        say({"adding": True, "adding_pairs": [list(map(str, p)) for p in dp.adding]})
        want = (await command())["expect"]
        # until the relay has read all the test sent, or nothing came for a second
        while seen["offered"] < want and time.monotonic() - seen["last"] < 1.0:
            await asyncio.sleep(0.02)
        await add(v, previous)

    dp._add_visitor = slow_add  # type: ignore[method-assign]
    say({"ready": True, "hold_bytes": HOLD_BYTES})

    def report(v: Visitor, **extra: Any) -> None:
        c = relay.stats.per_key.get(v.key)
        f = relay.stats.per_key.get((IPv4Address(HOME), IPv4Address(HA)))  # a pointer's
        dp.forwards.clear()
        say({"held_bytes": dp.held_bytes, "adding": [list(map(str, p)) for p in dp.adding],
             "seen": {k: seen[k] for k in ("offered", "held", "peak")},
             "delivered": c.packets_in if c else 0, "forwarded": f.packets_out if f else 0,
             "unauthorised": relay.stats.dropped_unauthorised,
             "events": [e for e in events if e["event"].startswith("held-")],
             "early": [list(map(str, p)) for p in dp.early],
             "visitor": v.key in dp.visitors, **extra})

    # the engine's mark of a relayed request (ForeignAgent.awaiting), as the test sets it
    out = {"pair": None}
    dp.awaiting = lambda home, ha: (str(home), str(ha)) == out["pair"]

    async def early(cmd: dict[str, Any]) -> None:
        """A request relayed, not answered yet: what its HA tunnels is held from now;
        then the reply accepts it (the add delivers them) or denies it (they go)."""
        out["pair"] = (HOME, HA)
        if cmd.get("pointer"):  # the MN was here, moved on to FA2, and is back
            dp.forwards[(IPv4Address(HOME), IPv4Address(HA))] = CacheEntry(
                IPv4Address(HOME), IPv4Address(FA2), time.time() + 60, IPv4Address(HA),
                forwarding=True)
        say({"awaiting": True})
        want = (await command())["expect"]
        while seen["offered"] < want and time.monotonic() - seen["last"] < 1.0:
            await asyncio.sleep(0.02)
        out["pair"] = None  # the reply is in: the engine's mark goes before the add
        say({"early": [list(map(str, p)) for p in dp.early], "held_bytes": dp.held_bytes})
        v = Visitor(home_address=IPv4Address(HOME), mac=bytes.fromhex(MAC.replace(":", "")),
                    home_agent=IPv4Address(HA), care_of_address=IPv4Address(FA),
                    source=IPv4Address(HOME), source_port=434, identification=1,
                    requested_lifetime=600, reverse_tunnel=False, encapsulation="ipip",
                    state="accepted", lifetime=600)
        if cmd["early"] == "accepted":
            dp.forwards.clear()  # the engine ends the pointer as its visitor is back
            dp._add_visitor = add  # type: ignore[method-assign] # the add at its own pace
            try:
                await dp.add_visitor(v)
            finally:
                dp._add_visitor = slow_add  # type: ignore[method-assign]
        else:
            await asyncio.sleep(HOLD_EARLY + 0.5)
        report(v)
        await command()
        await dp.remove_visitor(v)
        seen.update(offered=0, held=0, peak=0)
        say({"removed": True})

    while True:
        cmd = await command()
        if cmd.get("stop"):
            break
        if cmd.get("early"):
            await early(cmd)
            continue
        bad = (StaticRoute(IPv4Network("203.0.113.0/24"), IPv4Address("192.0.2.99")),)
        v = Visitor(home_address=IPv4Address(HOME), mac=bytes.fromhex(MAC.replace(":", "")),
                    home_agent=IPv4Address(HA), care_of_address=IPv4Address(FA),
                    source=IPv4Address(HOME), source_port=434, identification=1,
                    requested_lifetime=600, reverse_tunnel=False, encapsulation="ipip",
                    state="accepted", lifetime=600,
                    # a local next hop that is not on any of fa1's links: the kernel
                    # refuses the profile route, late in the add (realm, delivery route done)
                    routes=bad if cmd.get("fail") else ())
        failed = None
        try:
            await dp.add_visitor(v)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            failed = repr(exc)
            await dp.remove_visitor(v)  # as the daemon does (visitor_failed)
        report(v, failed=failed, added_at=time.time())
        await command()  # the test sent more, after the add
        await asyncio.sleep(0.5)
        report(v)
        await command()
        await dp.remove_visitor(v)
        seen.update(offered=0, held=0, peak=0)
        say({"removed": True})
    await dp.stop()
    say({"stopped": True})


# --- the test side ----------------------------------------------------------------------

class Driver:
    def __init__(self, lab: Any) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("fa1"), sys.executable, str(Path(__file__)),
             "driver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.idle = False
        self.hold_bytes = self.read("ready")["hold_bytes"]

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def read(self, key: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the driver exited ({self.proc.wait(10)})"
        msg = json.loads(line)
        assert key in msg, msg
        self.idle = key in ("ready", "removed")
        return msg

    def stop(self) -> None:
        """Between adds the dataplane stops as a daemon's does; in the middle of one (a
        failed test) it is killed, and the lab's teardown removes what it left."""
        if self.proc.poll() is not None:
            return
        if not self.idle:
            self.proc.kill()
            self.proc.wait(10)
            return
        self.send({"stop": True})
        self.read("stopped")
        assert self.proc.wait(10) == 0


def inject(lab: Any, node: str, outer_src: str, count: int, first: int = 0,
           interval: float = 0.002) -> None:
    lab.exec(node, sys.executable, "-m", "mipro.lab.traffic", "ipip-inject", outer_src, FA,
             CN_HOME, HOME, "--port", str(PORT), "--count", str(count), "--first", str(first),
             "--interval", str(interval), timeout=60)


def arrivals(sink: subprocess.Popen) -> list[tuple[int, float]]:
    return [(seq, t) for seq, t in json.loads(sink.communicate(timeout=60)[0])["arrivals"]]


@pytest.fixture
def lab(make_lab):
    lab = make_lab("handover", services=False)
    lab.exec("mn", "ip", "addr", "add", f"{HOME}/32", "dev", "eth0")
    lab.exec("mn", "ip", "route", "add", "default", "dev", "eth0")
    return lab


@pytest.fixture
def driver_in(lab):
    d = Driver(lab)
    yield d
    d.stop()


def begin_add(d: Driver, fail: bool = False) -> None:
    d.send({"fail": fail})
    msg = d.read("adding")
    assert msg["adding_pairs"] == [[HOME, HA]], msg


def test_what_the_ha_tunnels_during_the_add_is_delivered_after_it_in_order_others_not(
        lab, driver_in):
    d = driver_in
    sink = lab.udp_sink("mn", PORT, 6)
    begin_add(d)
    inject(lab, "ha", HA, 20)  # the visitor's home agent: held
    inject(lab, "cn-home", CN_HOME, 10, first=1000)  # not its home agent: dropped
    d.send({"expect": 30})
    done = d.read("held_bytes")
    assert done["failed"] is None, done
    assert done["seen"] == {"offered": 30, "held": 20, "peak": 20 * PACKET}, done
    assert (done["held_bytes"], done["adding"], done["visitor"]) == (0, [], True), done
    assert done["delivered"] == 20 and done["unauthorised"] == 10, done
    assert [(e["event"], e["packets"]) for e in done["events"]] == [("held-delivered", "20")]
    inject(lab, "ha", HA, 5, first=100)  # after the add: delivered as they come
    d.send({})
    after = d.read("held_bytes")
    assert after["delivered"] == 25 and after["unauthorised"] == 10, after
    d.send({})
    d.read("removed")
    got = arrivals(sink)
    # the held ones after the visitor was there, in the order they came, before the new ones
    assert [seq for seq, _ in got] == [*range(20), *range(100, 105)], got
    assert all(t >= done["added_at"] - 0.5 for _, t in got), (done["added_at"], got)


@pytest.mark.parametrize("fail", [False, True], ids=["added", "add-failed"])
def test_more_than_hold_bytes_during_the_add_is_cut_and_nothing_stays_held(lab, driver_in,
                                                                           fail):
    d = driver_in
    sink = lab.udp_sink("mn", PORT, 12)
    begin_add(d, fail)
    count = d.hold_bytes // PACKET + 600  # ~1.1 MiB
    inject(lab, "ha", HA, count, interval=0.00005)
    d.send({"expect": count})
    done = d.read("held_bytes")
    seen = done["seen"]
    # the relay read more than the bound (raw socket overruns aside), and kept no more
    assert seen["offered"] * PACKET > d.hold_bytes, done
    assert seen["held"] == d.hold_bytes // PACKET, done
    assert d.hold_bytes - PACKET < seen["peak"] <= d.hold_bytes, done
    assert (done["held_bytes"], done["adding"]) == (0, []), done
    if fail:
        # refused by the kernel: the MN is answered 66, and gets none of what was held
        assert "NetlinkError" in (done["failed"] or ""), done
        assert done["visitor"] is False, done
        # dropped and counted as the relay counts what is for no visitor of ours
        assert done["delivered"] == 0 and done["events"] == [], done
        assert done["unauthorised"] == seen["offered"], done
    else:
        assert done["failed"] is None, done
        assert done["delivered"] == seen["held"], done
        assert done["unauthorised"] == seen["offered"] - seen["held"], done
        assert [(e["event"], e["packets"]) for e in done["events"]] == \
            [("held-delivered", str(seen["held"]))], done
    d.send({})
    d.read("held_bytes")
    d.send({})
    d.read("removed")
    seqs = [seq for seq, _ in arrivals(sink)]
    if fail:
        assert seqs == [], seqs
    else:  # the MN's socket may overflow with ~11,000 at once, but what comes is in order
        assert seqs and seqs == sorted(seqs) and seqs[-1] < seen["held"], seqs[-20:]


if __name__ == "__main__" and sys.argv[1:] == ["driver"]:
    asyncio.run(driver())


@pytest.mark.parametrize("answer", ["accepted", "denied"])
def test_from_the_relay_of_the_request_the_has_tunnel_is_held_until_the_reply(lab, driver_in,
                                                                              answer):
    """The home agent tunnels to the new FA as soon as it has accepted, before its reply
    is here: from the relay of the request on, what it sends for that home address is held
    (not what another host sends); an acceptance delivers it, in order, after the add; a
    denial (or no answer) drops it after HOLD_EARLY, counted, nothing left held."""
    d = driver_in
    sink = lab.udp_sink("mn", PORT, 8)
    d.send({"early": answer})
    d.read("awaiting")
    inject(lab, "ha", HA, 10)  # the visitor's home agent: held
    inject(lab, "cn-home", CN_HOME, 5, first=1000)  # not its home agent: dropped
    d.send({"expect": 15})
    before = d.read("early")
    assert before == {"early": [[HOME, HA]], "held_bytes": 10 * PACKET}, before
    done = d.read("held_bytes")
    assert (done["held_bytes"], done["early"], done["adding"]) == (0, [], []), done
    if answer == "accepted":
        assert done["visitor"] and done["delivered"] == 10 and done["unauthorised"] == 5, done
        assert [(e["event"], e["packets"]) for e in done["events"]] == \
            [("held-delivered", "10")], done
    else:
        assert not done["visitor"] and done["delivered"] == 0, done
        assert done["unauthorised"] == 15, done
        assert [(e["event"], e["packets"]) for e in done["events"]] == \
            [("held-dropped", "10")], done
    d.send({})
    d.read("removed")
    seqs = [seq for seq, _ in arrivals(sink)]
    assert seqs == (list(range(10)) if answer == "accepted" else []), seqs


@pytest.mark.parametrize("answer", ["accepted", "denied"])
def test_a_pointer_to_where_the_mn_was_does_not_take_what_its_ha_tunnels_while_it_is_back(
        lab, driver_in, answer):
    """The MN came back to an FA that still has a forwarding pointer for it (it moved on
    from here to FA2 seconds ago): while its request is out the home agent already tunnels
    to us, and the pointer would send that back to FA2, where the MN no longer is (the
    datagrams bench/handover.py lost).  They are held instead; an acceptance delivers
    them here, and without one they go on through the pointer after HOLD_EARLY."""
    d = driver_in
    sink = lab.udp_sink("mn", PORT, 8)
    with lab.capture("fa2", "ip proto 4", "wan0") as fa2_wan:
        d.send({"early": answer, "pointer": True})
        d.read("awaiting")
        inject(lab, "ha", HA, 10)
        d.send({"expect": 10})
        before = d.read("early")
        assert before == {"early": [[HOME, HA]], "held_bytes": 10 * PACKET}, before
        done = d.read("held_bytes")
    assert (done["held_bytes"], done["early"], done["adding"]) == (0, [], []), done
    to_fa2 = [x for x in fa2_wan if f"{FA} > {FA2}: IP {CN_HOME}" in x]
    if answer == "accepted":
        assert done["visitor"] and done["delivered"] == 10 and done["forwarded"] == 0, done
        assert to_fa2 == [], fa2_wan
    else:
        assert not done["visitor"] and done["delivered"] == 0, done
        assert done["forwarded"] == 10 and done["unauthorised"] == 0, done
        assert [(e["event"], e["packets"]) for e in done["events"]] == \
            [("held-forwarded", "10")], done
        assert len(to_fa2) == 10, fa2_wan
    d.send({})
    d.read("removed")
    assert [seq for seq, _ in arrivals(sink)] == (list(range(10)) if answer == "accepted"
                                                 else [])
