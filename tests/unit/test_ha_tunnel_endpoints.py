"""A home agent serving several addresses (active/active redundancy): each binding's
tunnel ends on the address its MN registered with (Binding.home_agent).

The dataplane's netlink requests are recorded, not sent (a unit test of the layer
above rtbatch); the relay's choice of outer source runs on a pipe for a TUN and
recording sockets."""

import asyncio
import os
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network

import pytest

from mipro.core.bindings import Binding
from mipro.dataplane import ha as ha_dataplane
from mipro.dataplane.ha import LINK_PREFIX, LOCAL_MARKS, HaDataplane, link_name
from mipro.dataplane.kernel import rtbatch
from mipro.dataplane.relay.relay import UDP_TUNNEL_HEADER, UserspaceTunnel

VIP1, VIP2, OLD = A("10.1.0.1"), A("10.1.0.4"), A("10.1.0.9")
COA = A("198.51.100.1")


def binding(home: str, ha: A, coa: A = COA, encap: str = "ipip") -> Binding:
    return Binding(A(home), coa, ha, 600, 1e12, 0.0, 1, encapsulation=encap, source=coa)


def test_link_names_unique_per_local_address_within_ifnamsiz():
    coas = [A("0.0.0.0"), A("198.51.100.1"), A("255.255.255.255"), A("10.0.0.16")]
    names = {(coa, encap, i): link_name(coa, encap, i) for coa in coas
             for encap in ("ipip", "gre") for i in range(len(LOCAL_MARKS) + 1)}
    assert len(set(names.values())) == len(names)
    assert all(n.startswith(LINK_PREFIX) and len(n.encode()) <= 15 for n in names.values())
    # the first address (ha.address) keeps the names a single-address home agent uses
    assert link_name(COA, "ipip") == link_name(COA, "ipip", 0) == "miph-c6336401"
    assert link_name(COA, "gre") == "miph-gc6336401"
    assert link_name(COA, "ipip", 1) == "miph-c63364011"
    assert link_name(COA, "gre", 1) == "miph-gc63364011"


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[rtbatch.Request]] = []

    async def run(self, requests: list[rtbatch.Request]) -> None:
        self.batches.append(list(requests))

    def close(self) -> None:
        pass


class Arp:
    def announce(self, address: A) -> None:
        pass


def same(got: list[rtbatch.Request], want: list[rtbatch.Request]) -> bool:
    return [(r.msg_type, r.body) for r in got] == [(r.msg_type, r.body) for r in want]


@pytest.fixture
def dataplane(monkeypatch):
    made = []
    monkeypatch.setattr(ha_dataplane, "set_sysctl", lambda name, value: None)

    def factory(backend: str = "kernel", tunnels: str = "per-care-of") -> HaDataplane:
        dp = HaDataplane(backend=backend, address=VIP1, home_interface="home0",
                         home_network=IPv4Network("10.1.0.0/24"), table=434,
                         rule_priority=434, tunnel_interface="mip0", log=lambda *a, **k: None,
                         kernel_tunnels=tunnels, addresses=(VIP1, VIP2))
        dp.batch.close()
        dp.batch, dp.set_batch, dp.arp = Recorder(), Recorder(), Arp()  # type: ignore
        dp.home_index = 2
        made.append(dp)
        return dp

    yield factory
    for dp in made:
        dp.nl.close()


def apply(dp: HaDataplane, *ops: tuple[str, Binding]) -> list[rtbatch.Request]:
    assert asyncio.run(dp.apply(list(ops))) == {}
    return dp.batch.batches[-1]  # type: ignore[attr-defined]


def test_per_care_of_links_one_per_local_address_and_care_of_address(dataplane):
    dp = dataplane()
    base = ha_dataplane.IFINDEX_BASE
    one, two = binding("10.1.0.100", VIP1), binding("10.1.0.101", VIP2)
    got = apply(dp, ("install", one), ("install", two))
    assert same(got, [
        rtbatch.tunnel_link("ipip", "miph-c6336401", VIP1, COA, base + 1),
        rtbatch.route(True, one.home_address, 434, base + 1),
        rtbatch.proxy(True, one.home_address, 2),
        rtbatch.tunnel_link("ipip", "miph-c63364011", VIP2, COA, base + 2),
        rtbatch.route(True, two.home_address, 434, base + 2),
        rtbatch.proxy(True, two.home_address, 2)])
    assert apply(dp, ("install", two)) == []  # a renewal: nothing to change
    # MN2 registers with the other address: its tunnel moves to VIP1's link
    moved = binding("10.1.0.101", VIP1)
    got = apply(dp, ("install", moved))
    assert same(got, [rtbatch.delete_link(base + 2, "miph-c63364011"),
                      rtbatch.route(True, moved.home_address, 434, base + 1),
                      rtbatch.proxy(True, moved.home_address, 2)])
    assert dp.links == {"miph-c6336401": [2, base + 1]}
    apply(dp, ("remove", one))
    assert dp.links == {"miph-c6336401": [1, base + 1]}
    got = apply(dp, ("remove", moved))
    assert same(got[-1:], [rtbatch.delete_link(base + 1, "miph-c6336401")]) and not dp.links


def test_a_binding_of_an_address_no_longer_served_ends_on_ha_address(dataplane):
    dp = dataplane()
    got = apply(dp, ("install", binding("10.1.0.100", OLD, encap="gre")))
    assert same(got[:1], [rtbatch.tunnel_link("gre", "miph-gc6336401", VIP1, COA,
                                              ha_dataplane.IFINDEX_BASE + 1)])


def test_shared_links_encapsulate_from_the_registered_address(dataplane):
    dp = dataplane(tunnels="shared")
    dp.shared = {"ipip": 7, "gre": 8}
    one, two = binding("10.1.0.100", VIP1), binding("10.1.0.101", VIP2, encap="gre")
    got = apply(dp, ("install", one), ("install", two))
    metric = {b: (int(b.home_address) & 0xFFFF) + 1 for b in (one, two)}  # spread, as apply
    assert same(got, [rtbatch.route(True, one.home_address, 434, 7, (VIP1, COA), metric[one]),
                      rtbatch.proxy(True, one.home_address, 2),
                      rtbatch.route(True, two.home_address, 434, 8, (VIP2, COA), metric[two]),
                      rtbatch.proxy(True, two.home_address, 2)])


def test_userspace_peer_names_the_registered_address(dataplane):
    dp = dataplane(backend="userspace")
    napt = Binding(A("10.1.0.102"), A("192.168.1.5"), VIP2, 600, 1e12, 0.0, 1, encapsulation="udp",
                   source=A("203.0.113.7"), source_port=4500)
    for b in (binding("10.1.0.100", VIP1), binding("10.1.0.101", VIP2), napt,
              binding("10.1.0.103", OLD)):
        dp.bindings[b.home_address] = b
    peer = dp._peer_of
    assert peer(A("10.1.0.10"), A("10.1.0.100")) == (COA, "ipip", A("10.1.0.100"), VIP1)
    assert peer(A("10.1.0.10"), A("10.1.0.101")) == (COA, "ipip", A("10.1.0.101"), VIP2)
    assert peer(A("10.1.0.10"), A("10.1.0.102")) == \
        ((A("203.0.113.7"), 4500), "udp", A("10.1.0.102"), VIP2)
    assert peer(A("10.1.0.10"), A("10.1.0.103"))[3] == VIP1
    # taken in from the registered care-of address only, whichever address it was sent to
    assert dp._accept(COA, A("10.1.0.101"), A("10.1.0.10")) == A("10.1.0.101")
    assert dp._accept(A("198.51.100.99"), A("10.1.0.101"), A("10.1.0.10")) is None


def test_too_many_addresses_for_link_names():
    with pytest.raises(RuntimeError, match="at most 36"):
        HaDataplane(backend="kernel", address=VIP1, home_interface="home0",
                    home_network=IPv4Network("10.1.0.0/24"), table=434, rule_priority=434,
                    tunnel_interface="mip0", log=None,
                    addresses=tuple(A(f"10.1.1.{i}") for i in range(36)))


class Sent:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def packet(dst: str) -> bytes:
    body = b"\x45\x00\x00\x14\x00\x00\x40\x00\x40\x01\x00\x00" + A("10.1.0.10").packed
    return body + A(dst).packed


def test_relay_sends_from_the_peers_local_address():
    peers = {A("10.1.0.100"): (COA, "ipip", "mn1"),  # no fourth item: the relay's own
             A("10.1.0.101"): (COA, "gre", "mn2", VIP2),
             A("10.1.0.102"): ((A("203.0.113.7"), 4500), "udp", "mn3", VIP2),
             A("10.1.0.103"): ((A("203.0.113.8"), 4501), "udp", "mn4"),
             A("10.1.0.104"): (COA, "ipip", "mn5", A("10.1.0.99"))}  # not ours: dropped
    relay = UserspaceTunnel("", VIP1, lambda src, dst: peers.get(dst), lambda *a: None,
                            also_local=[VIP1, VIP2])
    assert relay.also_local == (VIP2,)
    own, other = (Sent(), Sent()), (Sent(), Sent())
    relay.ipip, relay.gre = own  # type: ignore[assignment]
    relay.extra = {VIP2: other}  # type: ignore[dict-item]
    udp: list[tuple] = []
    relay.udp_send = lambda data, addr: udp.append(("main", data, addr))
    relay.udp_send_from = lambda data, addr, local: udp.append((local, data, addr))
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        for dst in peers:
            os.write(w, packet(str(dst)))
            relay._from_tun(r, relay.peer_of)
    finally:
        os.close(r)
        os.close(w)
    assert own[0].sent == [(packet("10.1.0.100"), (str(COA), 0))] and not own[1].sent
    assert other[1].sent == [(b"\x00\x00\x08\x00" + packet("10.1.0.101"), (str(COA), 0))]
    assert not other[0].sent
    assert udp == [(VIP2, UDP_TUNNEL_HEADER + packet("10.1.0.102"), ("203.0.113.7", 4500)),
                   ("main", UDP_TUNNEL_HEADER + packet("10.1.0.103"), ("203.0.113.8", 4501))]
    assert relay.stats.dropped_no_peer == 1
    assert {k: c.packets_out for k, c in relay.stats.per_key.items()} == \
        {"mn1": 1, "mn2": 1, "mn3": 1, "mn4": 1}
