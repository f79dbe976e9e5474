"""The visitors' /32s on the visited site by OSPF (seed Fig. 3b): mipro writes kernel routes
in table 200, FRR (zebra + ospfd, a real instance per namespace) advertises them; the site
router R reaches the MN through the FA it is registered with."""

import signal
import time

import pytest

from mipro.lab.cli import load_check

HOME = "10.1.0.100"
SITE_TABLE = "200"

pytestmark = pytest.mark.skipif(not __import__("os").path.exists("/usr/lib/frr/zebra"),
                                reason="FRR is not installed (make apt)")


def check_module():
    return load_check("handover-ospf")


def table(lab, node):
    return lab.exec(node, "ip", "route", "show", "table", SITE_TABLE, check=False).stdout


def test_local_correspondent_follows_the_mn_by_ospf_never_through_the_ha(make_lab):
    lab = make_lab("handover-ospf")
    check_module().run(lab, say=print)
    for node in ("fa1", "fa2"):  # nothing of the MN advertised anywhere now
        assert HOME not in table(lab, node), (node, table(lab, node))
    assert check_module().r_nexthops(lab) == []
    assert HOME not in lab.exec("r", "ip", "route").stdout


def registered_via_fa1(lab):
    check_module().adjacent(lab)
    lab.expect_phase("via-fa1", 30)
    check_module().r_via(lab, "fa1", 30)


def test_frr_restart_keeps_the_routes_and_an_fa_restart_reconciles_its_table(make_lab):
    lab = make_lab("handover-ospf")
    registered_via_fa1(lab)
    assert f"{HOME} dev lan0 proto 250" in table(lab, "fa1")
    # FRR goes: the visitor's route is the kernel's and stays; R loses it (dead interval)
    assert lab.stop_service("frr-fa1") == 0
    check_module().r_via(lab, None, 10)
    assert f"{HOME} dev lan0 proto 250" in table(lab, "fa1")
    lab.start_service("frr-fa1")  # zebra reads table 200 back: R has the route again
    check_module().r_via(lab, "fa1", 30)
    # a killed FA leaves its routes; what it left (and anything else there) goes when it
    # starts again, and its visitor's route comes back when the MN registers anew
    lab.stop_service("fa1", signal.SIGKILL)
    lab.exec("fa1", "ip", "route", "add", "10.1.0.77/32", "dev", "lan0", "table", SITE_TABLE)
    assert HOME in table(lab, "fa1")
    lab.start_service("fa1")
    assert "10.1.0.77" not in table(lab, "fa1")
    assert any("event=reconciled-leftovers" in x and f"table={SITE_TABLE}" in x
               for x in lab.log_lines("fa1"))
    lab.expect("fa1", {"site_routes": {"advertised": [HOME]}}, 40, "the MN to register again")
    assert f"{HOME} dev lan0 proto 250" in table(lab, "fa1")
    check_module().r_via(lab, "fa1", 30)
    assert "10.1.0.77" not in lab.exec("r", "ip", "route").stdout


def test_no_route_for_a_denied_visitor(make_lab):
    lab = make_lab("handover-ospf", services=False)
    lab.edit_conf("fa1", "fa.toml", "max_lifetime = 600", "max_lifetime = 10")  # MN asks 20
    for svc in lab.spec["service"]:
        lab.start_service(svc["name"])
    lab.wait_for(lambda: any("code=69" in x for x in lab.log_lines("fa1")), 20, "denial 69")
    time.sleep(3)  # an adjacency's worth: R would have learnt a route by now
    assert table(lab, "fa1") == "" and lab.status("fa1")["site_routes"]["advertised"] == []
    assert check_module().r_nexthops(lab) == []


def test_an_expired_visitor_is_withdrawn(make_lab):
    """Without the previous-FA notification FA1 keeps its visitor, and advertises it, until
    its registration expires: R has both FAs meanwhile (docs/routing.md), then FA2 only."""
    lab = make_lab("handover-ospf", services=False)
    lab.edit_conf("mn", "mn.toml", 'mode = "auto"', 'mode = "auto"\nnotify_previous_fa = false')
    for svc in lab.spec["service"]:
        lab.start_service(svc["name"])
    registered_via_fa1(lab)
    lab.move("mn.eth0", "visit-b")
    lab.expect_phase("via-fa2", 20)
    assert HOME in table(lab, "fa1")
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 30, "FA1's visitor to expire")
    # the dataplane follows the engine's expiry: the kernel route goes a moment later
    lab.expect("fa1", {"site_routes": {"advertised": []}}, 5, "FA1 to withdraw the /32")
    assert table(lab, "fa1") == ""
    check_module().r_via(lab, "fa2", 10)


FORGE = """
import socket, sys
from ipaddress import IPv4Address as A
from mipro.security import SecurityAssociation, append_authenticator
from mipro.wire import BindingUpdate, ExtType
from mipro.wire.binding import BindingFlags
bu = BindingUpdate.build(home_address=A(sys.argv[1]), care_of_address=A(sys.argv[2]),
                         identification=(1 << 63) - 1, lifetime=60, flags=BindingFlags.A)
data = append_authenticator(bu.encode(), ExtType.MN_FA_AUTH,
                            SecurityAssociation(400, b"guessed key 1234"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(data, (sys.argv[3], 434))
try:
    print(s.recvfrom(2048)[0].hex())
except TimeoutError:
    print("no answer")
"""


def test_a_forged_binding_update_from_the_visited_link_changes_nothing(make_lab):
    """A host on FA1's visited link forges the previous-FA notification for the MN (naming
    itself as the new care-of address, acknowledgement requested): it gets no answer (the
    link's ingress hook lets only registration requests reach the FA from there: its
    shape counter counts it), and
    FA1's visitor, its /32 in table 200, its binding cache and R's route stay as they were."""
    lab = make_lab("handover-ospf")
    registered_via_fa1(lab)
    fa1 = "198.51.100.1"
    before = lab.status("fa1")
    routes = table(lab, "fa1")
    with lab.capture("fa1", "udp port 434 and host 198.51.100.20", "lan0") as seen:
        answer = lab.exec("cn-local-a", __import__("sys").executable, "-c", FORGE, HOME,
                          "198.51.100.20", fa1).stdout.strip()
    assert answer == "no answer"
    assert any("198.51.100.20" in x and f"{fa1}.434" in x for x in seen), seen  # it was sent
    after = lab.status("fa1")
    # the visited link's ingress hook dropped it: not a registration request (type 1)
    assert after["flood_limit"]["shape_dropped"] == before["flood_limit"]["shape_dropped"] + 1
    assert [v["home_address"] for v in after["visitors"]] == [HOME]
    assert after["binding_cache"] == [] and after["site_routes"] == before["site_routes"]
    assert not any(k.startswith("binding_update") for k in after["counters"]), after["counters"]
    assert table(lab, "fa1") == routes and f"{HOME} dev lan0 proto 250" in routes
    assert check_module().r_nexthops(lab) == ["10.200.0.1"]


def test_a_shared_home_address_is_never_advertised(make_lab):
    """Two mobile nodes of different home agents with one home address at FA1 (the overlap
    scenario, [fa.routing] on, CN-self's host route taken away so that the address is not
    also a local host's): one visitor alone is in table 200, the two together never are
    (a /32 on the site would send both visitors' traffic to one; docs/routing.md); when MN2
    leaves, MN's is advertised again.  Table 200 is all FRR imports."""
    lab = make_lab("overlap", services=False)
    lab.edit_conf("fa1", "fa.toml", "[runtime]", f"[fa.routing]\ntable = {SITE_TABLE}\n\n[runtime]")
    lab.exec("fa1", "ip", "route", "del", f"{HOME}/32", "dev", "site0")
    for name in ("ha", "ha2", "fa1", "mn"):
        lab.start_service(name)
    lab.expect("fa1", {"site_routes": {"advertised": [HOME]}}, 30, "MN's /32 in table 200")
    assert f"{HOME} dev lan0 proto 250" in table(lab, "fa1")
    lab.start_service("mn2")
    lab.wait_for(lambda: [v["state"] for v in lab.status("fa1")["visitors"]] ==
                 ["accepted", "accepted"], 30, "MN2 to register too")
    time.sleep(1)
    assert lab.status("fa1")["site_routes"]["advertised"] == []
    assert table(lab, "fa1") == ""
    assert lab.stop_service("mn2") == 0
    lab.expect("fa1", {"site_routes": {"advertised": [HOME]}}, 20, "MN's /32 again")
    assert f"{HOME} dev lan0 proto 250" in table(lab, "fa1")
