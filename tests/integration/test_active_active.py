"""Active/active redundancy (seed: "primary for one virtual address and secondary for
another"), in the `failover` lab with a second group: VIP1 10.1.0.1 (VRID 51, HA1
primary) and VIP2 10.1.0.4 (VRID 52, HA2 primary), each HA backup for the other's.

MN1 registers with VIP1 through FA1, MN2 (co-located) with VIP2: each binding's tunnel
ends on the address it registered with, on whichever HA is primary for it."""

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from mipro.lab import Lab

from .test_redundancy import binding_state, start

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/keepalived").exists(),
                                reason="keepalived is not installed (make setup installs it)")

VIP1, VIP2 = "10.1.0.1", "10.1.0.4"
MN1, MN2 = "10.1.0.100", "10.1.0.101"  # through FA1, to VIP1; co-located, to VIP2
CN_HOME, CN_INET = "10.1.0.10", "203.0.113.10"
FA_COA = "198.51.100.1"
# the primary's priority far above the backup's: keepalived's skew then elects it some
# 400 ms before the other, whichever of the two keepalived processes starts first
HIGH, LOW = 200, 100

SECOND_GROUP = """
[[redundancy.group]]
vrid = 52
address = "10.1.0.4"
instance = "VI_HA2"
priority = {priority}
track_file = "{run}/{ha}-sync-52"
"""

SECOND_INSTANCE = """
track_file mipro_sync_52 {{
    file {run}/{ha}-sync-52
    weight 0
    init_file 1
}}

vrrp_instance VI_HA2 {{
    state BACKUP
    interface home0
    virtual_router_id 52
    priority {priority}
    advert_int 1
    version 3
    nopreempt
    use_vmac
    virtual_ipaddress {{
        10.1.0.4/24
    }}
    track_file {{
        mipro_sync_52
    }}
    track_script {{
        mipro
    }}
}}
"""


def prepare(lab: Lab, mn2_tunnel: str) -> None:
    """Both groups on both home agents (ha.toml and keepalived.conf); MN2 registers with
    VIP2; lifetimes long enough that no MN renews during the test."""
    for ha, p51, p52 in (("ha1", HIGH, LOW), ("ha2", LOW, HIGH)):
        run = lab.run_dir
        # group 51 as the failover lab has it (HA1 200, HA2 100); group 52 the other way
        assert f"priority = {p51}\n" in lab.conf(ha, "ha.toml").read_text(), ha
        with open(lab.conf(ha, "ha.toml"), "a") as fh:
            fh.write(SECOND_GROUP.format(priority=p52, run=run, ha=ha))
        with open(lab.conf(ha, "keepalived.conf"), "a") as fh:
            fh.write(SECOND_INSTANCE.format(priority=p52, run=run, ha=ha))
    lab.edit_conf("mn", "mn.toml", "lifetime = 30", "lifetime = 400")
    lab.edit_conf("mn2", "mn.toml", f'home_agent = "{VIP1}"', f'home_agent = "{VIP2}"')
    lab.edit_conf("mn2", "mn.toml", "lifetime = 30",
                  'lifetime = 400\nudp_tunnel = "always"' if mn2_tunnel == "udp" else
                  "lifetime = 400\nudp_tunnel = \"never\"")


def roles(lab: Lab, ha: str) -> dict[int, tuple[str, bool]]:
    groups = (lab.status(ha).get("redundancy") or {}).get("groups") or []
    return {g["vrid"]: (g["role"], g["in_sync"]) for g in groups}


def routed(lab: Lab, ha: str) -> list[str]:
    """The home addresses routed in the home agent's table 434 and proxied on its link."""
    k = binding_state(lab, ha)
    table = sorted(line.split()[0] for line in k["table"])
    proxies = sorted(line.split()[0] for line in k["proxies"])
    assert table == proxies, k
    return table


def in_kernel(lab: Lab, ha: str) -> dict[str, bool]:
    return {b["home_address"]: b["in_kernel"] for b in lab.status(ha)["bindings"]}


def counters(lab: Lab, ha: str, home: str) -> dict[str, int]:
    b = next(b for b in lab.status(ha)["bindings"] if b["home_address"] == home)
    return b.get("counters") or {}


def registrations(lab: Lab, ha: str) -> int:
    c = lab.status(ha)["counters"]
    return c.get("registrations", 0) + c.get("renewals", 0)


def pings(lab: Lab, through: str) -> None:
    """Each MN and each CN ping each other: CN -> HA -> tunnel -> MN and back through the
    reverse tunnel, and the other way round."""
    for cn_node, cn in (("cn-home", CN_HOME), ("cn-inet", CN_INET)):
        for mn_node, mn in (("mn", MN1), ("mn2", MN2)):
            got, _ = lab.ping(cn_node, mn)
            assert got == 3, f"{cn_node} -> {mn} {through}: {got}/3"
            got, _ = lab.ping(mn_node, cn)
            assert got == 3, f"{mn_node} -> {cn} {through}: {got}/3"


def tunnelled(lab: Lab, capture: str) -> set[tuple[str, str, str]]:
    """(outer source, outer destination, kind) of the tunnelled packets in a capture:
    IP-in-IP, and RFC 3519 tunnel data (UDP to or from port 434, first byte 4)."""
    from scapy.all import IP, UDP, rdpcap

    seen = set()
    for pkt in rdpcap(str(lab.out / capture)):
        if IP not in pkt:
            continue
        ip = pkt[IP]
        if ip.proto == 4:
            seen.add((ip.src, ip.dst, "ipip"))
        elif UDP in pkt and 434 in (pkt[UDP].sport, pkt[UDP].dport) and \
                bytes(pkt[UDP].payload)[:1] == b"\x04":
            seen.add((f"{ip.src}:{pkt[UDP].sport}", f"{ip.dst}:{pkt[UDP].dport}", "udp"))
    return seen


def run(lab: Lab, mn2_tunnel: str, counted: bool = True,
        kernel: Callable[[str], None] = lambda phase: None) -> None:
    """The checks, from the election to HA2 primary for both (HA2 left running).
    ``counted``: the dataplane counts per binding (not on shared kernel links);
    ``kernel(phase)`` checks the home agents' tunnels at "split" and "one"."""
    for ha in ("ha1", "ha2"):
        out = lab.exec(ha, lab.python, "-m", "mipro.cli", "check-config",
                       str(lab.conf(ha, "ha.toml")), check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    # both mipros in sync for both groups before keepalived starts: the election is
    # then by priority alone (nopreempt keeps whoever is first)
    start(lab, "dnsmasq", "ha1", "ha2")
    in_sync = {51: ("init", True), 52: ("init", True)}
    lab.wait_for(lambda: roles(lab, "ha1") == in_sync and roles(lab, "ha2") == in_sync, 30,
                 "both home agents in sync for both groups")
    start(lab, "keepalived1", "keepalived2")
    want = {"ha1": {51: ("master", True), 52: ("backup", True)},
            "ha2": {51: ("backup", True), 52: ("master", True)}}
    lab.wait_for(lambda: all(roles(lab, ha) == w for ha, w in want.items()), 30,
                 "HA1 primary for VIP1 and backup for VIP2, HA2 the other way round")
    start(lab, "fa1", "mn", "mn2")
    lab.wait_for(lambda: in_kernel(lab, "ha1") == {MN1: True, MN2: False} and
                 in_kernel(lab, "ha2") == {MN1: False, MN2: True}, 60,
                 "MN1's binding in HA1's kernel, MN2's in HA2's, each replicated to the other")
    assert lab.status("mn2")["bindings"][0]["encapsulation"] == mn2_tunnel
    # each kernel holds only the bindings of the group it is primary for
    assert routed(lab, "ha1") == [MN1] and routed(lab, "ha2") == [MN2]

    kernel("split")

    pings(lab, "each through its own primary")
    if counted:
        for ha, home in (("ha1", MN1), ("ha2", MN2)):
            c = counters(lab, ha, home)
            assert c.get("packets_out", 0) >= 6 and c.get("packets_in", 0) >= 6, (ha, home, c)
        ha1_mn2, ha2_mn1 = counters(lab, "ha1", MN2), counters(lab, "ha2", MN1)
        assert not ha1_mn2.get("packets_out") and not ha2_mn1.get("packets_out"), \
            (ha1_mn2, ha2_mn1)
    # on the wire (the home router's side of the home link): MN2's tunnel ends on VIP2,
    # MN1's on VIP1, in both directions
    coa2 = lab.status("mn2")["care_of_address"]
    seen = tunnelled(lab, "rhome-home0.pcap")
    if mn2_tunnel == "udp":
        mn2_out = {(f"{VIP2}:434", d, "udp") for s, d, k in seen
                   if s == f"{VIP2}:434" and d.startswith(coa2 + ":")}
        assert mn2_out, seen
        assert not any(s.startswith(VIP1 + ":") and d.startswith(coa2 + ":")
                       for s, d, k in seen), seen
        assert any(s.startswith(coa2 + ":") and d == f"{VIP2}:434" for s, d, k in seen), seen
    else:
        assert (VIP2, coa2, "ipip") in seen and (coa2, VIP2, "ipip") in seen, seen
        assert (VIP1, coa2, "ipip") not in seen, seen
    assert (VIP1, FA_COA, "ipip") in seen and (FA_COA, VIP1, "ipip") in seen, seen
    assert (VIP2, FA_COA, "ipip") not in seen, seen

    # HA1 dies as the failover scenario kills it (check.py): HA2 takes VIP1 too
    before = registrations(lab, "ha2")
    mn_state = {mn: lab.status(mn)["bindings"][0]["care_of_address"] for mn in ("mn", "mn2")}
    lab.stop_service("ha1", signal.SIGKILL)
    lab.stop_service("keepalived1", signal.SIGKILL)
    lab.exec("ha1", lab.python, "-m", "mipro.cli", "ha", "--cleanup", "--config",
             str(lab.conf("ha1", "ha.toml")))
    lab.exec("ha1", "ip", "link", "del", "vrrp.51")
    lab.exec("ha1", "ip", "link", "del", "vrrp.52", check=False)  # its backup VMAC link
    lab.wait_for(lambda: {v: r for v, (r, _) in roles(lab, "ha2").items()} ==
                 {51: "master", 52: "master"} and
                 in_kernel(lab, "ha2") == {MN1: True, MN2: True}, 20,
                 "HA2 primary for both addresses with both bindings in its kernel")
    assert routed(lab, "ha2") == [MN1, MN2]
    kernel("one")
    pings(lab, "both through HA2")
    if counted:
        c = counters(lab, "ha2", MN1)
        assert c.get("packets_out", 0) >= 6 and c.get("packets_in", 0) >= 6, c
    # neither MN registered again: HA2 answered no request, the MNs' bindings are the same
    assert registrations(lab, "ha2") == before
    for mn, coa in mn_state.items():
        status = lab.status(mn)
        assert status["state"] == "registered", status
        assert status["bindings"][0]["care_of_address"] == coa
    seen = tunnelled(lab, "rhome-home0.pcap")
    assert (VIP1, FA_COA, "ipip") in seen and (VIP2, FA_COA, "ipip") not in seen, seen


@pytest.mark.parametrize("mn2_tunnel", ["ipip", "udp"])
def test_active_active_each_ha_primary_for_one_address_then_one_takes_both(make_lab,
                                                                           mn2_tunnel):
    lab = make_lab("failover", services=False)
    prepare(lab, mn2_tunnel)
    run(lab, mn2_tunnel)
    assert lab.stop_service("ha2") == 0
    assert binding_state(lab, "ha2") == {"table": [], "proxies": []}
