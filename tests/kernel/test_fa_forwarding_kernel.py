"""The previous FA as a forwarding pointer on the kernel backend: FA1 re-tunnels what
still reaches it for the mobile node to FA2 through an ipip link of its own
(``mipf-f<FA2>``), FA2 decapsulates it on ``mipf-p<FA1>``; only after an authenticated
Binding Update, for the pointer's lifetime, and nothing of it is left afterwards.

The same moves and in-flight datagrams as tests/integration/test_forwarding.py (the
userspace relay), with both foreign agents on the kernel backend.
"""

import sys

from mipro.config.schema import TABLES
from mipro.lab.lab import TIME_SCALE

from ..integration.test_forwarding import (
    CN_HOME,
    CN_LOCAL_A,
    FA1,
    FA2,
    FORGE,
    HOME,
    TUNNELS,
    in_flight,
    pointer,
    received,
    start,
)
from .test_kernel_backend import kernel_backend, links

PORT = 6001
TO_FA2 = "mipf-fc0000201"  # FA1's ipip link to FA2's care-of address
FROM_FA1 = "mipf-pc6336401"  # FA2's ipip link from FA1
HA_LINK = "mipf-0a010001"  # an FA's ipip link to the home agent
TABLE = str(TABLES["fa"][0])
# long enough for the checks below under emulation (MIPRO_LAB_TIME_SCALE 8: the pointer
# of 8 s expired before the in-flight datagrams were sent); fa.forwarding.max_lifetime: 60
LIFETIME = min(60, round(8 * TIME_SCALE))


def kernel_state(lab, node):
    """What an FA may have programmed: links, routes of every table, rules, permanent
    neighbours."""
    return {what: lab.exec(node, *cmd).stdout for what, cmd in {
        "links": ("ip", "-d", "-o", "link", "show"),
        "routes": ("ip", "route", "show", "table", "all"),
        "rules": ("ip", "rule", "show"),
        "neigh": ("ip", "neigh", "show", "nud", "permanent")}.items()}


def kernel_fas(lab):
    kernel_backend(lab, ("fa1", "fa.toml"), ("fa2", "fa.toml"))


def test_kernel_fa_retunnels_to_the_new_care_of_address_until_the_pointer_expires(make_lab):
    lab = make_lab("handover", services=False)
    kernel_fas(lab)
    lab.edit_conf("mn", "mn.toml", "lifetime = 20", "lifetime = 120")  # the pointer's cap
    start(lab, f"forwarding_lifetime = {LIFETIME}")
    assert lab.status("fa1")["dataplane"] == "kernel" == lab.status("fa2")["dataplane"]
    entry = lab.wait_for(lambda: pointer(lab), 10, "FA1's forwarding pointer")
    assert entry["care_of_address"] == FA2
    fa1 = links(lab, "fa1")
    assert f"{TO_FA2}@" in fa1 and f"remote {FA2}" in fa1, fa1
    assert HA_LINK in fa1, fa1  # kept while the pointer needs it: it decapsulates the HA's
    assert f"{HOME} dev {TO_FA2}" in lab.exec("fa1", "ip", "route", "show", "table",
                                              TABLE).stdout
    fa2 = links(lab, "fa2")
    assert f"{FROM_FA1}@" in fa2 and f"remote {FA1}" in fa2, fa2
    sink = lab.udp_sink("mn", PORT, 4)
    with lab.capture("fa1", TUNNELS, "wan0") as fa1_wan, \
            lab.capture("fa2", TUNNELS, "wan0") as fa2_wan:
        in_flight(lab)
        assert lab.ping("cn-local-a", HOME)[0] == 3  # natively to FA1: on to FA2 too
    assert received(sink) == set(range(20))
    inner = f"IP {CN_HOME}.40000 > {HOME}.{PORT}: UDP"
    assert len([x for x in fa1_wan if f"IP {FA1} > {FA2}: {inner}" in x]) == 20, fa1_wan
    assert len([x for x in fa2_wan if f"IP {FA1} > {FA2}: {inner}" in x]) == 20, fa2_wan
    assert len([x for x in fa1_wan if f"IP {FA1} > {FA2}: IP {CN_LOCAL_A} > {HOME}: ICMP "
                "echo request" in x]) == 3, fa1_wan
    # the pointer's lifetime ends: its link, its route and the HA's link (FA1 has no
    # visitor of that HA left) go, and FA1 tunnels nothing on
    lab.wait_for(lambda: not lab.status("fa1")["binding_cache"], LIFETIME / TIME_SCALE + 10,
                 "the pointer to expire")
    fa1 = links(lab, "fa1")
    assert TO_FA2 not in fa1 and HA_LINK not in fa1, fa1
    assert HOME not in lab.exec("fa1", "ip", "route", "show", "table", TABLE,
                                check=False).stdout
    sink = lab.udp_sink("mn", PORT, 2)
    with lab.capture("fa1", TUNNELS, "wan0") as fa1_wan:
        in_flight(lab, first=100)
    assert received(sink) == set()
    assert not [x for x in fa1_wan if f"IP {FA1} > {FA2}" in x], fa1_wan
    # FA2's link from FA1 lives as long as the visitor that named FA1; then nothing is left
    assert lab.stop_service("mn") == 0
    lab.wait_for(lambda: not lab.status("fa2")["visitors"], 30, "deregistration at FA2")
    assert "mipf-" not in links(lab, "fa2")
    for fa in ("fa1", "fa2"):
        assert lab.stop_service(fa) == 0
        assert "mipf-" not in links(lab, fa)
        assert lab.exec(fa, "ip", "route", "show", "table", TABLE, check=False).stdout == ""


def test_kernel_fa_forwards_nothing_without_an_authenticated_update(make_lab):
    """No notification from the MN, and forged updates from FA1's visited link (the
    link's filter drops them) and from the internet (MN-FA fails): FA1's kernel state
    is what it was, no ipip link to anyone but the HA, nothing re-tunnelled."""
    lab = make_lab("handover", services=False)
    kernel_fas(lab)
    start(lab, "notify_previous_fa = false")
    before = kernel_state(lab, "fa1")
    lab.exec("cn-local-a", sys.executable, "-c", FORGE, HOME, CN_LOCAL_A, FA1)
    lab.exec("cn-inet", sys.executable, "-c", FORGE, HOME, CN_LOCAL_A, FA1)
    lab.wait_for(lambda: lab.status("fa1")["counters"].get("binding_update_unauthenticated"),
                 10, "FA1 to refuse the forged update")
    assert lab.status("fa1")["counters"]["binding_update_unauthenticated"] == 1
    assert kernel_state(lab, "fa1") == before
    assert "mipf-f" not in before["links"] and "mipf-p" not in links(lab, "fa2")
    assert lab.status("fa1")["binding_cache"] == []
    sink = lab.udp_sink("mn", PORT, 2)
    with lab.capture("fa1", TUNNELS, "wan0") as fa1_wan:
        in_flight(lab)
    assert received(sink) == set()
    assert not [x for x in fa1_wan if f"IP {FA1} >" in x], fa1_wan
