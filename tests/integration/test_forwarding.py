"""The previous FA as a forwarding pointer (seed Fig. 3b, draft-ietf-mobileip-optim): after the
move FA1 -> FA2, what still reaches FA1 for the mobile node is re-tunnelled to FA2.

In-flight datagrams are made by hand: the lab has no delay on its links, so the HA's last
datagrams to FA1 arrive before FA1 hears of the move.  ``ipip-inject`` sends, from the HA's
address, what the HA tunnelled to FA1 just before its binding moved.
"""

import json
import sys

from mipro.config.schema import TABLES
from mipro.lab.cli import load_check

HOME = "10.1.0.100"
HA = "10.1.0.1"
CN_HOME = "10.1.0.10"
FA1, FA2 = "198.51.100.1", "192.0.2.1"
CN_LOCAL_A = "198.51.100.20"
PORT = 6001
TUNNELS = "ip proto 4 or ip proto 47"


def start(lab, mn_extra="", fa1_extra=""):
    lab.edit_conf("mn", "mn.toml", 'mode = "auto"', f'mode = "fa"\n{mn_extra}')
    if fa1_extra:
        lab.edit_conf("fa1", "fa.toml", "[runtime]", f"{fa1_extra}\n\n[runtime]")
    for name in ("ha", "fa1", "fa2", "mn"):
        lab.start_service(name)
    check = load_check("handover")
    lab.wait_for(lambda: check.via(lab, FA1), 30, "registration through FA1")
    lab.move("mn.eth0", "visit-b")
    lab.wait_for(lambda: check.via(lab, FA2), 20, "registration through FA2")


def in_flight(lab, count=20, first=0):
    """``count`` datagrams CN-home -> MN, tunnelled HA -> FA1 (as before the move)."""
    lab.exec("ha", sys.executable, "-m", "mipro.lab.traffic", "ipip-inject", HA, FA1, CN_HOME,
             HOME, "--port", str(PORT), "--count", str(count), "--first", str(first))


def received(sink):
    return {seq for seq, _ in json.loads(sink.communicate(timeout=30)[0])["arrivals"]}


def pointer(lab):
    cache = lab.status("fa1")["binding_cache"]
    return cache[0] if cache and cache[0]["forwarding"] else None


def test_in_flight_datagrams_are_retunnelled_fa1_to_fa2_until_the_pointer_expires(make_lab):
    lab = make_lab("handover", services=False)
    start(lab, "forwarding_lifetime = 6")
    entry = lab.wait_for(lambda: pointer(lab), 5, "FA1's forwarding pointer")
    assert (entry["home_address"], entry["home_agent"], entry["care_of_address"]) == \
        (HOME, HA, FA2)
    assert not lab.status("fa1")["visitors"]
    sink = lab.udp_sink("mn", PORT, 3)
    with lab.capture("fa1", TUNNELS, "wan0") as fa1_wan, \
            lab.capture("fa2", TUNNELS, "wan0") as fa2_wan:
        in_flight(lab)
        # a local correspondent on FA1's link still sends to FA1 (its route has not moved)
        assert lab.ping("cn-local-a", HOME)[0] == 3
    assert received(sink) == set(range(20))
    inner = f"IP {CN_HOME}.40000 > {HOME}.{PORT}: UDP"
    came = [x for x in fa1_wan if f"IP {HA} > {FA1}: {inner}" in x]
    went = [x for x in fa1_wan if f"IP {FA1} > {FA2}: {inner}" in x]
    assert len(came) == 20 and len(went) == 20, fa1_wan
    assert len([x for x in fa2_wan if f"IP {FA1} > {FA2}: {inner}" in x]) == 20, fa2_wan
    # natively arrived, tunnelled on too; the answers go the MN's way (HA's reverse tunnel)
    assert len([x for x in fa1_wan if f"IP {FA1} > {FA2}: IP {CN_LOCAL_A} > {HOME}: ICMP echo "
                "request" in x]) == 3, fa1_wan
    forwarded = pointer(lab)["forwarded"]
    assert forwarded["packets_out"] >= 23, forwarded
    # the pointer lives as long as the update asked, then goes with all its kernel state
    lab.wait_for(lambda: not lab.status("fa1")["binding_cache"], 10, "the pointer to expire")
    sink = lab.udp_sink("mn", PORT, 2)
    with lab.capture("fa1", TUNNELS, "wan0") as fa1_wan:
        in_flight(lab, first=100)
    assert received(sink) == set()
    assert not [x for x in fa1_wan if f"IP {FA1} > {FA2}" in x], fa1_wan
    table = lab.exec("fa1", "ip", "route", "show", "table", str(TABLES["fa"][0]),
                     check=False).stdout
    links = lab.exec("fa1", "ip", "-br", "link").stdout
    assert HOME not in table and "mipf-fc00002" not in links, (table, links)
    assert any("event=forwarding-ended" in x and "reason=expired" in x
               for x in lab.log_lines("fa1"))


def test_with_forwarding_off_in_flight_datagrams_are_lost(make_lab):
    """The same run without forwarding (fa.forwarding.enabled = false): the baseline."""
    lab = make_lab("handover", services=False)
    start(lab, "forwarding_lifetime = 6", "[fa.forwarding]\nenabled = false")
    lab.wait_for(lambda: lab.status("fa1")["binding_cache"], 5, "FA1's binding cache entry")
    assert not pointer(lab)
    sink = lab.udp_sink("mn", PORT, 2)
    with lab.capture("fa1", TUNNELS, "wan0") as fa1_wan:
        in_flight(lab)
    assert received(sink) == set()
    assert not [x for x in fa1_wan if f"IP {FA1} > {FA2}" in x], fa1_wan


FORGE = """
import socket, sys
from ipaddress import IPv4Address as A
from mipro.security import SecurityAssociation, append_authenticator
from mipro.wire import BindingUpdate, ExtType
bu = BindingUpdate.build(home_address=A(sys.argv[1]), care_of_address=A(sys.argv[2]),
                         identification=(1 << 63) - 1, lifetime=60)
data = append_authenticator(bu.encode(), ExtType.MN_FA_AUTH,
                            SecurityAssociation(400, b"guessed key 1234"))
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(data, (sys.argv[3], 434))
"""


def test_no_forwarding_without_an_authenticated_update(make_lab):
    """The MN sends no notification, and a host on FA1's link forges one naming itself as
    the new care-of address (the link's ingress filter drops it: only registration requests
    reach the FA from there), then the same from the internet (refused: MN-FA fails): FA1
    keeps its visitor, sets no pointer, tunnels nothing."""
    lab = make_lab("handover", services=False)
    start(lab, "notify_previous_fa = false")
    before = lab.status("fa1")
    assert before["visitors"] and not before["binding_cache"]
    lab.exec("cn-local-a", sys.executable, "-c", FORGE, HOME, CN_LOCAL_A, FA1)
    lab.exec("cn-inet", sys.executable, "-c", FORGE, HOME, CN_LOCAL_A, FA1)
    lab.wait_for(lambda: lab.status("fa1")["counters"].get("binding_update_unauthenticated"),
                 5, "FA1 to refuse the forged update")
    assert lab.status("fa1")["counters"]["binding_update_unauthenticated"] == 1
    after = lab.status("fa1")
    assert [v["home_address"] for v in after["visitors"]] == [HOME]
    assert after["binding_cache"] == [] and "forwarding_pointers" not in after["counters"]
    sink = lab.udp_sink("mn", PORT, 2)
    with lab.capture("fa1", TUNNELS, "wan0") as fa1_wan, \
            lab.capture("cn-local-a", TUNNELS) as attacker:
        in_flight(lab)
    assert received(sink) == set()  # FA1 delivered them to its link, where the MN is not
    assert not [x for x in fa1_wan if f"IP {FA1} >" in x] and not attacker
